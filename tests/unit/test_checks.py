"""Input validation: every refusal, with its message, and every repair."""

import math

import pytest
import torch

import gramweight as gw
from gramweight._checks import (
    KEY_MAX,
    all_finite,
    check_gramian,
    check_key,
    check_matrix,
    check_number,
    check_state,
    check_vector,
)
from gramweight.weightings import REGISTRY
from tests._calling import arguments


def test_valid_gramian_is_returned_symmetrised_and_unchanged_in_place():
    G = torch.tensor([[2.0, 1.0], [1.0 + 1e-12, 3.0]], dtype=torch.float64)
    before = G.clone()
    S = check_gramian(G)
    assert torch.equal(G, before)
    assert torch.equal(S, S.T)
    assert S[0, 1] == (1.0 + 1.0 + 1e-12) / 2


def test_roundoff_negative_diagonal_is_clamped():
    G = torch.tensor([[-1e-20, 0.0], [0.0, 1.0]], dtype=torch.float64)
    assert check_gramian(G)[0, 0] == 0.0


def test_m_equal_one_is_valid():
    assert check_gramian(torch.tensor([[4.0]])).shape == (1, 1)


@pytest.mark.parametrize(
    ("G", "error", "text"),
    [
        (torch.ones(3), ValueError, "`G` must be a matrix of shape (m, m), got shape (3,)."),
        (torch.ones(2, 3, 3), ValueError, "`G` must be a matrix of shape (m, m), got shape (2, 3, 3)."),
        (torch.ones(3, 4), ValueError, "`G` must be a square matrix, got shape (3, 4)."),
        (torch.ones(0, 0), ValueError, "`G` must be at least 1 x 1, got shape (0, 0)."),
        (torch.tensor([[1.0, math.nan], [math.nan, 1.0]]), ValueError, "`G` must be finite (no NaN or Inf), got a non-finite entry."),
        (torch.tensor([[1.0, 0.0], [0.0, math.inf]]), ValueError, "`G` must be finite (no NaN or Inf), got a non-finite entry."),
        (torch.tensor([[math.nan, 0.0], [0.0, 1.0]]), ValueError, "`G` must be finite (no NaN or Inf), got a non-finite entry."),
        (torch.tensor([[1.0, 0.0], [0.0, -math.inf]]), ValueError, "`G` must be finite (no NaN or Inf), got a non-finite entry."),
        (torch.tensor([[1.0, 2.0], [0.0, 1.0]]), ValueError, "`G` must be symmetric up to round-off, got a relative asymmetry of 1."),
        (torch.tensor([[-1.0, 0.0], [0.0, 1.0]]), ValueError, "`G` must be positive semi-definite (non-negative diagonal), got diagonal entry -1."),
        (torch.ones(2, 2, dtype=torch.int64), TypeError, "`G` must be a real floating-point tensor, got dtype torch.int64."),
        (torch.ones(2, 2, dtype=torch.complex64), TypeError, "`G` must be a real floating-point tensor, got dtype torch.complex64."),
        ([[1.0, 0.0], [0.0, 1.0]], TypeError, "`G` must be a torch.Tensor, got list."),
    ],
)
def test_bad_gramians_are_refused_with_the_template(G, error, text):
    with pytest.raises(error) as info:
        check_gramian(G)
    assert str(info.value) == text
    if isinstance(G, torch.Tensor) and G.dim() == 3:
        return  # a stack of Gramians, which the baseline weightings accept
    # The public functions go through the same path, with the same messages.
    for fn, kwargs in [(gw.mean, {}), (gw.sum, {}), (gw.random, {"key": 0})]:
        with pytest.raises(error) as info:
            fn(G, **kwargs)
        assert str(info.value) == text.replace("shape (m, m)", "shape (..., m, m)")


def test_batched_gramians_are_accepted_where_allowed():
    G = torch.eye(3).expand(4, 3, 3)
    assert check_gramian(G, batched=True).shape == (4, 3, 3)
    assert gw.mean(G).shape == (4, 3)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., m, m\), got shape \(3,\)"):
        check_gramian(torch.ones(3), batched=True)


def test_check_matrix_accepts_asymmetric_but_not_non_square():
    M = torch.tensor([[1.0, 2.0], [-3.0, 4.0]])
    assert check_matrix(M) is M
    with pytest.raises(ValueError, match=r"^`M` must be a square matrix, got shape \(2, 3\)\.$"):
        check_matrix(torch.ones(2, 3))
    # finite entries whose sum overflows are accepted (the sum is only a first test)
    assert check_matrix(torch.full((20, 20), 3e38)) is not None
    # non-finite entries are refused on both paths (host floats up to 8 x 8, reductions above)
    for m in (2, 8, 9, 30):
        for bad in (math.nan, math.inf, -math.inf):
            M = torch.randn(m, m)
            M[m - 1, 0] = bad
            with pytest.raises(ValueError, match=r"^`M` must be finite \(no NaN or Inf\)"):
                check_matrix(M)


def test_check_vector():
    assert check_vector([1, 2], "weights", length=2).dtype == torch.get_default_dtype()
    with pytest.raises(ValueError, match=r"^`weights` must be of length 3, got length 2\.$"):
        check_vector([1.0, 2.0], "weights", length=3)
    with pytest.raises(ValueError, match=r"^`weights` must be a 1-D vector, got shape \(1, 2\)\.$"):
        check_vector(torch.ones(1, 2), "weights")
    with pytest.raises(ValueError, match=r"^`losses` must be positive, got minimum 0\.$"):
        check_vector([1.0, 0.0], "losses", positive=True)
    with pytest.raises(TypeError, match=r"^`weights` must be a sequence of numbers or a tensor, got int\.$"):
        check_vector(3, "weights")


def test_options_given_with_a_graph_leave_none_in_the_weights():
    # docs/methods.md: no weighting is differentiable. Before check_vector detached its
    # tensors, constant, stch and compose passed an option's graph on to the weights.
    G = torch.tensor([[2.0, 0.3], [0.3, 1.0]], dtype=torch.float64)
    p = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True) * 1.0
    lw = gw.loss_weightings
    assert not check_vector(p, "p").requires_grad
    assert not gw.constant(G, weights=p).requires_grad
    assert not gw.config(G, pref=p).requires_grad
    assert not lw.stch(torch.tensor([0.5, 2.0]), preference=p).requires_grad
    assert not lw.compose(G, p, gw.mean).requires_grad
    # the values themselves are unchanged
    assert gw.constant(G, weights=p).tolist() == [1.0, 2.0]


def test_check_key_and_number():
    assert check_key(0) == 0 and check_key(KEY_MAX) == KEY_MAX == 2**63 - 1
    with pytest.raises(TypeError, match=r"^`key` must be an int, got float\.$"):
        check_key(1.0)
    with pytest.raises(TypeError, match=r"^`key` must be an int, got bool\.$"):
        check_key(True)
    assert check_number(0.5, "beta", low=0, high=1) == 0.5
    with pytest.raises(ValueError, match=r"^`beta` must be in \[0, 1\], got 1\.5\.$"):
        check_number(1.5, "beta", low=0, high=1)
    with pytest.raises(ValueError, match=r"^`eps` must be >= 0, got -1\.$"):
        check_number(-1, "eps", low=0)
    with pytest.raises(ValueError, match=r"^`alpha` must be finite, got nan\.$"):
        check_number(math.nan, "alpha", low=0)


def test_the_key_range_is_the_generators_distinct_seeds():
    # torch.Generator().manual_seed keeps its seed modulo 2**63 (and overflows past 64 bits):
    # outside [0, 2**63 - 1] a key would alias one inside, so it is refused.
    def draw(seed):
        return torch.randperm(20, generator=torch.Generator().manual_seed(seed)).tolist()

    assert draw(-1) == draw(2**63 - 1) and draw(2**63) == draw(0)  # why negatives are refused
    assert draw(KEY_MAX) != draw(KEY_MAX - 1) and draw(KEY_MAX) != draw(0)
    for bad in (-1, -(2**63), 2**63, 2**64, 2**70):
        with pytest.raises(ValueError, match=rf"^`key` must be in \[0, 2\*\*63 - 1\], got {bad}\.$"):
            check_key(bad)


@pytest.mark.parametrize(
    "call",
    [
        lambda key: gw.pcgrad(torch.eye(3), key=key),
        lambda key: gw.gradvac(torch.eye(3), gw.gradvac_init(3), key=key),
        lambda key: gw.random(torch.eye(3), key=key),
        lambda key: gw.visiting_orders(3, key=key),
    ],
    ids=["pcgrad", "gradvac", "random", "visiting_orders"],
)
def test_every_stochastic_function_refuses_keys_outside_the_range(call):
    call(0)
    call(KEY_MAX)
    for bad in (-1, 2**63):
        with pytest.raises(ValueError, match=r"^`key` must be in \[0, 2\*\*63 - 1\], got "):
            call(bad)
    with pytest.raises(ValueError, match="got 18446744073709551616"):
        call(2**64)  # (torch alone: "Overflow when unpacking long long")


def test_all_finite():
    assert all_finite(torch.ones(3)) and all_finite(torch.zeros(0))
    assert all_finite(torch.full((4,), 6e4, dtype=torch.float16))  # the float16 sum overflows
    for bad in (math.nan, math.inf, -math.inf):
        assert not all_finite(torch.tensor([1.0, bad]))
    assert not all_finite(torch.tensor([1.0, math.nan], requires_grad=True))


def test_check_state_refuses_non_finite_fields_by_name():
    state = gw.NashMTLState(step=torch.tensor(3), weights=torch.ones(2))
    assert check_state(state, gw.NashMTLState, step=(), weights=(2,)) is state
    for bad in (math.nan, math.inf):
        broken = state._replace(weights=torch.tensor([1.0, bad]))
        with pytest.raises(
            ValueError, match=r"^`state.weights` must be finite \(no NaN or Inf\), got a non-finite entry\.$"
        ):
            check_state(broken, gw.NashMTLState, step=(), weights=(2,))
        assert check_state(broken, gw.NashMTLState, finite=False) is broken


@pytest.mark.parametrize("m", [1, 2, 8, 9, 40, 300])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_host_and_tensor_extremes_agree_with_a_direct_computation(m, dtype):
    # Small matrices are checked on Python floats, larger ones by tensor reductions (with a
    # contiguous transpose from 65536 entries): every size gives the same four numbers as a
    # direct float64 computation, and the same refusals.
    from gramweight._checks import _extremes, check_gramian_scale

    gen = torch.Generator().manual_seed(m)
    J = torch.randn(m, m + 2, generator=gen, dtype=torch.float64)
    G = (J @ J.T).to(dtype)
    G[0, -1] += 0.25 if m > 1 else 0.0  # asymmetric by 0.25 (when m > 1)
    G64 = G.double()
    expected = (
        G64.min().item(),
        G64.max().item(),
        (G64 - G64.T).abs().max().item(),
        G64.diagonal().min().item(),
    )
    assert _extremes(G) == pytest.approx(expected, rel=1e-6, abs=1e-6)
    if m > 1:
        with pytest.raises(ValueError, match="symmetric up to round-off"):
            check_gramian(G)
    G = (G + G.T) / 2
    S, scale, diag_min = check_gramian_scale(G)
    assert S is G and scale == pytest.approx(G.abs().max().item())
    assert diag_min == pytest.approx(max(G.diagonal().min().item(), 0.0))
    for bad in (math.nan, math.inf, -math.inf):
        H = G.clone()
        H[m // 2, m // 3] = bad
        with pytest.raises(ValueError, match="finite"):
            check_gramian(H)


STATEFUL = [name for name, entry in REGISTRY.items() if entry.stateful]
STOCHASTIC = [name for name, entry in REGISTRY.items() if entry.stochastic]


def test_the_generic_lists_are_not_empty():
    assert {"gradvac", "cr_mogm", "modo", "sdmgrad", "nash_mtl"} <= set(STATEFUL)
    assert {"pcgrad", "gradvac", "random"} <= set(STOCHASTIC)


@pytest.mark.parametrize("name", STATEFUL)
@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_every_stateful_weighting_refuses_a_non_finite_state(name, bad):
    # (before the shared check: NaN weights from gradvac, modo and sdmgrad; nash_mtl and
    # cr_mogm ignored it while their step was 0)
    G = torch.tensor([[2.0, -1.0, 0.0], [-1.0, 3.0, 0.5], [0.0, 0.5, 1.0]])
    args, kwargs = arguments(name, G)
    state = args[1]
    gw.WEIGHTINGS[name](G, state, **kwargs)
    fields = [f for f, v in zip(state._fields, state) if isinstance(v, torch.Tensor) and v.is_floating_point()]
    assert fields
    for field in fields:
        value = getattr(state, field).clone()
        value.view(-1)[-1] = bad
        with pytest.raises(
            ValueError, match=rf"^`state.{field}` must be finite \(no NaN or Inf\), got a non-finite entry\.$"
        ):
            gw.WEIGHTINGS[name](G, state._replace(**{field: value}), **kwargs)


@pytest.mark.parametrize("name", STOCHASTIC)
def test_every_stochastic_weighting_refuses_a_key_outside_the_range(name):
    G = torch.eye(3)
    for bad in (-1, 2**63, 2**64):
        args, kwargs = arguments(name, G, key=0)
        kwargs["key"] = bad
        with pytest.raises(ValueError, match=r"^`key` must be in \[0, 2\*\*63 - 1\], got "):
            gw.WEIGHTINGS[name](*args, **kwargs)
