"""MGDA's min-norm point of the convex hull of the gradients: ``min wᵀGw`` over the simplex
``w >= 0, Σw = 1``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._host import use_host
from ._box_qp import nonneg_qp

__all__ = ["min_norm_simplex"]


def min_norm_simplex(G: Tensor, *, max_iters: int = 100, rtol: float = 0.0) -> Tensor:
    """Weights ``w`` on the simplex minimising ``wᵀ G w`` (MGDA's min-norm point), shape (m,).

    Stops when every ``(G w)_j >= (1 - rtol) wᵀGw`` (up to round-off). With two tasks, the
    closest point of a segment to 0 in closed form (the common case).
    """
    m = G.shape[-1]
    if m == 2:
        # a dozen float operations against eight tensor operations
        return _segment_min_norm_host(G) if use_host(G, 12, 8) else _segment_min_norm(G)
    # (one synchronisation, which the active-set steps make anyway, saves the guards of a
    # zero diagonal on the device)
    top = float(G.diagonal().max())
    A = G / top if top > 0 else torch.zeros_like(G)
    return nonneg_qp(A, G.new_zeros(1, m), simplex=True, max_iters=max_iters, rtol=rtol)[0]


def _segment_min_norm(G: Tensor) -> Tensor:
    """The min-norm point of the segment between two gradients: ``w = (t, 1 - t)`` with
    ``t = (G₁₁ - G₀₁) / (G₀₀ + G₁₁ - 2 G₀₁)`` clamped to [0, 1] (1/2 for equal gradients)."""
    denom = G[0, 0] + G[1, 1] - 2.0 * G[0, 1]
    safe = torch.where(denom > 0, denom, 1.0)
    t = torch.where(denom > 0, (G[1, 1] - G[0, 1]) / safe, 0.5)
    t = t.clamp(0.0, 1.0)
    return torch.stack([t, 1.0 - t])


def _segment_min_norm_host(G: Tensor) -> Tensor:
    """The host twin of `_segment_min_norm`."""
    (g00, g01), (_, g11) = G.tolist()
    denom = g00 + g11 - 2.0 * g01
    t = (g11 - g01) / denom if denom > 0.0 else 0.5
    t = min(max(t, 0.0), 1.0)
    return torch.tensor([t, 1.0 - t], dtype=G.dtype)
