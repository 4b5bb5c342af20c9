"""gradnorm: the weights, the logits' Adam step against autograd, the initial losses, blocks from
the engine, errors.

Its values are in test_expected_values.py.
"""

import pytest
import torch

import gramweight as gw
from gramweight.testing import REFERENCES, assert_pure, check_against_reference
from tests.unit.weightings._common import G, edge_gramians

J3 = torch.tensor([[1.0, 2.0, 0.0, 1.0], [0.0, -1.0, 3.0, 0.0], [-2.0, 0.0, -1.0, 1.0]], dtype=torch.float64)
G3 = J3 @ J3.T


def test_weights_sum_to_m_and_first_losses_are_kept():
    state = gw.gradnorm_init(3, dtype=torch.float64)
    w, state = gw.gradnorm(G3, state, losses=[1.0, 2.0, 3.0], lr=0.1)
    assert torch.equal(w, torch.ones(3, dtype=torch.float64))
    for k in range(3):
        w, state = gw.gradnorm(G3, state, losses=[0.5, 2.0 - 0.1 * k, 3.0], lr=0.1)
        assert abs(float(w.sum()) - 3.0) < 1e-12
    assert torch.equal(state.initial_losses, torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64))
    assert int(state.step) == 4


def test_the_gradient_of_the_norm_loss_is_the_autograd_one():
    # one Adam step is lr · sign of the gradient from zero moments; the reference differentiates
    # the loss by autograd and steps torch.optim.Adam, over several calls
    state = gw.gradnorm_init(3, dtype=torch.float64)
    for k in range(5):
        losses = [1.0 / (1 + k), 2.0, 1.5 + 0.2 * k]
        _, state = check_against_reference(
            gw.gradnorm, REFERENCES["gradnorm"], J3 * (1 + k), state, losses=losses, lr=0.05, alpha=0.7,
        )


def test_the_slower_task_gets_more_weight():
    # task 0's loss falls fastest, task 2's not at all: after some steps w_2 > w_1 > w_0
    # (equal gradient norms, so only the training rates matter)
    Gm = torch.eye(3, dtype=torch.float64)
    state = gw.gradnorm_init(3, dtype=torch.float64)
    w, state = gw.gradnorm(Gm, state, losses=[1.0, 1.0, 1.0], lr=0.05)
    for _ in range(20):
        w, state = gw.gradnorm(Gm, state, losses=[0.2, 0.6, 1.0], lr=0.05)
    assert float(w[0]) < float(w[1]) < float(w[2])


def test_block_of_the_engine():
    torch.manual_seed(0)
    trunk = torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.ReLU(), torch.nn.Linear(5, 4))
    heads = torch.nn.Linear(4, 2)
    x, y = torch.randn(6, 3), torch.randn(6, 2)
    with gw.autogram.Engine(trunk, batch_dim=None) as engine:
        losses = ((heads(trunk(x)) - y) ** 2).mean(dim=0)
        Gs = engine.gramian(losses, per="module", retain_graph=True)
        block = Gs[engine.blocks.index("2")]
        engine.reset()
    # its diagonal holds the squared norms of the last layer's gradients
    grads = [torch.autograd.grad(losses[i], list(trunk[2].parameters()), retain_graph=True) for i in range(2)]
    sq = torch.stack([sum((g**2).sum() for g in gi) for gi in grads])
    assert torch.allclose(block.diagonal(), sq, rtol=1e-5)
    w, _ = gw.gradnorm(block, gw.gradnorm_init(2), losses=losses)
    assert torch.equal(w, torch.ones(2))


def test_losses_with_a_graph_leave_no_graph():
    losses = torch.tensor([0.5, 2.0], dtype=torch.float64, requires_grad=True)
    state = gw.gradnorm_init(2)
    for _ in range(2):
        w, state = gw.gradnorm(G, state, losses=losses, lr=0.1)
    assert not w.requires_grad and not any(t.requires_grad for t in state)


def test_permuting_losses_and_state_with_the_gramian():
    perm = torch.tensor([2, 0, 1])
    a, b = gw.gradnorm_init(3, dtype=torch.float64), gw.gradnorm_init(3, dtype=torch.float64)
    for k in range(4):
        losses = torch.tensor([1.0 / (1 + k), 2.0, 1.5], dtype=torch.float64)
        wa, a = gw.gradnorm(G3, a, losses=losses, lr=0.1)
        wb, b = gw.gradnorm(G3[perm][:, perm], b, losses=losses[perm], lr=0.1)
        assert torch.allclose(wb, wa[perm], rtol=1e-12)


@pytest.mark.parametrize("name", list(edge_gramians()))
def test_edge_cases_are_finite(name):
    Gm = edge_gramians()[name]
    state = gw.gradnorm_init(Gm.shape[0])
    for k in range(3):
        losses = [1.0 + i / (1 + k) for i in range(Gm.shape[0])]
        w, state = gw.gradnorm(Gm, state, losses=losses, lr=0.1)
        assert bool(torch.isfinite(w).all()) and bool(torch.isfinite(state.logits).all())


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_precisions(dtype):
    s64, s = gw.gradnorm_init(3, dtype=torch.float64), gw.gradnorm_init(3, dtype=dtype)
    for k in range(3):
        losses = [1.0 / (1 + k), 2.0, 1.5]
        expected, s64 = gw.gradnorm(G3, s64, losses=losses, lr=0.1)
        w, s = gw.gradnorm(G3.to(dtype), s, losses=losses, lr=0.1)
    assert w.dtype == dtype and s.logits.dtype == dtype and s.step.dtype == torch.int64
    rtol = 20 * torch.finfo(dtype).eps  # the state is rounded to the dtype between calls
    assert torch.allclose(w.double(), expected, rtol=rtol, atol=rtol)


def test_pure_and_state_untouched():
    state = gw.gradnorm_init(2)
    assert_pure(gw.gradnorm, G, state, losses=[0.5, 2.0])
    assert int(state.step) == 0


def test_errors():
    with pytest.raises(ValueError, match=r"^`state.logits` must be of shape \(3,\) \(state built for another m or K\?\), got shape \(2,\)\.$"):
        gw.gradnorm(G3, gw.gradnorm_init(2), losses=[1.0, 1.0, 1.0])
    with pytest.raises(TypeError, match=r"^`state` must be a GradNormState \(from the matching _init\), got tuple\.$"):
        gw.gradnorm(G, (1, 2), losses=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"^`losses` must be of length 2, got length 1\.$"):
        gw.gradnorm(G, gw.gradnorm_init(2), losses=[1.0])
    with pytest.raises(ValueError, match=r"^`alpha` must be >= 0, got -1\.0\.$"):
        gw.gradnorm(G, gw.gradnorm_init(2), losses=[1.0, 1.0], alpha=-1.0)
    with pytest.raises(ValueError, match=r"^`betas\[0\]` must be in \[0, 1\), got 1\.5\.$"):
        gw.gradnorm(G, gw.gradnorm_init(2), losses=[1.0, 1.0], betas=(1.5, 0.9))
