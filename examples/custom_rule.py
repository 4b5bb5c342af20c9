"""Teach the autogram engine a new layer, and check the rule with gramweight.testing.

The layer multiplies its input elementwise by a learned gain and adds a learned shift. Without
a rule the engine already handles it exactly, through its generic fallback (a vmapped local
backward per call); a rule computes the per-loss gradients of the two parameters directly:
for loss (sample i, task k), d gain = Σ_positions dY ⊙ x and d shift = Σ_positions dY.

Run: python examples/custom_rule.py
"""

import os
import time

import torch
from torch import nn

import gramweight as gw
from gramweight.autogram import PerLoss

SAMPLES = 3 if os.environ.get("GRAMWEIGHT_EXAMPLE_SMALL") else 20


class GainShift(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.gain = nn.Parameter(torch.ones(d))
        self.shift = nn.Parameter(torch.zeros(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gain + self.shift


def gain_shift_rule(module, inputs, grad_output, *, batched):
    """Per-loss gradients of ``gain`` and ``shift``.

    ``grad_output`` has shape (t, *output.shape): one slice per task. With ``batched`` (the
    engine's batch_dim=0), loss (sample i, task k) is row i * t + k of the Gramian and
    depends on sample i only; otherwise the losses are the t tasks.
    """
    (x,) = inputs
    t = grad_output.shape[0]
    n = x.shape[0] if batched else 1
    d = x.shape[-1]
    # Sum over every position between the sample dimension and the features.
    d_gain = (grad_output * x).reshape(t, n, -1, d).sum(2)  # (t, n, d)
    d_shift = grad_output.reshape(t, n, -1, d).sum(2)
    to_rows = lambda g: g.transpose(0, 1).reshape(n * t, d)  # noqa: E731 - rows follow losses.flatten()
    return {"gain": PerLoss(to_rows(d_gain)), "shift": PerLoss(to_rows(d_shift))}


def make_model() -> nn.Module:
    return nn.Sequential(nn.Linear(5, 8), GainShift(8), nn.Tanh(), nn.Linear(8, 2))


generator = torch.Generator().manual_seed(0)
worst = 0.0
for sample in range(SAMPLES):
    torch.manual_seed(sample)
    model = make_model().double()
    # (batch, positions, features)
    x = torch.randn(7, 4, 5, generator=generator, dtype=torch.float64)
    for batch_dim, losses_fn in [
        (0, lambda: model(x).pow(2).sum(dim=(1, 2))),         # instance-wise: (B,)
        (None, lambda: model(x).pow(2).mean(dim=(0, 1))),     # multi-task: (2,)
        (0, lambda: model(x).pow(2).sum(dim=1)),              # both: (B, 2)
    ]:
        rules = {GainShift: gain_shift_rule}
        with gw.autogram.Engine(model, batch_dim=batch_dim, rules=rules) as engine:
            G = engine.gramian(losses_fn())
        expected = gw.testing.reference_gramian(model, losses_fn)  # J @ J.T from torch.func.jacrev
        worst = max(worst, float((G - expected).abs().max() / expected.abs().max()))
print(f"rule checked against jacrev on {SAMPLES} models x 3 loss shapes: worst relative error {worst:.1e}")
assert worst < 1e-10

# The rule against the generic fallback, on a bigger batch.
model = make_model()
x = torch.randn(256, 16, 5, generator=generator)
for label, rules in [("generic fallback", None), ("custom rule", {GainShift: gain_shift_rule})]:
    with gw.autogram.Engine(model, batch_dim=0, rules=rules) as engine:
        engine.gramian(model(x).pow(2).sum(dim=(1, 2)))  # warm-up
        start = time.perf_counter()
        for _ in range(5):
            G = engine.gramian(model(x).pow(2).sum(dim=(1, 2)))
        print(f"{label:>17}: {(time.perf_counter() - start) / 5 * 1e3:6.1f} ms per forward + Gramian")
