"""pcd: the constraints, the moving average, the special cases, TorchJD, errors.

Its values are in test_expected_values.py.
"""

import pytest
import torch

import gramweight as gw
from gramweight.testing import REFERENCES, assert_pure, check_against_reference
from tests.unit.weightings._common import G, edge_gramians, gram


def _secondary_progress(Gm, w, state_before, beta=0.999, eps=1e-8):
    """``g̃_jᵀ d̃ / ‖g̃_j‖²`` of the secondary objectives, recomputed from the definition."""
    step = int(state_before.step) + 1
    v = beta * state_before.sq_norms.double() + (1 - beta) * Gm.diagonal()
    s = (v / (1 - beta**step) + eps).rsqrt()
    Gt = s.unsqueeze(1) * Gm * s
    u = w / s  # w = factor · s · (1, λ): u is proportional to (1, λ)
    return (Gt @ u)[1:] / Gt.diagonal()[1:] / (u[0] if u[0] != 0 else 1.0)


@pytest.mark.parametrize("tau", [0.0, 0.02, 0.3, 1.0])
def test_every_secondary_objective_gets_its_fraction(tau):
    Jm = torch.tensor(
        [[1.0, 0.0, 0.0, 0.5], [-1.0, 1.0, 0.0, 0.0], [0.0, -1.0, 1.0, 0.0], [-0.5, 0.0, -1.0, 1.0]],
        dtype=torch.float64,
    )
    Gm = Jm @ Jm.T
    state = gw.pcd_init(4, dtype=torch.float64)
    w, _ = gw.pcd(Gm, state, tau=tau)
    # the progress of the unscaled d̃ = g̃_0 + Σ λ_j g̃_j: at least tau, equal where λ_j > 0
    progress = _secondary_progress(Gm, w, state)
    assert bool((progress >= tau - 1e-10).all()), progress
    lam = (w / w[0])[1:]
    assert bool((((progress - tau).abs() < 1e-10) | (lam.abs() < 1e-12)).all())
    # the update has the norm of the primary gradient
    assert abs(float(w @ Gm @ w) - float(Gm[0, 0])) < 1e-10


def test_no_constraint_active_gives_the_primary_gradient():
    # g_1 has a positive cosine with g_0: g̃_1ᵀg̃_0 >= tau ‖g̃_1‖² for tau = 0.1
    Gm = gram([[1.0, 0.0], [1.0, 1.0]])
    w, _ = gw.pcd(Gm, gw.pcd_init(2), tau=0.1)
    assert torch.allclose(w, torch.tensor([1.0, 0.0], dtype=torch.float64), atol=1e-15)


def test_infeasible_constraints_are_dropped():
    # two opposite secondary gradients cannot both make progress: the update is g_0
    Gm = gram([[1.0, 1.0, 0.0], [0.0, 1.0, 0.0], [0.0, -2.0, 0.0]])
    w, state = gw.pcd(Gm, gw.pcd_init(3))
    assert torch.equal(w, torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    assert int(state.step) == 1
    # with tau = 0 they can (d ⊥ both): the update follows g_0 projected off them
    w, _ = gw.pcd(Gm, gw.pcd_init(3), tau=0.0)
    assert float((w @ Gm)[1]) >= -1e-12 and float((w @ Gm)[2]) >= -1e-12


def test_primary_gradient_zero_gives_zero():
    Gm = gram([[0.0, 0.0], [1.0, 2.0], [2.0, -1.0]])
    w, _ = gw.pcd(Gm, gw.pcd_init(3), tau=0.5)
    assert torch.equal(w, torch.zeros(3, dtype=torch.float64))


def test_stationary_direction_gives_zero():
    # tau = 0 and g_1 = -g_0: the closest d with g̃_1ᵀd >= 0 to g̃_0 is d = 0
    w, _ = gw.pcd(gram([[1.0, 2.0], [-1.0, -2.0]]), gw.pcd_init(2), tau=0.0)
    assert torch.equal(w, torch.zeros(2, dtype=torch.float64))


def test_moving_average_and_bias_correction():
    beta = 0.9
    state = gw.pcd_init(2, dtype=torch.float64)
    _, state = gw.pcd(G, state, beta=beta)
    assert torch.allclose(state.sq_norms, 0.1 * G.diagonal(), rtol=1e-14)
    _, state = gw.pcd(4 * G, state, beta=beta)
    assert torch.allclose(state.sq_norms, (0.9 * 0.1 + 0.1 * 4) * G.diagonal(), rtol=1e-14)
    assert int(state.step) == 2


def test_scaling_a_secondary_objective_at_every_call_changes_nothing():
    J3 = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0], [2.0, 0.0, -1.0]], dtype=torch.float64)
    D = torch.diag(torch.tensor([1.0, 10.0, 0.1], dtype=torch.float64))
    a, b = gw.pcd_init(3, dtype=torch.float64), gw.pcd_init(3, dtype=torch.float64)
    for k in range(3):
        Gk = (J3 * (1 + k)) @ (J3 * (1 + k)).T
        wa, a = gw.pcd(Gk, a, tau=0.4, eps=0.0)
        wb, b = gw.pcd(D @ Gk @ D, b, tau=0.4, eps=0.0)
        assert torch.allclose(wa @ J3, (wb @ D) @ J3, rtol=1e-10, atol=1e-12)


def test_reference_over_several_calls():
    Jm = torch.tensor(
        [[1.0, 2.0, 0.0, 1.0], [0.0, -1.0, 3.0, 0.0], [-2.0, 0.0, -1.0, 1.0]], dtype=torch.float64
    )
    state = gw.pcd_init(3, dtype=torch.float64)
    for k in range(4):
        Jk = Jm * torch.tensor([[1.0], [2.0 ** k], [0.5]], dtype=torch.float64)
        _, state = check_against_reference(gw.pcd, REFERENCES["pcd"], Jk, state, tau=0.3, beta=0.5)


def test_matches_torchjd_over_several_calls():
    aggregation = pytest.importorskip("torchjd.aggregation")
    generator = torch.Generator().manual_seed(0)
    for m, tau, beta in [(2, 0.02, 0.999), (3, 0.3, 0.9), (5, 0.5, 0.5), (6, 1.0, 0.0)]:
        peer = aggregation.PCDWeighting(tau=tau, beta=beta)
        state = gw.pcd_init(m, dtype=torch.float64)
        for step in range(5):
            Jm = torch.randn(m, 7, generator=generator, dtype=torch.float64)
            Jm = Jm * (1 + 3 * torch.rand(m, 1, generator=generator, dtype=torch.float64))
            if step == 3 and m >= 3:
                Jm[2] = -Jm[1]  # infeasible at this call: both implementations fall back to g_0
            w, state = gw.pcd(Jm @ Jm.T, state, tau=tau, beta=beta)
            expected = peer(Jm @ Jm.T)
            assert torch.allclose(w @ Jm, expected @ Jm, rtol=1e-8, atol=1e-10), (m, step)


def test_vector_tau():
    Gm = gram([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [-1.0, -1.0, 1.0]])
    w, _ = gw.pcd(Gm, gw.pcd_init(3, dtype=torch.float64), tau=[0.1, 0.6])
    progress = _secondary_progress(Gm, w, gw.pcd_init(3, dtype=torch.float64))
    assert bool((progress >= torch.tensor([0.1, 0.6], dtype=torch.float64) - 1e-10).all())
    w2, _ = gw.pcd(Gm, gw.pcd_init(3), tau=torch.tensor([0.1, 0.6], dtype=torch.float64))
    assert torch.allclose(w, w2, rtol=1e-12)


def test_m1_is_the_gradient_itself():
    w, _ = gw.pcd(torch.tensor([[4.0]], dtype=torch.float64), gw.pcd_init(1))
    assert torch.equal(w, torch.tensor([1.0], dtype=torch.float64))


@pytest.mark.parametrize("name", list(edge_gramians()))
def test_edge_cases_are_finite(name):
    Gm = edge_gramians()[name]
    state = gw.pcd_init(Gm.shape[0])
    for _ in range(2):
        w, state = gw.pcd(Gm, state)
        assert bool(torch.isfinite(w).all()) and bool(torch.isfinite(state.sq_norms).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_precisions(dtype):
    J3 = torch.tensor([[1.0, 2.0, 0.0], [0.0, -1.0, 3.0], [-2.0, 0.0, -1.0]], dtype=torch.float64)
    G3 = J3 @ J3.T
    expected, _ = gw.pcd(G3, gw.pcd_init(3, dtype=torch.float64), tau=0.3)
    w, state = gw.pcd(G3.to(dtype), gw.pcd_init(3, dtype=dtype), tau=0.3)
    assert w.dtype == dtype and state.sq_norms.dtype == dtype and state.step.dtype == torch.int64
    # accurate to the rounding of the input Gramian
    rtol = 20 * torch.finfo(dtype).eps
    assert torch.allclose(w.double(), expected, rtol=rtol, atol=rtol)


def test_pure_and_state_untouched():
    state = gw.pcd_init(2)
    assert_pure(gw.pcd, G, state)
    assert int(state.step) == 0


def test_errors():
    with pytest.raises(ValueError, match=r"^`state.sq_norms` must be of shape \(3,\) \(state built for another m or K\?\), got shape \(2,\)\.$"):
        gw.pcd(torch.eye(3, dtype=torch.float64), gw.pcd_init(2))
    with pytest.raises(TypeError, match=r"^`state` must be a PCDState \(from the matching _init\), got tuple\.$"):
        gw.pcd(G, (torch.tensor(0), torch.zeros(2)))
    with pytest.raises(ValueError, match=r"^`tau` must be in \[0, 1\], got 1\.5\.$"):
        gw.pcd(G, gw.pcd_init(2), tau=1.5)
    with pytest.raises(ValueError, match=r"^`tau` must be of length 2, got length 1\.$"):
        gw.pcd(torch.eye(3, dtype=torch.float64), gw.pcd_init(3), tau=[0.1])
    with pytest.raises(ValueError, match=r"^`tau` must be non-negative, got minimum -0\.1\.$"):
        gw.pcd(torch.eye(3, dtype=torch.float64), gw.pcd_init(3), tau=[0.1, -0.1])
    with pytest.raises(ValueError, match=r"^`tau` must be in \[0, 1\], got maximum 2\.$"):
        gw.pcd(torch.eye(3, dtype=torch.float64), gw.pcd_init(3), tau=[0.1, 2.0])
    with pytest.raises(ValueError, match=r"^`tau` must be all positive or all zero, got \[0\.0, 0\.5\]\.$"):
        gw.pcd(torch.eye(3, dtype=torch.float64), gw.pcd_init(3), tau=[0.0, 0.5])
    with pytest.raises(ValueError, match=r"^`beta` must be in \[0, 1\), got 1\.0\.$"):
        gw.pcd(G, gw.pcd_init(2), beta=1.0)
    with pytest.raises(ValueError, match=r"^`eps` must be >= 0, got -1e-08\.$"):
        gw.pcd(G, gw.pcd_init(2), eps=-1e-8)
    with pytest.raises(ValueError, match=r"^`m` must be >= 1, got 0\.$"):
        gw.pcd_init(0)
