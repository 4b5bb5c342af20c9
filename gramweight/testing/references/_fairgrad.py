"""References of FairGrad and Nash-MTL: the positive root of ``J Jᵀ w = w^(-1/alpha)``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._framework import register_reference


def power_root(J: Tensor, alpha: float, dtype: torch.dtype) -> Tensor:
    """The positive ``w`` with ``g_iᵀ(Jᵀw) = w_i^(-1/alpha)`` for every row ``g_i`` of ``J``.

    Like the weightings, ``J`` is first augmented with ``sqrt(r · max_i ‖g_i‖²) I`` (their
    diagonal regularisation, written as extra columns). ``w`` minimises the strictly convex
    potential ``½‖Jᵀw‖² - Σ φ(w_i)`` with ``φ' = w^(-1/alpha)``: Newton's method on it, steps
    kept inside ``w > 0`` and halved until the potential or the residual of the equation
    decreases.
    """
    J64 = J.double().cpu()
    m = J64.shape[0]
    big = float((J64 * J64).sum(dim=1).max())
    big = big if big > 0 else 1.0
    r = 1e-6 if dtype == torch.float64 else 1e-4  # as the weightings, by input precision
    Ja = torch.cat([J64, math.sqrt(r * big) * torch.eye(m, dtype=torch.float64)], dim=1)
    p = 1.0 / alpha

    def potential(w: Tensor) -> Tensor:
        phi = torch.log(w) if alpha == 1 else w ** (1.0 - p) / (1.0 - p)
        return 0.5 * (Ja.T @ w).pow(2).sum() - phi.sum()

    def residual(w: Tensor) -> float:
        return float(((Ja @ (Ja.T @ w)) * w**p - 1.0).abs().max())

    w = torch.full((m,), big ** (-alpha / (1.0 + alpha)), dtype=torch.float64)
    for _ in range(500):
        if residual(w) < 1e-13:
            break
        grad = Ja @ (Ja.T @ w) - w ** (-p)
        hess = Ja @ Ja.T + torch.diag(p * w ** (-p - 1.0))
        step = torch.linalg.solve(hess, -grad)
        t = 1.0
        while bool((w + t * step <= 0).any()):
            t /= 2
        f0, r0, slope = float(potential(w)), residual(w), float(grad @ step)
        while t > 1e-30:
            cand = w + t * step
            if float(potential(cand)) <= f0 + 1e-4 * t * slope or residual(cand) < r0:
                break
            t /= 2
        w = w + t * step
    return w


@register_reference("fairgrad")
def fairgrad_reference(J: Tensor, /, *, alpha: float = 1.0) -> Tensor:
    """FairGrad: ``Jᵀw`` with ``J Jᵀ w = w^(-1/alpha)``; ``alpha = 0`` is the mean."""
    J64 = J.double().cpu()
    if alpha == 0:
        return J64.mean(dim=0)
    return J64.T @ power_root(J64, alpha, J.dtype)
