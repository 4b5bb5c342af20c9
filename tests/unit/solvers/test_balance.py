"""The balance equations of FairGrad and Nash-MTL (``gramweight.solvers._balance``).

Where a solution exists, the solver must meet the bare equation ``G w = w^(-1/α)`` to
round-off: every relative residual ``(G w)_i w_i^p - 1`` (``p = 1/α``) within a few units of
round-off of its own terms, ``eps ((|G| w)_i w_i^p + 1)``. Where none exists, the documented
finite answer.
"""

import math

import pytest
import torch

from gramweight.solvers import balance_eps, power_balance

EPS = 2.0**-52


def round_off_ratio(G, w, alpha):
    """Largest relative residual of ``G w = w^(-1/alpha)``, in units of its round-off."""
    p = 1.0 / alpha
    rel = ((G @ w) * w**p - 1.0).abs()
    bound = EPS * ((G.abs() @ w) * w**p + 1.0)
    return float((rel / bound).max())


def test_power_balance_solves_the_equation_and_warm_starts():
    G = torch.tensor([[2.0, 0.5, -0.3], [0.5, 1.0, 0.2], [-0.3, 0.2, 3.0]], dtype=torch.float64)
    for alpha in (0.3, 1.0, 4.0):
        w = power_balance(G, alpha=alpha)
        assert torch.allclose(G @ w, w ** (-1 / alpha), rtol=1e-14, atol=0.0)
        warm = power_balance(G, alpha=alpha, init=w * 1.5)
        assert torch.allclose(warm, w, rtol=1e-14, atol=0.0)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_each_task_at_its_own_scale(alpha):
    # hand: G diagonal, task i's equation G_ii w_i = w_i^(-1/α) alone, w_i = G_ii^(-α/(1+α)),
    # for squared norms from 1e-12 to 1e12 (a relative term of the largest diagonal would
    # swamp the small ones)
    d = torch.tensor([1e12, 1.0, 1e-6, 1e-12], dtype=torch.float64)
    w = power_balance(torch.diag(d), alpha=alpha)
    assert torch.allclose(w, d ** (-alpha / (1 + alpha)), rtol=1e-14, atol=0.0)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_random_problems_to_round_off(alpha):
    # i.i.d. normal 5 x 5 Jacobians (the check; the old regulariser reached 4e-2),
    # and the same with rows scaled from 1e-3 to 1e3
    gen = torch.Generator().manual_seed(0)
    for k in range(40):
        J = torch.randn(5, 5, generator=gen, dtype=torch.float64)
        if k % 2:
            J = J * torch.logspace(-3, 3, 5, dtype=torch.float64).unsqueeze(1)
        G = J @ J.T
        w = power_balance(G, alpha=alpha)
        assert round_off_ratio(G, w, alpha) < 64


def test_zero_gradient():
    # hand: a zero row decouples; the others solve their own equation (a diagonal one here)
    # and the zero gradient's equation ε max_j G_jj w = w^(-p) gives (ε max_j G_jj)^(-α/(1+α))
    G = torch.diag(torch.tensor([4.0, 0.0, 9.0], dtype=torch.float64))
    for alpha in (1.0, 3.0):
        e = -alpha / (1 + alpha)
        w = power_balance(G, alpha=alpha)
        others = torch.tensor([4.0, 9.0], dtype=torch.float64) ** e
        assert torch.allclose(w[[0, 2]], others, rtol=1e-14)
        assert math.isclose(float(w[1]), (EPS * 9.0) ** e, rel_tol=1e-12)
    # G = 0: every diagonal is ε (the largest diagonal taken as 1)
    w = power_balance(torch.zeros(2, 2, dtype=torch.float64), alpha=1.0)
    assert torch.allclose(w, torch.full((2,), EPS**-0.5, dtype=torch.float64), rtol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16])
@pytest.mark.parametrize("alpha", [1.0, 5.0])
def test_opposite_gradients_finite(dtype, alpha):
    # g_1 = -2 g_0: no solution; the weights on (1, 1/2) grow to order ε^(-α/(1+α)) and their
    # update cancels. The update, with the weights rounded to the dtype, stays below a
    # gradient's norm.
    G = torch.tensor([[1.0, -2.0], [-2.0, 4.0]], dtype=torch.float64)
    eps = balance_eps(dtype)
    w = power_balance(G, alpha=alpha, eps=eps).to(dtype).double()
    assert bool(torch.isfinite(w).all()) and bool((w > 0).all())
    assert float(w.max()) < 10 * eps ** (-alpha / (1 + alpha))
    assert float((w @ G @ w).clamp_min(0).sqrt()) < 1.0


def test_not_positive_semi_definite_by_round_off():
    # exactly opposite unit gradients whose Gramian came out with the eigenvalue -2e-12 on
    # (1, 1) (round-off): that magnitude, 2e-12, goes on the diagonal too (twice the most
    # negative eigenvalue of the unit-diagonal form, which is G itself); by symmetry
    # w = (t, t) with (1 + ε + 4e-12 - 1 - 2e-12) t = 1/t, t = (2e-12 + ε)^(-1/2)
    G = torch.tensor([[1.0, -1.0 - 2e-12], [-1.0 - 2e-12, 1.0]], dtype=torch.float64)
    w = power_balance(G, alpha=1.0)
    assert bool(torch.isfinite(w).all()) and float(w[0]) == float(w[1])
    assert math.isclose(float(w[0]), (2e-12 + EPS) ** -0.5, rel_tol=1e-3)


def test_balance_eps():
    assert balance_eps(torch.float64) == 2.0**-52
    assert balance_eps(torch.float32) == 2.0**-23
    assert balance_eps(torch.bfloat16) == 2.0**-7
