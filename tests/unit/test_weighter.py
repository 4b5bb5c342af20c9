"""``Weighter``: each call is the pure function's call with the held state and the step's key."""

from __future__ import annotations

import pytest
import torch

import gramweight as gw
from gramweight._weighter import _splitmix64
from gramweight.weightings import REGISTRY

G = torch.tensor([[4.0, -1.0, 0.5], [-1.0, 1.0, 0.2], [0.5, 0.2, 2.0]], dtype=torch.float64)


def test_splitmix64_matches_the_published_sequence():
    # SplitMix64 from state 0: the first outputs of the reference generator (Vigna's
    # splitmix64.c, state advanced by the golden gamma before mixing), written down from it
    assert _splitmix64(0) == 0xE220A8397B1DCDAF
    assert _splitmix64(0x9E3779B97F4A7C15) == 0x6E789E6AA1B965F4


def test_keys_are_in_range_distinct_and_reproducible():
    keys = [gw.step_key(3, s) for s in range(1000)]
    assert len(set(keys)) == 1000 and all(0 <= k <= 2**63 - 1 for k in keys)
    assert keys == [gw.step_key(3, s) for s in range(1000)]
    assert gw.step_key(4, 0) != gw.step_key(3, 0)


@pytest.mark.parametrize("name", ["upgrad", "pcgrad", "nash_mtl", "gradvac", "sdmgrad"])
def test_each_call_is_the_pure_call_with_the_state_and_key(name):
    entry = REGISTRY[name]
    weighter = gw.Weighter(name, seed=11)
    state = entry.init(3, dtype=G.dtype) if entry.stateful else None
    for step in range(4):
        Gs = G * (1 + step)
        kwargs = {"key": gw.step_key(11, step)} if entry.stochastic else {}
        if entry.stateful:
            expected, state = entry.fn(Gs, state, **kwargs)
        else:
            expected = entry.fn(Gs, **kwargs)
        assert torch.equal(weighter(Gs), expected)
    assert weighter.step == 4
    if entry.stateful:
        for a, b in zip(weighter.state, state):
            assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))


def test_options_and_per_step_options_are_passed():
    losses = torch.tensor([1.0, 2.0, 0.5], dtype=torch.float64)
    weighter = gw.Weighter(gw.db_mtl)
    assert torch.equal(weighter(G, losses=losses), gw.db_mtl(G, losses=losses))
    weighter = gw.Weighter("cagrad", c=0.2)
    assert torch.equal(weighter(G), gw.cagrad(G, c=0.2))


def test_state_dict_round_trip_continues_the_same_sequence(tmp_path):
    a = gw.Weighter("gradvac", seed=5, beta=0.3)
    for _ in range(3):
        a(G)
    path = tmp_path / "weighter.pt"
    torch.save(a.state_dict(), path)
    b = gw.Weighter("gradvac", beta=0.3)
    b.load_state_dict(torch.load(path))  # weights_only=True: plain tensors and numbers
    assert (b.step, b.seed) == (3, 5)
    assert torch.equal(a(G), b(G))


def test_mistakes_get_clear_errors():
    with pytest.raises(ValueError, match=r"^`method` must be a weighting's name.*got 'upgrd'\.$"):
        gw.Weighter("upgrd")
    with pytest.raises(TypeError, match=r"^`options` must be free of `key`"):
        gw.Weighter("pcgrad", key=3)
    with pytest.raises(TypeError, match=r"^`init_options` must be empty for upgrad"):
        gw.Weighter("upgrad", init_options={"blocks": 2})
    with pytest.raises(TypeError, match=r"^`losses` must be given to the Weighter or at each "
                                        r"call \(db_mtl requires it\), got none\.$"):
        gw.Weighter("db_mtl")(G)
    nash = gw.Weighter("nash_mtl")
    nash(G)
    with pytest.raises(ValueError, match=r"^`G` must be of 3 objectives, as the state was built "
                                         r"for \(call reset\(\) to start over\), got 2 "
                                         r"objectives\.$"):
        nash(G[:2, :2])
    nash.reset()
    nash(G[:2, :2])
    with pytest.raises(ValueError, match=r"^`state_dict` must be that of a Weighter of upgrad, got one of .nash_mtl.\.$"):
        gw.Weighter("upgrad").load_state_dict(nash.state_dict())
