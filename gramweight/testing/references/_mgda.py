"""Reference of MGDA: the min-norm point of the convex hull of the (normalised) gradients."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._framework import register_reference
from ._projection import min_norm_in_hull


@register_reference("mgda")
def mgda_reference(
    J: Tensor,
    /,
    *,
    norm: str = "none",
    losses: Sequence[float] | Tensor | None = None,
    tol: float = 1e-5,
    max_iters: int = 250,
) -> Tensor:
    """Normalise each gradient (by its L2 norm, its loss, or both), find the min-norm point of
    the convex hull of the normalised gradients, and apply its coefficients to the raw
    gradients (the original MGDA-UB convention). ``tol`` and ``max_iters`` steer the
    weighting's solver; the enumeration here is exact."""
    J = J.double().cpu()
    divisors = torch.ones(J.shape[0], dtype=torch.float64)
    if norm in ("loss", "loss+"):
        divisors = divisors * torch.as_tensor(losses, dtype=torch.float64).cpu()
    if norm in ("l2", "loss+"):
        divisors = divisors * J.norm(dim=1)
    normalised = torch.stack(
        [row / d if d > 0 else torch.zeros_like(row) for row, d in zip(J, divisors)]
    )
    coef = min_norm_in_hull(normalised)
    return coef @ J
