"""modo and modo_init: the state, cross matrices, edge cases, errors.

Its projected steps by hand are in test_expected_values.py.
"""

import io

import pytest
import torch

import gramweight as gw
from gramweight.testing import assert_pure

G2 = torch.tensor([[18.0, -22.0], [-22.0, 38.0]], dtype=torch.float64)


def test_the_state_holds_the_new_weights():
    w, state = gw.modo(G2, gw.modo_init(2, dtype=torch.float64), gamma=0.01)
    assert torch.equal(state.weights, w)


def test_cross_matrix_need_not_be_symmetric():
    # (a non-symmetric M by hand: test_expected_values.py, "modo-cross")
    M = torch.tensor([[1.0, 2.0], [-3.0, -1.0]], dtype=torch.float64)  # negative diagonal: fine
    w, _ = gw.modo(M, gw.modo_init(2))
    assert abs(float(w.sum()) - 1) < 1e-15 and bool((w >= 0).all())


def test_one_task():
    w, _ = gw.modo(torch.tensor([[5.0]]), gw.modo_init(1))
    assert torch.equal(w, torch.tensor([1.0]))


@pytest.mark.parametrize("scale", [0.0, 1e-15, 1e15])
def test_extreme_scales_stay_on_the_simplex(scale):
    J = torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    state = gw.modo_init(4)
    for _ in range(3):
        w, state = gw.modo(J @ J.T * scale, state)
        assert bool((w >= 0).all()) and abs(float(w.sum()) - 1) < 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    w, state = gw.modo(G2.to(dtype), gw.modo_init(2), gamma=0.01)
    assert w.dtype == dtype and state.weights.dtype == dtype


def test_pure_and_saveable():
    _, state = assert_pure(gw.modo, G2, gw.modo_init(2), gamma=0.01)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    assert torch.equal(torch.load(buffer).weights, state.weights)


def test_init():
    assert torch.equal(gw.modo_init(4).weights, torch.full((4,), 0.25))
    with pytest.raises(ValueError, match="`m` must be >= 1, got 0."):
        gw.modo_init(0)


def test_errors():
    state = gw.modo_init(2)
    with pytest.raises(ValueError, match=r"`M` must be a square matrix, got shape \(2, 3\)\."):
        gw.modo(torch.zeros(2, 3), state)
    with pytest.raises(ValueError, match="`M` must be finite"):
        gw.modo(torch.tensor([[1.0, float("inf")], [0.0, 1.0]]), state)
    with pytest.raises(ValueError, match=r"`state.weights` must be of shape \(2,\)"):
        gw.modo(G2, gw.modo_init(3))
    with pytest.raises(TypeError, match="`state` must be a MoDoState"):
        gw.modo(G2, gw.sdmgrad_init(2))
    with pytest.raises(ValueError, match="`gamma` must be > 0, got 0.0."):
        gw.modo(G2, state, gamma=0.0)
    with pytest.raises(ValueError, match="`rho` must be >= 0, got -0.1."):
        gw.modo(G2, state, rho=-0.1)


def test_a_matrix_with_a_graph_is_detached():
    J = torch.randn(3, 5, generator=torch.Generator().manual_seed(7), requires_grad=True)
    w, state = gw.modo(J @ J.T, gw.modo_init(3))
    assert not w.requires_grad and not state.weights.requires_grad
