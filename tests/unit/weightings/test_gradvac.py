"""gradvac and gradvac_init: the targets by hand, blocks, edge cases, errors.

Its weights on the two-task example are in test_expected_values.py.
"""

import io
import math

import pytest
import torch

import gramweight as gw
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
