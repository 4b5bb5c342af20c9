"""sdmgrad and sdmgrad_init: inner steps by hand, preference, edge cases, errors."""

import io
import math

import pytest
import torch

import gramweight as gw
from gramweight.testing import assert_pure

G2 = torch.tensor([[18.0, -22.0], [-22.0, 38.0]], dtype=torch.float64)


def project2(x, y):
    """Projection of (x, y) onto the 2-simplex."""
    t = min(max((1 + x - y) / 2, 0.0), 1.0)
    return t, 1 - t


def by_hand(M, w, lr, momentum, n_iters, lam, pref):
    s = (math.sqrt(max(M[0][0], 0)) + math.sqrt(max(M[1][1], 0))) / 2
    c = 1 / (s * s + 1e-8)
    v = (0.0, 0.0)
    for _ in range(n_iters):
        d = (w[0] + lam * pref[0], w[1] + lam * pref[1])
        g = (c * (M[0][0] * d[0] + M[0][1] * d[1]), c * (M[1][0] * d[0] + M[1][1] * d[1]))
        v = (momentum * v[0] + g[0], momentum * v[1] + g[1])
        w = project2(w[0] - lr * v[0], w[1] - lr * v[1])
    out = ((w[0] + lam * pref[0]) / (1 + lam), (w[1] + lam * pref[1]) / (1 + lam))
    return out, w


@pytest.mark.parametrize(
    ("lr", "momentum", "n_iters", "lam"),
    [(1.0, 0.5, 1, 0.3), (0.3, 0.5, 3, 0.3), (0.1, 0.9, 5, 0.0), (10.0, 0.5, 20, 0.3)],
)
def test_inner_steps_by_hand(lr, momentum, n_iters, lam):
    M = [[18.0, -22.0], [-22.0, 38.0]]
    expected, w_state = by_hand(M, (0.5, 0.5), lr, momentum, n_iters, lam, (0.5, 0.5))
    options = {"lr": lr, "momentum": momentum, "n_iters": n_iters, "lambda_": lam}
    w, state = gw.sdmgrad(G2, gw.sdmgrad_init(2), **options)
    assert torch.allclose(w, torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-15)
    w_state = torch.tensor(w_state, dtype=torch.float64)
    assert torch.allclose(state.weights, w_state, rtol=1e-12, atol=1e-15)


def test_warm_start_and_cross_matrix():
    M = [[2.0, 1.0], [-1.0, 0.5]]
    w_hand = (0.5, 0.5)
    state = gw.sdmgrad_init(2)
    for _ in range(3):
        expected, w_hand = by_hand(M, w_hand, 1.0, 0.5, 4, 0.3, (0.5, 0.5))
        w, state = gw.sdmgrad(torch.tensor(M, dtype=torch.float64), state, lr=1.0, n_iters=4)
        assert torch.allclose(w, torch.tensor(expected, dtype=torch.float64), rtol=1e-12)


def test_preference():
    expected, _ = by_hand([[18.0, -22.0], [-22.0, 38.0]], (0.5, 0.5), 0.5, 0.5, 3, 0.3, (1.0, 0.0))
    w, _ = gw.sdmgrad(G2, gw.sdmgrad_init(2), lr=0.5, n_iters=3, pref=[1.0, 0.0])
    assert torch.allclose(w, torch.tensor(expected, dtype=torch.float64), rtol=1e-12)


def test_one_task():
    w, _ = gw.sdmgrad(torch.tensor([[5.0]]), gw.sdmgrad_init(1))
    assert torch.allclose(w, torch.tensor([1.0]))


@pytest.mark.parametrize("scale", [0.0, 1e-15, 1e15])
def test_extreme_scales_are_finite(scale):
    J = torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    state = gw.sdmgrad_init(4)
    for _ in range(3):
        w, state = gw.sdmgrad(J @ J.T * scale, state)
        assert bool(torch.isfinite(w).all()) and abs(float(w.sum()) - 1) < 1e-12


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    w, state = gw.sdmgrad(G2.to(dtype), gw.sdmgrad_init(2))
    assert w.dtype == dtype and state.weights.dtype == dtype


def test_pure_and_saveable():
    _, state = assert_pure(gw.sdmgrad, G2, gw.sdmgrad_init(2), pref=torch.tensor([0.2, 0.8]))
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    assert torch.equal(torch.load(buffer).weights, state.weights)


def test_init():
    assert torch.equal(gw.sdmgrad_init(2).weights, torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="`m` must be >= 1, got 0."):
        gw.sdmgrad_init(0)


def test_errors():
    state = gw.sdmgrad_init(2)
    with pytest.raises(ValueError, match=r"`M` must be a square matrix, got shape \(2, 3\)\."):
        gw.sdmgrad(torch.zeros(2, 3), state)
    with pytest.raises(ValueError, match=r"`state.weights` must be of shape \(2,\)"):
        gw.sdmgrad(G2, gw.sdmgrad_init(3))
    with pytest.raises(ValueError, match="`lr` must be > 0, got 0.0."):
        gw.sdmgrad(G2, state, lr=0.0)
    with pytest.raises(ValueError, match=r"`momentum` must be in \[0, 1\), got 1.0\."):
        gw.sdmgrad(G2, state, momentum=1.0)
    with pytest.raises(ValueError, match=r"`momentum` must be in \[0, 1\), got -0.5\."):
        gw.sdmgrad(G2, state, momentum=-0.5)
    with pytest.raises(ValueError, match="`n_iters` must be >= 1, got 0."):
        gw.sdmgrad(G2, state, n_iters=0)
    with pytest.raises(TypeError, match="`n_iters` must be an int, got float."):
        gw.sdmgrad(G2, state, n_iters=2.0)
    with pytest.raises(ValueError, match="`lambda_` must be >= 0, got -1."):
        gw.sdmgrad(G2, state, lambda_=-1)
    with pytest.raises(ValueError, match="`pref` must be of length 2, got length 3."):
        gw.sdmgrad(G2, state, pref=[1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="`pref` must be non-negative"):
        gw.sdmgrad(G2, state, pref=[1.5, -0.5])


def test_a_matrix_with_a_graph_is_detached():
    J = torch.randn(3, 5, generator=torch.Generator().manual_seed(7), requires_grad=True)
    w, state = gw.sdmgrad(J @ J.T, gw.sdmgrad_init(3))
    assert not w.requires_grad and not state.weights.requires_grad
