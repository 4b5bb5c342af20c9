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
``ε`` the unit round-off of the input's dtype (`balance_eps`) and ``λ`` the smallest
eigenvalue of the unit-diagonal ``D G D`` (``D = diag(G)^(-1/2)``),
``t = ε min(1, ε/λ)`` for ``λ > 0``, ``t = ε + 2|λ|`` for ``λ <= 0``. So a well-conditioned
Gramian (``λ >> ε``) is solved as it stands, to round-off; a nearly singular one is
perturbed within its own round-off (an entry ``G_ij`` is known to ``ε sqrt(G_ii G_jj)`` at
best); one that is not positive semi-definite (round-off of a singular one) is made so. The
equations then always have a solution, which is finite where ``G``'s have none.

Newton's method is affine-invariant; it runs in the coordinates of the diagonal solution
``w_i = A_ii^(-α/(1+α))`` and solves each step's system scaled to a unit diagonal, so tasks
whose squared norms differ by any factor are solved alike.

On the CPU a small problem runs on Python floats (`power_balance_host`, by the one rule
of `use_host`): the same steps, with the smallest eigenvalue of
``D G D`` by bisection on a tridiagonal form (a closed form for ``m <= 2``).
"""

from __future__ import annotations

import math
import operator

import torch
from torch import Tensor

from .._host import use_host
from ._face import _cholesky_host, _cholesky_solve_host

__all__ = ["balance_eps", "power_balance", "power_balance_host"]


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
        eps: The unit round-off of the input's dtype (`balance_eps`).
    """
    m = G.shape[-1]
    if G.dim() == 2 and G.dtype == torch.float64 and use_host(G, *balance_host_cost(m)):
        w = power_balance_host(
            G.tolist(),
            alpha=alpha,
            n_iters=n_iters,
            init=None if init is None else init.to(G).tolist(),
            eps=eps,
        )
        return torch.tensor(w, dtype=G.dtype)
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


# --- The same solve on Python floats, for small CPU problems --------------------------------


def balance_host_cost(m: int) -> tuple[int, int]:
    """The counts of `use_host` for one solve, per Newton step: on
    floats the step's Cholesky factor (``m³/3``), its system and a candidate or two
    (``10 m²``), and a share of the set-up (the tridiagonal form of ``D G D``, ``4 m³/3``, and
    its bisection); on tensors about 80 operations."""
    return m**3 + 10 * m * m + 40 * m, 80


def _tridiagonal_host(B: list[list[float]]) -> tuple[list[float], list[float]]:
    """The diagonal and off-diagonal of a tridiagonal matrix similar to the symmetric ``B``
    (Householder reflections; ``B`` is overwritten)."""
    m = len(B)
    for k in range(m - 2):
        x = [B[i][k] for i in range(k + 1, m)]
        norm = math.sqrt(sum(v * v for v in x))
        if norm == 0.0:
            continue
        alpha = -norm if x[0] >= 0.0 else norm
        v = x[:]
        v[0] -= alpha
        vv = sum(t * t for t in v)
        if vv == 0.0:
            continue
        beta = 2.0 / vv
        rows = [B[i][k + 1 :] for i in range(k + 1, m)]
        pv = [beta * sum(map(operator.mul, row, v)) for row in rows]
        half = 0.5 * beta * sum(map(operator.mul, v, pv))
        q = [a - half * b for a, b in zip(pv, v)]
        for i, (vi, qi) in enumerate(zip(v, q)):
            row = B[k + 1 + i]
            for j, (vj, qj) in enumerate(zip(v, q)):
                row[k + 1 + j] -= vi * qj + qi * vj
        B[k + 1][k] = B[k][k + 1] = alpha
        for i in range(k + 2, m):
            B[i][k] = B[k][i] = 0.0
    return [B[i][i] for i in range(m)], [B[i + 1][i] for i in range(m - 1)]


def _smallest_eigenvalue_host(B: list[list[float]]) -> float:
    """The smallest eigenvalue of the symmetric ``B``: a closed form for ``m <= 2``, else
    bisection on the Sturm counts of its tridiagonal form, to round-off of its largest
    eigenvalue."""
    m = len(B)
    if m == 1:
        return B[0][0]
    if m == 2:
        a, b, d = B[0][0], B[0][1], B[1][1]
        top = 0.5 * (a + d) + math.hypot(0.5 * (a - d), b)
        if top <= 0.0:
            return 0.5 * (a + d) - math.hypot(0.5 * (a - d), b)
        # the product of the two eigenvalues over the largest: no cancellation
        return (a * d - b * b) / top
    a, b = _tridiagonal_host([row[:] for row in B])
    b2 = [t * t for t in b]
    ab = [abs(t) for t in b] + [0.0]
    radius = [ab[i] + (ab[i - 1] if i else 0.0) for i in range(m)]
    lo = min(ai - ri for ai, ri in zip(a, radius))
    hi = max(ai + ri for ai, ri in zip(a, radius))
    width = 2.0**-52 * max(abs(lo), abs(hi))
    hi = min(a)  # the smallest eigenvalue is at most the smallest diagonal entry
    tiny = 2.0**-1022
    while hi - lo > width:
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        # is any eigenvalue below mid: a negative pivot of the LDLᵀ form of T - mid·I
        q = a[0] - mid
        below = q < 0.0
        i = 1
        while not below and i < m:
            q = a[i] - mid - b2[i - 1] / (q if q != 0.0 else tiny)
            below = q < 0.0
            i += 1
        if below:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def power_balance_host(
    G: list[list[float]],
    *,
    alpha: float,
    n_iters: int = 50,
    init: list[float] | None = None,
    eps: float = 2.0**-52,
) -> list[float]:
    """`power_balance` on Python floats (``G`` as rows), the same steps: the diagonal
    term from the smallest eigenvalue of ``D G D``, Newton in the coordinates of the diagonal
    solution (a Cholesky factor of each step's system), and the same line search, taking the
    first acceptable step length rather than evaluating all of them."""
    m = len(G)
    p = 1.0 / alpha
    expo = -alpha / (1.0 + alpha)
    diag = [max(G[i][i], 0.0) for i in range(m)]
    big = max(diag)
    big = big if big > 0.0 else 1.0
    dd = [v if v > 0.0 else big for v in diag]
    r = [1.0 / math.sqrt(v) for v in dd]
    lam = _smallest_eigenvalue_host(
        [[ri * gij * rj for gij, rj in zip(row, r)] for row, ri in zip(G, r)]
    )
    term = eps * min(1.0, eps / lam) if lam > 0 else eps
    shift = 2.0 * max(-lam, 0.0)
    A = [row[:] for row in G]
    for i in range(m):
        A[i][i] += (term + shift) * dd[i]

    s = [A[i][i] ** expo for i in range(m)]
    M = [[si * aij * sj for aij, sj in zip(row, s)] for row, si in zip(A, s)]
    c = [M[i][i] for i in range(m)]
    absM = [[abs(v) for v in row] for row in M]
    if init is None:
        x = [1.0] * m
    else:
        x = [max(v / si, 1e-30) for v, si in zip(init, s)]

    if p == 1.0:

        def phi(X: list[float]) -> float:
            return sum(map(math.log, X))

        def npower(X: list[float]) -> list[float]:  # X^(-p)
            return [1.0 / v for v in X]

    else:
        q1 = 1.0 - p

        def phi(X: list[float]) -> float:
            return sum(ci * v**q1 for ci, v in zip(c, X)) / q1

        def npower(X: list[float]) -> list[float]:
            return [v ** (-p) for v in X]

    def ppower(X: list[float]) -> list[float]:  # X^p
        return [1.0 / v for v in X] if p == -1.0 else [v**p for v in X]

    def matvec(rows: list[list[float]], X: list[float]) -> list[float]:
        return [sum(map(operator.mul, row, X)) for row in rows]

    def residual(X: list[float], MX: list[float]) -> list[float]:
        return [a / ci - b for a, ci, b in zip(MX, c, npower(X))]

    def converged(X: list[float], F: list[float], absMX: list[float]) -> bool:
        tol = 8.0 * 2.0**-52
        return all(
            abs(f * xp) <= tol * (a / ci * xp + 1.0)
            for f, xp, a, ci in zip(F, ppower(X), absMX, c)
        )

    tiny = 2.0**-1022
    Mx, absMx = matvec(M, x), matvec(absM, x)
    F = residual(x, Mx)
    if converged(x, F, absMx):
        return [si * v for si, v in zip(s, x)]
    for _ in range(n_iters):
        xq = [u / v for u, v in zip(npower(x), x)]
        e = [1.0 / math.sqrt(ci * (1.0 + p * q)) for ci, q in zip(c, xq)]
        H = [[ei * mij * ej for mij, ej in zip(row, e)] for row, ei in zip(M, e)]
        for i in range(m):
            H[i][i] += p * c[i] * xq[i] * e[i] * e[i]
        L = _cholesky_host(H, 0.0)
        rhs = [ei * ci * f for ei, ci, f in zip(e, c, F)]
        z = _cholesky_solve_host(L, rhs) if L is not None else _lu_solve_host(H, rhs)
        d = [-ei * zi for ei, zi in zip(e, z)]
        tmax = min((-0.95 * xi / di for xi, di in zip(x, d) if di < 0), default=math.inf)
        t0 = min(tmax, 1.0)
        m0 = sum(f * f for f in F)
        phi_x = phi(x)
        f0 = 0.5 * sum(map(operator.mul, Mx, x)) - phi_x
        size = 0.5 * sum(map(operator.mul, absMx, x)) + abs(phi_x)
        slope = sum(ci * f * di for ci, f, di in zip(c, F, d))
        by_potential = -slope > 1e-10 * size
        # the first acceptable step length (the tensor path evaluates all 30 and takes the
        # first); if none is, the one of least residual
        best = None
        for k in range(30):
            t = t0 * 0.5**k
            cand = [max(xi + t * di, tiny) for xi, di in zip(x, d)]
            MX = matvec(M, cand)
            FX = residual(cand, MX)
            merit = sum(f * f for f in FX)
            if by_potential:
                fc = 0.5 * sum(map(operator.mul, MX, cand)) - phi(cand)
                ok = fc <= f0 + 1e-4 * t * slope
            else:
                ok = merit < m0
            if ok:
                best = (cand, MX, FX, merit)
                break
            if best is None or merit < best[3]:
                best = (cand, MX, FX, merit)
        improved = ok or best[3] < m0
        if improved:
            x, Mx, F = best[0], best[1], best[2]
        absMx = matvec(absM, x)
        if converged(x, F, absMx) or not improved:
            break
    return [si * v for si, v in zip(s, x)]


def _lu_solve_host(H: list[list[float]], b: list[float]) -> list[float]:
    """``H⁻¹ b`` by Gaussian elimination with partial pivoting (where a Cholesky factor of
    ``H`` fails to round-off)."""
    m = len(H)
    A = [row[:] + [bi] for row, bi in zip(H, b)]
    for k in range(m):
        piv = max(range(k, m), key=lambda i: abs(A[i][k]))
        A[k], A[piv] = A[piv], A[k]
        Ak = A[k]
        if Ak[k] == 0.0:
            continue
        for i in range(k + 1, m):
            f = A[i][k] / Ak[k]
            if f != 0.0:
                Ai = A[i]
                for j in range(k, m + 1):
                    Ai[j] -= f * Ak[j]
    x = [0.0] * m
    for i in range(m - 1, -1, -1):
        Ai = A[i]
        acc = Ai[m] - sum(Ai[j] * x[j] for j in range(i + 1, m))
        x[i] = acc / Ai[i] if Ai[i] != 0.0 else 0.0
    return x
