"""pmtl: the main and init phases derived by hand, the active set, precisions and errors."""

import math

import pytest
import torch

import gramweight as gw

F64 = torch.float64
I2 = torch.eye(2, dtype=F64)  # J = I: the weights are the update itself
U = [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
S = 1 / math.sqrt(2)


def test_no_active_constraint_is_mgda():
    # losses (1, 1) lie on u_2 = (1, 1)/√2: both constraints (u_j - u_2)ᵀ l/‖l‖ = 1/√2 - 1 < 0;
    # the min-norm point of {e1, e2} is (1/2, 1/2)
    w = gw.pmtl(I2, losses=[1.0, 1.0], preferences=U, index=1)
    torch.testing.assert_close(w, torch.tensor([0.5, 0.5], dtype=F64), rtol=0, atol=1e-15)


def test_active_constraint_hand_derived():
    # losses (1, 3): u_3 - u_2 = p = (-1/√2, 1 - 1/√2), pᵀ(1, 3) > 0, active; u_1's is not.
    # The min-norm point of the hull of {e1, e2, p}: on the segment e1-p, at
    # t = e1ᵀ(e1 - p) / ‖e1 - p‖², and e2 lies on the far side (e2ᵀx >= ‖x‖²)
    p = (-S, 1 - S)
    assert p[0] * 1 + p[1] * 3 > 0 and (1 - S) * 1 - S * 3 < 0
    d = (1 - p[0], -p[1])
    t = d[0] / (d[0] ** 2 + d[1] ** 2)
    x = (1 - t * d[0], -t * d[1])
    assert x[1] >= x[0] ** 2 + x[1] ** 2
    w = gw.pmtl(I2, losses=[1.0, 3.0], preferences=U, index=1)
    torch.testing.assert_close(w, torch.tensor(x, dtype=F64), rtol=0, atol=1e-14)


def test_init_phase_hand_derived():
    # only u_3's constraint is violated: its gradient p alone, weight 1
    w = gw.pmtl(I2, losses=[1.0, 3.0], preferences=U, index=1, phase="init")
    torch.testing.assert_close(w, torch.tensor([-S, 1 - S], dtype=F64), rtol=0, atol=1e-15)
    # feasible: exactly zero, the signal to switch to the main phase
    w = gw.pmtl(I2, losses=[1.0, 1.0], preferences=U, index=1, phase="init")
    assert w.tolist() == [0.0, 0.0]


def test_eps_activates_constraints_near_the_boundary():
    # losses (1, 1): both constraints at 1/√2 - 1 = -0.29; eps = 0.3 activates both, and
    # the rows p1 = u_1 - u_2 = (1 - 1/√2, -1/√2) and p3 = u_3 - u_2 join e1, e2; since
    # p1 + p3 + (√2 - 1)(e1 + e2) = 0, their hull holds 0, so w @ J = 0
    w = gw.pmtl(I2, losses=[1.0, 1.0], preferences=U, index=1, eps=0.3)
    assert float(w.norm()) < 1e-12
    w = gw.pmtl(I2, losses=[1.0, 1.0], preferences=U, index=1, eps=0.2)
    torch.testing.assert_close(w, torch.tensor([0.5, 0.5], dtype=F64), rtol=0, atol=1e-15)


def test_parallel_preferences_are_left_out():
    # u_4 = 3 u_2 gives 0 <= 0; with it or without it, the same weights
    w = gw.pmtl(I2, losses=[1.0, 3.0], preferences=U + [[3.0, 3.0]], index=1)
    torch.testing.assert_close(w, gw.pmtl(I2, losses=[1.0, 3.0], preferences=U, index=1))
    assert gw.pmtl(torch.tensor([[4.0]], dtype=F64), losses=[2.0], preferences=[[1.0], [2.0]], index=0).tolist() == [1.0]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_every_precision_matches_float64(dtype):
    G = torch.tensor([[2.0, -0.5], [-0.5, 1.0]], dtype=F64)
    expected = gw.pmtl(G, losses=[1.0, 3.0], preferences=U, index=1)
    w = gw.pmtl(G.to(dtype), losses=[1.0, 3.0], preferences=U, index=1)
    assert w.dtype == dtype
    tol = {torch.float16: 2e-3, torch.bfloat16: 1e-2, torch.float32: 1e-6}.get(dtype, 1e-14)
    torch.testing.assert_close(w.double(), expected, rtol=0, atol=tol)


def test_errors():
    kw = {"losses": [1.0, 3.0], "preferences": U, "index": 1}
    with pytest.raises(ValueError, match=r"^`preferences` must be of shape \(K, 2\) with K >= 1, got shape \(3, 3\)\.$"):
        gw.pmtl(I2, **{**kw, "preferences": [[1.0, 0.0, 0.0]] * 3})
    with pytest.raises(ValueError, match=r"^`preferences` must be of shape \(K, 2\), got rows of unequal lengths\.$"):
        gw.pmtl(I2, **{**kw, "preferences": [[1.0, 0.0], [1.0]]})
    with pytest.raises(ValueError, match=r"^`preferences` must be non-zero in every row, got a zero row\.$"):
        gw.pmtl(I2, **{**kw, "preferences": [[1.0, 0.0], [0.0, 0.0]]})
    with pytest.raises(ValueError, match=r"^`preferences` must be finite \(no NaN or Inf\), got a non-finite entry\.$"):
        gw.pmtl(I2, **{**kw, "preferences": torch.tensor([[1.0, math.inf]])})
    with pytest.raises(TypeError, match=r"^`preferences` must be a tensor or a sequence of rows of numbers, got str\.$"):
        gw.pmtl(I2, **{**kw, "preferences": "uniform"})
    with pytest.raises(ValueError, match=r"^`index` must be in \[0, 2\], got 3\.$"):
        gw.pmtl(I2, **{**kw, "index": 3})
    with pytest.raises(TypeError, match=r"^`index` must be an int, got float\.$"):
        gw.pmtl(I2, **{**kw, "index": 1.0})
    with pytest.raises(ValueError, match=r"^`phase` must be one of \('main', 'init'\), got 'start'\.$"):
        gw.pmtl(I2, **kw, phase="start")
    with pytest.raises(ValueError, match=r"^`losses` must be positive, got minimum -1\.$"):
        gw.pmtl(I2, **{**kw, "losses": [1.0, -1.0]})
    with pytest.raises(ValueError, match=r"^`eps` must be >= 0, got -0\.1\.$"):
        gw.pmtl(I2, **kw, eps=-0.1)
    with pytest.raises(ValueError, match=r"^`max_iters` must be >= 1, got 0\.$"):
        gw.pmtl(I2, **kw, max_iters=0)


def test_losses_with_a_graph():
    losses = torch.tensor([1.0, 3.0], dtype=F64, requires_grad=True) * 1.0
    w = gw.pmtl(I2, losses=losses, preferences=U, index=1)
    assert not w.requires_grad
    assert torch.equal(w, gw.pmtl(I2, losses=losses.detach(), preferences=U, index=1))
