"""The simplex projection of MoDo and SDMGrad, against hand values."""

import torch

from gramweight.solvers import project_simplex


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


def test_random_rows_match_the_reference_projection_and_kkt():
    # Against the references' own loop-based projection (written separately), and against
    # the projection's optimality conditions: x = max(v - theta, 0), sum x = 1.
    from gramweight.testing.references._simplex import project_simplex as loop_projection

    gen = torch.Generator().manual_seed(0)
    for m in (1, 2, 3, 5, 16, 64):
        for scale in (1e-3, 1.0, 1e3):
            V = torch.randn(40, m, generator=gen, dtype=torch.float64) * scale
            V[::7] = V[::7].round()  # ties
            X = project_simplex(V)
            for v, x in zip(V, X):
                assert torch.allclose(x, loop_projection(v), rtol=1e-12, atol=1e-12)
            assert torch.allclose(X.sum(dim=1), torch.ones(40, dtype=torch.float64), atol=1e-12)
            assert (X >= 0).all()
            # every positive entry is shifted by the same theta, the zero ones lie below it
            for v, x in zip(V, X):
                th = (v - x)[x > 0]
                assert torch.allclose(th, th[0].expand_as(th), rtol=0, atol=1e-12 * (1 + scale))
                assert (v[x == 0] <= th[0] + 1e-12 * (1 + scale)).all()
