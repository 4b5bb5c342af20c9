"""nash_mtl: the bargaining equation, the state, clipping and errors.

Its values are in test_expected_values.py.
"""

import pytest
import torch

import gramweight as gw
from gramweight.testing import assert_pure
from tests.unit.weightings._common import G, edge_gramians


def test_one_call_is_one_step():
    _, state = gw.nash_mtl(G, gw.nash_mtl_init(2))
    assert int(state.step) == 1


def test_bargaining_equation_without_clipping():
    w, state = gw.nash_mtl(G, gw.nash_mtl_init(2), max_norm=0.0)
    assert torch.allclose((G @ w) * w, torch.ones(2, dtype=torch.float64), rtol=1e-14, atol=0.0)
    assert torch.allclose(state.weights, w, rtol=1e-12)


def test_a_small_gradient_is_not_a_zero_one():
    # J = diag(1000, 1), G = diag(1e6, 1): w_i G_ii w_i = 1, w_i = G_ii^(-1/2), so
    # w = (1e-3, 1) and the update (1, 1) (hand); the relative 1e-6 of the largest diagonal
    # gave w_1 = 0.7071
    J = torch.tensor([[1000.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    w, _ = gw.nash_mtl(J @ J.T, gw.nash_mtl_init(2), max_norm=0.0)
    assert torch.allclose(w, torch.tensor([1e-3, 1.0], dtype=torch.float64), rtol=1e-14, atol=0.0)
    assert torch.allclose(w @ J, torch.ones(2, dtype=torch.float64), rtol=1e-14, atol=0.0)


def test_float32_is_the_float64_answer_rounded():
    # the running example: (0.591461152, 0.407071483) (hand, W_BALANCE of
    # test_expected_values.py), within float32's round-off
    w, _ = gw.nash_mtl(G.float(), gw.nash_mtl_init(2), max_norm=0.0)
    exact = torch.tensor([0.591461152, 0.407071483], dtype=torch.float64)
    assert torch.allclose(w.double(), exact, rtol=2e-7, atol=0.0)


def test_clipping_bounds_the_update_norm():
    for max_norm in (0.1, 1.0, 100.0):
        w, _ = gw.nash_mtl(G, gw.nash_mtl_init(2), max_norm=max_norm)
        free, _ = gw.nash_mtl(G, gw.nash_mtl_init(2), max_norm=0.0)
        norm = float((free @ G @ free).sqrt())
        assert abs(float((w @ G @ w).sqrt()) - min(norm, max_norm)) < 1e-10


def test_update_every_reuses_the_weights():
    state = gw.nash_mtl_init(2)
    w1, state = gw.nash_mtl(G, state, update_every=2, max_norm=0.0)
    w2, state = gw.nash_mtl(G * 4, state, update_every=2, max_norm=0.0)  # step 1: reused
    assert torch.equal(w1, w2)
    w3, state = gw.nash_mtl(G * 4, state, update_every=2, max_norm=0.0)  # step 2: solved again
    assert torch.allclose(w3, w1 / 2, rtol=1e-9)
    assert int(state.step) == 3


def test_pure_and_state_untouched():
    state = gw.nash_mtl_init(2)
    assert_pure(gw.nash_mtl, G, state)
    assert int(state.step) == 0


def test_init():
    state = gw.nash_mtl_init(3)
    assert int(state.step) == 0 and state.step.dtype == torch.int64
    assert torch.equal(state.weights, torch.ones(3))
    state = gw.nash_mtl_init(3, dtype=torch.float64, device="cpu")
    assert state.weights.dtype == torch.float64 and state.step.device == torch.device("cpu")


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
def test_state_follows_the_gramian(dtype):
    w, state = gw.nash_mtl(G.to(dtype), gw.nash_mtl_init(2, dtype=torch.float64))
    assert w.dtype == dtype and state.weights.dtype == dtype and state.step.dtype == torch.int64


@pytest.mark.parametrize("name", list(edge_gramians()))
def test_edge_cases_are_finite(name):
    Gm = edge_gramians()[name]
    w, state = gw.nash_mtl(Gm, gw.nash_mtl_init(Gm.shape[0]))
    assert bool(torch.isfinite(w).all()) and bool(torch.isfinite(state.weights).all())


def test_errors():
    with pytest.raises(ValueError, match=r"^`state.weights` must be of shape \(3,\) \(state built for another m or K\?\), got shape \(2,\)\.$"):
        gw.nash_mtl(torch.eye(3, dtype=torch.float64), gw.nash_mtl_init(2))
    with pytest.raises(TypeError, match=r"^`state` must be a NashMTLState \(from the matching _init\), got tuple\.$"):
        gw.nash_mtl(G, (torch.tensor(0), torch.ones(2)))
    with pytest.raises(ValueError, match=r"^`max_norm` must be >= 0, got -1\.0\.$"):
        gw.nash_mtl(G, gw.nash_mtl_init(2), max_norm=-1.0)
    with pytest.raises(ValueError, match=r"^`update_every` must be >= 1, got 0\.$"):
        gw.nash_mtl(G, gw.nash_mtl_init(2), update_every=0)
    with pytest.raises(ValueError, match=r"^`n_iters` must be >= 1, got 0\.$"):
        gw.nash_mtl(G, gw.nash_mtl_init(2), n_iters=0)
    with pytest.raises(ValueError, match=r"^`m` must be >= 1, got 0\.$"):
        gw.nash_mtl_init(0)
