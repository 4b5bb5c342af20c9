"""epo: both modes of its LP derived by hand, the preference's scale, precisions and errors."""

import math

import pytest
import torch

import gramweight as gw
from tests.unit.weightings._common import gram

F64 = torch.float64


def test_balance_mode_hand_derived():
    # J = diag(1, 2), G = diag(1, 4); losses (1, 3), r = (1, 1): relative losses (1/4, 3/4),
    # mu = 1/4 log(1/2) + 3/4 log(3/2) > 0, a = log(2 * rel) - mu = (-0.824, 0.274),
    # Ca = (-0.824, 1.096): J = J* = {2}. Constraints beta_1 >= -0.824 (always) and
    # 4 beta_2 >= 0; the objective -0.824 beta_1 + 1.096 beta_2 is largest at beta = (0, 1).
    rel = (0.25, 0.75)
    mu = sum(p * math.log(2 * p) for p in rel)
    a = [math.log(2 * p) - mu for p in rel]
    assert a[0] < 0 < a[1] and 4 * a[1] > 0
    w = gw.epo(gram([[1.0, 0.0], [0.0, 2.0]]), losses=[1.0, 3.0], preference=[1.0, 1.0])
    assert w.tolist() == [0.0, 1.0]


def test_descent_mode_hand_derived():
    # on the ray (r * l = (2, 2)): max 1ᵀ G beta = 0.5 beta_1 + 3.5 beta_2 subject to
    # G beta >= 0; the first row, beta_1 - 0.5 beta_2 >= 0, binds: beta = (1/3, 2/3)
    G = torch.tensor([[1.0, -0.5], [-0.5, 4.0]], dtype=F64)
    w = gw.epo(G, losses=[2.0, 2.0], preference=[1.0, 1.0])
    torch.testing.assert_close(w, torch.tensor([1 / 3, 2 / 3], dtype=F64), rtol=0, atol=1e-14)
    # the same ray: r = (1, 2) with l = (2, 1), and any positive scale of r
    for r in ([1.0, 2.0], [0.5, 1.0], [10.0, 20.0]):
        w = gw.epo(G, losses=[2.0, 1.0], preference=r)
        torch.testing.assert_close(w, torch.tensor([1 / 3, 2 / 3], dtype=F64), rtol=0, atol=1e-14)


def test_balance_mode_constrains_the_worst_relative_loss():
    # three tasks off the ray: the worst relative loss (task 3) never rises, (G beta)_3 >= 0,
    # and a task off J rises no faster than the balance asks, (G beta)_j >= (G a)_j
    J = torch.tensor([[1.0, 0.2, 0.0], [-0.5, 1.0, 0.3], [0.1, -0.8, 1.0]], dtype=F64)
    G = J @ J.T
    losses, r = [1.0, 1.5, 2.5], [1.0, 1.0, 1.0]
    w = gw.epo(G, losses=losses, preference=r)
    rl = torch.tensor(losses, dtype=F64)
    rel = rl / rl.sum()
    mu = float((rel * torch.log(3 * rel)).sum())
    a = torch.log(3 * rel) - mu
    Ca = G @ a
    Gw = G @ w
    assert float(Gw[2]) >= -1e-12
    for j in range(3):
        if float(Ca[j]) <= 0 and j != 2:
            assert float(Gw[j]) >= float(Ca[j]) - 1e-12
    # the losses move towards the ray: the first-order change of mu along -wᵀJ is negative
    assert float(a @ Gw) > 0


def test_one_task_and_zero_gramian():
    assert gw.epo(torch.tensor([[4.0]], dtype=F64), losses=[3.0], preference=[2.0]).tolist() == [1.0]
    w = gw.epo(torch.zeros(3, 3, dtype=F64), losses=[1.0, 2.0, 3.0], preference=[1.0, 1.0, 1.0])
    assert abs(float(w.sum()) - 1) < 1e-15 and bool((w >= 0).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_every_precision_matches_float64(dtype):
    G = torch.tensor([[1.0, -0.5], [-0.5, 4.0]], dtype=F64)
    for losses in ([2.0, 2.0], [1.0, 3.0]):
        w = gw.epo(G.to(dtype), losses=losses, preference=[1.0, 1.0])
        assert w.dtype == dtype
        expected = gw.epo(G, losses=losses, preference=[1.0, 1.0])
        tol = {torch.float16: 2e-3, torch.bfloat16: 1e-2, torch.float32: 1e-6}.get(dtype, 1e-14)
        torch.testing.assert_close(w.double(), expected, rtol=0, atol=tol)


def test_errors():
    G = gram([[1.0, 0.0], [0.0, 2.0]])
    with pytest.raises(ValueError, match=r"^`losses` must be of length 2, got length 3\.$"):
        gw.epo(G, losses=[1.0, 2.0, 3.0], preference=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"^`losses` must be positive, got minimum 0\.$"):
        gw.epo(G, losses=[1.0, 0.0], preference=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"^`preference` must be positive, got minimum -1\.$"):
        gw.epo(G, losses=[1.0, 2.0], preference=[1.0, -1.0])
    with pytest.raises(ValueError, match=r"^`losses` must be finite \(no NaN or Inf\), got a non-finite entry\.$"):
        gw.epo(G, losses=[1.0, math.nan], preference=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"^`eps` must be >= 0, got -1\.0\.$"):
        gw.epo(G, losses=[1.0, 2.0], preference=[1.0, 1.0], eps=-1.0)
    with pytest.raises(TypeError, match="preference"):
        gw.epo(G, losses=[1.0, 2.0])


def test_losses_with_a_graph():
    G = torch.tensor([[1.0, -0.5], [-0.5, 4.0]], dtype=F64)
    losses = torch.tensor([1.0, 3.0], dtype=F64, requires_grad=True) * 1.0
    w = gw.epo(G, losses=losses, preference=[1.0, 1.0])
    assert not w.requires_grad
    assert torch.equal(w, gw.epo(G, losses=losses.detach(), preference=[1.0, 1.0]))
