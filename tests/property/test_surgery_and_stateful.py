"""Gradient surgery and stateful weightings against their Jacobian-space references.

Several consecutive calls for the stateful methods (the state carried from call to call),
column blocks for GradVac, two independent batches for MoDo and SDMGrad, purity and
checkpointing of every state.
"""

import functools
import io
import math

import torch
from hypothesis import given
from hypothesis import strategies as st

import gramweight as gw
from gramweight.testing import REFERENCES, assert_pure, check_against_reference, test_dtype
from gramweight.testing.references._gradvac import gradvac_blocks
from gramweight.testing.references._pcgrad import pcgrad as pcgrad_reference
from gramweight.testing.strategies import STRUCTURES, jacobians

# Why GradVac's draws exclude exact conflicts: REFERENCE_JACOBIANS in test_all_weightings.py.
GRADVAC_STRUCTURES = ("generic", "duplicated_rows", "zero_rows", "dominant_row")
CALLS = 3


def rtol() -> float:
    return 1e-6 if test_dtype() == torch.float64 else 1e-3


def assert_same_update(update, ref, Js):
    """``‖u - r‖ <= rtol * max(‖r‖, max_i ‖J_i‖)``, the bound of check_against_reference."""
    update, ref = update.double(), ref.double()
    scale = max(float(ref.norm()), max(float(J.double().norm(dim=-1).max()) for J in Js))
    err = float((update - ref).norm())
    assert err <= rtol() * scale, f"update differs by {err:.3g} (scale {scale:.3g})"


def jacobian_sequence(data, structures=STRUCTURES, n=st.integers(1, 12), count=CALLS):
    """``count`` Jacobians with the same number of rows (tasks) and columns."""
    m = data.draw(st.integers(1, 7), label="m")
    n = data.draw(n, label="n")
    draw = jacobians(m=m, n=n, structures=structures)
    return [data.draw(draw, label=f"J{k}") for k in range(count)]


@given(data=st.data(), key=st.integers(0, 2**31))
def test_gradvac_over_consecutive_calls(data, key):
    Js = jacobian_sequence(data, GRADVAC_STRUCTURES, n=st.integers(2, 12))
    state = gw.gradvac_init(Js[0].shape[0], dtype=Js[0].dtype)
    for k, J in enumerate(Js):
        _, state = check_against_reference(gw.gradvac, REFERENCES["gradvac"], J, state, key=key + k)


@given(data=st.data(), key=st.integers(0, 2**31), beta=st.floats(0.0, 1.0))
def test_gradvac_options(data, key, beta):
    Js = jacobian_sequence(data, GRADVAC_STRUCTURES, n=st.integers(2, 12), count=2)
    state = gw.gradvac_init(Js[0].shape[0], dtype=Js[0].dtype)
    for k, J in enumerate(Js):
        _, state = check_against_reference(
            gw.gradvac, REFERENCES["gradvac"], J, state, beta=beta, eps=1e-6, key=key + k
        )


@st.composite
def degenerate_jacobians(draw, m, n):
    """A float64 Jacobian (m, n) whose rows cancel exactly under GradVac's corrections:
    opposite rows (negative multiples of the previous row), collinear rows (multiples of any
    earlier row, of either sign) or rank 1, scaled so that its Gramian spans 1e-15 to 1e15."""
    structure = draw(st.sampled_from(["opposite", "collinear", "rank_one"]), label="structure")
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1), label="seed"))
    factors = 0.1 + 3 * torch.rand(m, generator=gen, dtype=torch.float64)
    signs = torch.where(torch.rand(m, generator=gen) < 0.5, -1.0, 1.0).double()
    J = torch.randn(m, n, generator=gen, dtype=torch.float64)
    if structure == "rank_one":
        J = (signs * factors).unsqueeze(1) * J[:1]
    for i in range(1, m):
        if structure == "opposite" and i % 2 == 1:
            J[i] = -factors[i] * J[i - 1]
        elif structure == "collinear" and bool(torch.rand(1, generator=gen) < 0.6):
            J[i] = signs[i] * factors[i] * J[int(torch.randint(i, (1,), generator=gen))]
    exponent = draw(st.one_of(st.just(0.0), st.floats(-7.5, 7.5)), label="exponent")
    return J * 10.0**exponent


def degenerate_rtol(targets, dtype):
    """The agreement to expect between two implementations of one GradVac call on these inputs.

    Both compute the cosine of (anti)parallel gradients to a few ulps, but GradVac's
    sqrt(1 - phi^2) turns an error of delta in phi = +-1 into up to sqrt(2 delta), and its
    coefficient divides that by sqrt(1 - phi_hat^2) of the target (m corrections per row):
    m sqrt(8 eps) / min sqrt(1 - phi_hat^2). Targets near +-1 are what such inputs produce (20
    calls at beta = 1/2 on exactly opposite gradients bring them within 2^-20 of -1).
    """
    m = targets.shape[-1]
    eps = torch.finfo(dtype).eps
    off = targets.double()[..., ~torch.eye(m, dtype=torch.bool)]
    sh = float((1 - off * off).clamp(min=0).sqrt().min()) if off.numel() else 1.0
    return rtol() + m * math.sqrt(8 * eps) / max(sh, math.sqrt(eps))


@given(data=st.data(), key=st.integers(0, 2**31))
def test_gradvac_over_many_calls_on_cancelling_rows(data, key):
    # Issue 11, defect 3. Corrections towards opposite or collinear gradients cancel a row
    # below what G resolves; its later cosines then came from round-off noise, left [-1, 1]
    # (targets of |112|) and blew the following updates up (norms of 1e16). Over 20 calls on
    # gw's own state, every update must be the Jacobian-space loop's from the same state, and
    # every target a cosine. (The two loops are not compared over their own states: the
    # vector loop measures cosines on residuals of relative size eps / ||g||^2, which G does
    # not determine, so their targets, hence later updates, part; see the documentation page,
    # "Gradient surgery and stateful methods", Precision.)
    m = data.draw(st.integers(2, 7), label="m")
    n = data.draw(st.integers(1, 8), label="n")
    same = data.draw(st.booleans(), label="same J every call")
    J64 = data.draw(degenerate_jacobians(m, n), label="J0")
    dtype = test_dtype()
    state = gw.gradvac_init(m, dtype=dtype)
    for k in range(20):
        if k and not same:
            J64 = data.draw(degenerate_jacobians(m, n), label=f"J{k}")
        w, new_state = gw.gradvac((J64 @ J64.T).to(dtype), state, key=key + k)
        ref, _ = REFERENCES["gradvac"](J64, gw.GradVacState(state.targets.double()), key=key + k)
        assert bool(torch.isfinite(w).all())
        targets = new_state.targets.double()
        assert bool(torch.isfinite(targets).all()) and float(targets.abs().max()) <= 1.0
        update = w.double() @ J64
        # the natural scale: the update, or the sum of the gradients it is made of
        scale = max(float(ref.norm()), float(J64.norm(dim=1).sum()))
        err = float((update - ref).norm())
        bound = degenerate_rtol(state.targets, dtype) * scale
        assert err <= bound, f"call {k}: update differs by {err:.3g} (bound {bound:.3g})"
        state = new_state


@st.composite
def block_sizes(draw):
    return draw(st.lists(st.integers(2, 5), min_size=1, max_size=3))


@given(data=st.data(), sizes=block_sizes(), key=st.integers(0, 2**31))
def test_gradvac_over_column_blocks(data, sizes, key):
    m = data.draw(st.integers(1, 6), label="m")
    state = gw.gradvac_init(m, blocks=len(sizes), dtype=test_dtype())
    ref_state = state
    for k in range(CALLS):
        J = data.draw(jacobians(m=m, n=sum(sizes), structures=GRADVAC_STRUCTURES), label=f"J{k}")
        J64 = J.double()
        blocks64 = torch.split(J64, sizes, dim=1)
        Gs = torch.stack([B @ B.T for B in blocks64]).to(J.dtype)
        W, state = gw.gradvac(Gs, state, key=key + k)
        ref, ref_state = gradvac_blocks(J, ref_state, sizes=sizes, key=key + k)
        update = torch.cat([W[b].double() @ B for b, B in enumerate(blocks64)])
        assert_same_update(update, ref, [J])
        assert W.shape == (len(sizes), m)
        diff = float((state.targets.double() - ref_state.targets.double()).abs().max())
        assert diff <= rtol() * max(float(ref_state.targets.abs().max()), 1.0)
        state = gw.GradVacState(ref_state.targets.to(state.targets))  # follow the reference


@given(data=st.data(), key=st.integers(0, 2**31))
def test_pcgrad_blocks_are_per_block_pcgrad(data, key):
    m = data.draw(st.integers(1, 6), label="m")
    sizes = data.draw(block_sizes(), label="sizes")
    J = data.draw(jacobians(m=m, n=sum(sizes)), label="J").double()
    blocks = torch.split(J, sizes, dim=1)
    W = gw.pcgrad(torch.stack([B @ B.T for B in blocks]), key=key)
    update = torch.cat([W[b] @ B for b, B in enumerate(blocks)])
    ref = torch.cat([pcgrad_reference(B, key=key) for B in blocks])
    assert_same_update(update, ref, [J])


@given(data=st.data(), key=st.integers(0, 2**31))
def test_pcgrad_with_several_keys(data, key):
    J = data.draw(jacobians(), label="J")
    for k in range(CALLS):
        check_against_reference(gw.pcgrad, REFERENCES["pcgrad"], J, key=key + k)


@given(data=st.data(), key=st.integers(0, 2**63 - 1 - CALLS))
def test_pcgrad_include_self_is_the_original_codes_loop(data, key):
    # Issue 11, defect 6: the original code's and LibMTL's order, every task visiting all m.
    J = data.draw(jacobians(), label="J")
    for k in range(CALLS):
        check_against_reference(
            gw.pcgrad, REFERENCES["pcgrad"], J, key=key + k, include_self=True
        )


@given(data=st.data(), key=st.integers(0, 2**31), alpha=st.floats(0.0, 1.0))
def test_cr_mogm_with_a_stateful_inner(data, key, alpha):
    Js = jacobian_sequence(data, GRADVAC_STRUCTURES, n=st.integers(2, 12))
    m = Js[0].shape[0]
    state = gw.cr_mogm_init(m, gw.gradvac_init(m, dtype=Js[0].dtype), dtype=Js[0].dtype)
    for k, J in enumerate(Js):
        inner = functools.partial(gw.gradvac, key=key + k)
        _, state = check_against_reference(
            gw.cr_mogm, REFERENCES["cr_mogm"], J, state, inner=inner, alpha=alpha
        )


@given(data=st.data(), key=st.integers(0, 2**31))
def test_cr_mogm_with_a_stateless_inner(data, key):
    Js = jacobian_sequence(data)
    state = gw.cr_mogm_init(Js[0].shape[0], dtype=Js[0].dtype)
    for k, J in enumerate(Js):
        inner = functools.partial(gw.pcgrad, key=key + k)
        _, state = check_against_reference(gw.cr_mogm, REFERENCES["cr_mogm"], J, state, inner=inner)


def two_batches(data):
    """Jacobians of the same losses on two independent batches, for ``CALLS`` steps."""
    Js = jacobian_sequence(data, count=2 * CALLS)
    return list(zip(Js[::2], Js[1::2]))


@given(data=st.data(), gamma=st.floats(1e-3, 1.0), rho=st.floats(0.0, 1.0))
def test_modo_with_two_batches(data, gamma, rho):
    pairs = two_batches(data)
    state = ref_state = gw.modo_init(pairs[0][0].shape[0], dtype=test_dtype())
    for J1, J2 in pairs:
        M = (J1.double() @ J2.double().T).to(J1.dtype)
        w, state = gw.modo(M, state, gamma=gamma, rho=rho)
        ref, ref_state = REFERENCES["modo"](J1, ref_state, gamma=gamma, rho=rho, J2=J2)
        assert_same_update(w.double() @ J1.double(), ref, [J1])
        # The simplex projection sees entries of size gamma * |M|: its round-off is that size
        # times the dtype's epsilon, which on 1e15-scaled matrices exceeds rtol.
        bound = rtol() + 1e3 * torch.finfo(M.dtype).eps * gamma * float(M.abs().max())
        assert float((state.weights.double() - ref_state.weights.double()).abs().max()) <= bound


@given(data=st.data(), lr=st.floats(0.01, 10.0), n_iters=st.integers(1, 20))
def test_sdmgrad_with_two_batches(data, lr, n_iters):
    pairs = two_batches(data)
    state = ref_state = gw.sdmgrad_init(pairs[0][0].shape[0], dtype=test_dtype())
    for J1, J2 in pairs:
        M = (J1.double() @ J2.double().T).to(J1.dtype)
        w, state = gw.sdmgrad(M, state, lr=lr, n_iters=n_iters)
        ref, ref_state = REFERENCES["sdmgrad"](J1, ref_state, lr=lr, n_iters=n_iters, J2=J2)
        assert_same_update(w.double() @ J1.double(), ref, [J1])
        state = ref_state  # follow the reference: errors must not compound chaotically


@given(data=st.data(), key=st.integers(0, 2**31))
def test_states_are_pure_and_checkpointable(data, key):
    J = data.draw(jacobians(m=st.integers(1, 5)), label="J")
    m = J.shape[0]
    G = J @ J.T
    inner = functools.partial(gw.gradvac, key=key)
    calls = [
        (gw.gradvac, G, gw.gradvac_init(m), {"key": key}),
        (gw.gradvac, torch.stack([G, G]), gw.gradvac_init(m, blocks=2), {"key": key}),
        (gw.cr_mogm, G, gw.cr_mogm_init(m, gw.gradvac_init(m)), {"inner": inner}),
        (gw.modo, G, gw.modo_init(m), {}),
        (gw.sdmgrad, G, gw.sdmgrad_init(m), {"pref": torch.full((m,), 1.0)}),
    ]
    for fn, G_in, state, kwargs in calls:
        _, state = fn(G_in, state, **kwargs)
        _, new_state = assert_pure(fn, G_in, state, **kwargs)
        buffer = io.BytesIO()
        torch.save(new_state, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer)
        assert type(loaded) is type(new_state)
        again = fn(G_in, loaded, **kwargs)
        assert torch.equal(again[0], fn(G_in, new_state, **kwargs)[0])
