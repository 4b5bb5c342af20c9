"""Every entry of WEIGHTINGS, on every drawn structure, against its claimed properties."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import gramweight as gw
from gramweight.testing import (
    REFERENCES,
    assert_non_conflicting,
    assert_permutation_equivariant,
    assert_pure,
    assert_scale_invariant,
    check_against_reference,
)
from gramweight.testing.strategies import gramians, jacobians
from tests._calling import arguments, call

NAMES = sorted(gw.WEIGHTINGS)

# The one table of claimed properties: every weighting must have a row.
CLAIMS: dict[str, set[str]] = {
    "mean": {"permutation_equivariant", "scale_invariant"},
    "sum": {"permutation_equivariant", "scale_invariant"},
    "constant": {"scale_invariant"},
    "random": {"scale_invariant"},
}
PROPERTIES = ("non_conflicting", "permutation_equivariant", "scale_invariant")
CLAIMED = [(name, prop) for name in NAMES for prop in PROPERTIES if prop in CLAIMS.get(name, ())]


def test_every_weighting_has_a_row_in_the_claims_table():
    assert sorted(CLAIMS) == NAMES


def test_every_weighting_has_a_reference():
    assert set(NAMES) <= set(REFERENCES)


def test_names_match_functions():
    for name, fn in gw.WEIGHTINGS.items():
        assert fn.__name__ == name
        assert getattr(gw, name) is fn


@pytest.mark.parametrize("name", NAMES)
@given(G=gramians())
def test_shape_dtype_device_and_finite(name, G):
    w = call(name, G)
    assert w.shape == (G.shape[0],)
    assert w.dtype == G.dtype
    assert w.device == G.device
    assert bool(torch.isfinite(w).all()), w


@pytest.mark.parametrize("name", NAMES)
@given(G=gramians(m=st.integers(1, 5)), key=st.integers(0, 2**31))
def test_pure(name, G, key):
    args, kwargs = arguments(name, G, key)
    assert_pure(gw.WEIGHTINGS[name], *args, **kwargs)


@pytest.mark.parametrize("name", NAMES)
@given(J=jacobians(), key=st.integers(0, 2**31))
def test_matches_reference(name, J, key):
    args, kwargs = arguments(name, J @ J.T, key)
    check_against_reference(gw.WEIGHTINGS[name], REFERENCES[name], J, *args[1:], **kwargs)


@pytest.mark.parametrize(("name", "prop"), CLAIMED)
@given(G=gramians())
def test_claimed_property(name, prop, G):
    args, kwargs = arguments(name, G)
    fn = gw.WEIGHTINGS[name]
    rtol = 1e-6 if G.dtype == torch.float64 else 1e-3
    if prop == "non_conflicting":
        assert_non_conflicting(fn, *args, rtol=rtol, **kwargs)
    elif prop == "permutation_equivariant":
        assert_permutation_equivariant(fn, *args, rtol=rtol, **kwargs)
    elif prop == "scale_invariant":
        assert_scale_invariant(fn, *args, rtol=rtol, **kwargs)
