"""mean, sum, constant and random: dtypes, the random draw, edge cases and errors.

Their values on the two-task example are in test_expected_values.py.
"""

import math

import pytest
import torch

import gramweight as gw

J = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]], dtype=torch.float64)
G = J @ J.T


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_is_kept(dtype):
    G = torch.eye(3, dtype=dtype)
    for w in (gw.mean(G), gw.sum(G), gw.constant(G, weights=[1, 2, 3]), gw.random(G, key=1)):
        assert w.dtype == dtype


@pytest.mark.parametrize("scale", [0.0, 1e-15, 1.0, 1e15])
def test_weights_do_not_depend_on_values(scale):
    for m in (1, 2, 7):
        Gm = torch.ones(m, m, dtype=torch.float64) * scale
        assert torch.equal(gw.mean(Gm), torch.full((m,), 1 / m, dtype=torch.float64))
        assert torch.equal(gw.sum(Gm), torch.ones(m, dtype=torch.float64))
        assert torch.equal(gw.random(Gm, key=4), gw.random(torch.eye(m, dtype=torch.float64), key=4))


def test_random_is_a_softmax_of_normal_draws_from_the_key():
    z = torch.randn(5, generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    expected = [math.exp(v) / sum(math.exp(u) for u in z.tolist()) for v in z.tolist()]
    w = gw.random(torch.eye(5, dtype=torch.float64), key=11)
    assert torch.allclose(w, torch.tensor(expected, dtype=torch.float64), rtol=1e-15, atol=0)
    assert not torch.equal(w, gw.random(torch.eye(5, dtype=torch.float64), key=12))


def test_random_does_not_touch_the_global_rng():
    state = torch.random.get_rng_state()
    gw.random(torch.eye(3), key=0)
    assert torch.equal(state, torch.random.get_rng_state())


def test_random_batched_draws_independently():
    W = gw.random(torch.eye(3).expand(2, 3, 3), key=0)
    assert W.shape == (2, 3)
    assert torch.allclose(W.sum(-1), torch.ones(2))
    assert not torch.equal(W[0], W[1])


def test_random_without_key_is_a_type_error():
    with pytest.raises(TypeError, match="key"):
        gw.random(torch.eye(2))
    with pytest.raises(TypeError, match=r"^`key` must be an int \(the random key; pass key=step\), got None\.$"):
        gw.random(torch.eye(2), key=None)


def test_constant_errors():
    with pytest.raises(ValueError, match=r"^`weights` must be of length 2, got length 3\.$"):
        gw.constant(G, weights=[1, 2, 3])
    with pytest.raises(ValueError, match=r"^`weights` must be finite \(no NaN or Inf\), got a non-finite entry\.$"):
        gw.constant(G, weights=[1, math.inf])
    with pytest.raises(TypeError, match="weights"):
        gw.constant(G)


def test_constant_returns_a_new_tensor():
    weights = torch.tensor([1.0, 2.0], dtype=torch.float64)
    w = gw.constant(G, weights=weights)
    w += 1
    assert torch.equal(weights, torch.tensor([1.0, 2.0], dtype=torch.float64))


def test_weightings_do_not_require_grad_of_input_graph():
    Gr = G.clone().requires_grad_()
    assert not gw.mean(Gr).requires_grad
