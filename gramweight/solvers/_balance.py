"""Balance equations: the positive solution of ``G w = w^(-1/α)`` (FairGrad; Nash-MTL's
``(G w) ⊙ w = 1`` is ``α = 1``), by a damped Newton method on its convex potential.

Existence. With ``p = 1/α``, the solutions are the stationary points of the convex potential
``f(w) = ½ wᵀGw - Σ φ(w_i)`` (``φ' = w^(-p)``) over ``w > 0``. ``φ`` grows slower than linearly,
so ``f`` is bounded below, and the positive solution exists and is unique, exactly when no
non-zero ``v >= 0`` has ``G v = 0``, i.e. when no non-negative combination of the gradients
vanishes (0 is not in their convex hull). Otherwise (a zero gradient, or gradients that
cancel with non-negative coefficients, such as two opposite ones) ``f`` decreases without bound
along ``v`` and the weights on ``v``'s support diverge.

What is solved. ``A w = w^(-p)`` with ``A = G + t diag(G)``: a term relative to each task's
own diagonal (a zero gradient's diagonal taken as ``max_j G_jj``, or 1 if ``G = 0``). With
``ε`` the unit round-off of the input's dtype (:func:`balance_eps`) and ``λ`` the smallest
eigenvalue of the unit-diagonal ``D G D`` (``D = diag(G)^(-1/2)``),
``t = ε min(1, ε/λ)`` for ``λ > 0``, ``t = ε + 2|λ|`` for ``λ <= 0``. So a well-conditioned
Gramian (``λ >> ε``) is solved as it stands, to round-off; a nearly singular one is
perturbed within its own round-off (an entry ``G_ij`` is known to ``ε sqrt(G_ii G_jj)`` at
best); one that is not positive semi-definite (round-off of a singular one) is made so. The
equations then always have a solution, which is finite where ``G``'s have none.

Newton's method is affine-invariant; it runs in the coordinates of the diagonal solution
``w_i = A_ii^(-α/(1+α))`` and solves each step's system scaled to a unit diagonal, so tasks
whose squared norms differ by any factor are solved alike.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["balance_eps", "power_balance"]


def balance_eps(dtype: torch.dtype) -> float:
    """The ``ε`` of the balance equations (FairGrad, Nash-MTL) for a Gramian of this dtype:
    its unit round-off (``torch.finfo(dtype).eps``: 2.2e-16 in float64, 1.2e-7 in
    float32, 9.8e-4 in float16, 7.8e-3 in bfloat16).

    Where the equations have no solution the weights on the cancelling gradients grow like
    ``ε^(-α/(1+α))`` times their diagonal solution; with ``ε`` the output's round-off, rounding
    them to the output dtype leaves an error of at most about ``ε^(1/(1+α))`` of a gradient in
    the update, never more than a gradient.
    """
    return float(torch.finfo(dtype).eps)


def power_balance(
    G: Tensor,
    *,
    alpha: float,
    n_iters: int = 50,
    init: Tensor | None = None,
    eps: float = 2.0**-52,
) -> Tensor:
    """The positive solution of ``A w = w^(-1/alpha)`` (``alpha > 0``), ``A = G + t diag(G)``.

    ``t`` is relative per task and vanishes on well-conditioned Gramians (see the module
    docstring). Where ``G``'s own equations have a solution, this is it, to round-off if
    ``G``'s unit-diagonal form is well conditioned and otherwise the exact solution for a ``G``
    perturbed within ``eps`` relative. Where they have none, it is finite: the weights of the
    cancelling gradients are of order ``eps^(-alpha/(1+alpha))`` times their diagonal solution
    (their contribution to the update cancels up to about ``eps^(1/(1+alpha))`` of a gradient),
    and a zero gradient's weight is ``(eps max_j G_jj)^(-alpha/(1+alpha))`` (it changes nothing
    else).

    Newton's method on the strictly convex potential ``½ wᵀAw - Σ φ(w_i)``,
    ``φ' = w^(-1/alpha)``, from the diagonal solution (or ``init``), each step kept inside
    ``w > 0`` and backtracked until the potential decreases (Armijo) or, once its changes are
    below round-off, until the residual of the equations does; it stops when every relative
    residual ``(A w)_i w_i^p - 1`` is within its round-off, or after ``n_iters`` steps.

    Args:
        G: Gramian (m, m), float64.
        alpha: The fairness exponent, > 0.
        n_iters: Maximum number of Newton steps.
        init: Starting point (positive), e.g. the previous solution; defaults to the diagonal
            solution.
        eps: The unit round-off of the input's dtype (:func:`balance_eps`).
    """
    m = G.shape[-1]
    p = 1.0 / alpha
    expo = -alpha / (1.0 + alpha)
    diag = G.diagonal().clamp_min(0.0)
    big = diag.max()
    big = torch.where(big > 0, big, torch.ones_like(big))
    dd = torch.where(diag > 0, diag, big)  # a zero gradient's diagonal: ε max_j G_jj
    r = dd.rsqrt()
    # the smallest eigenvalue of the unit-diagonal form D G D: where it is clearly positive the
    # equations are solvable and far from a cancelling combination, so ε can fall (as
    # ε²/λ) to leave the answer exact; at or below ε it is ε; a negative one (round-off of a
    # singular Gramian) is made up for twice
    lam = float(torch.linalg.eigvalsh(r.unsqueeze(1) * G * r.unsqueeze(0))[0])
    term = eps * min(1.0, eps / lam) if lam > 0 else eps
    shift = 2.0 * max(-lam, 0.0)
    A = G + torch.diag((term + shift) * dd)

    # coordinates of the diagonal solution: w = s ⊙ x, s_i = A_ii^(-α/(1+α)); then
    # M = S A S has M_ii = s_i^(1-p), the equation is M x = diag(M) ⊙ x^(-p), x = 1 on the
    # diagonal problem
    s = A.diagonal() ** expo
    M = s.unsqueeze(1) * A * s.unsqueeze(0)
    c = M.diagonal()
    absM = M.abs()
    if init is None:
        x = torch.ones(m, dtype=G.dtype, device=G.device)
    else:
        x = (init.to(G) / s).clamp_min(1e-30)

    def phi(X: Tensor) -> Tensor:
        # Σ c_i φ(x_i) (φ = log for p = 1, x^(1-p) / (1-p) otherwise)
        if p == 1.0:
            return torch.log(X).sum(dim=-1)
        return (c * X ** (1.0 - p)).sum(dim=-1) / (1.0 - p)

    def power(X: Tensor, q: float) -> Tensor:
        return X.reciprocal() if q == -1.0 else X**q

    def converged(X: Tensor, F: Tensor, absMX: Tensor) -> Tensor:
        # every relative residual (M x)_i x_i^p / c_i - 1 within its round-off
        xp = power(X, p)
        return ((F * xp).abs() <= 8.0 * 2.0**-52 * (absMX / c * xp + 1.0)).all()

    steps = 0.5 ** torch.arange(0, 30, dtype=G.dtype, device=G.device)
    tiny = torch.finfo(G.dtype).tiny
    # F(x) / c: the equation, row i divided by M_ii (a fixed scaling, so that Newton's
    # direction is a descent direction of its norm)
    Mx, absMx = M @ x, absM @ x
    F = Mx / c - power(x, -p)
    if bool(converged(x, F, absMx)):
        return s * x
    for _ in range(n_iters):
        xq = power(x, -p) / x
        hd = c * (1.0 + p * xq)  # diagonal of the Hessian M + p C diag(x^(-p-1))
        e = hd.rsqrt()
        H = e.unsqueeze(1) * M * e.unsqueeze(0) + torch.diag(p * c * xq * e * e)
        d = -e * torch.linalg.solve(H, e * (c * F))
        neg = d < 0
        tmax = torch.where(neg, -0.95 * x / torch.where(neg, d, -1.0), math.inf).min()
        ts = tmax.clamp(max=1.0) * steps
        cands = (x.unsqueeze(0) + ts.unsqueeze(1) * d.unsqueeze(0)).clamp_min(tiny)
        MX = cands @ M
        FX = MX / c - power(cands, -p)
        merit, m0 = FX.square().sum(dim=1), F.square().sum()
        # Armijo on the potential while it resolves the progress; once its changes fall under
        # round-off (near the solution), the longest step that decreases the residual; Newton's
        # direction is a descent direction of both
        phi_x = phi(x)
        fc = 0.5 * (MX * cands).sum(dim=1) - phi(cands)
        f0 = 0.5 * (Mx @ x) - phi_x
        size = 0.5 * (absMx @ x) + phi_x.abs()
        slope = (c * F) @ d
        armijo = fc <= f0 + 1e-4 * ts * slope
        ok = torch.where(-slope > 1e-10 * size, armijo, merit < m0)
        first = torch.where(ok.any(), ok.to(torch.int64).argmax(), merit.argmin())
        improved = ok.any() | (merit[first] < m0)
        x = torch.where(improved, cands[first], x)
        Mx = torch.where(improved, MX[first], Mx)
        F = torch.where(improved, FX[first], F)
        absMx = absM @ x
        # one host synchronisation per step: stop once solved, or when no step improves
        # (round-off)
        done, moved = torch.stack([converged(x, F, absMx), improved]).tolist()
        if done or not moved:
            break
    return s * x
