"""Properties of the projection and closed-form family, on drawn structures.

The generic suite (test_all_weightings.py) checks every weighting with its default options;
this file checks the stronger claims that need an option: the exact projections
(``norm_eps = reg_eps = 0``) of upgrad and dualproj, CAGrad with ``c >= 1``, MGDA's norms,
and the agreement of every non-default option with its Jacobian-space reference.
"""

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
from gramweight.testing.references import balance_margin
from gramweight.testing.references._fairgrad import power_root
from gramweight.testing.strategies import gramians, jacobians
from tests.property._balance import balance_jacobians

EXACT = {"norm_eps": 0.0, "reg_eps": 0.0}


def _rtol(G):
    return 1e-6 if G.dtype == torch.float64 else 1e-3


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("upgrad", EXACT),
        ("dualproj", EXACT),
        ("mgda", {}),
        ("mgda", {"tol": 0.0}),
        ("cagrad", {"c": 1.0, "norm_eps": 0.0}),
        ("cagrad", {"c": 3.0, "norm_eps": 0.0}),
    ],
)
@given(G=gramians())
def test_non_conflicting(name, options, G):
    assert_non_conflicting(gw.WEIGHTINGS[name], G, rtol=_rtol(G), **options)


@given(G=gramians(m=st.integers(1, 8)))
def test_upgrad_and_dualproj_exact_are_scale_invariant(G):
    for fn in (gw.upgrad, gw.dualproj):
        assert_scale_invariant(fn, G, rtol=_rtol(G), **EXACT)


@given(G=gramians(), pref=st.lists(st.floats(0.1, 2.0), min_size=8, max_size=8))
def test_upgrad_weights_at_least_pref(G, pref):
    # the projection only adds non-negative multiples of the gradients
    m = G.shape[0]
    p = torch.tensor(pref[:m], dtype=G.dtype)
    w = gw.upgrad(G, pref=p)
    assert bool((w >= p - 1e-6 * p.abs().max()).all())


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("upgrad", EXACT),
        ("dualproj", EXACT),
        ("upgrad", {}),
        ("cagrad", {"c": 1.0}),
        ("fairgrad", {"alpha": 2.0}),
        ("aligned_mtl", {"scale": "median"}),
    ],
)
@given(G=gramians())
def test_permutation_equivariant_with_options(name, options, G):
    assert_permutation_equivariant(gw.WEIGHTINGS[name], G, rtol=_rtol(G), **options)


@given(G=gramians(m=st.integers(1, 5), n=st.integers(5, 8), structures=("generic",)))
def test_mgda_l2_permutation_equivariant_on_independent_gradients(G):
    # with dependent unit gradients the min-norm coefficients are not unique, and applying them
    # to the raw gradients gives different (equally valid) updates
    assert_permutation_equivariant(gw.mgda, G, rtol=_rtol(G), norm="l2")


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("upgrad", EXACT),
        ("dualproj", EXACT),
        ("upgrad", {"pref": [0.5, 1.0, 2.0, 0.3]}),
        ("dualproj", {"pref": [0.5, 1.0, 2.0, 0.3], "reg_eps": 1e-3}),
        ("cagrad", {"c": 1.5}),
        ("cagrad", {"c": 0.0}),
        ("fairgrad", {"alpha": 0.5}),
        ("fairgrad", {"alpha": 3.0}),
        ("fairgrad", {"alpha": 0.0}),
        ("aligned_mtl", {"scale": "rmse", "pref": [1.0, 0.0, 2.0, 1.0]}),
        ("config", {"pref": [1.0, 2.0, 1.0, 0.5]}),
        ("krum", {"n_byzantine": 1, "n_selected": 2}),
    ],
)
@given(data=st.data())
def test_matches_reference_with_options(name, options, data):
    strategy = balance_jacobians(m=4) if name == "fairgrad" and options["alpha"] else jacobians(m=4)
    J = data.draw(strategy, label="J")
    check_against_reference(gw.WEIGHTINGS[name], REFERENCES[name], J, **options)


@pytest.mark.parametrize("alpha", [0.5, 1.0, 3.0])
@given(J=jacobians(m=st.integers(2, 6), structures=("zero_rows", "opposite_rows")))
def test_balance_without_a_solution_is_bounded(alpha, J):
    # Zero rows, or rows i = -f_i row i-1 (i odd): the equations have no root and the weights
    # of those tasks diverge; what they converge to is the update of the other tasks alone,
    # their gradients projected off the span of the cancelling ones (the reference on that
    # reduced J; 0 if none is left). The weightings' finite answer (a diagonal term of the
    # dtype's round-off ε) is that update up to about ε^(1/(1+α)) of the natural size of a
    # task's update, G_ii^(1/2 - α/(1+α)), in the dtype.
    J64 = J.double()
    m = J64.shape[0]
    w = gw.fairgrad((J64 @ J64.T).to(J.dtype), alpha=alpha)
    assert bool(torch.isfinite(w).all()) and bool((w > 0).all())
    sq = (J64 * J64).sum(dim=1)
    if bool((sq == 0).any()):
        free = J64[sq > 0]
    else:  # opposite_rows: pairs (0, 1), (2, 3), ...; the last row is free when m is odd
        pairs = J64[: m - m % 2]
        # the error of the finite answer grows with the conditioning of the cancelling
        # directions (pairs at 2.5° from each other: 1.35e-6 against a bound of 7.4e-7 at
        # alpha = 1): the bound below holds for directions at least ~6° apart
        units = pairs[0::2] / pairs[0::2].norm(dim=1, keepdim=True)
        assume(float(torch.linalg.svdvals(units).min()) > 0.1)
        Q, _ = torch.linalg.qr(pairs[0::2].T)
        rest = J64[m - m % 2 :]
        free = rest - (rest @ Q) @ Q.T
        # a free row in the span of the pairs cancels with them too (both signs are there)
        free = free[free.norm(dim=1) > 1e-8 * rest.norm(dim=1)]
    assume(free.shape[0] == 0 or balance_margin(free) > 1e-3)
    limit = torch.zeros(J64.shape[1], dtype=torch.float64)
    if free.shape[0]:
        limit = power_root(free, alpha) @ free
    eps = torch.finfo(J.dtype).eps
    size = float((sq[sq > 0] ** (0.5 - alpha / (1 + alpha))).max()) if bool((sq > 0).any()) else 0.0
    err = float((w.double() @ J64 - limit).norm())
    assert err <= 50 * eps ** (1 / (1 + alpha)) * size + 1e-6 * float(limit.norm()), err


@pytest.mark.parametrize("norm", ["l2", "loss", "loss+"])
@given(
    J=jacobians(m=st.integers(1, 5), n=st.integers(5, 8), structures=("generic",)),
    losses=st.lists(st.floats(0.1, 10.0), min_size=5, max_size=5),
)
def test_mgda_norms_match_reference(norm, J, losses):
    # on independent gradients the coefficients are unique, so raw-gradient updates compare
    kw = {"norm": norm, "losses": losses[: J.shape[0]]}
    check_against_reference(gw.mgda, REFERENCES["mgda"], J, **kw)


@given(
    J=balance_jacobians(m=3),
    update_every=st.integers(1, 3),
    max_norm=st.sampled_from([0.0, 0.5, 10.0]),
)
def test_nash_mtl_state_sequence_matches_reference(J, update_every, max_norm):
    kw = {"update_every": update_every, "max_norm": max_norm}
    state = ref_state = gw.nash_mtl_init(3)
    for k in range(4):
        Jk = J * (1.0 + 0.5 * k)  # a changing Jacobian
        w, state = check_against_reference(gw.nash_mtl, REFERENCES["nash_mtl"], Jk, state, **kw)
        _, ref_state = REFERENCES["nash_mtl"](Jk, ref_state, **kw)
        assert int(state.step) == k + 1


@given(G=gramians(m=st.integers(1, 6)))
def test_nash_mtl_is_pure_along_a_trajectory(G):
    state = gw.nash_mtl_init(G.shape[0])
    for _ in range(3):
        assert_pure(gw.nash_mtl, G, state, update_every=2)
        _, state = gw.nash_mtl(G, state, update_every=2)


@st.composite
def _well_conditioned(draw):
    # A = I + N / (2 ‖N‖): singular values in [0.5, 1.5] (Weyl), so G = A Aᵀ has condition
    # number <= 9, whatever m and the seed
    m, seed = draw(st.integers(1, 8)), draw(st.integers(0, 2**32 - 1))
    N = torch.randn(m, m, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    A = torch.eye(m, dtype=torch.float64) + N / (2 * torch.linalg.matrix_norm(N, ord=2))
    G = A @ A.T
    return (G + G.T) / 2, draw(st.floats(-4.0, 4.0))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("name", ["imtl_g", "config", "aligned_mtl"])
@given(drawn=_well_conditioned())
def test_spectral_forms_as_accurate_as_the_dtype(name, dtype, drawn):
    # The same method in float64 on the input as rounded to dtype is an independent check of the
    # precision it computes in: the result may differ by its own rounding (eps/2 of ‖w‖) and the
    # working precision's round-off (condition number 9 × √m × eps_w: < 1e-5 in float32, the
    # half dtypes' working dtype, < 1e-12 in float64, float32's), no more.
    G64, exponent = drawn
    G = (G64 * 10.0**exponent).to(dtype)
    w = gw.WEIGHTINGS[name](G)
    expected = gw.WEIGHTINGS[name](G.double())
    assert w.dtype == dtype
    work = 1e-5 if dtype in (torch.float16, torch.bfloat16) else 1e-12
    err = float((w.double() - expected).norm() / expected.norm())
    assert err <= torch.finfo(dtype).eps / 2 + work, err
