"""uncertainty, imtl_l, dwa and famo: their weights and steps against the papers' formulas
(autograd where a formula is a gradient), their fixed points, and errors."""

import math

import pytest
import torch

import gramweight as gw

F64 = torch.float64
lw = gw.loss_weightings


def t(*values):
    return torch.tensor(values, dtype=F64)


def _state_grad(total, s, losses):
    x = s.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(total(x, torch.tensor(losses, dtype=F64)), x)
    return g


@pytest.mark.parametrize(
    ("fn", "init", "field", "weights", "total"),
    [
        # Kendall et al.: Σ exp(-s) l + s, weights exp(-s)
        (lw.uncertainty, lw.uncertainty_init, "log_var", lambda s: torch.exp(-s),
         lambda s, l: (torch.exp(-s) * l + s).sum()),
        # IMTL-L: Σ exp(s) l - s, weights exp(s)
        (lw.imtl_l, lw.imtl_l_init, "log_scale", lambda s: torch.exp(s),
         lambda s, l: (torch.exp(s) * l - s).sum()),
    ],
)
def test_learned_scales_step_and_fixed_point(fn, init, field, weights, total):
    losses = [0.5, 2.0, 3.0]
    state = init(3, dtype=F64)._replace(**{field: torch.tensor([0.2, -0.1, 0.4], dtype=F64)})
    s = getattr(state, field)
    D, new = fn(losses, state, lr=0.3)
    # the weights are those of the current s; the step is one of gradient descent on the total
    torch.testing.assert_close(D.double(), weights(s), rtol=1e-6, atol=0)
    torch.testing.assert_close(getattr(new, field), s - 0.3 * _state_grad(total, s, losses), rtol=1e-14, atol=0)
    assert int(new.step) == int(state.step) + 1
    # the fixed point: every weighted loss D_i l_i = 1
    state = init(3, dtype=F64)
    for _ in range(300):
        D, state = fn(torch.tensor(losses, dtype=F64), state, lr=0.2)
    torch.testing.assert_close(D * torch.tensor(losses, dtype=F64), torch.ones(3, dtype=F64), rtol=1e-9, atol=0)
    with pytest.raises(ValueError, match=r"^`lr` must be >= 0, got -1\.0\.$"):
        fn(losses, state, lr=-1.0)


def test_dwa_hand_derived():
    state = lw.dwa_init(2, dtype=F64)
    D, state = lw.dwa(t(2.0, 4.0), state)
    assert D.tolist() == [1.0, 1.0]  # one epoch recorded
    D, state = lw.dwa(t(1.0, 3.0), state)
    # r = (1/2, 3/4), T = 2: D = 2 exp(r/2) / Σ exp(r/2)
    r = (0.5, 0.75)
    e = [math.exp(x / 2) for x in r]
    torch.testing.assert_close(D, torch.tensor([2 * x / sum(e) for x in e], dtype=F64), rtol=1e-14, atol=0)
    D, state = lw.dwa(t(1.0, 1.5), state, temperature=0.5)
    e = [math.exp(x / 0.5) for x in (1.0, 0.5)]  # r = (1/1, 1.5/3)
    torch.testing.assert_close(D, torch.tensor([2 * x / sum(e) for x in e], dtype=F64), rtol=1e-14, atol=0)
    assert state.history.tolist() == [[1.0, 1.5], [1.0, 3.0]] and int(state.step) == 3
    with pytest.raises(ValueError, match=r"^`temperature` must be > 0, got 0\.0\.$"):
        lw.dwa(t(1.0, 1.0), state, temperature=0.0)
    with pytest.raises(ValueError, match=r"^`losses` must be positive, got minimum 0\.$"):
        lw.dwa(t(1.0, 0.0), state)


def test_famo_hand_derived():
    state = lw.famo_init(2, dtype=F64)
    D, state = lw.famo(t(1.0, 4.0), state)
    # z = (1/2, 1/2): D ∝ z / l = (1/2, 1/8), normalised: (0.8, 0.2)
    torch.testing.assert_close(D, torch.tensor([0.8, 0.2], dtype=F64), rtol=1e-14, atol=0)
    assert state.logits.tolist() == [0.0, 0.0]  # no step on the first call
    D, state = lw.famo(t(0.5, 4.0), state, lr=0.1, gamma=0.01)
    # delta = (log 1 - log 0.5, log 4 - log 4) = (log 2, 0); J_zᵀ delta by autograd through
    # the softmax (the paper's chain rule); xi = 0 - 0.1 (J_zᵀ delta + 0.01 * 0)
    xi0 = torch.zeros(2, dtype=F64, requires_grad=True)
    delta = torch.tensor([math.log(2.0), 0.0], dtype=F64)
    (jz,) = torch.autograd.grad(torch.softmax(xi0, 0) @ delta, xi0)
    torch.testing.assert_close(state.logits, -0.1 * jz, rtol=1e-14, atol=0)
    assert float(state.logits[1]) > 0  # task 2 did not fall: it gains weight
    z = torch.softmax(state.logits, 0)
    expected = (z / torch.tensor([0.5, 4.0], dtype=F64)) / (z / torch.tensor([0.5, 4.0], dtype=F64)).sum()
    torch.testing.assert_close(D, expected, rtol=1e-14, atol=0)
    # the decay pulls the logits back to 0 when the losses do not move
    D, new = lw.famo(t(0.5, 4.0), state, lr=0.1, gamma=0.5)
    torch.testing.assert_close(new.logits, state.logits * (1 - 0.1 * 0.5), rtol=1e-14, atol=0)


def test_famo_min_losses_and_errors():
    state = lw.famo_init(2, dtype=F64)
    D, _ = lw.famo(t(1.0, 4.0), state, min_losses=[0.5, 2.0])
    # gaps (0.5, 2): D ∝ (1/2) / (0.5, 2) = (1, 1/4): (0.8, 0.2)
    torch.testing.assert_close(D, torch.tensor([0.8, 0.2], dtype=F64), rtol=1e-14, atol=0)
    with pytest.raises(ValueError, match=r"^`losses` must be above min_losses \(default 0\), got a gap of 0\.$"):
        lw.famo(t(1.0, 0.0), state)
    with pytest.raises(ValueError, match=r"^`gamma` must be >= 0, got -0\.1\.$"):
        lw.famo(t(1.0, 1.0), state, gamma=-0.1)
