"""upgrad: edge cases, exactness, dtypes and errors.

Its values are in test_expected_values.py.
"""

import pytest
import torch

import gramweight as gw
from tests.unit.weightings._common import G, J, edge_gramians


def test_non_conflicting_vectors_are_left_alone():
    Gp = torch.tensor([[2.0, 1.0], [1.0, 3.0]], dtype=torch.float64)
    assert torch.allclose(gw.upgrad(Gp), torch.tensor([0.5, 0.5], dtype=torch.float64), rtol=1e-12)
    pref = torch.tensor([0.2, 0.9], dtype=torch.float64)
    assert torch.allclose(gw.upgrad(Gp, pref=pref), pref, rtol=1e-12)


@pytest.mark.parametrize("name", list(edge_gramians()))
def test_edge_cases_finite_and_non_conflicting_when_exact(name):
    Gm = edge_gramians()[name]
    w = gw.upgrad(Gm)
    assert w.shape == (Gm.shape[0],) and bool(torch.isfinite(w).all())
    w0 = gw.upgrad(Gm, norm_eps=0.0, reg_eps=0.0)
    assert bool(torch.isfinite(w0).all())
    assert float((Gm @ w0).min()) >= -1e-9 * float(Gm.abs().max()) * float(w0.abs().sum())


def test_zero_and_tiny_gramians_return_pref():
    assert torch.equal(gw.upgrad(torch.zeros(3, 3, dtype=torch.float64)), torch.full((3,), 1 / 3, dtype=torch.float64))
    # trace below norm_eps: the gradients count as zero (TorchJD's convention)
    assert torch.allclose(gw.upgrad(G * 1e-15), torch.tensor([0.5, 0.5], dtype=torch.float64))
    # without the threshold, the scale does not matter
    assert torch.allclose(gw.upgrad(G * 1e-15, norm_eps=0.0), gw.upgrad(G), rtol=1e-10)
    assert torch.allclose(gw.upgrad(G * 1e15), gw.upgrad(G), rtol=1e-10)


def test_float32_and_grad_free():
    w = gw.upgrad(G.float().requires_grad_())
    assert w.dtype == torch.float32 and not w.requires_grad
    assert torch.allclose(w, torch.tensor([1.1109, 0.7894]), atol=1e-4)


def test_update_of_the_two_task_example_is_non_conflicting():
    assert bool((J @ (gw.upgrad(G) @ J) > 0).all())


def test_errors():
    with pytest.raises(ValueError, match=r"^`pref` must be of length 2, got length 3\.$"):
        gw.upgrad(G, pref=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"^`norm_eps` must be >= 0, got -1\.0\.$"):
        gw.upgrad(G, norm_eps=-1.0)
    with pytest.raises(ValueError, match=r"^`reg_eps` must be >= 0, got -0\.1\.$"):
        gw.upgrad(G, reg_eps=-0.1)
    with pytest.raises(ValueError, match=r"^`G` must be a square matrix, got shape \(2, 3\)\.$"):
        gw.upgrad(torch.ones(2, 3))
    with pytest.raises(TypeError):
        gw.upgrad(G, 0.5)
