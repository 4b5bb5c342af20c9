"""Balance equations: the positive solution of ``G w = w^(-1/α)`` (FairGrad; Nash-MTL's
``(G w) ⊙ w = 1`` is ``α = 1``), by a damped Newton method on its convex potential.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["power_balance", "power_reg"]


def power_reg(dtype: torch.dtype) -> float:
    """Relative diagonal term of the power-balance equation (FairGrad, Nash-MTL) for a Gramian
    of this dtype: 1e-6 in float64, 1e-4 below (where the input itself is only accurate to
    about 1e-7, and the solution's sensitivity, about 1 / this term, must stay below 1e-3)."""
    return 1e-6 if dtype == torch.float64 else 1e-4


def power_balance(
    G: Tensor,
    *,
    alpha: float,
    n_iters: int = 50,
    init: Tensor | None = None,
    reg: float = 1e-6,
) -> Tensor:
    """The positive solution of ``G w = w^(-1/alpha)`` (``alpha > 0``).

    It is the unique minimiser of the strictly convex potential
    ``½ wᵀGw - Σ φ(w_i)`` over ``w > 0``, with ``φ' = w^(-1/alpha)`` (``φ = log`` for
    ``alpha = 1``). The Gramian is first scaled to unit largest diagonal (the solution of the
    scaled problem maps back exactly: ``w(sG) = s^(-alpha/(1+alpha)) w(G)``) and a relative
    ``reg`` (see :func:`power_reg`) is added to its diagonal, so that a zero or an exactly
    opposite gradient gives a large finite weight rather than an unbounded one (and the solve
    stays well conditioned).

    Args:
        G: Gramian (m, m), float64.
        alpha: The fairness exponent, > 0.
        n_iters: Maximum number of Newton steps.
        init: Starting point (positive), e.g. the previous solution; defaults to the solution
            of the diagonal problem.
    """
    m = G.shape[-1]
    p = 1.0 / alpha
    scale = G.diagonal().max()
    s = torch.where(scale > 0, scale, 1.0)
    eye = torch.eye(m, dtype=G.dtype, device=G.device)
    A = G / s + reg * eye
    expo = -alpha / (1.0 + alpha)
    if init is None:
        w = A.diagonal() ** expo
    else:
        w = (init * s ** (-expo)).clamp_min(1e-12)

    def potential(W: Tensor) -> Tensor:
        quad = 0.5 * ((W @ A) * W).sum(dim=-1)
        if alpha == 1.0:
            return quad - torch.log(W).sum(dim=-1)
        return quad - (W ** (1.0 - p)).sum(dim=-1) / (1.0 - p)

    steps = 0.5 ** torch.arange(0, 30, dtype=G.dtype, device=G.device)
    best, stalled = math.inf, 0
    for _ in range(n_iters):
        grad = A @ w - w ** (-p)
        H = A + torch.diag(p * w ** (-p - 1.0))
        d = -torch.linalg.solve(H, grad)
        # Largest step keeping w positive (fraction to the boundary), then the best of a fixed
        # set of backtracked steps, evaluated at once. Near the solution the potential stops
        # resolving progress (its changes fall under round-off), so there the residual of the
        # equation decides instead.
        neg = d < 0
        tmax = torch.where(neg, -0.99 * w / torch.where(neg, d, -1.0), math.inf).min().clamp(max=1.0)
        cands = w.unsqueeze(0) + (tmax * steps).unsqueeze(1) * d.unsqueeze(0)
        vals = potential(cands)
        f0 = potential(w.unsqueeze(0))[0]
        res = (cands @ A - cands ** (-p)).abs().amax(dim=1)
        flat = vals >= f0 - 1e-13 * (1.0 + f0.abs())
        best_f, best_r = vals.argmin(), res.argmin()
        pick = torch.where(flat[best_f], best_r, best_f)
        improves = (vals[pick] < f0) | (res[pick] < grad.abs().max())
        w = torch.where(improves, cands[pick], w)
        rel = float(((A @ w) * w ** p - 1.0).abs().max())
        if rel < 1e-13:
            break
        # near the solution, stop once round-off stalls the residual (three steps without
        # halving it); far from it, damped steps need not reduce the residual
        stalled = stalled + 1 if (rel < 1e-6 and rel > 0.5 * best) else 0
        best = min(best, rel)
        if stalled >= 3:
            break
    return w * s ** expo
