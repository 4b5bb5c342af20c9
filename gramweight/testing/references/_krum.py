"""Reference of (Multi-)Krum, on the gradient vectors."""

from __future__ import annotations

import torch
from torch import Tensor

from ._framework import register_reference


@register_reference("krum")
def krum_reference(J: Tensor, /, *, n_byzantine: int, n_selected: int = 1) -> Tensor:
    """Score each gradient by the sum of its squared distances to its ``m - f - 2`` nearest
    other gradients; average the ``n_selected`` of lowest score (ties: lower index first)."""
    J64 = J.double().cpu()
    m = J.shape[0]
    scores = []
    for i in range(m):
        d = sorted(float(((J64[i] - J64[j]) ** 2).sum()) for j in range(m) if j != i)
        scores.append(sum(d[: m - n_byzantine - 2]))
    chosen = sorted(range(m), key=lambda i: (scores[i], i))[:n_selected]
    return sum(J64[i] for i in chosen) / n_selected
