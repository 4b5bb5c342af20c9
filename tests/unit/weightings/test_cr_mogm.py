"""cr_mogm and cr_mogm_init: the EMA by hand, stateless and stateful inner weightings, errors."""

import functools
import io

import pytest
import torch

import gramweight as gw
from gramweight.testing import assert_pure

G2 = torch.tensor([[18.0, -22.0], [-22.0, 38.0]], dtype=torch.float64)


def fixed(weights):
    return functools.partial(gw.constant, weights=weights)


def test_first_call_is_the_inner_weights_then_an_ema():
    state = gw.cr_mogm_init(2)
    w, state = gw.cr_mogm(G2, state, inner=fixed([1.0, 3.0]))
    assert torch.equal(w, torch.tensor([1.0, 3.0], dtype=torch.float64))
    w, state = gw.cr_mogm(G2, state, inner=fixed([3.0, 1.0]))
    # 0.9 [1, 3] + 0.1 [3, 1]
    assert torch.allclose(w, torch.tensor([1.2, 2.8], dtype=torch.float64), rtol=1e-15)
    w, state = gw.cr_mogm(G2, state, inner=fixed([3.0, 1.0]), alpha=0.5)
    assert torch.allclose(w, torch.tensor([2.1, 1.9], dtype=torch.float64), rtol=1e-15)
    assert int(state.step) == 3


@pytest.mark.parametrize(("alpha", "expected"), [(0.0, [3.0, 1.0]), (1.0, [1.0, 3.0])])
def test_alpha_extremes(alpha, expected):
    _, state = gw.cr_mogm(G2, gw.cr_mogm_init(2), inner=fixed([1.0, 3.0]), alpha=alpha)
    w, _ = gw.cr_mogm(G2, state, inner=fixed([3.0, 1.0]), alpha=alpha)
    assert torch.equal(w, torch.tensor(expected, dtype=torch.float64))


def test_stateful_inner_lives_in_the_state():
    state = gw.cr_mogm_init(2, gw.gradvac_init(2))
    w, state = gw.cr_mogm(G2, state, inner=functools.partial(gw.gradvac, key=0))
    assert torch.allclose(w, torch.tensor([2.2222, 1.5789], dtype=torch.float64), atol=1e-4)
    assert isinstance(state.inner, gw.GradVacState)
    w, state = gw.cr_mogm(G2, state, inner=functools.partial(gw.gradvac, key=1))
    # 0.9 * first gradvac weights + 0.1 * second ones ([1.8580, 1.4064], test_expected_values).
    expected = 0.9 * torch.tensor([1 + 22 / 18, 1 + 22 / 38]) + 0.1 * torch.tensor([1.8580, 1.4064])
    assert torch.allclose(w, expected.double(), atol=1e-4)
    assert float(state.inner.targets[0, 1]) < -0.6  # the inner state moved on: 3/4 of the cosine


def test_pure_and_saveable():
    state = gw.cr_mogm_init(2, gw.gradvac_init(2))
    inner = functools.partial(gw.gradvac, key=0)
    _, state = gw.cr_mogm(G2, state, inner=inner)
    _, new_state = assert_pure(gw.cr_mogm, G2, state, inner=inner)
    buffer = io.BytesIO()
    torch.save(new_state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)
    assert isinstance(loaded, gw.CRMOGMState) and isinstance(loaded.inner, gw.GradVacState)
    assert torch.equal(loaded.weights, new_state.weights)


def test_init():
    state = gw.cr_mogm_init(3)
    assert state.weights.shape == (3,) and int(state.step) == 0 and state.inner is None
    with pytest.raises(ValueError, match="`m` must be >= 1, got 0."):
        gw.cr_mogm_init(0)


def test_errors():
    state = gw.cr_mogm_init(2)
    with pytest.raises(TypeError, match="inner"):
        gw.cr_mogm(G2, state)
    with pytest.raises(TypeError, match="`inner` must be a weighting \\(a callable\\), got str."):
        gw.cr_mogm(G2, state, inner="upgrad")
    with pytest.raises(ValueError, match=r"`alpha` must be in \[0, 1\], got 1.5\."):
        gw.cr_mogm(G2, state, inner=gw.mean, alpha=1.5)
    with pytest.raises(
        ValueError,
        match=r"`state.weights` must be of shape \(2,\) \(state built for another m or K\?\), "
        r"got shape \(3,\)\.",
    ):
        gw.cr_mogm(G2, gw.cr_mogm_init(3), inner=gw.mean)
    with pytest.raises(TypeError, match=r"`state` must be a CRMOGMState"):
        gw.cr_mogm(G2, gw.gradvac_init(2), inner=gw.mean)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_inner_weights_and_states_are_refused(bad):
    # (before: the inner weighting's NaN came out as the smoothed weights, and a NaN in the
    # stored weights was dropped silently at step 0)
    def nan_inner(G):
        return torch.tensor([1.0, bad], dtype=G.dtype)

    message = r"^`inner\(G\)` must be finite weights \(no NaN or Inf\), got a non-finite entry\.$"
    with pytest.raises(ValueError, match=message):
        gw.cr_mogm(G2, gw.cr_mogm_init(2), inner=nan_inner)
    _, state = gw.cr_mogm(G2, gw.cr_mogm_init(2), inner=fixed([1.0, 1.0]))
    with pytest.raises(ValueError, match=message):
        gw.cr_mogm(G2, state, inner=nan_inner)
    for step in (0, 1):
        broken = gw.CRMOGMState(torch.tensor([bad, 0.5]), torch.tensor(step))
        with pytest.raises(ValueError, match=r"^`state.weights` must be finite \(no NaN or Inf\)"):
            gw.cr_mogm(G2, broken, inner=fixed([1.0, 1.0]))
    # a NaN inside the inner state is the inner weighting's to refuse
    inner_state = gw.GradVacState(torch.tensor([[0.0, bad], [0.0, 0.0]]))
    with pytest.raises(ValueError, match=r"^`state.targets` must be finite"):
        gw.cr_mogm(G2, gw.cr_mogm_init(2, inner_state), inner=functools.partial(gw.gradvac, key=0))


def test_the_state_keeps_no_graph():
    J = torch.randn(2, 5, generator=torch.Generator().manual_seed(7), requires_grad=True)
    G = J @ J.T
    w, state = gw.cr_mogm(G, gw.cr_mogm_init(2), inner=lambda G: G.diagonal() / G.trace())
    assert w.requires_grad and not state.weights.requires_grad


def test_blocks():
    Gs = torch.stack([G2, 2 * G2, torch.eye(2, dtype=torch.float64)])
    state = gw.cr_mogm_init(2, gw.gradvac_init(2, blocks=3), blocks=3)
    assert state.weights.shape == (3, 2)
    W, state = gw.cr_mogm(Gs, state, inner=functools.partial(gw.gradvac, key=0))
    W_inner, _ = gw.gradvac(Gs, gw.gradvac_init(2, blocks=3), key=0)
    assert torch.equal(W, W_inner)
    with pytest.raises(ValueError, match=r"`state.weights` must be of shape \(3, 2\)"):
        inner = functools.partial(gw.gradvac, key=0)
        gw.cr_mogm(Gs, gw.cr_mogm_init(2, gw.gradvac_init(2, blocks=3)), inner=inner)
    with pytest.raises(ValueError, match="`blocks` must be >= 1, got 0."):
        gw.cr_mogm_init(2, blocks=0)
