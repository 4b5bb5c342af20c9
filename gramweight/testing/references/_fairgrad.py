"""References of FairGrad and Nash-MTL: the positive root of ``J Jᵀ w = w^(-1/alpha)``."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._framework import register_reference


def power_root(J: Tensor, alpha: float) -> Tensor:
    """The positive ``w`` with ``g_iᵀ(Jᵀw) = w_i^(-1/alpha)`` for every row ``g_i`` of ``J``.

    Like the weightings, ``J`` is first augmented with ``sqrt(1e-8 · max_i ‖g_i‖²) I`` (their
    diagonal regularisation, written as extra columns). Solved in log-coordinates
    ``w = exp(s)`` by Newton's method on the residual with a backtracking line search, the
    Jacobian of the residual coming from autograd.
    """
    J64 = J.double().cpu()
    m = J64.shape[0]
    big = float((J64 * J64).sum(dim=1).max())
    big = big if big > 0 else 1.0
    Ja = torch.cat([J64, math.sqrt(1e-8 * big) * torch.eye(m, dtype=torch.float64)], dim=1)
    p = 1.0 / alpha

    def residual(s: Tensor) -> Tensor:
        w = torch.exp(s)
        return (Ja @ (Ja.T @ w)) * torch.exp(p * s) - 1.0  # relative form: (G w)_i w_i^p - 1

    s = torch.full((m,), -0.5 * math.log(big), dtype=torch.float64)
    for _ in range(200):
        r = residual(s)
        if float(r.abs().max()) < 1e-14:
            break
        jac = torch.autograd.functional.jacobian(residual, s)
        step = torch.linalg.solve(jac, -r)
        t = 1.0
        while t > 1e-12 and float(residual(s + t * step).norm()) >= float(r.norm()):
            t /= 2
        s = s + t * step
    return torch.exp(s)


@register_reference("fairgrad")
def fairgrad_reference(J: Tensor, /, *, alpha: float = 1.0) -> Tensor:
    """FairGrad: ``Jᵀw`` with ``J Jᵀ w = w^(-1/alpha)``; ``alpha = 0`` is the mean."""
    J64 = J.double().cpu()
    if alpha == 0:
        return J64.mean(dim=0)
    return J64.T @ power_root(J64, alpha)
