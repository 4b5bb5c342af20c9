"""mgda: the min-norm property, edge cases and errors.

Its values for every norm are in test_expected_values.py.
"""

import pytest
import torch

import gramweight as gw
from tests.unit.weightings._common import G, edge_gramians

def test_min_norm_property_holds_exactly():
    w = gw.mgda(G)
    Gw = G @ w
    assert float(Gw.min()) >= float(w @ Gw) * (1 - 1e-10)


def test_pareto_stationary_gives_zero_update():
    Gs = torch.tensor([[1.0, -2.0], [-2.0, 4.0]], dtype=torch.float64)  # g2 = -2 g1
    w = gw.mgda(Gs)
    assert float(w @ Gs @ w) < 1e-12


@pytest.mark.parametrize("name", list(edge_gramians()))
def test_edge_cases_on_the_simplex_and_non_conflicting(name):
    Gm = edge_gramians()[name]
    w = gw.mgda(Gm)
    assert bool(torch.isfinite(w).all()) and bool((w >= 0).all())
    assert abs(float(w.sum()) - 1) < 1e-12
    assert float((Gm @ w).min()) >= -1e-9 * float(Gm.abs().max())


def test_dominant_row_is_solved_at_its_own_scale():
    Jd = torch.tensor([[-5e5, -1.3e5], [-0.15, 0.25], [-1.97, -0.85]], dtype=torch.float64)
    w = gw.mgda(Jd @ Jd.T)
    update = w @ Jd
    # the min-norm point is (almost) the second gradient alone
    assert float(update.norm()) <= float(Jd[1].norm()) * (1 + 1e-9)


def test_errors():
    with pytest.raises(ValueError, match=r"^`norm` must be one of \('none', 'l2', 'loss', 'loss\+'\), got 'L2'\.$"):
        gw.mgda(G, norm="L2")
    with pytest.raises(ValueError, match=r"^`losses` must be given for norm='loss', got None\.$"):
        gw.mgda(G, norm="loss")
    with pytest.raises(ValueError, match=r"^`losses` must be given for norm='loss\+', got None\.$"):
        gw.mgda(G, norm="loss+")
    with pytest.raises(ValueError, match=r"^`losses` must be of length 2, got length 3\.$"):
        gw.mgda(G, norm="loss", losses=[1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match=r"^`losses` must be positive, got minimum 0\.$"):
        gw.mgda(G, norm="loss", losses=[1.0, 0.0])
    with pytest.raises(ValueError, match=r"^`losses` must be a 1-D vector, got shape \(1, 2\)\.$"):
        gw.mgda(G, norm="loss+", losses=torch.ones(1, 2))
    with pytest.raises(ValueError, match=r"^`tol` must be in \[0, 1\), got 1\.0\.$"):
        gw.mgda(G, tol=1.0)
    with pytest.raises(ValueError, match=r"^`max_iters` must be >= 1, got 0\.$"):
        gw.mgda(G, max_iters=0)


def test_epsilon_is_a_deprecated_alias_of_tol():
    # the tolerance naming rule (docs/concepts.md): a solver's stopping tolerance is `tol`
    G = torch.tensor([[4.0, -1.0], [-1.0, 1.0]], dtype=torch.float64)
    with pytest.warns(DeprecationWarning, match="mgda's `epsilon` is now `tol`"):
        w = gw.mgda(G, epsilon=1e-3)
    assert torch.equal(w, gw.mgda(G, tol=1e-3))
