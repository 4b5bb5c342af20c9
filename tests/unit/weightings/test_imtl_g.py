"""imtl_g: the issue's value, the defining property, edge cases."""

import pytest
import torch

import gramweight as gw
from tests.unit.weightings._common import G, edge_gramians, gram


def test_issue_values():
    assert torch.allclose(gw.imtl_g(G), torch.tensor([0.5923, 0.4077], dtype=torch.float64), atol=1e-4)


def test_equal_projections_on_unit_gradients():
    Gm = gram([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [2.0, -1.0, 1.0]])
    w = gw.imtl_g(Gm)
    proj = (Gm @ w) / Gm.diagonal().sqrt()
    assert torch.allclose(proj, proj[0].expand(3), rtol=1e-10)
    assert abs(float(w.sum()) - 1) < 1e-12


def test_closed_form_by_hand():
    # G^-1 = [[38, 22], [22, 18]] / 200; d = (sqrt 18, sqrt 38)
    d = torch.tensor([18.0, 38.0], dtype=torch.float64).sqrt()
    v = torch.tensor([[38.0, 22.0], [22.0, 18.0]], dtype=torch.float64) @ d
    assert torch.allclose(gw.imtl_g(G), v / v.sum(), rtol=1e-12)


@pytest.mark.parametrize("name", list(edge_gramians()))
def test_edge_cases_are_finite(name):
    assert bool(torch.isfinite(gw.imtl_g(edge_gramians()[name])).all())


def test_zero_and_scaled():
    assert torch.equal(gw.imtl_g(torch.zeros(2, 2, dtype=torch.float64)), torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(gw.imtl_g(G * 1e-15), gw.imtl_g(G), rtol=1e-10)
    assert torch.allclose(gw.imtl_g(G * 1e15), gw.imtl_g(G), rtol=1e-10)
    assert torch.allclose(gw.imtl_g(torch.tensor([[3.0]], dtype=torch.float64)), torch.ones(1, dtype=torch.float64))


def test_errors():
    with pytest.raises(ValueError, match=r"^`G` must be a square matrix, got shape \(2, 3\)\.$"):
        gw.imtl_g(torch.ones(2, 3))
