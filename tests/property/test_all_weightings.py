"""Every entry of WEIGHTINGS, on every drawn structure, against its claimed properties."""

import io

import pytest
import torch
from hypothesis import assume, given
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
from gramweight.testing._tree import tree_leaves
from gramweight.testing.strategies import gramians, jacobians
from gramweight.weightings import REGISTRY
from gramweight.weightings._contract import PROPERTIES
from tests._calling import arguments, call, options, supports
from tests.property._balance import balance_jacobians

NAMES = sorted(gw.WEIGHTINGS)
STATEFUL = [name for name in NAMES if REGISTRY[name].stateful]



def away_from_config_cut_off(J: torch.Tensor) -> bool:
    """Whether ConFIG's two rank decisions on ``J`` are clear of their cut-off by a factor 100.

    ConFIG drops the singular values of the unit gradients ``U`` below a relative ``τ`` and
    returns no direction when ``pref``'s part in their span is below ``τ`` (the documented
    ``τ = sqrt(4 eps + 10 sqrt(m) eps_w)``). Both decisions jump: on a draw within round-off of
    either threshold the weighting (from the eigenpairs of the cosine matrix) and the reference
    (from an SVD of ``U``) may fall on different sides, both correctly."""
    m = J.shape[0]
    J64 = J.double()
    norms = J64.norm(dim=1, keepdim=True)
    U = torch.where(norms > 0, J64 / torch.where(norms > 0, norms, 1.0), 0.0)
    tau = (4 * torch.finfo(J.dtype).eps + 10 * m**0.5 * torch.finfo(torch.float64).eps) ** 0.5
    left, sv, _ = torch.linalg.svd(U, full_matrices=False)
    if not bool(sv.max() > 0):
        return True
    rel = sv / sv.max()
    if bool(((rel > tau / 100) & (rel < tau * 100)).any()):
        return False
    kept = left[:, rel >= tau * 100]
    share = float((kept.T @ torch.ones(m, dtype=torch.float64)).norm()) / m**0.5
    return not (tau / 100 < share < tau * 100)


# name -> Jacobians on which the weighting must match its reference, when not all of them.
REFERENCE_JACOBIANS: dict[str, st.SearchStrategy[torch.Tensor]] = {
    # A Gramian resolves a vector only down to about sqrt(machine eps) of the gradient norms.
    # A GradVac correction towards an opposite or collinear gradient (opposite rows, rank-1
    # matrices, n = 1) leaves a residual of relative size ~eps/||g||^2, below that limit: the
    # update still agrees, but the cosines measured afterwards, hence the new targets, are not
    # determined by G (docs/surgery_and_stateful.md, "Precision"). With fewer columns than
    # rows the corrections can cancel a gradient down to that limit too (m = 8 gradients in
    # n = 2 dimensions: a corrected g_6 of relative squared norm ~1e-10 gave cosines, hence
    # targets, 3.8e-6 off the vector loop's, in the code before and after its zero test, with
    # updates equal to 1.4e-14): compared only on n >= m.
    "gradvac": jacobians(
        n=st.integers(2, 12), structures=("generic", "duplicated_rows", "zero_rows", "dominant_row")
    ).filter(lambda J: J.shape[1] >= J.shape[0]),
    # MoDo's new weights are a simplex projection of entries of size gamma * |G|: on a Gramian
    # scaled to 1e12 their round-off (eps * 1e12) exceeds the state tolerance, in any
    # implementation. Its update is checked at every scale in test_surgery_and_stateful.py.
    "modo": jacobians(scaled=False),
    # GradNorm's loss is a sum of |w_i n_i - target_i|: where a norm equals its target (equal
    # norms at the first call: duplicated or opposite rows), its slope is 0 by definition and
    # the weighting says so, while the reference's norms, computed another way, miss the target
    # by round-off and take a slope of ±1 (a full Adam step of the logits either way).
    "gradnorm": jacobians(structures=("generic", "rank_deficient", "zero_rows", "dominant_row")),
    # EPO's reference enumerates the vertices of its LP: exponential in m
    "epo": jacobians(m=st.integers(1, 4)),
    # The balance equations have a root only away from cancelling combinations of the
    # gradients (tests/property/_balance.py); the finite answer without one is checked there.
    "fairgrad": balance_jacobians(),
    "config": jacobians().filter(away_from_config_cut_off),
    "nash_mtl": balance_jacobians(),
}

# The claims live with the registration (gramweight/weightings/__init__.py).
CLAIMED = [(name, prop) for name in NAMES for prop in sorted(REGISTRY[name].properties)]


def test_every_claimable_property_has_a_check():
    assert set(PROPERTY_CHECKS) == PROPERTIES


def test_every_weighting_has_a_reference():
    assert set(NAMES) <= set(REFERENCES)


def test_names_match_functions():
    for name, fn in gw.WEIGHTINGS.items():
        assert fn.__name__ == name
        assert getattr(gw, name) is fn


@pytest.mark.parametrize("name", NAMES)
@given(G=gramians())
def test_shape_dtype_device_and_finite(name, G):
    assume(supports(name, G.shape[-1]))
    w = call(name, G)
    assert w.shape == (G.shape[0],)
    assert w.dtype == G.dtype
    assert w.device == G.device
    assert bool(torch.isfinite(w).all()), w


@pytest.mark.parametrize("name", NAMES)
@given(G=gramians(m=st.integers(1, 5)), key=st.integers(0, 2**31))
def test_pure(name, G, key):
    assume(supports(name, G.shape[-1]))
    args, kwargs = arguments(name, G, key)
    assert_pure(gw.WEIGHTINGS[name], *args, **kwargs)


@pytest.mark.parametrize("name", NAMES)
@given(data=st.data(), key=st.integers(0, 2**31))
def test_matches_reference(name, data, key):
    J = data.draw(REFERENCE_JACOBIANS.get(name, jacobians()), label="J")
    assume(supports(name, J.shape[0]))
    args, kwargs = arguments(name, J @ J.T, key)
    check_against_reference(gw.WEIGHTINGS[name], REFERENCES[name], J, *args[1:], **kwargs)


@pytest.mark.parametrize(("name", "prop"), CLAIMED)
@given(G=gramians())
def test_claimed_property(name, prop, G):
    assume(supports(name, G.shape[-1]))
    args, kwargs = arguments(name, G)
    rtol = 1e-6 if G.dtype == torch.float64 else 1e-3
    PROPERTY_CHECKS[prop](name, args, kwargs, rtol)


def _non_conflicting(name, args, kwargs, rtol):
    assert_non_conflicting(gw.WEIGHTINGS[name], *args, rtol=rtol, **kwargs)


def _permutation_equivariant(name, args, kwargs, rtol):
    assert_permutation_equivariant(gw.WEIGHTINGS[name], *args, rtol=rtol, **kwargs)


def _scale_invariant(name, args, kwargs, rtol):
    if name == "krum":
        _assert_krum_scale_invariant_up_to_ties(args[0], kwargs)
    else:
        assert_scale_invariant(gw.WEIGHTINGS[name], *args, rtol=rtol, **kwargs)


# property -> check of one call; a property the registry accepts must have one
PROPERTY_CHECKS = {
    "non_conflicting": _non_conflicting,
    "permutation_equivariant": _permutation_equivariant,
    "scale_invariant": _scale_invariant,
}


@pytest.mark.parametrize("name", STATEFUL)
@given(G=gramians(m=st.integers(1, 5)), key=st.integers(0, 2**31))
def test_state_survives_save_and_load(name, G, key):
    # Checkpoints reload with torch.load's default weights_only=True: the registry made every
    # state class a safe global.
    assume(supports(name, G.shape[-1]))
    entry = REGISTRY[name]
    kwargs = options(name, G.shape[-1], key)
    _, state = entry.fn(G, entry.init(G.shape[-1]), **kwargs)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)
    assert type(loaded) is entry.state
    _assert_same_tree(loaded, state)
    _assert_same_tree(entry.fn(G, loaded, **kwargs), entry.fn(G, state, **kwargs))


def _assert_same_tree(a, b):
    leaves_a, leaves_b = list(tree_leaves(a)), list(tree_leaves(b))
    assert [p for p, _ in leaves_a] == [p for p, _ in leaves_b]
    for (path, x), (_, y) in zip(leaves_a, leaves_b):
        assert type(x) is type(y), path
        if isinstance(x, torch.Tensor):
            assert (x.dtype, x.shape, x.device) == (y.dtype, y.shape, y.device), path
            assert torch.equal(x, y), path
        else:
            assert x == y, path


def _assert_krum_scale_invariant_up_to_ties(G, kwargs):
    # Krum selects by comparing scores: gradients whose scores are equal up to round-off
    # (duplicated rows of a drawn Gramian differ by a few ulps) may be picked either way once
    # G is scaled, in any floating-point implementation. The selections at G and c G must be
    # the same set, or sets whose scores (recomputed in float64) are equal up to round-off.
    m = G.shape[-1]
    k = m - kwargs["n_byzantine"] - 1
    G64 = G.double()
    d = G64.diagonal()
    scores = (d.unsqueeze(1) + d - 2.0 * G64).sort(dim=1).values[:, :k].sum(dim=1)
    w = gw.krum(G, **kwargs)
    for c in (1e-3, 1e3):
        wc = gw.krum(G * c, **kwargs)
        if torch.equal(w, wc):
            continue
        picked, picked_c = scores[w > 0].sort().values, scores[wc > 0].sort().values
        # a distance d_i + d_j - 2 G_ij carries the round-off of its terms, of the size of
        # G's entries (not of the distance: duplicated rows of a Gramian of 1e15 have
        # distances of a few ulps of 1e15, and scores of that size, tied)
        slack = 1e3 * torch.finfo(G.dtype).eps * k * float(G64.abs().max()) + 1e-300
        assert picked.shape == picked_c.shape
        assert torch.allclose(picked, picked_c, rtol=0, atol=slack), (w.tolist(), wc.tolist())
