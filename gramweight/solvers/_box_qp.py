"""The box- and simplex-constrained QP: for every row ``c`` of ``C`` and one shared PSD ``A``,
``min ½ xᵀAx + cᵀx`` over ``x >= 0`` (optionally also ``Σx = 1``: the simplex).

`nonneg_qp` is the one entry point. The problem is equilibrated (``x = S y`` with
``S = diag(A)^(-1/2)``), then solved by a primal-dual active-set method (a semismooth Newton
method on the KKT conditions): each step solves, for every row at once, the linear system of its
current face (`._face`), then moves every index whose sign condition fails. It stops when
every row satisfies the KKT conditions to round-off, so the result is exact, not
iterative-approximate. The steps are few (typically 1 to 5): a cheap projected-gradient guess,
a sweep of coordinate descent or the sign of the linear term gives them a good start. Rows whose
steps cycle (it happens on some non-diagonally-dominant problems) are finished by the classical
monotone primal active-set method.

How a step solves its face systems is the one choice inside: for small m each row's system is
one m x m matrix (no gathers), for large m each row's free block is gathered, and for a
well-conditioned box problem the smaller of its free block of ``A`` and bound block of ``A⁻¹``
or, from m = 256 on, conjugate gradients on every row at once (one product with ``A`` per
iteration: O(m²) memory and O(m³) work per step, where the factorisations take O(m⁴)), which
hand the rows they would solve slowly back to the factorisations. The rows' blocks go through
in batches of at most ``_face.STEP_BYTES``, so that no step holds O(m³) numbers.
Small problems on the CPU run the same steps on Python floats (`nonneg_qp_host`).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import torch
from torch import Tensor

from .._host import use_host
from . import _face
from ._face import (
    JITTER,
    definite_solver,
    pad_scale,
    solve_dense,
    solve_free,
    solve_free_host,
)
from ._simplex import project_simplex

__all__ = ["KKT_TOL", "PDAS_ITERS", "nonneg_qp", "nonneg_qp_host", "qp_host_cost"]

# A KKT violation below this (relative to the scale of the problem) is round-off.
KKT_TOL = 1e-11
# Primal-dual active-set steps before the rows still unsolved go to the primal method.
PDAS_ITERS = 30
# From this size on, a projected-gradient guess of the simplex problems' free sets pays off.
_SIMPLEX_GUESS_M = 256
# Below this size each row's face system is one m x m matrix (no gathers); from it on, each
# row's free block (or, for definite box problems, the smaller side) is gathered, and the box
# problems start from a projected-gradient guess.
_GATHER_MIN_M = 48

# From this size on, the face systems of definite box problems are solved by conjugate
# gradients (one shared matrix product per step for all rows) where the cost model of
# _cg_step expects them to beat the factorisations (UPGrad on the benchmark's Gramians, one
# thread: 0.8x at m = 128, 0.9x at 192, 1.9x at 256, 2.4x at 384, 3x at 512).
_CG_MIN_M = 256
# Conjugate-gradient iterations whose matrix products cost as much as factoring a block of
# size k of each row, times m² / k³: the rows' factorisations (k³/3 flops each, at about a
# quarter of the speed of a matrix product on small blocks, plus their gathers) against one
# product of the rows with A (2 m² flops each).
_CG_ITERS_PER_BLOCK = 0.6
# Fewer conjugate-gradient iterations than this never solve a face to round-off: below, the
# rows' blocks are factored at once.
_CG_MIN_ITERS = 6
# The residual the conjugate gradients aim at, relative to the one they accept (so that the
# recursion's drift from the true residual stays below that).
_CG_RESIDUAL = 0.1

# A face step: for the linear terms, free sets and tolerances of some rows and a starting point
# (their last iterates, or None), the face solutions ``x``, the multipliers ``nu`` of the sum
# (None for the box) and ``mu`` of the bounds.
_Step = Callable[
    [Tensor, Tensor, Tensor, Tensor | None], tuple[Tensor, Tensor | None, Tensor]
]


def qp_host_cost(b: int, m: int) -> tuple[int, int]:
    """``(float_ops, tensor_ops)`` of one active-set step on ``b`` rows of size ``m``, for
    `use_host` (both paths take the same steps): per row, the host path
    factors and solves its face block and forms its multipliers in about ``8 m²`` Python-level
    operations (the innermost loops run in C); the batched step is about 40 tensor
    operations."""
    return 8 * b * m * m, 40


def nonneg_qp(
    A: Tensor,
    C: Tensor,
    *,
    simplex: bool = False,
    max_iters: int = 100,
    rtol: float = 0.0,
    definite: bool = False,
    init_free: Tensor | None = None,
    scaling: Tensor | None = None,
) -> Tensor:
    """Solve ``min ½ xᵀAx + cᵀx`` s.t. ``x >= 0`` (and ``Σx = 1`` if ``simplex``), per row of ``C``.

    The problem is first equilibrated (``x = S y`` with ``S = diag(A)^(-1/2)``), so that every
    coordinate is judged at its own scale: a Gramian whose rows differ in norm by 1e6 is solved
    as accurately as a balanced one. A caller that has the equilibrated form already passes it
    with its ``scaling``.

    Args:
        A: Shared PSD matrix (m, m), float64.
        C: Linear terms (b, m), same dtype and device.
        simplex: Add the constraint ``Σx = 1``.
        max_iters: Maximum number of active-set steps.
        rtol: With ``simplex``, also accept multipliers ``mu_j = (A x + c)_j - nu`` down to
            ``-rtol * |nu|`` (for MGDA: every ``(A x)_j >= (1 - rtol) xᵀAx``).
        definite: The caller guarantees that ``A`` is well conditioned (e.g. regularised): the
            blocks are then factored without the jitter, and for large m the box steps may
            factor the smaller of each row's free and bound sets.
        init_free: A starting guess of the free sets (b, m), e.g. from a neighbouring problem.
        scaling: ``S`` (m,), positive, when ``A`` and ``C`` are given equilibrated already
            (``S A₀ S`` with a unit or zero diagonal, and ``C₀ S``): the result is then ``S y``
            for the minimisers ``y`` of the given problems, the solutions of the original ones.

    Returns:
        The minimisers, shape (b, m), non-negative (and summing to 1 with ``simplex``).
    """
    b, m = C.shape
    if b == 0:
        return C.clone()
    iters = min(max_iters, PDAS_ITERS)
    if use_host(A, *qp_host_cost(b, m)):
        X = nonneg_qp_host(
            A.tolist(),
            C.tolist(),
            simplex=simplex,
            rtol=rtol,
            iters=iters,
            definite=definite,
            init_free=None if init_free is None else init_free.tolist(),
            scaling=None if scaling is None else scaling.tolist(),
        )
        if X is not None:
            return torch.tensor(X, dtype=C.dtype)
    free = init_free
    if simplex and free is None and m >= _SIMPLEX_GUESS_M:
        free = _guess_free_simplex(A, C)
    S = scaling
    if S is None:
        d = A.diagonal()
        S = torch.where(d > 0, d.clamp_min(torch.finfo(A.dtype).tiny).rsqrt(), 1.0)
        A, C = S.unsqueeze(1) * A * S, C * S
    s = S if simplex else None
    guessed = False
    X0 = None  # starting points of the steps that use them (the conjugate gradients)
    if free is not None:
        guessed = init_free is None  # (the projected-gradient guess of large simplex problems)
        if simplex:
            free = free | ~free.any(dim=1, keepdim=True)
    elif simplex:
        free = torch.ones_like(C, dtype=torch.bool)
    elif m >= _GATHER_MIN_M:
        free, X0 = _guess_free_box(A, C)
        guessed = True
    else:
        free = C < 0
    if m < _GATHER_MIN_M:
        step = _dense_step(A, s, 0.0 if definite else JITTER)
    elif definite and s is None:
        step = _definite_step(A)
        if m >= _CG_MIN_M:
            step = _cg_step(A, step)
    else:
        step = _gathered_step(A, s, b)
    tol = KKT_TOL * (1.0 + C.abs().amax(dim=1, keepdim=True))
    X, todo = _active_set(A, C, free, tol, s, rtol, iters, step, guessed, X0)
    if todo is not None:
        X = X.index_copy(
            0, todo, _primal_active_set(A, C[todo], s, tol[todo], rtol, S, max_iters=3 * m + 10)
        )
    X = X.clamp_min(0.0) * S
    if simplex:
        X = X / X.sum(dim=1, keepdim=True).clamp_min(torch.finfo(C.dtype).tiny)
    return X


def _active_set(
    A: Tensor,
    C: Tensor,
    free: Tensor,
    tol: Tensor,
    s: Tensor | None,
    rtol: float,
    iters: int,
    step: _Step,
    guessed: bool,
    X0: Tensor | None = None,
) -> tuple[Tensor, Tensor | None]:
    """Primal-dual active-set steps on the equilibrated problems, from the free sets ``free``
    (``guessed``: from the projected-gradient guess, often exact) and the starting points
    ``X0`` (b, m) (or None). Each step solves the rows' face systems by ``step`` (from the rows'
    last iterates), then frees every bound index of negative multiplier and binds every free
    index of negative value. A row is solved when its KKT conditions hold up to
    ``tol`` (shifted by MGDA's relative slack ``rtol``) or its free set reproduces itself (which
    satisfies them up to round-off); solved rows leave the batch.

    Returns the last iterates (b, m) and the indices of the rows not solved in ``iters`` steps
    (None when every row is solved).
    """
    b, m = C.shape
    todo: Tensor | None = None  # the rows still unsolved, when not all of them
    X = C if X0 is None else X0  # the last iterates of every row
    started = X0 is not None  # (X holds iterates, not the placeholder C)
    for it in range(iters):
        Ct, Ft, tolt = (C, free, tol) if todo is None else (C[todo], free[todo], tol[todo])
        x, nu, mu = step(Ct, Ft, tolt, (X if todo is None else X[todo]) if started else None)
        started = True
        new_free = x > mu
        if s is not None:
            # keep at least one free index per row (the best one) so Σx = 1 stays solvable
            best = torch.nn.functional.one_hot(mu.argmin(dim=1), m).bool()
            new_free = new_free | (best & ~new_free.any(dim=1, keepdim=True))
        if torch.equal(new_free, Ft):
            return (x if todo is None else X.index_copy(0, todo, x)), None
        if it == 0 and iters > 1 and not guessed:
            # after a first step from a rough start the free sets usually still move: the next
            # step comes anyway, and the test below would only cost its dozen operations
            X, free = x, new_free
            continue
        xtol = tolt * (1.0 + x.abs().amax(dim=1, keepdim=True))
        # on the free set mu is zero by construction (up to the jitter): only the others count
        bound_test = mu if s is None else mu + rtol * nu.abs().unsqueeze(1) * s
        ok = (torch.where(Ft, x, bound_test) >= -xtol).all(dim=1) | (new_free == Ft).all(dim=1)
        if todo is None:
            X, free, todo = x, new_free, (~ok).nonzero().squeeze(1)
        else:
            X = X.index_copy(0, todo, x)
            free = free.index_copy(0, todo, new_free)
            todo = todo[~ok]
        if todo.numel() == 0:
            return X, None
        if todo.numel() == b:
            todo = None  # (no need to gather or scatter the rows)
    return X, torch.arange(b, device=C.device) if todo is None else todo


def _multipliers(A: Tensor, C: Tensor, x: Tensor, nu: Tensor, s: Tensor | None) -> Tensor:
    """``mu = A x + c - nu s`` of every row."""
    mu = torch.addmm(C, x, A)
    return mu if s is None else mu - nu.unsqueeze(1) * s


def _dense_step(A: Tensor, s: Tensor | None, jitter: float) -> _Step:
    """Face steps with each row's system as one m x m matrix (`solve_dense`): one batched
    factorisation and no index bookkeeping, for small m."""

    def step(
        C: Tensor, free: Tensor, tol: Tensor, x0: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        x, nu = solve_dense(A, C, free, s, jitter)
        return x, nu, _multipliers(A, C, x, nu, s)

    return step


def _gathered_step(A: Tensor, s: Tensor | None, b: int) -> _Step:
    """Face steps with each row's free block gathered and factored (`solve_free`), for
    large m."""
    padded = pad_scale(A) if b > 1 else None  # one row needs no padding (see solve_free)

    def step(
        C: Tensor, free: Tensor, tol: Tensor, x0: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        x, nu = solve_free(A, C, free, simplex=s, _padded=padded)
        return x, nu, _multipliers(A, C, x, nu, s)

    return step


def _definite_step(A: Tensor) -> _Step:
    """Face steps of box problems with a well-conditioned ``A``, for large m: each row factors
    the smaller of its free block of ``A`` and its bound block of ``H = A⁻¹``
    (`definite_solver`), without jitter; one step of refinement where the inverse's
    round-off shows (an ill-conditioned ``A``). The rows go through in batches whose factors
    fill at most ``_face.STEP_BYTES``."""
    m = A.shape[0]
    pad = (0, 1, 0, 1)
    A_pad = torch.nn.functional.pad(A, pad)
    cache: list[Tensor] = []

    def with_inverse() -> tuple[Tensor, Tensor]:
        # H = A⁻¹ (computed once, when a row first needs it) and A above H, each with the
        # zero row and column that padded indices point to
        if not cache:
            H = torch.cholesky_inverse(torch.linalg.cholesky(A))
            cache.extend([H, torch.cat([A_pad, torch.nn.functional.pad(H, pad)])])
        return cache[0], cache[1]

    def solve_rows(C: Tensor, free: Tensor, tol: Tensor) -> tuple[Tensor, Tensor]:
        solve = definite_solver(A_pad, with_inverse, free)
        freef = free.to(C.dtype)
        x = solve(-C * freef)
        mu = torch.addmm(C, x, A)
        xtol = tol * (1.0 + x.abs().amax(dim=1, keepdim=True))
        if bool(((mu * freef).abs() > xtol).any()):
            x = x + solve(-mu * freef)
            mu = torch.addmm(C, x, A)
        return x, mu

    def step(
        C: Tensor, free: Tensor, tol: Tensor, x0: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        b = C.shape[0]
        nf = free.sum(dim=1)
        k = int(torch.minimum(nf, m - nf).max())
        rows = max(1, _face.STEP_BYTES // max(1, k * k * C.element_size()))
        if b <= rows:
            x, mu = solve_rows(C, free, tol)
            return x, None, mu
        parts = [
            solve_rows(C[i : i + rows], free[i : i + rows], tol[i : i + rows])
            for i in range(0, b, rows)
        ]
        return torch.cat([x for x, _ in parts]), None, torch.cat([mu for _, mu in parts])

    return step


def _cg_step(A: Tensor, direct: _Step) -> _Step:
    """Face steps of box problems with a well-conditioned ``A``, for large m, by conjugate
    gradients on every row's face system ``A_FF x_F = -c_F`` at once (one product of the rows
    with the shared ``A`` per iteration, no gathers: m² memory, where factoring every row's
    block takes about m⁴/24 operations), from the rows' last iterates.

    A row is done when its recomputed multipliers vanish on its free set to ``KKT_TOL`` relative
    to the row's scale ``‖c‖∞ + ‖x‖∞`` (the iterations aim at ``_CG_RESIDUAL`` times it; the
    KKT test's ``tol`` is absolute for small rows, too loose for the solves): as exact as the
    factorisations. The iterations are bounded by the cost of those factorisations (a cost
    model, see ``_CG_ITERS_PER_BLOCK``); a row whose residual, at the rate it has fallen so
    far, would not reach its target by then (an ill-conditioned ``A``: slow convergence or a
    stall above round-off) is solved by ``direct`` instead, as is every row not done in time
    or whose recomputed multipliers miss the tolerance. Rows leave the batch when half of it
    is done or some give up, so that stragglers do not keep every row's product going. Once a
    step has left most of its rows to ``direct``, the later steps (same ``A``) go there at
    once."""
    m = A.shape[0]
    slow_matrix = [False]

    def step(
        C: Tensor, free: Tensor, tol: Tensor, x0: Tensor | None
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        b = C.shape[0]
        nf = free.sum(dim=1)
        k = torch.minimum(nf, m - nf).to(C.dtype)
        budget = int(_CG_ITERS_PER_BLOCK * float((k**3).mean()) / (m * m))
        if budget < _CG_MIN_ITERS or slow_matrix[0]:
            return direct(C, free, tol, x0)
        f = free.to(C.dtype)
        x = torch.zeros_like(C) if x0 is None else x0 * f
        r = torch.addmm(C, x, A).mul_(f).neg_()  # the residual -(A x + c) on the free set
        p = r.clone()
        rr = torch.linalg.vecdot(r, r)
        res0 = r.abs().amax(dim=1)
        X = torch.empty_like(C)
        MU = torch.empty_like(C)
        rows = torch.arange(b, device=C.device)  # the rows of the batch, among C's
        cn = C.abs().amax(dim=1)
        Ct = C
        slow: list[Tensor] = []  # rows left to the direct solves
        tiny = torch.finfo(C.dtype).tiny
        for it in range(budget + 1):
            xtol = KKT_TOL * (cn + x.abs().amax(dim=1))
            res = r.abs().amax(dim=1)
            done = res <= _CG_RESIDUAL * xtol
            give_up = None
            if it == budget:
                give_up = ~done
            elif it % 4 == 0 and it > 0:
                # the iterations this row needs at its mean rate so far, against the budget
                fallen = torch.log(res.clamp_min(tiny) / res0.clamp_min(tiny))
                needed = torch.log(_CG_RESIDUAL * xtol / res0.clamp_min(tiny)) / fallen * it
                give_up = ~done & ((fallen >= 0) | (needed > budget))
            n_done = int(done.sum())
            n_off = 0 if give_up is None else int(give_up.sum())
            if 2 * n_done >= done.numel() or n_off:
                # the multipliers of the rows done, from scratch: the recursion's residual
                # drifts from the true one by the round-off of every iteration
                idx = done.nonzero().squeeze(1)
                xd = x[idx]
                mu = torch.addmm(Ct[idx], xd, A)
                exact = (mu * f[idx]).abs().amax(dim=1) <= xtol[idx]
                X[rows[idx]] = xd
                MU[rows[idx]] = mu
                slow.append(rows[idx[~exact]])
                keep = ~done
                if give_up is not None:
                    slow.append(rows[give_up])
                    keep &= ~give_up
                keep = keep.nonzero().squeeze(1)
                if keep.numel() == 0:
                    break
                rows, x, r, p, f = rows[keep], x[keep], r[keep], p[keep], f[keep]
                rr, res0, Ct, cn = rr[keep], res0[keep], Ct[keep], cn[keep]
            q = (p @ A).mul_(f)
            pq = torch.linalg.vecdot(p, q)
            alpha = torch.where(pq > 0, rr / pq.clamp_min(tiny), 0.0)
            x.addcmul_(alpha.unsqueeze(1), p)
            r.addcmul_(alpha.unsqueeze(1), q, value=-1.0)
            rr_new = torch.linalg.vecdot(r, r)
            beta = torch.where(rr > 0, rr_new / rr.clamp_min(tiny), 0.0)
            p = torch.addcmul(r, beta.unsqueeze(1), p)
            rr = rr_new
        left = torch.cat(slow)
        slow_matrix[0] = 4 * left.numel() > 3 * b
        if left.numel():
            x, _, mu = direct(C[left], free[left], tol[left], None)
            X[left] = x
            MU[left] = mu
        return X, None, MU

    return step


def _primal_active_set(
    A: Tensor, C: Tensor, s: Tensor | None, tol: Tensor, rtol: float, S: Tensor, *, max_iters: int
) -> Tensor:
    """The classical primal active-set method, vectorised over the rows of ``C``.

    Every iterate is feasible and the objective never increases: each step either moves to
    the minimiser on the current free set (then frees the index of most negative multiplier,
    or stops), or moves towards it until a coordinate hits zero (which is then fixed). Starts
    from ``x = 0`` (box) or from the best vertex (simplex).
    """
    b, m = C.shape
    rows = torch.arange(b, device=C.device)
    if s is None:
        x = torch.zeros_like(C)
        free = torch.zeros_like(C, dtype=torch.bool)
    else:
        vertex_vals = 0.5 * A.diagonal() / s**2 + C / s
        j = vertex_vals.argmin(dim=1)
        free = torch.nn.functional.one_hot(j, m).bool()
        x = torch.zeros_like(C).index_put((rows, j), 1.0 / s[j])
    todo = rows
    for _ in range(max_iters):
        xt, Ft, Ct = x[todo], free[todo], C[todo]
        p, nu = solve_free(A, Ct, Ft, simplex=s)
        xtol = tol[todo] * (1.0 + p.abs().amax(dim=1, keepdim=True))
        d = p - xt
        blocking = Ft & (p < -xtol)
        reach = blocking.any(dim=1)
        ratio = torch.where(blocking & (d < 0), xt / (-d).clamp_min(1e-300), torch.inf)
        alpha, jblock = ratio.min(dim=1)
        alpha = torch.where(reach, alpha.clamp(0.0, 1.0), 1.0)
        xn = torch.where(reach.unsqueeze(1), xt + alpha.unsqueeze(1) * d, p.clamp_min(0.0))
        rr = torch.arange(todo.numel(), device=C.device)
        xn = torch.where(reach.unsqueeze(1), xn.index_put((rr, jblock), torch.zeros_like(alpha)), xn)
        Fn = torch.where(reach.unsqueeze(1), Ft.index_put((rr, jblock), torch.zeros_like(reach)), Ft)
        mu = xn @ A + Ct - (nu.unsqueeze(1) * s if s is not None else 0.0)
        mtol = xtol + (rtol * nu.abs().unsqueeze(1) * S if s is not None else 0.0)
        worst = torch.where(Fn, torch.inf, mu + mtol).min(dim=1)
        done = ~reach & (worst.values >= 0)
        release = ~reach & ~done
        Fn = torch.where(
            release.unsqueeze(1), Fn.index_put((rr, worst.indices), torch.ones_like(release)), Fn
        )
        x = x.index_copy(0, todo, xn)
        free = free.index_copy(0, todo, Fn)
        todo = todo[~done]
        if todo.numel() == 0:
            break
    return x


# --- The host twin -------------------------------------------------------------------------


def nonneg_qp_host(
    A: list[list[float]],
    C: list[list[float]],
    *,
    simplex: bool,
    rtol: float,
    iters: int,
    definite: bool,
    init_free: list[list[bool]] | None = None,
    scaling: list[float] | None = None,
) -> list[list[float]] | None:
    """The host twin of `nonneg_qp`: its primal-dual active-set steps on Python floats
    (equilibration, starting free sets, jitter, refinement and stopping tests as there), with
    the equilibrated form and its ``scaling`` given or not as there. Returns None when a row
    needs more than ``iters`` steps or a block cannot be factored: the caller then hands the
    problem to the batched solver, which has the primal fallback (also at once when the steps
    return to a free set they have visited: they cycle)."""
    m = len(A)
    if scaling is not None:
        S = scaling
    else:
        S = [1.0 / math.sqrt(A[i][i]) if A[i][i] > 0.0 else 1.0 for i in range(m)]
        A = [[si * a * sj for a, sj in zip(row, S)] for row, si in zip(A, S)]
    # after the equilibration the diagonal is 1 (or 0): the jitter is relative to 1
    jitter = 0.0 if definite else JITTER
    out = []
    for r, c in enumerate(C):
        if scaling is None:
            c = [ci * si for ci, si in zip(c, S)]
        tol = KKT_TOL * (1.0 + max(map(abs, c)))
        if init_free is not None:
            free = [j for j in range(m) if init_free[r][j]]
            if simplex and not free:
                free = list(range(m))
        elif simplex:
            free = list(range(m))
        else:
            # one sweep of projected coordinate descent from 0 (the diagonal is 1 or 0): on
            # well-conditioned problems its support is usually the free set already
            x = [0.0] * m
            for j, row in enumerate(A):
                if row[j] > 0.0:
                    x[j] = max(0.0, x[j] - sum(map(operator.mul, row, x)) - c[j])
            free = [j for j in range(m) if x[j] > 0.0]
        seen = set()
        for _ in range(iters):
            x = [0.0] * m
            nu = 0.0
            if free:
                sol = solve_free_host(A, c, free, S if simplex else None, jitter)
                if sol is None:
                    return None
                z, nu = sol
                for j, v in zip(free, z):
                    x[j] = v
            xtol = tol * (1.0 + max(map(abs, x)))
            ok = True
            new_free = []
            mu_best, j_best = math.inf, 0
            k = 0
            for j in range(m):
                if k < len(free) and free[k] == j:
                    # on the free set the multiplier is zero (up to round-off) by construction
                    k += 1
                    ok = ok and x[j] >= -xtol
                    if x[j] > 0.0:
                        new_free.append(j)
                    continue
                mu = sum(map(operator.mul, A[j], x)) + c[j]
                if simplex:
                    mu -= nu * S[j]
                    ok = ok and mu >= -(xtol + rtol * abs(nu) * S[j])
                else:
                    ok = ok and mu >= -xtol
                if mu < 0.0:
                    new_free.append(j)
                if mu < mu_best:
                    mu_best, j_best = mu, j
            if simplex and not new_free:
                # keep at least one free index (the best one) so Σx = 1 stays solvable
                new_free = [j_best]
            if ok or new_free == free:
                break
            seen.add(tuple(free))
            if tuple(new_free) in seen:
                return None  # the steps cycle
            free = new_free
        else:
            return None
        x = [max(v, 0.0) * sj for v, sj in zip(x, S)]
        if simplex:
            total = sum(x)
            x = [v / total for v in x] if total > 0.0 else x
        out.append(x)
    return out


# --- Starting guesses ---------------------------------------------------------------------


def _step_size(A: Tensor) -> Tensor:
    """``1.1 λ_max(A)`` from ten power iterations: the inverse of a safe gradient step."""
    v = torch.ones(A.shape[0], dtype=A.dtype, device=A.device)
    for _ in range(10):
        v = A @ v
        v = v / v.norm().clamp_min(torch.finfo(A.dtype).tiny)
    return 1.1 * (v @ A @ v).clamp_min(torch.finfo(A.dtype).tiny)


def _momentum(t: float) -> float:
    """The next coefficient of Nesterov's accelerated steps."""
    return (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0


def _guess_free_box(A: Tensor, C: Tensor, iters: int = 15) -> tuple[Tensor, Tensor]:
    """A guess of the free sets of the equilibrated box problems from a few accelerated
    projected-gradient steps (matrix products with the shared ``A`` only), started from the
    minimiser of each coordinate alone, ``max(-c, 0)`` (the diagonal of ``A`` is 1). The
    active-set method then starts from it: on well-conditioned problems the guess is usually
    exact and one step suffices; a wrong guess only costs more steps, never accuracy.

    Returns the guessed free sets and the last iterates (in ``C``'s dtype), the starting points
    of the conjugate gradients (`_cg_step`)."""
    dtype = C.dtype
    # a guess needs no float64: single precision halves the cost of the products
    A = A.to(torch.float32)
    C = C.to(torch.float32)
    lip = _step_size(A)
    # the projected step y - (y A + C) / lip, as one fused product y B - C / lip
    B = torch.eye(A.shape[0], dtype=A.dtype, device=A.device) - A / lip
    C_lip = C / lip
    x = (-C).clamp_min(0.0)
    y = x
    t = 1.0
    for _ in range(iters):
        x_new = torch.addmm(C_lip, y, B, beta=-1.0).clamp_min_(0.0)
        t_new = _momentum(t)
        # y = x_new + ((t - 1) / t_new) (x_new - x)
        y = torch.lerp(x, x_new, 1.0 + (t - 1.0) / t_new)
        x, t = x_new, t_new
    return (x - torch.addmm(C, x, A)) > 0, x.to(dtype)


def _guess_free_simplex(A: Tensor, C: Tensor, iters: int = 40) -> Tensor:
    """Like `_guess_free_box`, for the simplex problems (projected steps onto the
    simplex, on the problems as given). At least one index per row stays free."""
    A = A.to(torch.float32)
    C = C.to(torch.float32)
    m = A.shape[0]
    lip = _step_size(A)
    x = torch.full_like(C, 1.0 / m)
    y = x
    t = 1.0
    for _ in range(iters):
        x_new = project_simplex(y - (y @ A + C) / lip, shift=False)
        t_new = _momentum(t)
        y = x_new + ((t - 1.0) / t_new) * (x_new - x)
        x, t = x_new, t_new
    free = x > 0
    best = torch.nn.functional.one_hot(x.argmax(dim=1), m).bool()
    return free | best
