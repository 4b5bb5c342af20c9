"""Rule for ``nn.Linear`` (2-D inputs and sequences)."""

from __future__ import annotations

from torch import Tensor, nn

from ._factors import BiasOf, Factor, Outer
from ._registry import register_rule, split_samples


@register_rule(nn.Linear)
def linear(module: nn.Linear, inputs: tuple, grad_output: Tensor, *, batched: bool
           ) -> dict[str, Factor]:
    """Weight: an ``Outer`` factor of the inputs and output gradients; bias: summed gradients."""
    X, dY, n, t = split_samples(inputs[0], grad_output, batched, 1)
    weight = Outer(X.unsqueeze(2), dY.unsqueeze(3), module.weight.shape)
    out: dict[str, Factor] = {"weight": weight}
    if module.bias is not None:
        out["bias"] = BiasOf(dY.sum(2).transpose(0, 1).reshape(n * t, -1), weight)
    return out
