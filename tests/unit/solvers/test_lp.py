"""The simplex LP (``gramweight.solvers._lp``): hand-solved problems, and brute force over the
vertices of the polytope (of the elastic polytope when no point is feasible)."""

import itertools

import pytest
import torch

from gramweight.solvers import simplex_lp

F64 = torch.float64


def _t(*rows):
    return torch.tensor(rows, dtype=F64)


def test_no_constraints_picks_the_best_vertex():
    x = simplex_lp(_t(1.0, 3.0, 2.0), torch.zeros(0, 3, dtype=F64), torch.zeros(0, dtype=F64))
    assert x.tolist() == [0.0, 1.0, 0.0]


def test_upper_bounds_hand_solved():
    # max x0 + 2 x1 + 3 x2 with x2 <= 1/4 and x1 <= 1/2: fill x2, then x1, the rest on x0
    A = _t([0.0, 0.0, -1.0], [0.0, -1.0, 0.0])
    x = simplex_lp(_t(1.0, 2.0, 3.0), A, _t(-0.25, -0.5))
    torch.testing.assert_close(x, _t(0.25, 0.5, 0.25), rtol=0, atol=1e-14)


def test_minus_infinity_rows_constrain_nothing():
    A = _t([0.0, 0.0, -1.0], [0.0, -1.0, 0.0])
    x = simplex_lp(_t(1.0, 2.0, 3.0), A, _t(-0.25, -torch.inf))
    torch.testing.assert_close(x, _t(0.0, 0.75, 0.25), rtol=0, atol=1e-14)


def test_rows_of_very_different_scales():
    # as test_upper_bounds_hand_solved, the first row multiplied by 1e12: the same inequality
    A = _t([0.0, 0.0, -1e12], [0.0, -1.0, 0.0])
    x = simplex_lp(_t(1.0, 2.0, 3.0), A, _t(-0.25e12, -0.5))
    torch.testing.assert_close(x, _t(0.25, 0.5, 0.25), rtol=0, atol=1e-14)


def test_infeasible_hand_solved():
    # x0 >= 0.8 and x1 >= 0.8 cannot both hold: the violation (0.8 - x0) + (0.8 - x1) = 0.6 is
    # least on all of x0 in [0.2, 0.8]; max x0 among those: x0 = 0.8
    x = simplex_lp(_t(1.0, 0.0), torch.eye(2, dtype=F64), _t(0.8, 0.8))
    torch.testing.assert_close(x, _t(0.8, 0.2), rtol=0, atol=1e-14)


def _vertices(M_ineq, r_ineq, n_eq_cols):
    """Every vertex of {z : M z >= r, Σ z[:n_eq_cols] = 1} (basic solutions, brute force)."""
    d = M_ineq.shape[1]
    eq = torch.cat([torch.ones(n_eq_cols, dtype=F64), torch.zeros(d - n_eq_cols, dtype=F64)])
    for S in itertools.combinations(range(M_ineq.shape[0]), d - 1):
        M = torch.cat([eq.unsqueeze(0), M_ineq[list(S)]])
        if abs(float(torch.linalg.det(M))) < 1e-10:
            continue
        z = torch.linalg.solve(M, torch.cat([torch.ones(1, dtype=F64), r_ineq[list(S)]]))
        if bool((M_ineq @ z >= r_ineq - 1e-9).all()):
            yield z


def _row_scaled(A, b):
    """Each row divided by its largest entry (of A and b): the violations count per row."""
    top = torch.cat([A.abs(), b.abs().unsqueeze(1)], 1).amax(dim=1)
    top = torch.where(top > 0, top, 1.0)
    return A / top.unsqueeze(1), b / top


def _brute_force(c, A, b):
    """(least total violation, best objective among the points of least violation), over the
    vertices of the elastic polytope {(x, t) : x >= 0, t >= 0, A x + t >= b, Σx = 1}, rows
    scaled."""
    m, k = c.shape[0], A.shape[0]
    A, b = _row_scaled(A, b)
    eye_m, eye_k = torch.eye(m, dtype=F64), torch.eye(k, dtype=F64)
    M = torch.cat(
        [
            torch.cat([eye_m, torch.zeros(m, k, dtype=F64)], 1),
            torch.cat([torch.zeros(k, m, dtype=F64), eye_k], 1),
            torch.cat([A, eye_k], 1),
        ]
    )
    r = torch.cat([torch.zeros(m + k, dtype=F64), b])
    points = [(float(z[m:].sum()), float(c @ z[:m])) for z in _vertices(M, r, m)]
    least = min(v for v, _ in points)
    return least, max(o for v, o in points if v <= least + 1e-9)


@pytest.mark.parametrize("seed", range(60))
def test_against_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    m = int(torch.randint(1, 5, (), generator=g))
    k = int(torch.randint(0, 4, (), generator=g))
    c = torch.randn(m, generator=g, dtype=F64)
    A = torch.randn(k, m, generator=g, dtype=F64)
    b = 0.5 * torch.randn(k, generator=g, dtype=F64)
    if seed % 5 == 0:  # ties: a repeated column and a constant objective
        A[:, -1] = A[:, 0]
        c[:] = 1.0
    if seed % 5 == 1 and k:  # rows of very different scales
        A[0], b[0] = 1e12 * A[0], 1e12 * b[0]
    x = simplex_lp(c, A, b)
    assert abs(float(x.sum()) - 1.0) < 1e-12 and bool((x >= 0).all())
    A_s, b_s = _row_scaled(A, b)
    violation = float((b_s - A_s @ x).clamp_min(0).sum())
    least, best = _brute_force(c, A, b)
    assert violation <= least + 1e-9
    assert abs(float(c @ x) - best) <= 1e-9


@pytest.mark.parametrize("scale", [1e-12, 1.0, 1e12])
def test_scale_free(scale):
    A = _t([0.0, 0.0, -1.0], [0.0, -1.0, 0.0])
    x = simplex_lp(scale * _t(1.0, 2.0, 3.0), scale * A, scale * _t(-0.25, -0.5))
    torch.testing.assert_close(x, _t(0.25, 0.5, 0.25), rtol=0, atol=1e-14)


def test_float32_input_solved_in_float64():
    A = _t([0.0, 0.0, -1.0], [0.0, -1.0, 0.0]).float()
    x = simplex_lp(_t(1.0, 2.0, 3.0).float(), A, _t(-0.25, -0.5).float())
    assert x.dtype == F64
    torch.testing.assert_close(x, _t(0.25, 0.5, 0.25), rtol=0, atol=1e-7)
