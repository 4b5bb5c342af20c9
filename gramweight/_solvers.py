"""Torch-native solvers for the constrained problems behind the weightings.

Everything here runs on the device of its input, in float64, batched over right-hand sides,
without numpy, scipy or any external QP solver (small problems on the CPU run on Python floats,
which are float64 too).

- :func:`nonneg_qp`: for every row ``c`` of ``C``, the minimiser of ``½ xᵀAx + cᵀx`` over
  ``x >= 0`` (optionally also ``Σx = 1``: the simplex), for one shared PSD matrix ``A``. A
  primal-dual active-set method (a semismooth Newton method on the KKT conditions): each step
  solves, for every row at once, the linear system on its current free set, then moves every
  index whose sign condition fails. It stops when every row satisfies the KKT conditions to
  round-off, so the result is exact, not iterative-approximate. Small problems on the CPU run
  the same steps on Python floats (a few hundred float operations cost less than the dispatch
  of the tensor operations); small batches factor each row's system as one m x m matrix (free
  block, identity elsewhere); large ones gather and factor each row's free block, or, for a
  well-conditioned matrix, the smaller of its free block of ``A`` and bound block of ``A⁻¹``.
- :func:`dual_cone_weights`: UPGrad's and DualProj's projection onto the dual cone of the rows
  of ``J``, from ``G`` alone (box-constrained form of the Jacobian descent paper, Prop. 1).
- :func:`min_norm_simplex`: MGDA's min-norm point of the convex hull of the rows.
- :func:`power_balance`: the positive solution of ``G w = w^(-1/alpha)`` (FairGrad; Nash-MTL's
  ``(G w) ⊙ w = 1`` is the case ``alpha = 1``), by a damped Newton method on its convex
  potential.
- :func:`cagrad_simplex`: CAGrad's inner problem, as a parametric simplex QP.
- :func:`psd_spectrum`, :func:`spectral_rtol`: the spectrum of a Gramian with one rank cut-off
  for the closed forms (IMTL-G, Aligned-MTL, ConFIG).

The iterative parts stop on exact optimality tests, one host synchronisation per step; the
active-set steps are few (typically 1 to 5), since a cheap projected-gradient guess, a sweep of
coordinate descent or the sign of the linear term gives them a good start. Steps that cycle
fall back to the (monotone) primal active-set method.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "cagrad_simplex",
    "dual_cone_weights",
    "min_norm_simplex",
    "nonneg_qp",
    "power_balance",
    "power_reg",
    "psd_spectrum",
    "solve_free",
    "spectral_input",
    "spectral_rtol",
    "project_simplex",
    "to_work_dtype",
    "work_dtype",
]

# Relative Tikhonov term added to the free block of each Newton system. It keeps the systems of
# singular Gramians (rank-deficient, duplicated or zero rows) solvable and moves the solution by
# a relative 1e-10 at most, far below the 1e-6 the non-conflicting property allows.
_JITTER = 1e-10
# A KKT violation below this (relative to the scale of the problem) is round-off.
_KKT_TOL = 1e-11
# Primal-dual active-set steps before the rows still unsolved go to the primal method.
_PDAS_ITERS = 30
# From this size on, a projected-gradient guess of the simplex problems' free sets pays off.
_SIMPLEX_GUESS_M = 256
# Below this size each row's Newton system is factored as one m x m matrix (no gathers); from
# it on, each row's free block (or, for definite problems, the smaller side) is gathered.
_GATHER_MIN_M = 48
# Up to this much work (rows x m², a third of it for the simplex or several rows), a problem on
# the CPU is solved on Python floats.
_LISTS_WORK = 768
# Largest intermediate of the gathers that build the blocks of large problems (the rows k x m
# of each block before its columns are picked): the rows are processed in batches below it.
# Small batches cost more than they save (each fresh multi-megabyte intermediate is paid in
# page faults); one batch would hold b·k·m numbers (over 500 MB for m = 512).
_GATHER_BYTES = 16 << 20
# Size of the batches of blocks factored at once: a batched factorisation of large blocks runs
# markedly slower once they no longer fit in the cache.
_BLOCK_BYTES = 1 << 20


def power_reg(dtype: torch.dtype) -> float:
    """Relative diagonal term of the power-balance equation (FairGrad, Nash-MTL) for a Gramian
    of this dtype: 1e-6 in float64, 1e-4 below (where the input itself is only accurate to
    about 1e-7, and the solution's sensitivity, about 1 / this term, must stay below 1e-3)."""
    return 1e-6 if dtype == torch.float64 else 1e-4


def solve_free(
    A: Tensor,
    C: Tensor,
    free: Tensor,
    *,
    simplex: Tensor | None,
    _padded: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Minimise ``½ xᵀAx + cᵀx`` for every row ``c`` of ``C`` with ``x`` zero off ``free``.

    With ``simplex`` (a positive vector ``s`` of length m), also subject to ``sᵀx = 1`` (then
    ``free`` must be non-empty per row).

    Returns:
        ``x`` of shape (b, m) and the multiplier ``nu`` of the sum constraint, of shape (b,)
        (zeros without ``simplex``), such that ``(A x + c - nu s)_F = 0`` up to the jitter.

    ``_padded`` (internal): ``(A padded with a zero row and column, its scale)`` from
    :func:`_pad_scale`, when the caller solves with the same ``A`` repeatedly.
    """
    b, m = C.shape
    x = torch.zeros_like(C)
    nu = torch.zeros(b, dtype=C.dtype, device=C.device)
    if b == 1:
        # One row (MGDA, CAGrad): its free indices need no sorting and no padding.
        idx = free[0].nonzero().squeeze(1)
        k = idx.numel()
        if k == 0:
            return x, nu
        if _padded is not None:
            scale = _padded[1]
        else:
            scale = A.diagonal().abs().max()
            scale = torch.where(scale > 0, scale, 1.0)
        Ak = A.index_select(0, idx).index_select(1, idx).unsqueeze(0)
        idx = idx.unsqueeze(0)
        validf = None
    else:
        counts = free.sum(dim=1)
        k = int(counts.max()) if b > 0 else 0
        if k == 0:
            return x, nu
        # Gather each row's free indices first (a stable sort keeps their order), padded to k
        # with the index m of an extra zero row and column of A.
        order = torch.argsort((~free).to(torch.int8), dim=1, stable=True)
        valid = torch.arange(k, device=C.device).unsqueeze(0) < counts.unsqueeze(1)
        validf = valid.to(C.dtype)
        idx = torch.where(valid, order[:, :k], m)
        A_pad, scale = _padded if _padded is not None else _pad_scale(A)
        Ak = A_pad.index_select(0, idx.reshape(-1)).view(b, k, m + 1).gather(
            2, idx.unsqueeze(1).expand(b, k, k)
        )
        Ak.diagonal(dim1=1, dim2=2).add_((1.0 - validf) * scale)  # identity on the padding
    # the free indices, clamped into range (the padding's values are masked by validf)
    idx_in = idx if validf is None else idx.clamp_max(m - 1)
    if simplex is not None:
        # On {sᵀx = 1}, adding rho·s sᵀ to A only adds a constant to the objective, but makes
        # the block definite whenever the face problem is well posed (A may be singular: then
        # eliminating with A⁻¹ directly would cancel huge numbers). The multiplier shifts by rho.
        sk = simplex[idx_in] if validf is None else simplex[idx_in] * validf
        rho = 1.0 / (sk * sk).sum(dim=1).clamp_min(torch.finfo(C.dtype).tiny)
        Ak = Ak + rho.view(-1, 1, 1) * sk.unsqueeze(2) * sk.unsqueeze(1)
    jitter = _JITTER * scale
    Ak.diagonal(dim1=1, dim2=2).add_(jitter)
    L, info = torch.linalg.cholesky_ex(Ak)
    if bool((info > 0).any()):
        # Round-off made a block indefinite beyond the jitter: retry with a larger one.
        Ak.diagonal(dim1=1, dim2=2).add_(1e-7 * scale)
        jitter = jitter + 1e-7 * scale
        L, _ = torch.linalg.cholesky_ex(Ak)
    Ck = C.gather(1, idx_in)
    rhs = -(Ck if validf is None else Ck * validf).unsqueeze(2)
    if simplex is not None:
        rhs = torch.cat([rhs, sk.unsqueeze(2)], dim=2)
    sol = _cholesky_solve(L, rhs)
    # One step of iterative refinement against the matrix without the jitter removes its
    # first-order effect (the error shrinks from jitter/λ to (jitter/λ)²).
    sol = sol + _cholesky_solve(L, rhs - (Ak @ sol - jitter * sol))
    if simplex is not None:
        z, a = sol[..., 0], sol[..., 1]
        denom = (a * sk).sum(dim=1)
        nu = (1.0 - (z * sk).sum(dim=1)) / torch.where(denom > 0, denom, 1.0)
        xk = z + nu.unsqueeze(1) * a
        nu = nu - rho
    else:
        xk = sol[..., 0]
    if validf is None:
        return x.scatter(1, idx, xk), nu
    x = torch.zeros(b, m + 1, dtype=C.dtype, device=C.device).scatter(1, idx, xk * validf)[:, :m]
    return x, nu


def _pad_scale(A: Tensor) -> tuple[Tensor, Tensor]:
    """``A`` with an extra zero row and column (the target of padded indices in
    :func:`solve_free`) and the scale of its diagonal (1 for a zero matrix)."""
    scale = A.diagonal().abs().max()
    return torch.nn.functional.pad(A, (0, 1, 0, 1)), torch.where(scale > 0, scale, 1.0)


def _guess_free_set(A: Tensor, C: Tensor, iters: int = 15) -> Tensor:
    """A guess of the free sets of the equilibrated box problems from a few accelerated
    projected-gradient steps (matrix products with the shared ``A`` only), started from the
    minimiser of each coordinate alone, ``max(-c, 0)`` (the diagonal of ``A`` is 1). The
    active-set method then starts from it: on well-conditioned problems the guess is usually
    exact and one step suffices; a wrong guess only costs more steps, never accuracy."""
    # a guess needs no float64: single precision halves the cost of the products
    A = A.to(torch.float32)
    C = C.to(torch.float32)
    v = torch.ones(A.shape[0], dtype=A.dtype, device=A.device)
    for _ in range(10):  # power iteration for the step size
        v = A @ v
        v = v / v.norm().clamp_min(torch.finfo(A.dtype).tiny)
    lip = 1.1 * (v @ A @ v).clamp_min(torch.finfo(A.dtype).tiny)
    # the projected step y - (y A + C) / lip, as one fused product y B - C / lip
    B = torch.eye(A.shape[0], dtype=A.dtype, device=A.device) - A / lip
    C_lip = C / lip
    x = (-C).clamp_min(0.0)
    y = x
    t = 1.0
    for _ in range(iters):
        x_new = torch.addmm(C_lip, y, B, beta=-1.0).clamp_min_(0.0)
        t_new = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        # y = x_new + ((t - 1) / t_new) (x_new - x)
        y = torch.lerp(x, x_new, 1.0 + (t - 1.0) / t_new)
        x, t = x_new, t_new
    return (x - torch.addmm(C, x, A)) > 0


def project_simplex(v: Tensor, *, shift: bool = True) -> Tensor:
    r"""Project each row of ``v`` (..., m) onto :math:`\{x \ge 0, \sum_i x_i = 1\}`.

    The sort-based algorithm (Held et al. 1974; Duchi et al., ICML 2008): the projection is
    :math:`\max(v - \theta, 0)`, and with :math:`u` the entries sorted in decreasing order,
    :math:`\theta = \max_k (\sum_{l \le k} u_l - 1) / k`. (The usual statement takes that
    ratio at the largest ``k`` with :math:`u_k > (\sum_{l \le k} u_l - 1) / k`; the ratio
    increases in ``k`` exactly while that condition holds, so it is the same number, found
    with fewer operations.) Exact, O(m log m), no iteration and no host synchronisation;
    batched over leading dimensions.

    The projection commutes with adding a constant to every entry, so the entries are first
    shifted by their maximum: the largest becomes 0, and a 1 is never lost next to entries of
    magnitude 1e16 (the update of MoDo and SDMGrad on a Gramian scaled by 1e15). Callers whose
    entries are already of order 1 (the solver's equilibrated guesses) pass ``shift=False``.
    """
    if shift:
        v = v - v.amax(dim=-1, keepdim=True)
    u = torch.sort(v, dim=-1, descending=True).values
    k = torch.arange(1, v.shape[-1] + 1, dtype=v.dtype, device=v.device)
    theta = (u.cumsum(dim=-1).sub_(1.0) / k).amax(dim=-1, keepdim=True)
    return (v - theta).clamp_(min=0.0)


def _guess_free_simplex(A: Tensor, C: Tensor, iters: int = 40) -> Tensor:
    """Like :func:`_guess_free_set`, for the simplex problems (projected steps onto the
    simplex). At least one index per row stays free."""
    A = A.to(torch.float32)
    C = C.to(torch.float32)
    m = A.shape[0]
    v = torch.ones(m, dtype=A.dtype, device=A.device)
    for _ in range(10):
        v = A @ v
        v = v / v.norm().clamp_min(torch.finfo(A.dtype).tiny)
    lip = 1.1 * (v @ A @ v).clamp_min(torch.finfo(A.dtype).tiny)
    x = torch.full_like(C, 1.0 / m)
    y = x
    t = 1.0
    for _ in range(iters):
        x_new = project_simplex(y - (y @ A + C) / lip, shift=False)
        t_new = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        y = x_new + ((t - 1.0) / t_new) * (x_new - x)
        x, t = x_new, t_new
    free = x > 0
    best = torch.nn.functional.one_hot(x.argmax(dim=1), m).bool()
    return free | best


def nonneg_qp(
    A: Tensor,
    C: Tensor,
    *,
    simplex: bool = False,
    max_iters: int = 100,
    rtol: float = 0.0,
    definite: bool = False,
    init_free: Tensor | None = None,
) -> Tensor:
    """Solve ``min ½ xᵀAx + cᵀx`` s.t. ``x >= 0`` (and ``Σx = 1`` if ``simplex``), per row of ``C``.

    The problem is first equilibrated (``x = S y`` with ``S = diag(A)^(-1/2)``), so that every
    coordinate is judged at its own scale: a Gramian whose rows differ in norm by 1e6 is solved
    as accurately as a balanced one.

    Small problems on the CPU run the same steps on Python floats (:func:`_nonneg_qp_lists`);
    the others run them batched over the rows (:func:`_nonneg_qp_tensor`).

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

    Returns:
        The minimisers, shape (b, m), non-negative (and summing to 1 with ``simplex``).
    """
    b, m = C.shape
    if b == 0:
        return C.clone()
    if A.device.type == "cpu" and _lists_pay(b, m, simplex):
        X = _nonneg_qp_lists(
            A.tolist(),
            C.tolist(),
            simplex=simplex,
            rtol=rtol,
            iters=min(max_iters, _PDAS_ITERS),
            definite=definite,
            init_free=None if init_free is None else init_free.tolist(),
        )
        if X is not None:
            return torch.tensor(X, dtype=C.dtype)
    return _nonneg_qp_tensor(
        A,
        C,
        simplex=simplex,
        max_iters=max_iters,
        rtol=rtol,
        definite=definite,
        init_free=init_free,
    )


def _lists_pay(b: int, m: int, simplex: bool = False) -> bool:
    """Whether ``b`` problems of size ``m`` cost less on Python floats than as tensors (the
    simplex problems start from a full free set, so they take more steps; several rows share
    the batched steps' fixed costs)."""
    return b * m * m <= (_LISTS_WORK // 3 if simplex or b > 1 else _LISTS_WORK)


def _nonneg_qp_tensor(
    A: Tensor,
    C: Tensor,
    *,
    simplex: bool,
    max_iters: int,
    rtol: float,
    definite: bool,
    init_free: Tensor | None,
) -> Tensor:
    """:func:`nonneg_qp` batched over the rows of ``C``, on ``A``'s device."""
    m = C.shape[1]
    free = init_free
    if simplex and m >= _SIMPLEX_GUESS_M and init_free is None:
        free = _guess_free_simplex(A, C)
    d = A.diagonal()
    S = torch.where(d > 0, d.clamp_min(torch.finfo(A.dtype).tiny).rsqrt(), 1.0)
    return _nonneg_qp_equilibrated(
        S.unsqueeze(1) * A * S,
        C * S,
        S,
        simplex=simplex,
        max_iters=max_iters,
        rtol=rtol,
        definite=definite,
        free=free,
    )


def _nonneg_qp_equilibrated(
    A: Tensor,
    C: Tensor,
    S: Tensor,
    *,
    simplex: bool,
    max_iters: int,
    rtol: float,
    definite: bool,
    free: Tensor | None,
) -> Tensor:
    """:func:`nonneg_qp` for ``S A S`` and ``C S`` given as ``A`` (unit or zero diagonal) and
    ``C``: returns ``S y`` for the minimisers ``y`` of the equilibrated problems (with
    ``simplex``, ``Σ (S y) = 1``). ``free``: a starting guess of the free sets, or None."""
    b, m = C.shape
    s = S if simplex else None
    if free is not None:
        if simplex:
            free = free | ~free.any(dim=1, keepdim=True)
    elif simplex:
        free = torch.ones_like(C, dtype=torch.bool)
    elif m >= _GATHER_MIN_M:
        free = _guess_free_set(A, C)
    else:
        free = C < 0
    tol = _KKT_TOL * (1.0 + C.abs().amax(dim=1, keepdim=True))
    iters = min(max_iters, _PDAS_ITERS)
    if m < _GATHER_MIN_M:
        X, todo = _pdas_dense(A, C, free, tol, s, rtol, iters, 0.0 if definite else _JITTER)
    elif definite and s is None:
        X, todo = _pdas_definite(A, C, free, tol, iters)
    else:
        X, todo = _pdas_gathered(A, C, free, tol, s, rtol, iters)
    if todo.numel() > 0:
        # The primal-dual steps can cycle on some non-diagonally-dominant problems: finish
        # those rows with the (slower, monotone) primal active-set method.
        X = X.index_copy(
            0, todo, _primal_active_set(A, C[todo], s, tol[todo], rtol, S, max_iters=3 * m + 10)
        )
    X = X.clamp_min(0.0) * S
    if simplex:
        X = X / X.sum(dim=1, keepdim=True).clamp_min(torch.finfo(C.dtype).tiny)
    return X


def _pdas_dense(
    A: Tensor,
    C: Tensor,
    free: Tensor,
    tol: Tensor,
    s: Tensor | None,
    rtol: float,
    iters: int,
    jitter: float,
) -> tuple[Tensor, Tensor]:
    """Primal-dual active-set steps on the equilibrated problem, for small m: each row's
    Newton system is one m x m matrix, its free block with the identity on its bound indices,
    so a step is one batched factorisation and no index bookkeeping.

    Returns the last iterates (b, m) and the indices of the rows not solved in ``iters`` steps.
    """
    b, m = C.shape
    negC = -C
    done = torch.zeros(b, dtype=torch.bool, device=C.device)
    x = C
    for it in range(iters):
        f = free.to(C.dtype)
        M = A * (f.unsqueeze(2) * f.unsqueeze(1))
        rhs = (negC * f).unsqueeze(2)
        if s is not None:
            # as in solve_free: rho·s sᵀ on the free block makes it definite on {sᵀx = 1}
            sf = s * f
            rho = 1.0 / (sf * sf).sum(dim=1).clamp_min(torch.finfo(C.dtype).tiny)
            M = torch.baddbmm(M, (rho.unsqueeze(1) * sf).unsqueeze(2), sf.unsqueeze(1))
            rhs = torch.cat([rhs, sf.unsqueeze(2)], dim=2)
        M.diagonal(dim1=1, dim2=2).add_((1.0 + jitter) - f)
        L, info = torch.linalg.cholesky_ex(M)
        jit: float | Tensor = jitter
        if jitter and bool((info > 0).any()):
            # round-off made a block indefinite beyond the jitter: a larger one for that row
            extra = 1e-7 * (info > 0).to(C.dtype)
            M.diagonal(dim1=1, dim2=2).add_(extra.unsqueeze(1))
            jit = (jitter + extra).view(-1, 1, 1)
            L, _ = torch.linalg.cholesky_ex(M)
        sol = _cholesky_solve(L, rhs)
        if jitter:
            # one step of refinement against the matrix without the jitter (see solve_free)
            sol = sol + _cholesky_solve(L, rhs - (M @ sol - jit * sol))
        if s is not None:
            z, a = sol[..., 0], sol[..., 1]
            denom = (a * sf).sum(dim=1)
            nu = (1.0 - (z * sf).sum(dim=1)) / torch.where(denom > 0, denom, 1.0)
            x = torch.addcmul(z, nu.unsqueeze(1), a)
            nu = (nu - rho).unsqueeze(1)
            mu = torch.addmm(C, x, A) - nu * s
        else:
            x = sol.squeeze(2)
            mu = torch.addmm(C, x, A)
        new_free = x > mu
        if s is not None:
            # keep at least one free index per row (the best one) so Σx = 1 stays solvable
            best = torch.nn.functional.one_hot(mu.argmin(dim=1), m).bool()
            new_free = new_free | (best & ~new_free.any(dim=1, keepdim=True))
        # a free set that reproduces itself satisfies the KKT conditions up to round-off
        if torch.equal(new_free, free):
            return x, free.new_empty(0, dtype=torch.long)
        if it == 0 and iters > 1:
            # after the first step (from a guess) the free sets usually still move: the next
            # step comes anyway, and the test below would only cost its dozen operations
            free = new_free
            continue
        # Otherwise the rows whose KKT conditions hold up to round-off are solved too (this ends
        # the flips that round-off can cause on degenerate problems); they keep their free
        # set, hence (recomputed identically) their solution.
        xtol = tol * (1.0 + x.abs().amax(dim=1, keepdim=True))
        # the bound indices' test, shifted by MGDA's relative slack
        bound_test = mu if s is None else mu + rtol * nu.abs() * s
        # on the free set mu is zero by construction (up to the jitter): only the others count
        done = (torch.where(free, x, bound_test) >= -xtol).all(dim=1)
        done = done | (new_free == free).all(dim=1)
        if bool(done.all()):
            break
        free = torch.where(done.unsqueeze(1), free, new_free)
    return x, (~done).nonzero().squeeze(1)


def _cholesky_solve(L: Tensor, r: Tensor) -> Tensor:
    """``(L Lᵀ)⁻¹ r`` by two triangular solves (several times cheaper than
    ``torch.cholesky_solve`` on small batched systems, which copies its operands)."""
    return torch.linalg.solve_triangular(
        L.mT, torch.linalg.solve_triangular(L, r, upper=False), upper=True
    )


def _pdas_gathered(
    A: Tensor,
    C: Tensor,
    free: Tensor,
    tol: Tensor,
    s: Tensor | None,
    rtol: float,
    iters: int,
) -> tuple[Tensor, Tensor]:
    """Primal-dual active-set steps on the equilibrated problem, for large m: each row's free
    block is gathered and factored (:func:`solve_free`). Solved rows leave the batch.

    Returns the last iterates (b, m) and the indices of the rows not solved in ``iters`` steps.
    """
    b, m = C.shape
    padded = _pad_scale(A) if b > 1 else None  # one row needs no padding (see solve_free)
    todo = torch.arange(b, device=C.device)
    X = torch.zeros_like(C)
    for _ in range(iters):
        every = todo.numel() == b  # (no need to gather or scatter the rows)
        Ct, Ft, tolt = (C, free, tol) if every else (C[todo], free[todo], tol[todo])
        x, nu = solve_free(A, Ct, Ft, simplex=s, _padded=padded)
        mu = x @ A + Ct - nu.unsqueeze(1) * (s if s is not None else 0.0)
        xtol = tolt * (1.0 + x.abs().amax(dim=1, keepdim=True))
        mtol = xtol + (rtol * nu.abs().unsqueeze(1) * s if s is not None else 0.0)
        # on the free set mu is zero by construction (up to the jitter): only the others count
        ok = ((x >= -xtol) & ((mu >= -mtol) | Ft)).all(dim=1)
        new_free = (x - mu) > 0
        if s is not None:
            # keep at least one free index per row (the best one) so Σx = 1 stays solvable
            best = torch.nn.functional.one_hot(mu.argmin(dim=1), m).bool()
            new_free = new_free | (best & ~new_free.any(dim=1, keepdim=True))
        X, free, todo = _next_rows(X, free, todo, x, ok, new_free, Ft, every)
        if todo.numel() == 0:
            break
    return X, todo


def _next_rows(
    X: Tensor, free: Tensor, todo: Tensor, x: Tensor, ok: Tensor, new_free: Tensor, Ft: Tensor,
    every: bool,
) -> tuple[Tensor, Tensor, Tensor]:
    """The bookkeeping after an active-set step on the rows ``todo`` (all of them when
    ``every``): store their iterates ``x`` and new free sets, and keep the rows not solved.
    A row is solved when its KKT test ``ok`` passes or its free set reproduces itself (which
    satisfies the KKT conditions up to round-off)."""
    ok = ok | (new_free == Ft).all(dim=1)
    X = x if every else X.index_copy(0, todo, x)
    free = new_free if every else free.index_copy(0, todo, new_free)
    return X, free, todo[~ok]


def _pdas_definite(
    A: Tensor, C: Tensor, free: Tensor, tol: Tensor, iters: int
) -> tuple[Tensor, Tensor]:
    """Primal-dual active-set steps on the equilibrated box problem, for large m and a well
    conditioned ``A``: each row factors the smaller of its free block of ``A`` and its bound
    block of ``H = A⁻¹`` (:func:`_definite_solver`), without jitter. Solved rows leave the
    batch.

    Returns the last iterates (b, m) and the indices of the rows not solved in ``iters`` steps.
    """
    b, m = C.shape
    pad = (0, 1, 0, 1)
    cache: list[Tensor] = []

    def with_inverse() -> tuple[Tensor, Tensor]:
        # H = A⁻¹ (computed once, when a row first needs it) and A above H, each with the
        # zero row and column that padded indices point to
        if not cache:
            H = torch.cholesky_inverse(torch.linalg.cholesky(A))
            cache.extend([H, torch.cat([A_pad, torch.nn.functional.pad(H, pad)])])
        return cache[0], cache[1]

    A_pad = torch.nn.functional.pad(A, pad)
    todo = torch.arange(b, device=C.device)
    X = torch.zeros_like(C)
    for _ in range(iters):
        every = todo.numel() == b  # (no need to gather or scatter the rows)
        Ct, Ft, tolt = (C, free, tol) if every else (C[todo], free[todo], tol[todo])
        solve = _definite_solver(A_pad, with_inverse, Ft)
        freef = Ft.to(C.dtype)
        x = solve(-Ct * freef)
        mu = torch.addmm(Ct, x, A)
        xtol = tolt * (1.0 + x.abs().amax(dim=1, keepdim=True))
        if bool(((mu * freef).abs() > xtol).any()):
            # one step of refinement where the inverse's round-off shows (ill-conditioned A)
            x = x + solve(-mu * freef)
            mu = torch.addmm(Ct, x, A)
        # on the free set mu is zero (up to round-off): only the others count
        ok = (torch.where(Ft, x, mu) >= -xtol).all(dim=1)
        X, free, todo = _next_rows(X, free, todo, x, ok, x > mu, Ft, every)
        if todo.numel() == 0:
            break
    return X, todo


def _definite_solver(
    A_pad: Tensor, with_inverse: Callable[[], tuple[Tensor, Tensor]], free: Tensor
) -> Callable[[Tensor], Tensor]:
    """For the free sets ``free`` (b, m), the map ``r -> x`` with ``x_F = (A_FF)⁻¹ r_F`` and
    ``x_B = 0`` (``r`` zero off ``F``), from one factorisation per row (batched).

    Each row factors the smaller of its two blocks: its free block of ``A``, or its bound
    block of ``H = A⁻¹``, through the complement ``(A_FF)⁻¹ = H_FF - H_FB (H_BB)⁻¹ H_BF``.
    ``A_pad`` is ``A`` with a zero row and column; ``with_inverse()`` gives ``H`` and ``A_pad``
    above ``H`` padded alike, and is only called when some row needs ``H``."""
    b, m = free.shape
    nf = free.sum(dim=1)
    side = nf > m - nf  # True: the bound block of H
    small = free ^ side.unsqueeze(1)
    counts = torch.where(side, m - nf, nf)
    k = int(counts.max())
    H, AH = with_inverse() if bool(side.any()) else (None, A_pad)
    freef = free.to(A_pad.dtype)
    if k == 0:
        # every row is all bound (x = 0) or all free (x = H r)
        return lambda r: torch.where(side.unsqueeze(1), r @ H, 0.0) if H is not None else r * 0.0
    # each row's indices of the small side first (a stable sort keeps their order), padded to
    # k with the index m of the zero row and column
    order = torch.argsort((~small).to(torch.int8), dim=1, stable=True)[:, :k]
    valid = torch.arange(k, device=free.device).unsqueeze(0) < counts.unsqueeze(1)
    idx = torch.where(valid, order, m)
    rows = idx + side.unsqueeze(1).to(idx.dtype) * (m + 1)  # rows of AH: of A, or of H
    pad = (~valid).to(A_pad.dtype)
    # rows gathered in batches of at most _GATHER_BYTES, factored in batches of _BLOCK_BYTES
    size = A_pad.element_size()
    chunk = max(1, _BLOCK_BYTES // (k * k * size))
    gather_chunk = chunk * max(1, _GATHER_BYTES // (chunk * k * (m + 1) * size))
    factors = []
    for g in range(0, b, gather_chunk):
        idx_g = idx[g : g + gather_chunk]
        n = idx_g.shape[0]
        blocks = AH.index_select(0, rows[g : g + gather_chunk].reshape(-1)).view(n, k, m + 1)
        blocks = blocks.gather(2, idx_g.unsqueeze(1).expand(n, k, k))
        blocks.diagonal(dim1=1, dim2=2).add_(pad[g : g + gather_chunk])  # identity on padding
        factors.extend(
            torch.linalg.cholesky_ex(blocks[i : i + chunk])[0] for i in range(0, n, chunk)
        )
    sidef = side.unsqueeze(1)

    def solve(r: Tensor) -> Tensor:
        y = r if H is None else torch.where(sidef, r @ H, r)
        rhs = torch.nn.functional.pad(y, (0, 1)).gather(1, idx).unsqueeze(2)
        z = torch.cat(
            [_cholesky_solve(L, rhs[i : i + chunk]) for i, L in zip(range(0, b, chunk), factors)]
        )
        z = torch.zeros(b, m + 1, dtype=r.dtype, device=r.device).scatter(1, idx, z.squeeze(2))
        z = z[:, :m]
        return z if H is None else torch.where(sidef, (y - z @ H) * freef, z)

    return solve


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


# --- The same method on Python floats -------------------------------------------------------
# On the CPU a small problem costs less as a few hundred Python float operations than as the
# few dozen tensor operations (1 to 3 µs of dispatch each) of one batched active-set step.


def _cholesky_lists(M: list[list[float]], jitter: float) -> list[list[float]] | None:
    """Lower Cholesky factor (as rows of growing length) of ``M + jitter·I``, or None if a
    pivot is not positive."""
    L: list[list[float]] = []
    for i, Mi in enumerate(M):
        Li: list[float] = []
        for j in range(i):
            Lj = L[j]
            Li.append((Mi[j] - sum(map(operator.mul, Li, Lj))) / Lj[j])
        d = Mi[i] + jitter - sum(map(operator.mul, Li, Li))
        if not d > 0.0:
            return None
        Li.append(math.sqrt(d))
        L.append(Li)
    return L


def _cholesky_solve_lists(L: list[list[float]], r: list[float]) -> list[float]:
    """``(L Lᵀ)⁻¹ r`` by forward and back substitution."""
    y: list[float] = []
    for Li, ri in zip(L, r):
        y.append((ri - sum(map(operator.mul, Li, y))) / Li[-1])
    for i in range(len(L) - 1, -1, -1):
        Li = L[i]
        yi = y[i] / Li[i]
        y[i] = yi
        for j in range(i):
            y[j] -= Li[j] * yi
    return y


def _solve_free_lists(
    A: list[list[float]], c: list[float], free: list[int], s: list[float] | None, jitter: float
) -> tuple[list[float], float] | None:
    """:func:`solve_free` for one row on Python floats: the values on the free indices
    ``free`` (non-empty) and the multiplier ``nu``. None if the block cannot be factored even
    with the larger jitter."""
    M = [[row[j] for j in free] for row in (A[i] for i in free)]
    rho = 0.0
    if s is not None:
        sk = [s[i] for i in free]
        rho = 1.0 / sum(v * v for v in sk)
        M = [[a + rho * si * sj for a, sj in zip(row, sk)] for row, si in zip(M, sk)]
    L = _cholesky_lists(M, jitter)
    if L is None:
        jitter += 1e-7
        L = _cholesky_lists(M, jitter)
        if L is None:
            return None

    def solve(r: list[float]) -> list[float]:
        z = _cholesky_solve_lists(L, r)
        if jitter == 0.0:
            return z
        # refinement against the matrix without the jitter (see solve_free)
        res = [ri - sum(map(operator.mul, row, z)) for ri, row in zip(r, M)]
        return [a + b for a, b in zip(z, _cholesky_solve_lists(L, res))]

    z = solve([-c[i] for i in free])
    nu = 0.0
    if s is not None:
        a = solve(sk)
        denom = sum(map(operator.mul, a, sk))
        nu = (1.0 - sum(map(operator.mul, z, sk))) / (denom if denom > 0.0 else 1.0)
        z = [zi + nu * ai for zi, ai in zip(z, a)]
        nu -= rho
    return z, nu


def _nonneg_qp_lists(
    A: list[list[float]],
    C: list[list[float]],
    *,
    simplex: bool,
    rtol: float,
    iters: int,
    definite: bool,
    init_free: list[list[bool]] | None = None,
    equilibrated: bool = False,
) -> list[list[float]] | None:
    """The primal-dual active-set steps of :func:`nonneg_qp` on Python floats (equilibration,
    starting free sets, jitter, refinement and stopping tests as there). Returns None when a
    row needs more than ``iters`` steps or a block cannot be factored: the caller then hands
    the problem to the batched solver, which has the primal fallback (also at once when the
    steps return to a free set they have visited: they cycle).

    With ``equilibrated`` (box problems only), ``A`` has a unit or zero diagonal already and
    the minimisers of the given problems are returned as they are."""
    m = len(A)
    if equilibrated:
        S = [1.0] * m
    else:
        S = [1.0 / math.sqrt(A[i][i]) if A[i][i] > 0.0 else 1.0 for i in range(m)]
        A = [[si * a * sj for a, sj in zip(row, S)] for row, si in zip(A, S)]
    # after the equilibration the diagonal is 1 (or 0): the jitter is relative to 1
    jitter = 0.0 if definite else _JITTER
    out = []
    for r, c in enumerate(C):
        if not equilibrated:
            c = [ci * si for ci, si in zip(c, S)]
        tol = _KKT_TOL * (1.0 + max(map(abs, c)))
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
                sol = _solve_free_lists(A, c, free, S if simplex else None, jitter)
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
        x = [max(v, 0.0) for v in x] if equilibrated else [max(v, 0.0) * sj for v, sj in zip(x, S)]
        if simplex:
            total = sum(x)
            x = [v / total for v in x] if total > 0.0 else x
        out.append(x)
    return out


def _box_qp_2_lists(A: list[list[float]], C: list[list[float]]) -> list[list[float]]:
    """:func:`nonneg_qp` (box) for m = 2 on Python floats, by comparing its four candidate
    active sets (the common two-task case)."""
    (a11, a12), (_, a22) = A
    det = a11 * a22 - a12 * a12
    rows = []
    for c1, c2 in C:
        cands = [(0.0, 0.0)]
        if a11 > 0:
            cands.append((max(-c1 / a11, 0.0), 0.0))
        if a22 > 0:
            cands.append((0.0, max(-c2 / a22, 0.0)))
        if det > 1e-12 * a11 * a22 and det > 0:
            x1, x2 = (-a22 * c1 + a12 * c2) / det, (a12 * c1 - a11 * c2) / det
            if x1 >= 0 and x2 >= 0:
                cands.append((x1, x2))
        # every candidate is feasible; the one of least objective is the minimiser
        best = min(
            cands,
            key=lambda x: 0.5 * (a11 * x[0] * x[0] + 2 * a12 * x[0] * x[1] + a22 * x[1] * x[1])
            + c1 * x[0]
            + c2 * x[1],
        )
        rows.append(list(best))
    return rows


def dual_cone_weights(G: Tensor, U: Tensor, *, norm_eps: float, reg_eps: float) -> Tensor:
    """Weights of the projections of the combinations ``uᵀJ`` onto the dual cone of ``J``'s rows.

    For each row ``u`` of ``U``, the projection of ``Jᵀu`` onto ``{x : J x >= 0}`` is ``Jᵀv``
    where ``v`` minimises ``vᵀ Ĝ v`` subject to ``v >= u`` (Jacobian descent paper, Prop. 1).
    ``Ĝ = G / tr(G) + reg_eps · I`` (``Ĝ = reg_eps · I`` when ``tr(G) < norm_eps``). Written as
    ``v = u + x``, this is :func:`nonneg_qp` with ``c = Ĝ u``.

    Args:
        G: Gramian (m, m), of any float dtype (the computation runs in float64).
        U: Rows to project, (b, m), float64.

    Returns:
        ``V`` of shape (b, m), float64, with ``V >= U``.
    """
    m = G.shape[-1]
    # With reg_eps >= 1e-8 the (trace-normalised) problem has condition number <= 1e8.
    definite = reg_eps >= 1e-8
    if G.device.type == "cpu" and _lists_pay(U.shape[0], m):
        V = _dual_cone_lists(G.tolist(), U.tolist(), norm_eps, reg_eps, definite)
        if V is not None:
            return torch.tensor(V, dtype=U.dtype)
    G = G.to(U.dtype)
    # A = Ĝ equilibrated, directly: with Gr = G + reg_eps·tr(G)·I (or reg_eps·I), A is
    # Gr_ij / sqrt(Gr_ii Gr_jj) and the scaling S = sqrt(tr) / sqrt(Gr_ii)
    trace = float(G.diagonal().sum())
    if trace > 0 and trace >= norm_eps:
        Gr = G + (reg_eps * trace) * torch.eye(m, dtype=G.dtype, device=G.device)
    else:
        Gr, trace = reg_eps * torch.eye(m, dtype=G.dtype, device=G.device), 1.0
    d = Gr.diagonal()
    if reg_eps * trace > 1e-150:
        r = d.rsqrt()  # (every d >= reg_eps · trace > 0, far from underflow)
    else:
        r = torch.where(d > 0, d.clamp_min(torch.finfo(G.dtype).tiny).rsqrt(), 1.0)
    A = r.unsqueeze(1) * Gr * r
    # c = S Ĝ u = (u / r) A / sqrt(tr)
    C = (U / r) @ A if trace == 1.0 else ((U / r) @ A) / math.sqrt(trace)
    X = _nonneg_qp_equilibrated(
        A, C, r * math.sqrt(trace), simplex=False, max_iters=100, rtol=0.0, definite=definite,
        free=None,
    )
    return U + X


def _dual_cone_lists(
    G: list[list[float]], U: list[list[float]], norm_eps: float, reg_eps: float, definite: bool
) -> list[list[float]] | None:
    """:func:`dual_cone_weights` on Python floats (None: see :func:`_nonneg_qp_lists`), with
    the problem equilibrated directly as in the batched path."""
    m = len(G)
    trace = sum(G[i][i] for i in range(m))
    if trace > 0.0 and trace >= norm_eps:
        shift = reg_eps * trace
    else:
        G, shift, trace = [[0.0] * m for _ in range(m)], reg_eps, 1.0
    d = [G[i][i] + shift for i in range(m)]
    r = [1.0 / math.sqrt(di) if di > 0.0 else 1.0 for di in d]
    A = [[ri * g * rj for g, rj in zip(row, r)] for row, ri in zip(G, r)]
    for i in range(m):
        A[i][i] = d[i] * r[i] * r[i]
    root = math.sqrt(trace)
    # c = S Ĝ u = (u / r) A / sqrt(tr), with S = sqrt(tr) r
    C = [
        [sum(map(operator.mul, v, row)) / root for row in A]
        for v in ([ui / ri for ui, ri in zip(u, r)] for u in U)
    ]
    if m == 2:
        X = _box_qp_2_lists(A, C)
    else:
        X = _nonneg_qp_lists(
            A, C, simplex=False, rtol=0.0, iters=_PDAS_ITERS, definite=definite, equilibrated=True
        )
    if X is None:
        return None
    S = [ri * root for ri in r]
    return [[ui + xi * si for ui, xi, si in zip(u, x, S)] for u, x in zip(U, X)]


def min_norm_simplex(G: Tensor, *, max_iters: int = 100, rtol: float = 0.0) -> Tensor:
    """Weights ``w`` on the simplex minimising ``wᵀ G w`` (MGDA's min-norm point), shape (m,).

    Stops when every ``(G w)_j >= (1 - rtol) wᵀGw`` (up to round-off).
    """
    m = G.shape[-1]
    if G.device.type == "cpu" and _lists_pay(1, m, simplex=True):
        w = _min_norm_lists(G.tolist(), max_iters, rtol)
        if w is not None:
            return torch.tensor(w, dtype=G.dtype)
    if m == 2:
        # the closest point of a segment to 0, in closed form (the common two-task case)
        denom = G[0, 0] + G[1, 1] - 2.0 * G[0, 1]
        t = torch.where(denom > 0, (G[1, 1] - G[0, 1]) / torch.where(denom > 0, denom, 1.0), 0.5)
        t = t.clamp(0.0, 1.0)
        return torch.stack([t, 1.0 - t])
    scale = G.diagonal().max()
    A = torch.where(scale > 0, G / torch.where(scale > 0, scale, 1.0), 0.0)
    C = torch.zeros(1, m, dtype=G.dtype, device=G.device)
    return _nonneg_qp_tensor(
        A, C, simplex=True, max_iters=max_iters, rtol=rtol, definite=False, init_free=None
    )[0]


def _min_norm_lists(G: list[list[float]], max_iters: int, rtol: float) -> list[float] | None:
    """:func:`min_norm_simplex` on Python floats (None: see :func:`_nonneg_qp_lists`)."""
    m = len(G)
    if m == 2:
        (g11, g12), (_, g22) = G
        denom = g11 + g22 - 2.0 * g12
        t = (g22 - g12) / denom if denom > 0.0 else 0.5
        t = min(max(t, 0.0), 1.0)
        return [t, 1.0 - t]
    scale = max(G[i][i] for i in range(m))
    A = [[g / scale for g in row] for row in G] if scale > 0.0 else [[0.0] * m for _ in range(m)]
    X = _nonneg_qp_lists(
        A, [[0.0] * m], simplex=True, rtol=rtol, iters=min(max_iters, _PDAS_ITERS), definite=False
    )
    return None if X is None else X[0]


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
    ``reg`` (see :func:`power_reg`) is added to its diagonal, so that a zero or an exactly opposite gradient gives a
    large finite weight rather than an unbounded one (and the solve stays well conditioned).

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


def spectral_rtol(G: Tensor, dtype: torch.dtype) -> float:
    """Relative eigenvalue cut-off below which a Gramian's spectrum is treated as zero.

    ``1000 · m · eps`` of the dtype the Gramian came in: the eigenvalues that round-off can
    create in an exactly singular Gramian of that precision stay below it, the meaningful ones of
    a reasonably conditioned problem stay above.
    """
    return 1e3 * G.shape[-1] * torch.finfo(dtype).eps


def psd_spectrum(G: Tensor, rtol: float, *, graded: bool = False) -> tuple[list[float], Tensor]:
    """Eigenpairs of a PSD matrix in ascending order, the eigenvalues on the host.

    An eigenvalue is kept when it exceeds ``rtol · λ_max`` (so never when it is <= 0, and
    none is kept for a zero matrix); the others are returned as ``0.0``. The consumers turn
    the kept eigenvalues into the coefficients they need on the host, in one list, instead of
    a chain of small tensor operations (one synchronisation, the eigenvalues' copy).

    With ``graded``, the eigenpairs stay accurate also when the diagonal spans many orders of
    magnitude: a symmetric eigensolver loses the small eigenvalues of ``G = D C D`` to round-off
    of the large ones when ``D`` is badly scaled (one gradient 1e6 times larger than the
    others). When the diagonal spreads over more than a factor 1e4, the equilibrated ``C`` is
    decomposed instead, giving a square factor ``F = D Q Λ_C^½`` with ``F Fᵀ = G`` whose SVD
    has the eigenpairs of ``G`` to high relative accuracy.

    Returns:
        ``lam`` (a list of m floats) and ``V`` (m, m) with ``G ≈ V diag(lam) Vᵀ``.
    """
    lam = V = None
    if graded:
        d = G.diagonal().tolist()
        top = max(d)
        low = min((x for x in d if x > 0), default=0.0)
        if top > 1e4 * low:
            root = G.diagonal().clamp_min(0).sqrt()
            inv = root.masked_fill(root == 0, torch.inf).reciprocal()
            lam_c, Q = torch.linalg.eigh(inv.unsqueeze(1) * G * inv)
            U, S, _ = torch.linalg.svd(root.unsqueeze(1) * Q * lam_c.clamp_min(0).sqrt())
            lam, V = (S * S).flip(0), U.flip(1)
    if lam is None:
        lam, V = torch.linalg.eigh(G)
    values = lam.tolist()
    cut = rtol * max(values[-1], 0.0)
    return [x if x > cut else 0.0 for x in values], V


def cagrad_simplex(
    A: Tensor, b: Tensor, kappa: float, *, max_iters: int = 50, face_steps: int = 16
) -> Tensor:
    """The minimiser over the simplex of ``bᵀw + kappa · sqrt(wᵀAw)`` (``kappa > 0``).

    Its optimality conditions are those of ``min ½ wᵀAw + ρ bᵀw`` over the simplex at the
    ``ρ >= 0`` with ``kappa · ρ = sqrt(wᵀAw)``. On a fixed free set (face) the QP's solution and
    its multipliers are affine in ``ρ`` (one factorisation, two right-hand sides), so that
    scalar equation is a quadratic, solved exactly. Active-set steps move the free set until the
    solution at that root satisfies the KKT conditions, starting from the full set at the
    ``ρ`` of the mean gradient (``b = A 1 / m``, as in CAGrad); a face without a root moves
    ``ρ`` to its next breakpoint instead. Usually 2 to 4 steps, each exact on its face.

    If those steps do not settle within ``face_steps`` (they can cycle on singular problems),
    or the solution is at ``wᵀAw = 0`` (where the objective is not differentiable), a monotone
    search finishes: ``ρ`` kept in a shrinking bracket, the simplex QP re-solved at each ``ρ``
    (warm-started from the previous free set), the root of the face's quadratic taken when it
    stays inside the bracket.
    """
    m = A.shape[-1]
    tiny = torch.finfo(A.dtype).tiny
    # Equilibrate (w = S y, S = diag(A)^(-1/2)): every coordinate is judged at its own scale.
    d = A.diagonal()
    S = torch.where(d > 0, d.clamp_min(tiny).rsqrt(), 1.0)
    As = S.unsqueeze(1) * A * S
    bs = b * S
    b_sum, bs_max, d_max = torch.stack([b.sum(), bs.abs().max(), d.max()]).tolist()
    # A root where ‖g_w‖ = kappa ρ is zero up to round-off is not a solution of the equation:
    # there the objective is not differentiable (left to the search below)
    norm_floor = 1e-10 * math.sqrt(max(d_max, 0.0))
    # ρ = ‖g_w‖ / kappa: start from the norm of the mean gradient, ‖g_0‖ = sqrt(bᵀ1 / m)
    rho = math.sqrt(max(b_sum / m, 0.0)) / kappa
    free = torch.ones(m, dtype=torch.bool, device=A.device)
    for _ in range(face_steps):
        idx = free.nonzero().squeeze(1)
        A_col = As.index_select(1, idx)
        Ak = A_col.index_select(0, idx)
        sk, bk = S.index_select(0, idx), bs.index_select(0, idx)
        # On {sᵀy = 1}, adding s sᵀ / sᵀs only shifts the multiplier, but makes the block
        # definite whenever the face problem is well posed (As may be singular); the jitter
        # keeps duplicated rows solvable (with equal shares), and one refinement step against
        # the block without it removes its first-order effect.
        ss = float(sk @ sk)
        if not ss > 0.0:
            break  # no free index left (round-off): leave it to the search below
        M = torch.addr(Ak, sk, sk, alpha=1.0 / ss)
        M.diagonal().add_(_JITTER)
        L, info = torch.linalg.cholesky_ex(M)
        R = torch.stack([sk, bk], dim=1)
        P = torch.cholesky_solve(R, L)
        P = P + torch.cholesky_solve(R - (M @ P - _JITTER * P), L)
        sp, sq = (sk @ P).tolist()
        if not sp > 0.0:
            break  # round-off: leave the face to the search below
        # the face's solution y(ρ) = y0 + ρ y1, the columns of Y (sᵀy0 = 1, sᵀy1 = 0)
        Y = P @ P.new_tensor([[1.0 / sp, sq / sp], [0.0, -1.0]])
        # yᵢᵀ As yⱼ and yᵢᵀ bs: ‖g_w‖² and the multiplier nu of sᵀy = 1 are polynomials in ρ
        Q = Y.mT @ torch.cat([Ak @ Y, bk.unsqueeze(1)], dim=1)
        (q00, q01, q02), (_, q11, q12) = Q.tolist()
        if int(info) != 0:
            break  # a face that round-off made indefinite: leave it to the search below

        def nu_at(r: float) -> float:
            return q00 + 2.0 * r * q01 + r * r * q11 + r * (q02 + r * q12)

        # the root ρ > 0 of qa ρ² + qb ρ + qc = kappa² ρ² - ‖g_w(ρ)‖² (qa > 0 >= qc), without
        # cancellation; a face without one (or with ‖g_w‖ = 0 there) is not the optimal face:
        # keep ρ, to move the free set
        qa, qb, qc = kappa**2 - q11, -2.0 * q01, min(-q00, 0.0)
        root = math.sqrt(max(qb * qb - 4.0 * qa * qc, 0.0)) if qa > 0.0 else math.nan
        exact = False
        if root == root:
            new_rho = -2.0 * qc / (qb + root) if qb > 0 else (root - qb) / (2.0 * qa)
            if kappa * new_rho > norm_floor:
                rho, exact = new_rho, True
        y = torch.add(Y[:, 0], Y[:, 1], alpha=rho)
        # the multipliers of y >= 0: mu = As y + ρ bs - nu S (zero on the face up to the jitter)
        mu = torch.addmv(torch.add(bs * rho, S, alpha=-nu_at(rho)), A_col, y)
        y_min, y_sum, mu_min = torch.stack(
            [y.amin(), y.abs().sum(), torch.where(free, math.inf, mu).amin()]
        ).tolist()
        # Tolerances relative to the terms of mu themselves (|As_ij| <= 1, so |As y| <= ‖y‖₁):
        # divided by ρ, they are the multipliers of the original problem, which must be judged
        # at their own scale even when ρ and ‖g_w‖ are tiny (a gradient of norm 1e-12 is not
        # the minimiser just because it is nearly 0).
        ok = y_min >= -_KKT_TOL * y_sum and mu_min >= -_KKT_TOL * (rho * bs_max + y_sum)
        # a free set that reproduces itself satisfies the KKT conditions up to round-off
        same = y_min > 0.0 and mu_min >= 0.0
        if exact and (ok or same):
            w = torch.zeros_like(b).index_copy_(0, idx, y.clamp_min(0.0) * sk)
            return w / w.sum()
        if same:
            # The face is optimal for the QP at this ρ but holds no root of the equation: move ρ
            # towards it (up where kappa ρ < ‖g_w‖) to the first breakpoint, where an index
            # leaves or enters the face; the free set at ρ just past it is the next face.
            up = qa * rho * rho + qb * rho + qc < 0
            sign = 1.0 if up else -1.0
            dy = sign * Y[:, 1]
            nu_slope = nu_at(rho + 1.0) - nu_at(rho)
            dmu = sign * torch.addmv(torch.add(bs, S, alpha=-nu_slope), A_col, Y[:, 1])
            t = torch.cat([torch.where(dy < 0, -y / dy, math.inf),
                           torch.where(~free & (dmu < 0), -mu / dmu, math.inf)]).amin()
            step = float(t)
            if not step < math.inf:
                break
            step = (1.0 + 1e-9) * step
            rho = rho + step if up else max(rho - step, 0.5 * rho)
            y = torch.add(Y[:, 0], Y[:, 1], alpha=rho)
            mu = torch.addmv(torch.add(bs * rho, S, alpha=-nu_at(rho)), A_col, y)
        y_full = torch.zeros_like(b).index_copy_(0, idx, y)
        free = torch.where(free, y_full > 0, mu < 0)

    C01 = torch.stack([torch.zeros_like(b), b])
    # bracket: psi(rho) = kappa·rho - ‖g_w(rho)‖ is non-decreasing, psi(0) <= 0 and
    # psi(max‖g_i‖ / kappa) >= 0
    lo, hi = 0.0, float(A.diagonal().max().clamp_min(0).sqrt()) / kappa
    rho = hi / 2
    w = None
    for _ in range(max_iters):
        init = None if w is None else (w > 0).unsqueeze(0)
        w = nonneg_qp(A, (rho * b).unsqueeze(0), simplex=True, init_free=init)[0]
        norm = float((w @ A @ w).clamp_min(0).sqrt())
        psi = kappa * rho - norm
        if psi <= 0:
            lo = max(lo, rho)
        if psi >= 0:
            hi = min(hi, rho)
        if abs(psi) <= 1e-13 * (kappa * rho + norm) or hi - lo <= 1e-15 * hi:
            break
        # affine pieces on the current free set: w(r) = w0 + r w1
        free2 = (w > 0).unsqueeze(0).expand(2, m)
        W, _ = solve_free(A, C01, free2, simplex=torch.ones_like(b))
        w0, w1 = W[0], W[1] - W[0]
        qa = kappa**2 - float(w1 @ A @ w1)
        qb = -2.0 * float(w0 @ A @ w1)
        qc = -float(w0 @ A @ w0)
        new = math.nan
        if abs(qa) > 1e-300:
            disc = qb * qb - 4 * qa * qc
            if disc >= 0:
                roots = [(-qb + s * math.sqrt(disc)) / (2 * qa) for s in (1.0, -1.0)]
                inside = [r for r in roots if lo <= r <= hi]
                if inside:
                    new = min(inside, key=lambda r: abs(r - rho))
        elif qb != 0:
            new = -qc / qb
        if not (lo <= new <= hi) or new == rho:
            new = (lo + hi) / 2 if new != rho else new
            if new == rho:
                break
        rho = new
    return w


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the closed-form weightings compute in: float64 stays float64, anything else
    runs in float32 (its eigen-decompositions are several times faster, and the input carries no
    more precision anyway)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def to_work_dtype(M: Tensor) -> Tensor:
    """``M`` in :func:`work_dtype` (``M`` itself, with no operation, when it already is)."""
    wd = work_dtype(M.dtype)
    return M if M.dtype == wd else M.to(wd)


def spectral_input(G: Tensor, top: float) -> Tensor:
    """The matrix a scale-invariant closed form decomposes: ``G`` in its work dtype, divided by
    its largest entry ``top`` (> 0, from ``check_gramian_scale``) when that lies outside
    [1e-10, 1e10], so that extreme scales stay in range."""
    Gw = to_work_dtype(G)
    return Gw if 1e-10 <= top <= 1e10 else Gw * (1.0 / top)
