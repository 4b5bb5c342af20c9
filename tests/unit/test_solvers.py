"""The torch-native solvers against slow, obviously correct references."""

import itertools

import pytest
import torch

from gramweight._solvers import (
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
