"""imtl_g: the defining property, edge cases and errors.

Its values are in test_expected_values.py.
"""

import pytest
import torch

import gramweight as gw
from tests.unit.weightings._common import G, edge_gramians, gram


def test_equal_projections_on_unit_gradients():
    Gm = gram([[1.0, 2.0, 0.0], [0.0, 1.0, 3.0], [2.0, -1.0, 1.0]])
    w = gw.imtl_g(Gm)
    proj = (Gm @ w) / Gm.diagonal().sqrt()
    assert torch.allclose(proj, proj[0].expand(3), rtol=1e-10)
    assert abs(float(w.sum()) - 1) < 1e-12


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
