"""Reference of CAGrad: the worst-case improvement maximised in a ball around the mean."""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from ._framework import register_reference
from ._projection import min_norm_in_hull


def _candidates(Jn: Tensor, g0: Tensor, kappa: float):
    """Points of the simplex among which the minimiser of ``wᵀJn g0 + kappa ‖Jnᵀw‖`` lies.

    On the relative interior of a face ``S`` its stationarity conditions make ``w_S`` affine in
    ``t = ‖Jnᵀw‖ / kappa``: ``w_S = w0 + t w1`` (least squares on the rows of ``S``), and
    ``‖Jnᵀ(w0 + t w1)‖ = kappa t`` is a quadratic in ``t``. Every vertex is a candidate too, and
    the min-norm point of the hull (the objective is not differentiable where ``g_w = 0``).
    """
    m = Jn.shape[0]
    b = Jn @ g0
    yield min_norm_in_hull(Jn)  # where g_w = 0, if it can be: the objective is not smooth there
    for i in range(m):
        w = torch.zeros(m, dtype=torch.float64)
        w[i] = 1.0
        yield w
    for size in range(2, m + 1):
        for S in itertools.combinations(range(m), size):
            JS = Jn[list(S)]
            GS = JS @ JS.T
            a = torch.linalg.pinv(GS) @ torch.ones(size, dtype=torch.float64)
            z = torch.linalg.pinv(GS) @ b[list(S)]
            if abs(float(a.sum())) < 1e-14:
                continue
            w0 = a / a.sum()
            w1 = z.sum() * a / a.sum() - z
            u0, u1 = JS.T @ w0, JS.T @ w1
            qa = kappa**2 - float(u1 @ u1)
            qb = -2.0 * float(u0 @ u1)
            qc = -float(u0 @ u0)
            roots = []
            if abs(qa) > 1e-300:
                disc = qb * qb - 4 * qa * qc
                if disc >= 0:
                    roots = [(-qb + s * math.sqrt(disc)) / (2 * qa) for s in (1.0, -1.0)]
            elif qb != 0:
                roots = [-qc / qb]
            for t in roots:
                if t >= 0:
                    wS = w0 + t * w1
                    if bool((wS >= -1e-12).all()):
                        w = torch.zeros(m, dtype=torch.float64)
                        w[list(S)] = wS.clamp_min(0) / wS.clamp_min(0).sum()
                        yield w


@register_reference("cagrad")
def cagrad_reference(J: Tensor, /, *, c: float = 0.5, norm_eps: float = 1e-4) -> Tensor:
    """With ``Jn = J / ‖J‖_F`` and ``g0`` the mean of its rows, minimise
    ``wᵀJn g0 + c‖g0‖ ‖Jnᵀw‖`` over the simplex (exhaustively over the candidates above), and
    return ``g0 + c‖g0‖ g_w / ‖g_w‖``, back at the scale of ``J``. A Frobenius norm below
    ``sqrt(norm_eps)`` or ``‖g_w‖ < norm_eps`` gives 0, as in the weighting."""
    J64 = J.double().cpu()
    m = J.shape[0]
    trace = float((J64 * J64).sum())
    if trace <= 0 or trace < norm_eps:
        return torch.zeros(J.shape[1], dtype=torch.float64)
    Jn = J64 / math.sqrt(trace)
    g0 = Jn.mean(dim=0)
    kappa = c * float(g0.norm())
    if kappa == 0:
        return J64.mean(dim=0)
    best, best_val = None, None
    for w in _candidates(Jn, g0, kappa):
        val = float(w @ (Jn @ g0)) + kappa * float((Jn.T @ w).norm())
        if best_val is None or val < best_val:
            best, best_val = w, val
    gw = Jn.T @ best
    if float(gw.norm()) <= 1e-10 or float(gw.norm()) < norm_eps:
        return torch.zeros(J.shape[1], dtype=torch.float64)
    return (g0 + kappa * gw / gw.norm()) * math.sqrt(trace)
