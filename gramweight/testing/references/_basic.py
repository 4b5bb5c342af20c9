"""References of the baseline weightings, written directly in Jacobian space."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ._framework import register_reference


@register_reference("mean")
def mean_reference(J: Tensor, /) -> Tensor:
    """The gradient of the mean loss: the average of the rows of ``J``."""
    return J.sum(dim=0) / J.shape[0]


@register_reference("sum")
def sum_reference(J: Tensor, /) -> Tensor:
    """The gradient of the summed loss: the sum of the rows of ``J``."""
    return J.sum(dim=0)


@register_reference("constant")
def constant_reference(J: Tensor, /, *, weights: Sequence[float] | Tensor) -> Tensor:
    """``Σ_i weights_i J_i``, row by row."""
    return sum_rows([float(x) for x in weights], J)


@register_reference("random")
def random_reference(J: Tensor, /, *, key: int) -> Tensor:
    """RLW: the rows of ``J`` weighted by a softmax of standard normal draws.

    The draws are ``m`` float64 normals from ``torch.Generator().manual_seed(key)``; the
    softmax is written out with Python floats.
    """
    z = torch.randn(J.shape[0], generator=torch.Generator().manual_seed(key), dtype=torch.float64)
    exps = [math.exp(v - max(z.tolist())) for v in z.tolist()]
    total = math.fsum(exps)
    return sum_rows([e / total for e in exps], J)


def sum_rows(weights: Sequence[float], J: Tensor) -> Tensor:
    """``Σ_i weights_i J_i`` in float64, one row at a time."""
    update = torch.zeros(J.shape[1], dtype=torch.float64)
    for w, row in zip(weights, J.double()):
        update += w * row
    return update
