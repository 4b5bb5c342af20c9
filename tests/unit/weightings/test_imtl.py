"""imtl: IMTL-G on the scaled Gramian, the scales' Adam steps, the state, errors.

Its values are in test_expected_values.py.
"""

import pytest
import torch

import gramweight as gw
from gramweight.testing import REFERENCES, assert_pure, check_against_reference
from tests.unit.weightings._common import G, edge_gramians, gram

J3 = torch.tensor([[1.0, 2.0, 0.0, 1.0], [0.0, -1.0, 3.0, 0.0], [-2.0, 0.0, -1.0, 1.0]], dtype=torch.float64)
G3 = J3 @ J3.T
LOSSES = [0.5, 2.0, 1.2]


def test_first_call_is_imtl_g():
    w, state = gw.imtl(G3, gw.imtl_init(3), losses=LOSSES)
    assert torch.allclose(w, gw.imtl_g(G3), rtol=1e-14)
    assert int(state.step) == 1


def test_equal_projections_of_the_scaled_gradients():
    # IMTL-G's claim on the scaled gradients e^{s_i} g_i: the update projects equally on each
    state = gw.imtl_init(3, dtype=torch.float64)
    for _ in range(5):
        w, state = gw.imtl(G3, state, losses=LOSSES, lr=0.2)
    update = w @ J3
    unit = J3 / J3.norm(dim=1, keepdim=True)  # the scales do not change the unit gradients
    projections = unit @ update
    assert torch.allclose(projections, projections[0].expand(3), rtol=1e-10)
    assert float((w / state.log_scales.exp()).sum()) != pytest.approx(1.0)  # (the scales moved)


def test_scales_approach_the_inverse_losses():
    state = gw.imtl_init(3, dtype=torch.float64)
    for _ in range(400):
        _, state = gw.imtl(G3, state, losses=LOSSES, lr=0.05)
    target = -torch.tensor(LOSSES, dtype=torch.float64).log()
    assert torch.allclose(state.log_scales, target, atol=0.05)


def test_reference_over_several_calls():
    state = gw.imtl_init(3, dtype=torch.float64)
    for k in range(4):
        losses = [x * (1 + 0.3 * k) for x in LOSSES]
        _, state = check_against_reference(gw.imtl, REFERENCES["imtl"], J3, state, losses=losses, lr=0.1)


def test_losses_with_a_graph_leave_no_graph():
    losses = torch.tensor([0.5, 2.0], dtype=torch.float64, requires_grad=True)
    w, state = gw.imtl(G, gw.imtl_init(2), losses=losses, lr=0.1)
    assert not w.requires_grad and not any(t.requires_grad for t in state)


def test_lr_zero_keeps_the_scales():
    state = gw.imtl_init(2, dtype=torch.float64)
    _, new = gw.imtl(G, state, losses=[0.5, 2.0], lr=0.0)
    assert torch.equal(new.log_scales, state.log_scales)


def test_permuting_losses_and_state_with_the_gramian():
    perm = torch.tensor([2, 0, 1])
    a, b = gw.imtl_init(3, dtype=torch.float64), gw.imtl_init(3, dtype=torch.float64)
    for _ in range(3):
        wa, a = gw.imtl(G3, a, losses=LOSSES, lr=0.1)
        wb, b = gw.imtl(G3[perm][:, perm], b, losses=torch.tensor(LOSSES, dtype=torch.float64)[perm], lr=0.1)
        assert torch.allclose(wb, wa[perm], rtol=1e-12)


@pytest.mark.parametrize("name", list(edge_gramians()))
def test_edge_cases_are_finite(name):
    Gm = edge_gramians()[name]
    state = gw.imtl_init(Gm.shape[0])
    for _ in range(2):
        w, state = gw.imtl(Gm, state, losses=[1.0 + i for i in range(Gm.shape[0])], lr=0.1)
        assert bool(torch.isfinite(w).all()) and bool(torch.isfinite(state.log_scales).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_precisions(dtype):
    s64, s = gw.imtl_init(3, dtype=torch.float64), gw.imtl_init(3, dtype=dtype)
    for _ in range(2):
        expected, s64 = gw.imtl(G3, s64, losses=LOSSES, lr=0.1)
        w, s = gw.imtl(G3.to(dtype), s, losses=LOSSES, lr=0.1)
    assert w.dtype == dtype and s.log_scales.dtype == dtype and s.step.dtype == torch.int64
    rtol = 50 * torch.finfo(dtype).eps  # IMTL-G's solve in the work dtype, the state rounded
    assert torch.allclose(w.double(), expected, rtol=rtol, atol=rtol)


def test_pure_and_state_untouched():
    state = gw.imtl_init(2)
    assert_pure(gw.imtl, G, state, losses=[0.5, 2.0])
    assert int(state.step) == 0


def test_errors():
    with pytest.raises(ValueError, match=r"^`state.log_scales` must be of shape \(3,\) \(state built for another m or K\?\), got shape \(2,\)\.$"):
        gw.imtl(G3, gw.imtl_init(2), losses=LOSSES)
    with pytest.raises(TypeError, match=r"^`state` must be a IMTLState \(from the matching _init\), got tuple\.$"):
        gw.imtl(G, (1, 2), losses=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"^`losses` must be positive, got minimum -1\.$"):
        gw.imtl(G, gw.imtl_init(2), losses=[1.0, -1.0])
    with pytest.raises(ValueError, match=r"^`lr` must be >= 0, got -0\.1\.$"):
        gw.imtl(G, gw.imtl_init(2), losses=[1.0, 1.0], lr=-0.1)
    with pytest.raises(ValueError, match=r"^`betas\[1\]` must be in \[0, 1\), got 1\.0\.$"):
        gw.imtl(G, gw.imtl_init(2), losses=[1.0, 1.0], betas=(0.9, 1.0))
    with pytest.raises(TypeError, match=r"^`betas` must be a pair of numbers, got 0\.9\.$"):
        gw.imtl(G, gw.imtl_init(2), losses=[1.0, 1.0], betas=0.9)
    with pytest.raises(ValueError, match=r"^`eps` must be > 0, got 0\.0\.$"):
        gw.imtl(G, gw.imtl_init(2), losses=[1.0, 1.0], eps=0.0)
