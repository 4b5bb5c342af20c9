"""fairgrad: the regularised equation, alpha, edge cases and errors.

Its values, and the unregularised equation, are in test_expected_values.py.
"""

import pytest
import torch

import gramweight as gw
from tests.unit.weightings._common import G, edge_gramians, gram


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_solves_the_equation(alpha):
    Gm = gram([[1.0, 0.0, 0.5], [-0.5, 1.0, 0.0], [0.2, -0.3, 1.0]])
    w = gw.fairgrad(Gm, alpha=alpha)
    reg = 1e-6 * float(Gm.diagonal().max())  # the documented regularisation
    assert bool((w > 0).all())
    assert torch.allclose((Gm + reg * torch.eye(3, dtype=torch.float64)) @ w, w ** (-1 / alpha), rtol=1e-10)


def test_alpha_zero_is_the_mean():
    assert torch.equal(gw.fairgrad(G, alpha=0.0), torch.tensor([0.5, 0.5], dtype=torch.float64))


def test_scaling_law():
    # w(sG) = s^(-alpha/(1+alpha)) w(G)
    for alpha, s in [(1.0, 1e-6), (2.0, 1e8)]:
        assert torch.allclose(gw.fairgrad(G * s, alpha=alpha), gw.fairgrad(G, alpha=alpha) * s ** (-alpha / (1 + alpha)), rtol=1e-9)


@pytest.mark.parametrize("name", list(edge_gramians()))
def test_edge_cases_are_finite_and_positive(name):
    w = gw.fairgrad(edge_gramians()[name])
    assert bool(torch.isfinite(w).all()) and bool((w > 0).all())


def test_errors():
    with pytest.raises(ValueError, match=r"^`alpha` must be >= 0, got -1\.0\.$"):
        gw.fairgrad(G, alpha=-1.0)
    with pytest.raises(TypeError, match=r"^`alpha` must be a real number, got NoneType\.$"):
        gw.fairgrad(G, alpha=None)
