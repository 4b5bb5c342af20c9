"""Every loss weighting: shape, dtype and device, every precision, purity, saved states, and
the shared errors on the losses."""

import io
import math

import pytest
import torch

import gramweight as gw
from gramweight.loss_weightings import LOSS_WEIGHTINGS, STATE_INITS

NAMES = sorted(LOSS_WEIGHTINGS)
LOSSES = [0.7, 1.3, 2.9]


def _call(name, losses, state=None):
    fn = LOSS_WEIGHTINGS[name]
    if name in STATE_INITS:
        state = STATE_INITS[name](len(losses)) if state is None else state
        return fn(losses, state)
    return fn(losses), None


def _run(name, losses, calls=3):
    """The weights and state after a few calls on slightly falling losses."""
    state = None
    for t in range(calls):
        D, state = _call(name, losses * (1.0 - 0.1 * t), state)
    return D, state


def test_table_is_the_public_names():
    assert NAMES == ["dwa", "famo", "geometric_mean", "imtl_l", "stch", "uncertainty"]
    for name, fn in LOSS_WEIGHTINGS.items():
        assert getattr(gw.loss_weightings, name) is fn
        assert name not in gw.WEIGHTINGS  # not functions of G
    for name, init in STATE_INITS.items():
        assert init.__name__ == f"{name}_init"


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_every_precision_matches_float64(name, dtype):
    D, _ = _run(name, torch.tensor(LOSSES, dtype=dtype))
    expected, _ = _run(name, torch.tensor(LOSSES, dtype=dtype).double())
    assert D.dtype == dtype and D.shape == (3,)
    assert bool(torch.isfinite(D).all()) and bool((D > 0).all())
    tol = {torch.float16: 2e-3, torch.bfloat16: 1e-2, torch.float32: 1e-6}.get(dtype, 1e-14)
    torch.testing.assert_close(D.double(), expected, rtol=tol, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_lists_give_the_default_dtype(name):
    D, _ = _call(name, LOSSES)
    assert D.dtype == torch.get_default_dtype()


@pytest.mark.parametrize("name", NAMES)
def test_pure(name):
    losses = torch.tensor(LOSSES, dtype=torch.float64)
    _, state = _run(name, losses)
    copies = (losses.clone(), None if state is None else tuple(t.clone() for t in state))
    first = _call(name, losses, state)
    second = _call(name, losses, state)
    assert torch.equal(losses, copies[0])
    if state is not None:
        assert all(torch.equal(a, b) for a, b in zip(state, copies[1]))
        assert all(torch.equal(a, b) for a, b in zip(first[1], second[1]))
    assert torch.equal(first[0], second[0])


@pytest.mark.parametrize("name", sorted(STATE_INITS))
def test_state_survives_save_and_load(name):
    losses = torch.tensor(LOSSES)
    _, state = _run(name, losses)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)  # weights_only=True: the state classes are safe globals
    assert type(loaded) is type(state)
    assert all(torch.equal(a, b) for a, b in zip(loaded, state))
    a, b = _call(name, losses, loaded), _call(name, losses, state)
    assert torch.equal(a[0], b[0]) and all(torch.equal(x, y) for x, y in zip(a[1], b[1]))


@pytest.mark.parametrize("name", sorted(STATE_INITS))
def test_state_errors(name):
    fn, init = LOSS_WEIGHTINGS[name], STATE_INITS[name]
    with pytest.raises(TypeError, match=r"^`state` must be a \w+ \(from the matching _init\), got tuple\.$"):
        fn(LOSSES, tuple(init(3)))
    with pytest.raises(ValueError, match=r"^`state\.\w+` must be of shape .*\(state built for another m or K\?\), got shape"):
        fn(LOSSES, init(2))
    with pytest.raises(ValueError, match=r"^`m` must be >= 1, got 0\.$"):
        init(0)


@pytest.mark.parametrize("name", NAMES)
def test_losses_errors(name):
    with pytest.raises(ValueError, match=r"^`losses` must be finite \(no NaN or Inf\), got a non-finite entry\.$"):
        _call(name, [1.0, math.nan, 2.0])
    with pytest.raises(ValueError, match=r"^`losses` must be a 1-D vector, got shape \(1, 3\)\.$"):
        _call(name, torch.ones(1, 3))
    with pytest.raises(TypeError, match=r"^`losses` must be a sequence of numbers or a tensor, got str\.$"):
        LOSS_WEIGHTINGS[name]("losses", *(() if name not in STATE_INITS else (STATE_INITS[name](1),)))
    with pytest.raises(ValueError, match=r"^`losses` must be of length >= 1, got length 0\.$"):
        LOSS_WEIGHTINGS[name]([], *(() if name not in STATE_INITS else (STATE_INITS[name](1),)))


@pytest.mark.parametrize("name", NAMES)
def test_losses_with_a_graph_give_weights_without_one(name):
    # the losses of a training step carry their graph: the weights are constants
    losses = torch.tensor(LOSSES, requires_grad=True) * 1.0
    D, state = _call(name, losses)
    assert not D.requires_grad
    assert state is None or not any(t.requires_grad for t in state)
