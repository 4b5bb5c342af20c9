"""References of FairGrad and Nash-MTL: the positive root of ``J Jᵀ w = w^(-1/alpha)``."""

from __future__ import annotations

import itertools
import math

import torch
from torch import Tensor

from ._framework import register_reference


def _scalar_root(a: float, b: float, p: float) -> float:
    """The root of ``a w + b = w^(-p)`` over ``w > 0`` (``a > 0``: the left side increases,
    the right one decreases): bracketed, then Newton's method kept inside the bracket, bisecting
    (geometrically) where it would leave it."""
    def g(w: float) -> float:
        return a * w + b - w ** (-p)

    lo, hi = 1.0, 1.0
    while g(lo) > 0:
        lo /= 4
    while g(hi) < 0:
        hi *= 4
    w = math.sqrt(lo * hi)
    for _ in range(200):
        gw = g(w)
        if gw == 0:
            return w
        if gw < 0:
            lo = w
        else:
            hi = w
        nxt = w - gw / (a + p * w ** (-p - 1.0))
        w = nxt if lo < nxt < hi else math.sqrt(lo * hi)
        if hi - lo <= 1e-16 * hi:
            break
    return w


def power_root(J: Tensor, alpha: float) -> Tensor:
    """The positive ``w`` with ``g_iᵀ(Jᵀw) = w_i^(-1/alpha)`` for every row ``g_i`` of ``J``.

    Nothing is added to the equations: they are solved as they stand, in float64. Cyclic
    coordinate descent on the convex potential ``½‖Jᵀw‖² - Σ φ(w_i)`` (``φ' = w^(-1/alpha)``)
    first: each step solves the equation of one task exactly for its own weight, the others
    fixed (a scalar root). Once every relative residual ``g_iᵀ(Jᵀw) w_i^(1/alpha) - 1`` is below
    1e-3 (or after 20 000 sweeps), plain Newton steps on the equations (halved until ``w`` stays
    positive and the residuals decrease) reach round-off.

    The root exists exactly when no non-negative combination of the gradients vanishes (see
    `balance_margin`); where the residuals do not end below 1e-8 (no root, or none found),
    this raises ``ValueError``.
    """
    J64 = J.double().cpu()
    m = J64.shape[0]
    p = 1.0 / alpha
    sq = (J64 * J64).sum(dim=1)
    if bool((sq == 0).any()):
        raise ValueError("a zero gradient: the balance equations have no solution")
    G = (J64 @ J64.T).tolist()
    w = [float(v) ** (-alpha / (1.0 + alpha)) for v in sq.tolist()]

    def relative(v: list[float]) -> float:
        return max(abs(sum(G[i][j] * v[j] for j in range(m)) * v[i] ** p - 1.0) for i in range(m))

    # coordinate descent slows down where the unit gradients are nearly dependent (a task 1e6
    # times longer than the others and a small margin): after a bounded number of sweeps,
    # Newton's steps below take over from wherever it got, and only their result decides
    for _ in range(20_000):
        if relative(w) < 1e-3:
            break
        for i in range(m):
            b = sum(G[i][j] * w[j] for j in range(m) if j != i)
            w[i] = _scalar_root(G[i][i], b, p)

    x = torch.tensor(w, dtype=torch.float64)

    def residual(v: Tensor) -> Tensor:
        return J64 @ (J64.T @ v) - v ** (-p)

    def rel_norm(v: Tensor) -> float:
        return float((residual(v) * v**p).norm())

    for _ in range(1000):
        r0 = rel_norm(x)
        if r0 < 1e-14:
            break
        step = torch.linalg.solve(J64 @ J64.T + torch.diag(p * x ** (-p - 1.0)), -residual(x))
        t = 1.0
        while bool((x + t * step <= 0).any()) or rel_norm(x + t * step) >= r0:
            t /= 2
            if t < 1e-10:
                break
        if t < 1e-10:
            break  # round-off: no step decreases the residual
        x = x + t * step
    if not rel_norm(x) < 1e-8:
        raise ValueError(
            "neither coordinate descent nor Newton's method solved the balance equations: they "
            "may have no solution"
        )
    return x


def balance_margin(J: Tensor) -> float:
    """The squared distance from 0 to the convex hull of the unit gradients ``g_i / ‖g_i‖``
    (0 if a gradient is zero): the balance equations have a positive root exactly when it is
    positive, and the smaller it is, the larger the root.

    Computed by enumerating the supports: for each subset of the gradients, the point of their
    affine hull nearest 0; the smallest of those whose coefficients are all non-negative.
    Exponential in m: for tests on small Jacobians.
    """
    J64 = J.double().cpu()
    norms = J64.norm(dim=1)
    if bool((norms == 0).any()):
        return 0.0
    U = J64 / norms.unsqueeze(1)
    m = U.shape[0]
    best = float("inf")
    for k in range(1, m + 1):
        for subset in itertools.combinations(range(m), k):
            V = U[list(subset)]
            # min ‖Vᵀc‖² with Σc = 1: its KKT system [[V Vᵀ, 1], [1ᵀ, 0]] (c, λ) = (0, 1),
            # unique on affinely independent gradients (where every hull point is reached)
            kkt = torch.zeros(k + 1, k + 1, dtype=torch.float64)
            kkt[:k, :k] = V @ V.T
            kkt[:k, k] = kkt[k, :k] = 1.0
            rhs = torch.zeros(k + 1, dtype=torch.float64)
            rhs[k] = 1.0
            c = torch.linalg.lstsq(kkt, rhs.unsqueeze(1)).solution[:k, 0]
            if bool((c >= -1e-12).all()):
                best = min(best, float((V.T @ c).square().sum()))
    return max(best, 0.0)


@register_reference("fairgrad")
def fairgrad_reference(J: Tensor, /, *, alpha: float = 1.0) -> Tensor:
    """FairGrad: ``Jᵀw`` with ``J Jᵀ w = w^(-1/alpha)``; ``alpha = 0`` is the mean."""
    J64 = J.double().cpu()
    if alpha == 0:
        return J64.mean(dim=0)
    return J64.T @ power_root(J64, alpha)
