"""The simplex projection of MoDo and SDMGrad, against hand values."""

import torch

from gramweight._solvers import project_simplex


def t(*xs):
    return torch.tensor(xs, dtype=torch.float64)


def test_points_of_the_simplex_stay():
    for v in (t(1.0), t(0.25, 0.75), t(0.2, 0.3, 0.5), t(0.0, 1.0, 0.0)):
        assert torch.allclose(project_simplex(v), v, rtol=0, atol=1e-16)


def test_hand_values():
    assert torch.allclose(project_simplex(t(2.0, 0.0)), t(1.0, 0.0))
    assert torch.allclose(project_simplex(t(0.5, 0.5, 0.5)), t(1 / 3, 1 / 3, 1 / 3))
    assert torch.allclose(project_simplex(t(0.5195, 0.4195)), t(0.55, 0.45))
    assert torch.allclose(project_simplex(t(1.0, 0.8, -3.0)), t(0.6, 0.4, 0.0))
    assert torch.allclose(project_simplex(t(-5.0)), t(1.0))


def test_huge_entries_keep_the_constraint():
    assert torch.equal(project_simplex(t(-2.4e16)), t(1.0))
    assert torch.equal(project_simplex(t(-1e16, 3e16)), t(0.0, 1.0))
    w = project_simplex(t(1e15, 1e15 + 0.5))
    assert torch.allclose(w, t(0.25, 0.75))


def test_batched():
    V = torch.stack([t(2.0, 0.0), t(0.5195, 0.4195)])
    assert torch.allclose(project_simplex(V), torch.stack([t(1.0, 0.0), t(0.55, 0.45)]))
