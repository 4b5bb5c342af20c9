"""The torch-native solvers against slow, obviously correct references."""

import itertools

import pytest
import torch

from gramweight import _solvers as solvers
from gramweight._solvers import (
    _nonneg_qp_lists,
    _nonneg_qp_tensor,
    cagrad_simplex,
    dual_cone_weights,
    min_norm_simplex,
    nonneg_qp,
    power_balance,
    solve_free,
)


def _brute_force(A, c, simplex):
    """Minimise over every support: the best KKT-feasible equality-constrained solution."""
    m = c.shape[0]
    ones = torch.ones(m, dtype=torch.float64)
    best = None
    for size in range(1 if simplex else 0, m + 1):
        for S in itertools.combinations(range(m), size):
            x = torch.zeros(m, dtype=torch.float64)
            if S:
                idx = list(S)
                AS = A[idx][:, idx]
                if simplex:
                    K = torch.zeros(size + 1, size + 1, dtype=torch.float64)
                    K[:size, :size] = AS
                    K[:size, size] = K[size, :size] = 1.0
                    rhs = torch.cat([-c[idx], ones[:1]])
                    x[idx] = torch.linalg.lstsq(K, rhs.unsqueeze(1)).solution.squeeze(1)[:size]
                else:
                    x[idx] = torch.linalg.lstsq(AS, -c[idx].unsqueeze(1)).solution.squeeze(1)
            if bool((x >= -1e-9).all()) and (not simplex or abs(float(x.sum()) - 1) < 1e-9):
                f = float(0.5 * x @ A @ x + c @ x)
                if best is None or f < best:
                    best = f
    return best


def _problems(seed, count=40):
    gen = torch.Generator().manual_seed(seed)
    for trial in range(count):
        m = int(torch.randint(1, 7, (1,), generator=gen))
        n = int(torch.randint(1, 8, (1,), generator=gen))
        J = torch.randn(m, n, generator=gen, dtype=torch.float64)
        if trial % 4 == 1 and m > 1:
            J[1] = -0.5 * J[0]
        if trial % 4 == 2 and m > 2:
            J[2] = J[0]
        if trial % 4 == 3:
            J[0] *= 1e3
        yield J @ J.T, torch.randn(3, m, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("simplex", [False, True])
def test_nonneg_qp_matches_brute_force(simplex):
    for G, R in _problems(0 if simplex else 1):
        A = G / G.diagonal().max()
        C = R @ A if not simplex else R  # box problems of the dual-cone kind have c in range(A)
        X = nonneg_qp(A, C, simplex=simplex)
        assert bool((X >= 0).all())
        for x, c in zip(X, C):
            f = float(0.5 * x @ A @ x + c @ x)
            best = _brute_force(A, c, simplex)
            assert f <= best + 1e-9 * (1 + abs(best)), (A, c, x)


def test_primal_fallback_on_a_cycling_instance():
    # the primal-dual steps cycle (period 4) on this simplex problem; the fallback finishes it
    J = torch.tensor(
        [[0.82, -0.05], [-0.47, 1.0], [-0.35, 0.58], [0.1, -0.38], [0.38, -0.2], [0.08, -0.26]],
        dtype=torch.float64,
    )
    A = J @ J.T
    A = A / A.diagonal().max()
    c = torch.tensor([-0.1705, 1.9427, 1.0924, -0.8227, -0.1637, -0.5416], dtype=torch.float64)
    x = nonneg_qp(A, c.unsqueeze(0), simplex=True, max_iters=5)[0]
    assert float(0.5 * x @ A @ x + c @ x) <= _brute_force(A, c, True) + 1e-10


def test_solve_free_with_empty_free_set_is_zero():
    A = torch.eye(3, dtype=torch.float64)
    x, nu = solve_free(A, torch.ones(2, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.bool), simplex=None)
    assert torch.equal(x, torch.zeros(2, 3, dtype=torch.float64)) and torch.equal(nu, torch.zeros(2, dtype=torch.float64))


def test_dual_cone_projection_is_feasible_and_optimal():
    for G, R in _problems(2):
        U = R.abs()
        V = dual_cone_weights(G, U, norm_eps=0.0, reg_eps=0.0)
        assert bool((V >= U - 1e-12).all())
        scale = float(G.abs().max()) + 1e-300
        assert float((V @ G).min()) >= -1e-9 * scale * float(V.abs().sum(dim=1).max())
        # complementarity: wherever v_j > u_j the constraint is tight
        slack = (V - U) * (V @ G)
        assert float(slack.abs().max()) <= 1e-8 * scale * (1 + float(V.abs().max())) ** 2


def test_min_norm_simplex_against_brute_force():
    for G, _ in _problems(3):
        w = min_norm_simplex(G)
        best = _brute_force(G / G.diagonal().max(), torch.zeros(G.shape[0], dtype=torch.float64), True)
        assert float(0.5 * w @ G @ w) / float(G.diagonal().max()) <= best + 1e-10


def test_power_balance_solves_the_equation_and_warm_starts():
    G = torch.tensor([[2.0, 0.5, -0.3], [0.5, 1.0, 0.2], [-0.3, 0.2, 3.0]], dtype=torch.float64)
    reg = 1e-6 * 3.0 * torch.eye(3, dtype=torch.float64)
    for alpha in (0.3, 1.0, 4.0):
        w = power_balance(G, alpha=alpha)
        assert torch.allclose((G + reg) @ w, w ** (-1 / alpha), rtol=1e-11)
        warm = power_balance(G, alpha=alpha, init=w * 1.5)
        assert torch.allclose(warm, w, rtol=1e-11)


def test_cagrad_simplex_against_a_grid():
    G = torch.tensor([[1.0, -0.6, 0.1], [-0.6, 2.0, -0.4], [0.1, -0.4, 0.5]], dtype=torch.float64)
    b = G @ torch.full((3,), 1 / 3, dtype=torch.float64)
    for kappa in (0.05, 0.3, 1.0):
        w = cagrad_simplex(G, b, kappa)

        def f(v):
            return float(b @ v) + kappa * float((v @ G @ v).clamp_min(0).sqrt())

        grid = [
            torch.tensor([a / 200, c / 200, 1 - (a + c) / 200], dtype=torch.float64)
            for a in range(201)
            for c in range(201 - a)
        ]
        assert f(w) <= min(f(v) for v in grid) + 1e-12
        assert abs(float(w.sum()) - 1) < 1e-12 and bool((w >= 0).all())


def _cagrad_problems():
    """(name, A, b, kappa) as CAGrad builds them, on generic (full-rank or not), duplicated,
    opposite and badly scaled Gramians, for several radii."""
    gen = torch.Generator().manual_seed(0)
    for m, rank, c in [(2, 2, 0.5), (5, 5, 0.5), (9, 3, 0.5), (30, 30, 0.5), (30, 12, 1.0),
                       (31, 26, 0.5), (70, 70, 0.5), (70, 70, 3.0), (120, 40, 0.2)]:
        J = torch.randn(m, rank, generator=gen, dtype=torch.float64) @ torch.randn(
            rank, 4 * m, generator=gen, dtype=torch.float64
        )
        variants = {
            "plain" if rank < m else "full_rank": J,
            "duplicated": torch.cat([J[: m // 2], J[: m - m // 2]]),
        }
        opposite = J.clone()
        opposite[0] = -J[1]  # 0 in the hull: a face holds a root at ‖g_w‖ = 0, not the optimum
        variants["opposite"] = opposite
        scales = torch.logspace(-6, 6, m, dtype=torch.float64)
        variants["row_scales"] = J * scales[torch.randperm(m, generator=gen)].unsqueeze(1)
        for name, JJ in variants.items():
            G = JJ @ JJ.T
            A = G / G.trace()
            b = A @ torch.full((m,), 1 / m, dtype=torch.float64)
            kappa = c * float(b.sum() / m) ** 0.5
            if kappa > 1e-12:  # (cagrad returns the mean when g_0 = 0)
                yield name, A, b, kappa


def _cagrad_objective(A, b, kappa, w):
    return float(b @ w) + kappa * float((w @ A @ w).clamp_min(0).sqrt())


def test_cagrad_simplex_face_steps_agree_with_the_search():
    # the active-set steps on the exact face equation against the bracketing search alone
    # (face_steps=0): the steps' answer is at least as good, and satisfies the KKT conditions
    for name, A, b, kappa in _cagrad_problems():
        w = cagrad_simplex(A, b, kappa)
        w_search = cagrad_simplex(A, b, kappa, face_steps=0)
        if name == "full_rank":  # the steps alone settle (no search: max_iters=0)
            w_steps = cagrad_simplex(A, b, kappa, max_iters=0)
            assert w_steps is not None and torch.equal(w_steps, w)
        assert bool((w >= 0).all()) and abs(float(w.sum()) - 1) < 1e-12
        f, f_search = (_cagrad_objective(A, b, kappa, v) for v in (w, w_search))
        assert f <= f_search + 1e-12 * (abs(f_search) + kappa)
        # the KKT conditions: b + kappa A w / ‖g_w‖ - nu >= 0, = 0 where w > 0 (where g_w = 0
        # the objective is not differentiable: then only the objective is compared). With row
        # norms spread over 1e12, some problems go to the search, whose multipliers are only
        # accurate to about 1e-4 of the gradient's scale there: only the objective is compared.
        norm = float((w @ A @ w).sqrt())
        if norm < 1e-9 or name == "row_scales":
            continue
        grad = b + kappa * (A @ w) / norm
        nu = float(grad @ w)
        scale = float(b.abs().max()) + kappa * float((A @ w).abs().max()) / norm
        assert float((grad - nu).min()) >= -1e-12 * scale
        assert float(((grad - nu) * w).abs().max()) <= 1e-12 * scale


def _kkt_violation(A, C, X, simplex):
    """Largest violation of the KKT conditions (a certificate of optimality for convex QPs)."""
    mu = X @ A + C
    if simplex:
        nu = torch.stack([mu[i][X[i] > 0].mean() for i in range(X.shape[0])]).unsqueeze(1)
        mu = mu - nu
    stationarity = (mu * (X > 0)).abs().max()
    sign = (-mu).clamp_min(0).max()
    return max(float(stationarity), float(sign), float((-X).clamp_min(0).max()))


@pytest.mark.parametrize("definite", [False, True])
def test_large_box_problems_take_the_guessed_and_bound_side_paths(definite):
    # m >= 48: projected-gradient guess of the free sets, and with a regularised (definite)
    # matrix the solves through the bound side
    gen = torch.Generator().manual_seed(5)
    for n in (30, 200):
        J = torch.randn(60, n, generator=gen, dtype=torch.float64)
        A = J @ J.T / (J * J).sum() + 1e-4 * torch.eye(60, dtype=torch.float64)
        U = torch.eye(60, dtype=torch.float64) / 60
        X = nonneg_qp(A, U @ A, definite=definite)
        assert _kkt_violation(A, U @ A, X, simplex=False) < 1e-12


def test_large_simplex_problems_take_the_guessed_path():
    gen = torch.Generator().manual_seed(6)
    for n in (40, 600):
        J = torch.randn(300, n, generator=gen, dtype=torch.float64)
        A = J @ J.T
        A = A / A.diagonal().max()
        C = 0.1 * torch.randn(2, 300, generator=gen, dtype=torch.float64)
        X = nonneg_qp(A, C, simplex=True)
        assert torch.allclose(X.sum(dim=1), torch.ones(2, dtype=torch.float64))
        assert _kkt_violation(A, C, X, simplex=True) < 1e-12


# --- Every path of the solver: Python floats, one m x m system per row, gathered blocks, and
# the definite (both-sides) path, on random, rank-deficient and badly scaled problems.

def _lists(A, C, simplex, definite=False):
    X = _nonneg_qp_lists(
        A.tolist(), C.tolist(), simplex=simplex, rtol=0.0, iters=30, definite=definite
    )
    return None if X is None else torch.tensor(X, dtype=torch.float64)


def _tensor(A, C, simplex, definite=False):
    return _nonneg_qp_tensor(
        A, C, simplex=simplex, max_iters=100, rtol=0.0, definite=definite, init_free=None
    )


@pytest.mark.parametrize("path", [_lists, _tensor])
@pytest.mark.parametrize("simplex", [False, True])
def test_each_path_matches_brute_force(path, simplex):
    solved = 0
    for G, R in _problems(10 if simplex else 11):
        A = G / G.diagonal().max()
        C = R @ A if not simplex else R
        X = path(A, C, simplex)
        if X is None:  # the Python steps cycled: the caller hands the problem over
            continue
        solved += 1
        assert bool((X >= 0).all())
        if simplex:
            assert torch.allclose(X.sum(dim=1), torch.ones(X.shape[0], dtype=torch.float64))
        for x, c in zip(X, C):
            f = float(0.5 * x @ A @ x + c @ x)
            assert f <= _brute_force(A, c, simplex) + 1e-9 * (1 + abs(f)), (A, c, x)
    assert solved >= 30


def _structured(seed, count, m_max):
    """Gramians of random Jacobians with opposite, duplicated, zero and dominant rows, fewer
    columns than rows (singular), at scales from 1e-15 to 1e15."""
    gen = torch.Generator().manual_seed(seed)
    for trial in range(count):
        m = int(torch.randint(3, m_max + 1, (1,), generator=gen))
        n = int(torch.randint(1, 2 * m, (1,), generator=gen))
        J = torch.randn(m, n, generator=gen, dtype=torch.float64)
        J[1] = -0.5 * J[0] if trial % 5 == 1 else J[1]
        J[2] = J[0] if trial % 5 == 2 else J[2]
        J[-1] = 0.0 if trial % 5 == 3 else J[-1]
        J[0] = 1e4 * J[0] if trial % 5 == 4 else J[0]
        yield J @ J.T * 10.0 ** float(torch.randint(-15, 16, (1,), generator=gen))


@pytest.mark.parametrize("definite", [False, True])
def test_python_and_tensor_paths_agree(definite):
    for G in _structured(12, 60, 12):
        m = G.shape[0]
        A = G / G.trace() + (1e-4 if definite else 0.0) * torch.eye(m, dtype=torch.float64)
        gen = torch.Generator().manual_seed(m)
        C = torch.rand(3, m, dtype=torch.float64, generator=gen) @ A
        X_t = _tensor(A, C, False, definite)
        assert _kkt_violation(A, C, X_t, simplex=False) < 1e-12
        X_l = _lists(A, C, False, definite)
        if X_l is not None:
            assert _kkt_violation(A, C, X_l, simplex=False) < 1e-12
            # the minimiser is unique up to the null space of A: compare A x
            atol = 1e-10 * (1 + float(X_t.abs().max()))
            assert torch.allclose(X_l @ A, X_t @ A, rtol=0, atol=atol)


def test_handover_when_the_python_steps_cycle():
    # on singular problems the primal-dual steps can cycle: the Python path gives up and
    # nonneg_qp finishes them with the batched solver (and its primal fallback)
    handed_over = 0
    for G in _structured(16, 60, 12):
        A = G / G.trace()
        gen = torch.Generator().manual_seed(1)
        C = torch.rand(4, G.shape[0], dtype=torch.float64, generator=gen) @ A
        if _lists(A, C, False) is None:
            handed_over += 1
            assert _kkt_violation(A, C, nonneg_qp(A, C), simplex=False) < 1e-12
    assert handed_over > 0


@pytest.mark.parametrize(
    ("chunk_bytes", "gather_bytes"), [(1 << 22, 1 << 26), (1 << 12, 1 << 12), (1 << 12, 1 << 18)]
)
def test_definite_path_in_chunks_and_ill_conditioned(monkeypatch, chunk_bytes, gather_bytes):
    # the both-sides factorisation of large definite problems, in one batch or in many
    # chunks (gathered in one batch or several), with the refinement that an ill-conditioned
    # matrix (reg 1e-8) calls for
    monkeypatch.setattr(solvers, "_BLOCK_BYTES", chunk_bytes)
    monkeypatch.setattr(solvers, "_GATHER_BYTES", gather_bytes)
    gen = torch.Generator().manual_seed(13)
    for m, n, reg in ((64, 256, 1e-4), (70, 20, 1e-8), (50, 49, 1e-6)):
        J = torch.randn(m, n, generator=gen, dtype=torch.float64)
        J[0] *= 1e3
        A = J @ J.T / (J * J).sum() + reg * torch.eye(m, dtype=torch.float64)
        C = (torch.rand(m, m, generator=gen, dtype=torch.float64) * torch.eye(m)) @ A
        X = nonneg_qp(A, C, definite=True)
        assert _kkt_violation(A, C, X, simplex=False) < 1e-12
        assert torch.allclose(X @ A, nonneg_qp(A, C) @ A, rtol=0, atol=1e-10)


@pytest.mark.parametrize("reg_eps", [0.0, 1e-4])
@pytest.mark.parametrize("norm_eps", [0.0, 1e-4])
def test_dual_cone_weights_paths_agree(monkeypatch, reg_eps, norm_eps):
    gramians = [*_structured(14, 40, 10), torch.zeros(3, 3, dtype=torch.float64)]
    for G in gramians:
        m = G.shape[0]
        U = torch.eye(m, dtype=torch.float64) / m
        monkeypatch.setattr(solvers, "_LISTS_WORK", 10**9)
        V_l = dual_cone_weights(G, U, norm_eps=norm_eps, reg_eps=reg_eps)
        monkeypatch.setattr(solvers, "_LISTS_WORK", 0)
        V_t = dual_cone_weights(G, U, norm_eps=norm_eps, reg_eps=reg_eps)
        scale = float(G.abs().max()) + 1e-300
        assert bool((V_l >= U).all()) and bool((V_t >= U).all())
        atol = 1e-9 * scale * (1 + float(V_t.abs().max()))
        assert torch.allclose(V_l @ G, V_t @ G, rtol=0, atol=atol)
        if reg_eps == 0.0 and norm_eps == 0.0:
            for V in (V_l, V_t):
                assert float((V @ G).min()) >= -1e-9 * scale * float(V.abs().sum(dim=1).max())


def test_min_norm_simplex_paths_agree(monkeypatch):
    for G in _structured(15, 40, 14):
        monkeypatch.setattr(solvers, "_LISTS_WORK", 10**9)
        w_l = min_norm_simplex(G)
        monkeypatch.setattr(solvers, "_LISTS_WORK", 0)
        w_t = min_norm_simplex(G)
        scale = float(G.diagonal().max())
        for w in (w_l, w_t):
            assert abs(float(w.sum()) - 1) < 1e-12 and bool((w >= 0).all())
            # the min-norm property: every (G w)_j >= wᵀ G w (up to round-off)
            assert float((G @ w).min() - w @ G @ w) >= -1e-9 * scale
        assert abs(float(w_l @ G @ w_l - w_t @ G @ w_t)) <= 1e-10 * scale
