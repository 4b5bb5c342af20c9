"""The property checks pass on good weightings and fail on bad ones."""

import pytest
import torch

import gramweight as gw
from gramweight.testing import (
    assert_non_conflicting,
    assert_permutation_equivariant,
    assert_pure,
    assert_scale_invariant,
)

CONFLICT = torch.tensor([[1.0, -0.9], [-0.9, 1.0]], dtype=torch.float64)


def first_only(G):
    w = torch.zeros(G.shape[-1], dtype=G.dtype)
    w[0] = 1.0
    return w


def test_non_conflicting():
    # The first gradient alone conflicts with the second: G @ e_1 = [1, -0.9].
    with pytest.raises(AssertionError, match="conflicts"):
        assert_non_conflicting(first_only, CONFLICT)
    # The mean of two gradients of equal norm never conflicts with either.
    assert_non_conflicting(gw.mean, CONFLICT)


def test_permutation_equivariance():
    G = torch.diag(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    assert_permutation_equivariant(gw.mean, G)
    with pytest.raises(AssertionError, match="permutation"):
        assert_permutation_equivariant(first_only, G)
    with pytest.raises(AssertionError, match="permutation"):
        assert_permutation_equivariant(gw.constant, G, weights=[1.0, 2.0, 3.0])


def test_permutation_equivariance_compares_updates_not_weights():
    # Two identical gradients: [1, 0] and [0, 1] give the same update.
    G = torch.ones(2, 2, dtype=torch.float64)
    assert_permutation_equivariant(first_only, G)


def test_scale_invariance():
    G = torch.diag(torch.tensor([1.0, 4.0], dtype=torch.float64))
    assert_scale_invariant(gw.mean, G)
    with pytest.raises(AssertionError, match="scale"):
        assert_scale_invariant(lambda G: G.diagonal().clone(), G)


def test_pure_detects_mutation_and_non_determinism():
    G = torch.eye(2, dtype=torch.float64)
    assert_pure(gw.mean, G)

    def mutating(G):
        G.mul_(2)
        return G.diagonal().clone()

    with pytest.raises(AssertionError, match="modified its input"):
        assert_pure(mutating, G.clone())

    def noisy(G):
        return torch.rand(G.shape[-1], dtype=G.dtype)

    with pytest.raises(AssertionError, match="differ at output"):
        assert_pure(noisy, G)


def test_pure_looks_inside_states():
    from typing import NamedTuple

    class State(NamedTuple):
        count: torch.Tensor

    def stateful(G, state):
        state.count.add_(1)
        return G.diagonal().clone(), State(state.count.clone())

    with pytest.raises(AssertionError, match=r"\.count"):
        assert_pure(stateful, torch.eye(2), State(torch.zeros(())))
