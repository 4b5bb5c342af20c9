"""fairgrad: the equation, alpha, the issue's examples, precision, edge cases and errors.

Its values on the running example are in test_expected_values.py.
"""

import pytest
import torch

import gramweight as gw
from tests.unit.weightings._common import G, edge_gramians, gram


@pytest.mark.parametrize("alpha", [0.5, 1.0, 2.0, 5.0])
def test_solves_the_equation(alpha):
    Gm = gram([[1.0, 0.0, 0.5], [-0.5, 1.0, 0.0], [0.2, -0.3, 1.0]])
    w = gw.fairgrad(Gm, alpha=alpha)
    assert bool((w > 0).all())
    assert torch.allclose(Gm @ w, w ** (-1 / alpha), rtol=1e-14, atol=0.0)


@pytest.mark.parametrize("alpha", [1.0, 3.0])
def test_a_small_gradient_is_not_a_zero_one(alpha):
    # J = diag(1000, 1), G = diag(1e6, 1): each task's equation is alone,
    # G_ii w_i = w_i^(-1/α), so w_i = G_ii^(-α/(1+α)); for α = 1, w = (1e-3, 1) and the
    # update J^T w = (1, 1) (hand). A relative term of the largest diagonal (1e-6 · 1e6 = 1)
    # doubled the second task's diagonal and gave w_1 = 0.7071.
    J = torch.tensor([[1000.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    expected = torch.tensor([1e6, 1.0], dtype=torch.float64) ** (-alpha / (1 + alpha))
    w = gw.fairgrad(J @ J.T, alpha=alpha)
    assert torch.allclose(w, expected, rtol=1e-14, atol=0.0)


def test_float32_is_the_float64_answer_rounded():
    # the running example in float32: the exact answer (0.591461152, 0.407071483) (hand, see
    # W_BALANCE in test_expected_values.py) rounded; the 1e-4 float32 regulariser gave
    # (0.5912, 0.4069). TorchJD 0.18's float32 FairGradWeighting(1.0) is within 1e-6 too.
    w = gw.fairgrad(G.float(), alpha=1.0)
    exact = torch.tensor([0.591461152, 0.407071483], dtype=torch.float64)
    assert w.dtype == torch.float32
    assert torch.allclose(w.double(), exact, rtol=2e-7, atol=0.0)


def test_random_problems_against_torchjd():
    # the issue's check: TorchJD 0.18's FairGradWeighting (scipy least squares) reaches a
    # residual of 1e-7 on i.i.d. normal 5 x 5 problems; the two agree to that, and this one
    # meets the equation to round-off
    aggregation = pytest.importorskip("torchjd.aggregation")
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        J = torch.randn(5, 5, generator=gen, dtype=torch.float64)
        Gm = J @ J.T
        w = gw.fairgrad(Gm, alpha=1.0)
        peer = aggregation.FairGradWeighting(alpha=1.0)(Gm)
        assert torch.allclose(w, peer.to(w), rtol=1e-5, atol=0.0)
        assert float(((Gm @ w) * w - 1.0).abs().max()) < 1e-12


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


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("alpha", [1.0, 5.0])
def test_no_solution_gives_a_bounded_update(dtype, alpha):
    # opposite gradients and a zero one (edge_gramians "opposite", "zero_row"): the weights
    # are finite and the update J^T w, with the weights in the dtype, is at most a few
    # gradients long (the third, free task alone has an update of norm < 2)
    for name in ("opposite", "zero_row"):
        Gm = edge_gramians()[name]
        w = gw.fairgrad(Gm.to(dtype), alpha=alpha)
        assert w.dtype == dtype and bool(torch.isfinite(w).all()) and bool((w > 0).all())
        w64 = w.double()
        norm = float((w64 @ Gm @ w64).clamp_min(0).sqrt())
        assert norm < 3.0 * float(Gm.diagonal().max().sqrt()), (name, norm)


def test_errors():
    with pytest.raises(ValueError, match=r"^`alpha` must be >= 0, got -1\.0\.$"):
        gw.fairgrad(G, alpha=-1.0)
    with pytest.raises(TypeError, match=r"^`alpha` must be a real number, got NoneType\.$"):
        gw.fairgrad(G, alpha=None)
