"""The box and simplex QP (``gramweight.solvers._box_qp``): every path of the solver against
slow, obviously correct references."""

import pytest
import torch

import gramweight._host as host
from gramweight.solvers import _box_qp, nonneg_qp
from gramweight.solvers._box_qp import nonneg_qp_host

from ._problems import brute_force, kkt_violation, problems, structured


@pytest.mark.parametrize("simplex", [False, True])
def test_nonneg_qp_matches_brute_force(simplex):
    for G, R in problems(0 if simplex else 1):
        A = G / G.diagonal().max()
        C = R @ A if not simplex else R  # box problems of the dual-cone kind have c in range(A)
        X = nonneg_qp(A, C, simplex=simplex)
        assert bool((X >= 0).all())
        for x, c in zip(X, C):
            f = float(0.5 * x @ A @ x + c @ x)
            best = brute_force(A, c, simplex)
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
    assert float(0.5 * x @ A @ x + c @ x) <= brute_force(A, c, True) + 1e-10


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
        assert kkt_violation(A, U @ A, X, simplex=False) < 1e-12


def test_large_simplex_problems_take_the_guessed_path():
    gen = torch.Generator().manual_seed(6)
    for n in (40, 600):
        J = torch.randn(300, n, generator=gen, dtype=torch.float64)
        A = J @ J.T
        A = A / A.diagonal().max()
        C = 0.1 * torch.randn(2, 300, generator=gen, dtype=torch.float64)
        X = nonneg_qp(A, C, simplex=True)
        assert torch.allclose(X.sum(dim=1), torch.ones(2, dtype=torch.float64))
        assert kkt_violation(A, C, X, simplex=True) < 1e-12


# --- Every path of the solver: Python floats, one m x m system per row, gathered blocks, and
# the definite (both-sides) path, on random, rank-deficient and badly scaled problems.

def _host(A, C, simplex, definite=False):
    X = nonneg_qp_host(
        A.tolist(), C.tolist(), simplex=simplex, rtol=0.0, iters=30, definite=definite
    )
    return None if X is None else torch.tensor(X, dtype=torch.float64)


def _tensor(A, C, simplex, definite=False):
    with host.disabled():
        return nonneg_qp(A, C, simplex=simplex, max_iters=100, rtol=0.0, definite=definite)


@pytest.mark.parametrize("path", [_host, _tensor])
@pytest.mark.parametrize("simplex", [False, True])
def test_each_path_matches_brute_force(path, simplex):
    solved = 0
    for G, R in problems(10 if simplex else 11):
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
            assert f <= brute_force(A, c, simplex) + 1e-9 * (1 + abs(f)), (A, c, x)
    assert solved >= 30


@pytest.mark.parametrize("definite", [False, True])
def test_python_and_tensor_paths_agree(definite):
    for G in structured(12, 60, 12):
        m = G.shape[0]
        A = G / G.trace() + (1e-4 if definite else 0.0) * torch.eye(m, dtype=torch.float64)
        gen = torch.Generator().manual_seed(m)
        C = torch.rand(3, m, dtype=torch.float64, generator=gen) @ A
        X_t = _tensor(A, C, False, definite)
        assert kkt_violation(A, C, X_t, simplex=False) < 1e-12
        X_h = _host(A, C, False, definite)
        if X_h is not None:
            assert kkt_violation(A, C, X_h, simplex=False) < 1e-12
            # the minimiser is unique up to the null space of A: compare A x
            atol = 1e-10 * (1 + float(X_t.abs().max()))
            assert torch.allclose(X_h @ A, X_t @ A, rtol=0, atol=atol)


def test_handover_when_the_python_steps_cycle():
    # on singular problems the primal-dual steps can cycle: the Python path gives up and
    # nonneg_qp finishes them with the batched solver (and its primal fallback)
    handed_over = 0
    for G in structured(16, 60, 12):
        A = G / G.trace()
        gen = torch.Generator().manual_seed(1)
        C = torch.rand(4, G.shape[0], dtype=torch.float64, generator=gen) @ A
        if _host(A, C, False) is None:
            handed_over += 1
            assert kkt_violation(A, C, nonneg_qp(A, C), simplex=False) < 1e-12
    assert handed_over > 0


@pytest.mark.parametrize(
    ("n", "reg", "scale_row"), [(800, 1e-4, 1.0), (800, 1e-8, 1e3), (8, 1e-4, 1.0)]
)
def test_large_definite_problems_by_conjugate_gradients(monkeypatch, n, reg, scale_row):
    # a large definite problem: the conjugate gradients, at a size and with a budget beyond
    # what their cost model gives them (full rank: they converge; reg 1e-8 with a dominant row: they
    # converge too, slowly; rank 8: they hand most rows over to the factorisations); against
    # the KKT conditions and, for the full-rank ones, the gathered (non-definite) path
    monkeypatch.setattr(_box_qp, "_CG_MIN_M", 128)
    monkeypatch.setattr(_box_qp, "_CG_ITERS_PER_BLOCK", 20.0)
    gen = torch.Generator().manual_seed(8)
    m = 200
    J = torch.randn(m, n, generator=gen, dtype=torch.float64)
    J[0] *= scale_row
    A = J @ J.T / (J * J).sum() + reg * torch.eye(m, dtype=torch.float64)
    C = (torch.rand(m, generator=gen, dtype=torch.float64) / m).unsqueeze(1) * A
    X = nonneg_qp(A, C, definite=True)
    assert kkt_violation(A, C, X, simplex=False) < 1e-12
    if n >= m:
        atol = 1e-10 * float(A.diagonal().max()) * (1 + float(X.abs().max()))
        assert torch.allclose(X @ A, nonneg_qp(A, C) @ A, rtol=0, atol=atol)
