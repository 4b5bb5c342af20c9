"""aligned_mtl: the aligned system, scales, edge cases and errors.

Its values are in test_expected_values.py.
"""

import pytest
import torch

import gramweight as gw
from tests.unit.weightings._common import G, J, edge_gramians


def test_aligned_gradients_are_orthogonal_with_equal_norms():
    # with pref = e_i the update is the i-th aligned gradient
    rows = torch.stack([gw.aligned_mtl(G, pref=torch.eye(2, dtype=torch.float64)[i]) @ J for i in range(2)])
    lam = torch.linalg.eigvalsh(G)
    expected = lam.min() * torch.eye(2, dtype=torch.float64)  # scale "min": norm² = λ_min
    assert torch.allclose(rows @ rows.T, expected, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("scale", ["min", "median", "rmse"])
def test_scales(scale):
    lam = torch.linalg.eigvalsh(G)
    sigma = {"min": lam.min(), "median": lam.median(), "rmse": lam.mean()}[scale]
    w = gw.aligned_mtl(G, scale=scale)
    assert torch.allclose(w, gw.aligned_mtl(G) * (sigma / lam.min()).sqrt(), rtol=1e-10)


@pytest.mark.parametrize("name", list(edge_gramians()))
def test_edge_cases_are_finite(name):
    assert bool(torch.isfinite(gw.aligned_mtl(edge_gramians()[name])).all())


def test_zero_gramian_returns_pref():
    assert torch.equal(gw.aligned_mtl(torch.zeros(3, 3, dtype=torch.float64)), torch.full((3,), 1 / 3, dtype=torch.float64))


def test_errors():
    with pytest.raises(ValueError, match=r"^`scale` must be one of \('min', 'median', 'rmse'\), got 'max'\.$"):
        gw.aligned_mtl(G, scale="max")
    with pytest.raises(ValueError, match=r"^`pref` must be of length 2, got length 1\.$"):
        gw.aligned_mtl(G, pref=[1.0])
