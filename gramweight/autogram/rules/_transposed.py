"""Linear maps whose weight is stored transposed, (in, out): Hugging Face's ``Conv1D``.

``transformers.pytorch_utils.Conv1D`` (GPT-2, GPT, ...) computes ``y = x @ W + b`` with
``W`` of shape (nx, nf): a ``Linear`` whose weight is ``W.T``. Its rule is the Linear rule's
factor on the transposed layout; the Gramian does not depend on the layout, per-loss
gradients and weighted sums are transposed back. The rule is registered by qualified name,
so it applies when transformers is installed without gramweight importing it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._factors import BiasOf, Factor, Outer
from ._registry import register_rule, split_samples

__all__ = ["Transposed", "transposed_linear"]


class Transposed(Factor):
    """The factor of a matrix parameter stored transposed: ``inner`` is that of its (out, in)
    transpose."""

    def __init__(self, inner: Factor):
        self.inner = inner
        self.dtype = inner.dtype

    @property
    def keep_grads(self) -> bool:  # the engine's setting reaches the inner factor
        return self.inner.keep_grads

    @keep_grads.setter
    def keep_grads(self, value: bool) -> None:
        self.inner.keep_grads = value

    def gramian(self) -> Tensor:
        return self.inner.gramian()

    def grads(self) -> Tensor:
        return self.inner.grads().transpose(1, 2)

    def weighted(self, w: Tensor) -> Tensor:
        return self.inner.weighted(w).T.contiguous()


@register_rule("transformers.pytorch_utils.Conv1D")
def transposed_linear(module: nn.Module, inputs: tuple, grad_output: Tensor, *, batched: bool
                      ) -> dict[str, Factor]:
    """``y = x @ weight + bias``, weight (in, out): the Linear rule on ``weight.T``."""
    X, dY, n, t = split_samples(inputs[0], grad_output, batched, 1)
    I, O = module.weight.shape
    inner = Outer(X.unsqueeze(2), dY.unsqueeze(3), torch.Size((O, I)))
    out: dict[str, Factor] = {"weight": Transposed(inner)}
    if module.bias is not None:
        out["bias"] = BiasOf(dY.sum(2).transpose(0, 1).reshape(n * t, -1), inner)
    return out
