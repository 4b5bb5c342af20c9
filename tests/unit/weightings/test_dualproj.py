"""dualproj: the cone boundary, a preference inside the cone, edge cases and errors.

Its values on the two-task example are in test_expected_values.py.
"""

import pytest
import torch

import gramweight as gw
from tests.unit.weightings._common import G, edge_gramians


def test_exact_projection_lies_on_the_cone_boundary():
    # mean = (1/2, 1/2) conflicts with g1 ((G u)_1 = -2): w1 is raised until (G w)_1 = 0
    w = gw.dualproj(G, reg_eps=0.0)
    assert abs(float((G @ w)[0])) < 1e-12


def test_pref_inside_the_cone_is_kept():
    pref = torch.tensor([0.3, 0.5], dtype=torch.float64)  # G @ pref = [-5.6, 12.4]: conflicts
    w = gw.dualproj(G, pref=[0.8, 0.6], reg_eps=0.0)      # G @ [0.8, .6] = [1.2, 5.2]: inside
    assert torch.allclose(w, torch.tensor([0.8, 0.6], dtype=torch.float64), rtol=1e-12)
    assert float((G @ gw.dualproj(G, pref=pref, reg_eps=0.0)).min()) > -1e-12


@pytest.mark.parametrize("name", list(edge_gramians()))
def test_edge_cases(name):
    Gm = edge_gramians()[name]
    w = gw.dualproj(Gm)
    assert bool(torch.isfinite(w).all())
    w0 = gw.dualproj(Gm, norm_eps=0.0, reg_eps=0.0)
    assert float((Gm @ w0).min()) >= -1e-9 * float(Gm.abs().max()) * float(w0.abs().sum())


def test_errors():
    with pytest.raises(ValueError, match=r"^`pref` must be finite \(no NaN or Inf\), got a non-finite entry\.$"):
        gw.dualproj(G, pref=[1.0, float("nan")])
    with pytest.raises(ValueError, match=r"^`reg_eps` must be >= 0, got -1\.0\.$"):
        gw.dualproj(G, reg_eps=-1.0)
