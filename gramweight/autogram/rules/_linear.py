"""Rule for ``nn.Linear`` (2-D inputs and sequences)."""

from __future__ import annotations

from torch import Tensor, nn

from ._factors import Factor, Outer, PerLoss
from ._registry import register_rule, split_samples


@register_rule(nn.Linear)
def linear(module: nn.Linear, inputs: tuple, grad_output: Tensor, *, batched: bool
           ) -> dict[str, Factor]:
    """Weight: an ``Outer`` factor of the inputs and output gradients; bias: summed gradients."""
    X, dY, n, t = split_samples(inputs[0], grad_output, batched, 1)
    out: dict[str, Factor] = {"weight": Outer(X.unsqueeze(2), dY.unsqueeze(3), module.weight.shape)}
    if module.bias is not None:
        out["bias"] = PerLoss(dY.sum(2).transpose(0, 1).reshape(n * t, -1))
    return out
