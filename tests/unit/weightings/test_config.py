"""config: equal cosines, the rank cut-off, edge cases and errors.

Its values are in test_expected_values.py.
"""

import pytest
import torch

import gramweight as gw
from tests.unit.weightings._common import G, edge_gramians, gram


def test_equal_cosines_and_length():
    Jm = torch.tensor([[1.0, 2.0, 0.0, 1.0], [0.0, -1.0, 3.0, 0.0], [2.0, 0.0, -1.0, 1.0]], dtype=torch.float64)
    update = gw.config(Jm @ Jm.T) @ Jm
    cos = (Jm @ update) / (Jm.norm(dim=1) * update.norm())
    assert torch.allclose(cos, cos[0].expand(3), rtol=1e-10)
    unit = update / update.norm()
    assert torch.allclose(update.norm(), (Jm @ unit).sum(), rtol=1e-10)


def test_pref_sets_the_cosines_and_its_scale_does_not_matter():
    Jm = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    update = gw.config(Jm @ Jm.T, pref=[1.0, 2.0]) @ Jm
    assert torch.allclose(update / update[0], torch.tensor([1.0, 2.0, 0.0], dtype=torch.float64))
    assert torch.allclose(gw.config(G, pref=[3.0, 3.0]), gw.config(G), rtol=1e-12)


def test_opposite_gradients_have_no_direction():
    assert torch.equal(gw.config(gram([[1.0, 2.0], [-3.0, -6.0]])), torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("name", list(edge_gramians()))
def test_edge_cases_are_finite(name):
    assert bool(torch.isfinite(gw.config(edge_gramians()[name])).all())


def test_scale_invariant_and_zero():
    assert torch.allclose(gw.config(G * 1e-15), gw.config(G), rtol=1e-10)
    assert torch.allclose(gw.config(G * 1e15), gw.config(G), rtol=1e-10)
    assert torch.equal(gw.config(torch.zeros(2, 2, dtype=torch.float64)), torch.zeros(2, dtype=torch.float64))


def test_errors():
    with pytest.raises(ValueError, match=r"^`pref` must be of length 2, got length 3\.$"):
        gw.config(G, pref=[1.0, 1.0, 1.0])
