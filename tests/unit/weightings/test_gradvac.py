"""gradvac and gradvac_init: the targets by hand, blocks, edge cases, errors.

Its weights on the two-task example are in test_expected_values.py.
"""

import io
import math

import pytest
import torch

import gramweight as gw
import gramweight._host
from gramweight.testing import assert_pure

G2 = torch.tensor([[18.0, -22.0], [-22.0, 38.0]], dtype=torch.float64)
EPS = 1e-8


def test_targets_over_two_calls_by_hand():
    phi = -22 / (math.sqrt(18) * math.sqrt(38) + EPS)  # the cosine of the original gradients
    # First call: targets 0, each row is corrected; the targets become phi/2.
    _, state = gw.gradvac(G2, gw.gradvac_init(2), key=3)
    expected_targets = torch.tensor([[0.0, phi / 2], [phi / 2, 0.0]], dtype=torch.float64)
    assert torch.allclose(state.targets, expected_targets, rtol=1e-14, atol=0)
    # Second call: the cosine is below its target phi/2 again; targets become 3 phi / 4.
    _, state = gw.gradvac(G2, state, key=4)
    assert torch.allclose(state.targets, expected_targets * 1.5, rtol=1e-14, atol=0)


def test_beta_zero_keeps_the_targets_and_equals_pcgrad_up_to_eps():
    state = gw.gradvac_init(2, dtype=torch.float64)
    for key in range(3):
        w, state = gw.gradvac(G2, state, beta=0.0, key=key)
        assert torch.allclose(w, gw.pcgrad(G2, key=key), rtol=1e-8)
        assert torch.equal(state.targets, torch.zeros(2, 2, dtype=torch.float64))


def test_above_the_target_nothing_changes_but_the_target():
    # Cosine -0.8412 above a target of -0.9: no correction, target -> (-0.9 + phi) / 2.
    targets = torch.tensor([[0.0, -0.9], [-0.9, 0.0]], dtype=torch.float64)
    w, state = gw.gradvac(G2, gw.GradVacState(targets), key=0)
    assert torch.equal(w, torch.ones(2, dtype=torch.float64))
    phi = -22 / (math.sqrt(18 * 38) + EPS)
    assert math.isclose(float(state.targets[0, 1]), (-0.9 + phi) / 2, rel_tol=1e-14)


def test_one_task_and_zero_gramian():
    w, state = gw.gradvac(torch.tensor([[3.0]]), gw.gradvac_init(1), key=0)
    assert torch.equal(w, torch.tensor([1.0]))
    w, state = gw.gradvac(torch.zeros(3, 3), gw.gradvac_init(3), key=0)
    assert torch.equal(w, torch.ones(3))
    assert torch.equal(state.targets, torch.zeros(3, 3))


def test_zero_gradient_gets_no_coefficient():
    # A positive target towards a zero gradient: the correction would be ~1/eps times zero.
    G = torch.tensor([[4.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    targets = torch.tensor([[0.0, 0.5], [0.5, 0.0]], dtype=torch.float64)
    w, _ = gw.gradvac(G, gw.GradVacState(targets), key=0)
    assert torch.equal(w, torch.ones(2, dtype=torch.float64))


def test_eps_zero_never_gives_nan():
    G = torch.tensor([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]], dtype=torch.float64)
    state = gw.GradVacState(torch.tensor([[0.0, 1.0, 1.0], [-1.0, 0.0, 1.0], [1.0, 1.0, 0.0]]))
    for key in range(4):
        w, state = gw.gradvac(G, state, eps=0.0, key=key)
        assert bool(torch.isfinite(w).all()) and bool(torch.isfinite(state.targets).all())


@pytest.mark.parametrize("scale", [1e-15, 1e15])
def test_extreme_scales_are_finite(scale):
    J = torch.randn(4, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    state = gw.gradvac_init(4)
    for key in range(3):
        w, state = gw.gradvac(J @ J.T * scale, state, key=key)
        assert bool(torch.isfinite(w).all()) and bool(torch.isfinite(state.targets).all())


def test_duplicated_rows_are_never_corrected_towards_each_other():
    G = torch.ones(3, 3, dtype=torch.float64) * 2.0
    w, state = gw.gradvac(G, gw.gradvac_init(3), key=0)
    assert torch.equal(w, torch.ones(3, dtype=torch.float64))
    assert torch.allclose(state.targets, 0.5 * (1 - torch.eye(3, dtype=torch.float64)), rtol=1e-8)


def test_blocks_are_vaccinated_separately_with_shared_orders():
    gen = torch.Generator().manual_seed(5)
    Gs = torch.stack([J @ J.T for J in torch.randn(3, 4, 6, generator=gen, dtype=torch.float64)])
    state = gw.gradvac_init(4, blocks=3, dtype=torch.float64)
    singles = [gw.gradvac_init(4, dtype=torch.float64) for _ in range(3)]
    for key in range(3):
        W, state = gw.gradvac(Gs, state, key=key)
        assert W.shape == (3, 4) and state.targets.shape == (3, 4, 4)
        for k in range(3):
            w_k, singles[k] = gw.gradvac(Gs[k], singles[k], key=key)
            assert torch.allclose(W[k], w_k, rtol=1e-13, atol=0)
            assert torch.allclose(state.targets[k], singles[k].targets, rtol=1e-13, atol=1e-15)


def test_one_block_is_the_whole_model():
    w, s = gw.gradvac(G2, gw.gradvac_init(2), key=0)
    W, S = gw.gradvac(G2.unsqueeze(0), gw.gradvac_init(2, blocks=1), key=0)
    # (m = 2 without blocks runs on Python floats, the block stack through the loop)
    assert torch.allclose(W[0], w, rtol=1e-13, atol=0)
    assert torch.allclose(S.targets[0], s.targets, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32, torch.float64])
def test_state_follows_the_gramian(dtype):
    w, state = gw.gradvac(G2.to(dtype), gw.gradvac_init(2, dtype=torch.float64), key=0)
    assert w.dtype == dtype and state.targets.dtype == dtype


def test_pure_and_saveable():
    J = torch.randn(3, 5, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    _, state = gw.gradvac(J @ J.T, gw.gradvac_init(3), key=0)
    w, new_state = assert_pure(gw.gradvac, J @ J.T, state, key=1)
    buffer = io.BytesIO()
    torch.save(new_state, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer)  # weights_only=True: the state class is an allowed global
    assert isinstance(loaded, gw.GradVacState) and torch.equal(loaded.targets, new_state.targets)


def test_init():
    assert gw.gradvac_init(3).targets.shape == (3, 3)
    assert gw.gradvac_init(3, blocks=2).targets.shape == (2, 3, 3)
    assert gw.gradvac_init(2, dtype=torch.float64).targets.dtype == torch.float64
    with pytest.raises(ValueError, match="`m` must be >= 1, got 0."):
        gw.gradvac_init(0)
    with pytest.raises(ValueError, match="`blocks` must be >= 1, got 0."):
        gw.gradvac_init(2, blocks=0)
    with pytest.raises(TypeError, match="`m` must be an int, got float."):
        gw.gradvac_init(2.0)


def test_errors():
    state = gw.gradvac_init(2)
    with pytest.raises(TypeError, match="key"):
        gw.gradvac(G2, state)
    no_key = r"`key` must be an int \(the random key; pass key=step\), got None\."
    with pytest.raises(TypeError, match=no_key):
        gw.gradvac(G2, state, key=None)
    with pytest.raises(
        ValueError,
        match=r"`state.targets` must be of shape \(2, 2\) \(state built for another m or K\?\), "
        r"got shape \(3, 3\)\.",
    ):
        gw.gradvac(G2, gw.gradvac_init(3), key=0)
    with pytest.raises(ValueError, match=r"`state.targets` must be of shape \(3, 2, 2\)"):
        gw.gradvac(torch.stack([G2] * 3), gw.gradvac_init(2, blocks=2), key=0)
    with pytest.raises(ValueError, match=r"`state.targets` must be of shape \(2, 2\)"):
        gw.gradvac(G2, gw.gradvac_init(2, blocks=1), key=0)
    not_a_state = r"`state` must be a GradVacState \(from the matching _init\), got Tensor\."
    with pytest.raises(TypeError, match=not_a_state):
        gw.gradvac(G2, torch.zeros(2, 2), key=0)
    with pytest.raises(ValueError, match=r"`beta` must be in \[0, 1\], got 1.5\."):
        gw.gradvac(G2, state, beta=1.5, key=0)
    with pytest.raises(ValueError, match=r"`beta` must be in \[0, 1\], got -0.1\."):
        gw.gradvac(G2, state, beta=-0.1, key=0)
    with pytest.raises(ValueError, match="`eps` must be >= 0, got -1e-08."):
        gw.gradvac(G2, state, eps=-1e-8, key=0)
    with pytest.raises(ValueError, match=r"`G` must be a square matrix, got shape \(2, 3\)\."):
        gw.gradvac(torch.zeros(2, 3), state, key=0)
    with pytest.raises(ValueError, match=r"got shape \(1, 1, 2, 2\)"):
        gw.gradvac(torch.zeros(1, 1, 2, 2), state, key=0)


def test_a_gramian_with_a_graph_is_detached():
    J = torch.randn(3, 5, generator=torch.Generator().manual_seed(7), requires_grad=True)
    w, state = gw.gradvac(J @ J.T, gw.gradvac_init(3), key=0)
    assert not w.requires_grad and not state.targets.requires_grad


@pytest.mark.skipif(
    not gramweight._host._enabled,
    reason="GRAMWEIGHT_NO_HOST=1: there is no two-task closed form to compare (the float32 loop "
    "on opposite gradients is checked against float64 only away from them, test_precision.py)",
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("eps", [0.0, 1e-8, 0.1])
def test_two_task_closed_form_matches_the_vectorised_loop(dtype, eps):
    # gw.gradvac answers m = 2 on Python floats; the general loop must agree, over a few
    # steps (targets carried), with zero, opposite and badly scaled gradients among the draws.
    from gramweight.weightings._surgery import gradvac_weights

    gen = torch.Generator().manual_seed(11)
    orders = gw.visiting_orders(2, key=0)
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-11, atol=1e-13)
    for case in range(30):
        state = gw.gradvac_init(2, dtype=dtype)
        targets = state.targets.double()
        for step in range(3):
            J = torch.randn(2, 3, generator=gen, dtype=torch.float64)
            if case % 5 == 1:
                J[1] = -2.0 * J[0]
            elif case % 5 == 2:
                J[0] = 0.0
            elif case % 5 == 3:
                J[0] *= 1e4
            G = (J @ J.T).to(dtype)
            w, state = gw.gradvac(G, state, key=step, beta=0.3, eps=eps)
            w_loop, targets = gradvac_weights(G.double(), targets, orders, 0.3, eps)
            assert torch.allclose(w.double(), w_loop, **tol)
            assert torch.allclose(state.targets.double(), targets, **tol)
            targets = state.targets.double()


# g_1 = -2 g_0: with the key-0 orders, g_0 is corrected towards g_1 first and cancels.
J_OPPOSITE = torch.tensor([[-3.0, -1.0, 7.0], [6.0, 2.0, -14.0], [-2.0, 1.0, -6.0]], dtype=torch.float64)


def test_a_row_cancelled_by_an_opposite_gradient_is_zero_to_the_precision_of_g():
    # Issue 11, defect 3. Key 0: g_0 visits g_1, then g_2. At target 0 the correction towards
    # g_1 = -2 g_0 is a = 1/2 (1 - 7.4e-10) (the 7.4e-10 from eps), leaving r = 7.4e-10 g_0:
    # ||r||^2 = 3.2e-17, while c^T G c for c = (1, a, 0) is computed with an error of order
    # eps ||c||_G^2 = 2.2e-16 * 236. G does not determine r: gw.gradvac takes it as zero, so
    # its cosine with g_2 is 0 and target (0, 2) becomes (1 - beta) 0 + beta 0 = 0. (Before:
    # that cosine came from the noise, -2.72, and the target was -1.361.)
    from gramweight.testing.references._gradvac import gradvac as vector_gradvac

    G = J_OPPOSITE @ J_OPPOSITE.T
    assert gw.visiting_orders(3, key=0)[0].tolist() == [1, 2]
    state = gw.gradvac_init(3, dtype=torch.float64)
    w, state1 = gw.gradvac(G, state, key=0)
    ref, ref_state1 = vector_gradvac(J_OPPOSITE, state, key=0)
    assert torch.allclose(w @ J_OPPOSITE, ref, rtol=0, atol=1e-6 * 15.4)  # scale: max ||g_i||
    assert float(state1.targets.abs().max()) <= 1.0
    assert float(state1.targets[0, 2]) == 0.0
    # The vector loop measures r's cosine with g_2 (r is eps-sized but exact in J): -0.589, and
    # stores -0.2947 there. Every other target agrees.
    assert float(ref_state1.targets[0, 2]) == pytest.approx(-0.2947, abs=1e-4)
    others = torch.ones(3, 3, dtype=torch.bool)
    others[0, 2] = False
    assert torch.allclose(state1.targets[others], ref_state1.targets[others], rtol=0, atol=1e-9)
    # Second call (key 1), from gw's own state: the update is the vector loop's from the same
    # state. (Before the fix: [-3.21, 0.60, -3.17]; the vector loop from its own state, with
    # -0.2947 at (0, 2), gives [-6.40, 0.63, -2.77].)
    w2, state2 = gw.gradvac(G, state1, key=1)
    ref2, _ = vector_gradvac(J_OPPOSITE, state1, key=1)
    assert torch.allclose(w2 @ J_OPPOSITE, ref2, rtol=0, atol=1e-6 * 15.4)
    assert float(state2.targets.abs().max()) <= 1.0
    # G does not determine the vector loop's answer either: moving g_1 by 1e-8 of its norm,
    # orthogonally to g_0 and g_2, changes G by less than an ulp and the vector loop's second
    # update (from its own state) from [-6.40, 0.63, -2.77] to [-7.47, 0.65, -2.63].
    moved = J_OPPOSITE.clone()
    normal = torch.linalg.cross(J_OPPOSITE[0], J_OPPOSITE[2])
    moved[1] += 1e-8 * J_OPPOSITE[1].norm() * normal / normal.norm()
    assert float((moved @ moved.T - G).abs().max()) <= 2.0**-52 * float(G.abs().max())
    updates = []
    for J in (J_OPPOSITE, moved):
        ref_state = gw.gradvac_init(3, dtype=torch.float64)
        for key in (0, 1):
            update, ref_state = vector_gradvac(J, ref_state, key=key)
        updates.append(update)
    assert float((updates[0] - updates[1]).norm()) > 1.0


@pytest.mark.parametrize("seed", range(12))
def test_on_rank_one_inputs_cancelled_rows_have_cosine_zero(seed):
    # g_i = f_i v, |f_i| in [1, 3], ||v|| = 1. From targets 0, a row is corrected only towards
    # an opposite g_j, and then cancels to an eps-sized residual (relative size ~1e-8: its
    # squared norm is below G's round-off). Until then its cosine with g_j is
    # sign(f_i f_j) rho_ij, rho_ij = |f_i f_j| / (|f_i f_j| + eps) (eps in the denominator);
    # after, 0. So every new target is beta times one of these: 0 or sign(f_i f_j) rho_ij / 2.
    # (Without the round-off test, most of them came from the residual's noise.)
    gen = torch.Generator().manual_seed(seed)
    m = 3 + seed % 5
    signs = torch.where(torch.rand(m, generator=gen) < 0.5, -1.0, 1.0).double()
    signs[:2] = torch.tensor([1.0, -1.0])  # (at least one opposite pair)
    f = (1 + 2 * torch.rand(m, generator=gen, dtype=torch.float64)) * signs
    v = torch.randn(4, generator=gen, dtype=torch.float64)
    J = f.unsqueeze(1) * (v / v.norm())
    _, state = gw.gradvac(J @ J.T, gw.gradvac_init(m, dtype=torch.float64), key=seed)
    ff = f.unsqueeze(1) * f
    live = 0.5 * ff.sign() * ff.abs() / (ff.abs() + EPS)
    t = state.targets
    assert bool(((t - live).abs() <= 1e-12).logical_or(t == 0.0).all()), (t, live)
    assert int((t == 0).sum()) > m  # (rows did cancel: the diagonal is 0 too)


# An opposite-rows 5 x 5 Jacobian (rows 1 and 3 are negative multiples of rows 0 and 2)
J_OPPOSITE_5 = torch.tensor(
    [
        [1.5012652635072241, 0.984237824777038, 0.3537647448071938, -0.05854397897238273, 0.8447322208911419],
        [-0.9338177386205615, -0.6122160834194852, -0.22004891609079988, 0.03641555385496807, -0.5254407408385993],
        [-0.30174461553844145, 0.6306374156900073, 0.1096092660049609, 0.616605104173616, 2.3928958622669727],
        [0.7128326002738864, -1.489799272985011, -0.2589377045254166, -1.456649753189162, -5.652906768992813],
        [1.4725104043369281, 0.4912604887388068, 0.8319729296208758, 1.437138069354563, -0.4134769164277716],
    ],
    dtype=torch.float64,
)


def test_updates_stay_bounded_after_cancellations():
    # Issue 11, defect 3: the second update had norm 2.1e17 (against 3.26 from the same state
    # in vector space, 2.95 from the vector loop's own state): targets measured on noise.
    from gramweight.testing.references._gradvac import gradvac as vector_gradvac

    J = J_OPPOSITE_5
    assert torch.allclose(J[1] / J[0], J[1, 0] / J[0, 0] * torch.ones(5, dtype=torch.float64))
    scale = float(J.norm(dim=1).max())
    state = gw.gradvac_init(5, dtype=torch.float64)
    for key in range(20):
        w, new_state = gw.gradvac(J @ J.T, state, key=key)
        ref, _ = vector_gradvac(J, state, key=key)
        assert torch.allclose(w @ J, ref, rtol=0, atol=1e-6 * scale), key
        assert float(new_state.targets.abs().max()) <= 1.0
        state = new_state


def test_cosines_stay_in_the_unit_interval_on_the_two_task_path():
    # With eps = 0 the cosine of exactly opposite gradients, from G, can be -1 - ulp: here
    # G_01 / sqrt(G_00 G_11) = -1.0000000000000002 (before: a target of -1 - ulp).
    J = torch.tensor([[0.5684312772806678, 0.6472479926153957, 0.24900222346962442]], dtype=torch.float64)
    J = torch.cat([J, -1.6885894536972046 * J])
    G = J @ J.T
    assert float(G[0, 1] / (G[0, 0].sqrt() * G[1, 1].sqrt())) < -1.0
    w, state = gw.gradvac(G, gw.gradvac_init(2, dtype=torch.float64), eps=0.0, beta=1.0, key=0)
    assert float(state.targets.abs().max()) == 1.0 and torch.equal(state.targets, state.targets.T)
    assert bool(torch.isfinite(w).all())


def test_non_contiguous_inputs():
    # Issue 11, defect 5: `view size is not compatible` on a transposed (strided) G, m >= 3.
    gen = torch.Generator().manual_seed(8)
    J = torch.randn(4, 6, generator=gen, dtype=torch.float64)
    G = J @ J.T
    targets = torch.rand(4, 4, generator=gen, dtype=torch.float64) - 0.5
    w, state = gw.gradvac(G, gw.GradVacState(targets.contiguous()), key=3)
    w_t, state_t = gw.gradvac(G.mT, gw.GradVacState(targets.mT.contiguous().mT), key=3)
    assert not G.mT.is_contiguous()
    assert torch.equal(w, w_t) and torch.equal(state.targets, state_t.targets)
    Gs = torch.stack([G, 2 * G])
    W, _ = gw.gradvac(Gs.mT, gw.gradvac_init(4, blocks=2), key=3)
    assert torch.equal(W, gw.gradvac(Gs, gw.gradvac_init(4, blocks=2), key=3)[0])
    W, _ = gw.gradvac(Gs.permute(1, 2, 0).contiguous().permute(2, 0, 1), gw.gradvac_init(4, blocks=2), key=3)
    assert torch.equal(W, gw.gradvac(Gs, gw.gradvac_init(4, blocks=2), key=3)[0])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_target_is_refused(bad):
    # (before: NaN weights)
    targets = torch.zeros(3, 3)
    targets[0, 1] = bad
    with pytest.raises(
        ValueError, match=r"^`state.targets` must be finite \(no NaN or Inf\), got a non-finite entry\.$"
    ):
        gw.gradvac(torch.eye(3), gw.GradVacState(targets), key=0)
