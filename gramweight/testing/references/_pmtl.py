"""Reference of Pareto MTL: MGDA over the gradients of the losses and the active constraints."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._framework import register_reference
from ._projection import min_norm_in_hull


@register_reference("pmtl")
def pmtl_reference(
    J: Tensor,
    /,
    *,
    losses: Sequence[float] | Tensor,
    preferences: Sequence[Sequence[float]] | Tensor,
    index: int,
    phase: str = "main",
    eps: float = 0.0,
    max_iters: int = 250,
) -> Tensor:
    """The paper's direction on vectors: each constraint ``G_j = (u_j - u_k)ᵀ ℓ/‖ℓ‖``
    (unit preference vectors) and its gradient ``Σ_i (u_j - u_k)_i g_i``, built row by row; the
    min-norm point of the hull of the loss gradients and the gradients of the constraints
    with ``G_j > -eps`` (main phase), or of the violated constraints alone (``G_j > 0``, init
    phase: the zero vector when none is), by enumeration of supports. Constraints of a
    preference parallel to ``u_k`` are ``0 <= 0`` and left out. ``max_iters`` steers the
    weighting's solver only."""
    J = J.double().cpu()
    loss = [float(x) for x in losses]
    norm = sum(x * x for x in loss) ** 0.5
    U = [[float(x) for x in row] for row in preferences]
    U = [[x / sum(y * y for y in row) ** 0.5 for x in row] for row in U]
    rows = [] if phase == "init" else list(J)
    for j, u in enumerate(U):
        diff = [a - b for a, b in zip(u, U[index])]
        if j == index or sum(d * d for d in diff) ** 0.5 <= 1e-9:  # parallel: 0 <= 0
            continue
        value = sum(d * x / norm for d, x in zip(diff, loss))
        if (phase == "init" and value > 0) or (phase != "init" and value > -eps):
            rows.append(sum(d * g for d, g in zip(diff, J)))
    if not rows:
        return torch.zeros(J.shape[1], dtype=torch.float64)
    points = torch.stack(rows)
    return min_norm_in_hull(points) @ points
