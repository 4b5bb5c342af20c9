"""check_against_reference accepts agreeing pairs and reports disagreeing ones."""

import pytest
import torch

import gramweight as gw
from gramweight.testing import REFERENCES, check_against_reference, register_reference

J = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]], dtype=torch.float64)


def test_agreement():
    check_against_reference(gw.sum, REFERENCES["sum"], J)
    check_against_reference(gw.constant, REFERENCES["constant"], J, weights=[2.0, -1.0])
    check_against_reference(gw.random, REFERENCES["random"], J, key=5)


def test_disagreement_is_reported():
    with pytest.raises(AssertionError, match="differs from the reference"):
        check_against_reference(gw.mean, REFERENCES["sum"], J)
    with pytest.raises(AssertionError, match="differs from the reference"):
        check_against_reference(gw.random, REFERENCES["random"], J, key=5) if False else (
            check_against_reference(lambda G, key: gw.random(G, key=key + 1), REFERENCES["random"], J, key=5)
        )


def test_reference_values_by_hand():
    assert torch.equal(REFERENCES["mean"](J), torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64))
    assert torch.equal(REFERENCES["sum"](J), torch.tensor([2.0, 2.0, 2.0], dtype=torch.float64))


def test_states_are_compared():
    from typing import NamedTuple

    class State(NamedTuple):
        t: torch.Tensor

    def weighting(G, state):
        return torch.ones(G.shape[-1], dtype=G.dtype), State(state.t + 1)

    def good(J, state):
        return J.sum(0), State(state.t + 1)

    def bad(J, state):
        return J.sum(0), State(state.t + 2)

    check_against_reference(weighting, good, J, State(torch.zeros(2)))
    with pytest.raises(AssertionError, match=r"state\[0\]\.t"):
        check_against_reference(weighting, bad, J, State(torch.zeros(2)))


def test_register_twice_is_refused():
    with pytest.raises(ValueError, match="^`name` must be a name without a reference yet, got 'mean'.$"):
        register_reference("mean")(lambda J: J.sum(0))
