"""db_mtl: equal norms of the rescaled log-loss gradients, zero gradients, permutations, errors.

Its values are in test_expected_values.py.
"""

import pytest
import torch

import gramweight as gw
from tests.unit.weightings._common import G, edge_gramians, gram

LOSSES = [0.5, 2.0, 1.0]
G3 = gram([[1.0, 0.0, 2.0], [0.0, -3.0, 1.0], [2.0, 1.0, 0.0]])


def test_every_term_has_the_largest_log_loss_gradient_norm():
    w = gw.db_mtl(G3, losses=LOSSES)
    norms = G3.diagonal().sqrt()
    terms = w * norms  # ‖w_i g_i‖
    assert torch.allclose(terms, (norms / torch.tensor(LOSSES, dtype=torch.float64)).max().expand(3))


def test_zero_gradient_gets_zero_weight():
    Gm = gram([[1.0, 2.0], [0.0, 0.0], [-3.0, 1.0]])
    w = gw.db_mtl(Gm, losses=[1.0, 0.1, 2.0])
    assert float(w[1]) == 0.0 and bool(torch.isfinite(w).all())
    assert torch.equal(gw.db_mtl(torch.zeros(3, 3, dtype=torch.float64), losses=LOSSES), torch.zeros(3, dtype=torch.float64))


def test_permuting_losses_with_the_gramian_permutes_the_weights():
    perm = torch.tensor([2, 0, 1])
    w = gw.db_mtl(G3, losses=LOSSES)
    wp = gw.db_mtl(G3[perm][:, perm], losses=torch.tensor(LOSSES, dtype=torch.float64)[perm])
    assert torch.allclose(wp, w[perm], rtol=1e-14)


def test_common_loss_scale_scales_the_update():
    # w(G, c L) = w(G, L) / c: the log-loss gradients are divided by c
    w = gw.db_mtl(G3, losses=LOSSES)
    assert torch.allclose(gw.db_mtl(G3, losses=[4 * x for x in LOSSES]), w / 4, rtol=1e-14)


@pytest.mark.parametrize("name", list(edge_gramians()))
def test_edge_cases_are_finite(name):
    Gm = edge_gramians()[name]
    w = gw.db_mtl(Gm, losses=[1.0 + i for i in range(Gm.shape[0])])
    assert bool(torch.isfinite(w).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_precisions(dtype):
    expected = gw.db_mtl(G3, losses=LOSSES)
    w = gw.db_mtl(G3.to(dtype), losses=LOSSES)
    assert w.dtype == dtype
    rtol = 4 * torch.finfo(dtype).eps
    assert torch.allclose(w.double(), expected, rtol=rtol)


def test_tensor_losses_with_a_graph():
    losses = torch.tensor([0.5, 2.0], dtype=torch.float64, requires_grad=True)
    w = gw.db_mtl(G, losses=losses)
    assert torch.allclose(w, gw.db_mtl(G, losses=[0.5, 2.0])) and not w.requires_grad


def test_errors():
    with pytest.raises(ValueError, match=r"^`losses` must be of length 2, got length 3\.$"):
        gw.db_mtl(G, losses=LOSSES)
    with pytest.raises(ValueError, match=r"^`losses` must be positive, got minimum 0\.$"):
        gw.db_mtl(G, losses=[1.0, 0.0])
    with pytest.raises(ValueError, match=r"^`losses` must be finite \(no NaN or Inf\), got a non-finite entry\.$"):
        gw.db_mtl(G, losses=[1.0, float("nan")])
    with pytest.raises(TypeError, match=r"^db_mtl\(\) missing 1 required keyword-only argument: 'losses'$"):
        gw.db_mtl(G)
