"""Multi-task regression with genuinely conflicting tasks, trained with several weightings.

A shared trunk ends in a 2-feature bottleneck that feeds one head per task. Each task wants
the bottleneck to carry a different direction of the input, and there are three tasks for two
features, so the tasks genuinely compete for the shared parameters; task 1 also has a larger
scale than the others. Each method trains the same initial model for the
same number of steps; the table shows the final loss of each task and the time per step.

Run: python examples/multitask.py
"""

import os
import time

import torch
from torch import nn

import gramweight as gw

# the models here are tiny: threads only add synchronisation (on a busy 2-core machine, a
# step took 6x longer with two)
torch.set_num_threads(1)

SMALL = bool(os.environ.get("GRAMWEIGHT_EXAMPLE_SMALL"))
STEPS = 30 if SMALL else 150
N_TASKS, D_IN, D_HIDDEN, D_BOTTLENECK, BATCH = 3, 16, 64, 2, 128


class MultiTaskNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(
            nn.Linear(D_IN, D_HIDDEN), nn.Tanh(), nn.Linear(D_HIDDEN, D_BOTTLENECK), nn.Tanh()
        )
        self.heads = nn.ModuleList([nn.Linear(D_BOTTLENECK, 1) for _ in range(N_TASKS)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.trunk(x)
        return torch.cat([head(features) for head in self.heads], dim=1)  # (B, tasks)


def make_data() -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(BATCH, D_IN, generator=generator)
    A = torch.randn(N_TASKS, D_IN, generator=generator) / D_IN**0.5
    scales = torch.tensor([1.0, 3.0, 1.0])
    Y = scales * torch.sin(2 * X @ A.T)
    return X, Y


def train(method: str) -> tuple[list[float], float]:
    torch.manual_seed(0)  # the same initial model for every method
    model = MultiTaskNet()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    X, Y = make_data()
    weighter = gw.Weighter(method, seed=0)  # holds the state and draws a key per step
    start = time.perf_counter()
    with gw.autogram.Engine(model, batch_dim=None) as engine:
        for step in range(STEPS):
            losses = ((model(X) - Y) ** 2).mean(dim=0)  # (tasks,)
            G = engine.gramian(losses)  # (tasks, tasks), no Jacobian
            w = weighter(G)
            optimizer.zero_grad()
            engine.backward(w)  # .grad = w @ J
            optimizer.step()
    per_step = (time.perf_counter() - start) / STEPS
    with torch.no_grad():
        final = ((model(X) - Y) ** 2).mean(dim=0).tolist()
    return final, per_step


METHODS = [
    "mean", "random", "mgda", "upgrad", "dualproj", "pcgrad", "gradvac", "cagrad", "imtl_g",
    "aligned_mtl", "nash_mtl", "fairgrad", "config",
]

print(f"{STEPS} steps, batch {BATCH}, {N_TASKS} tasks sharing a {D_BOTTLENECK}-feature bottleneck\n")
tasks = " ".join(f"{'task ' + str(t):>9}" for t in range(N_TASKS))
print(f"{'method':>12} {tasks} {'mean':>9} {'ms/step':>8}")
for method in [m for m in METHODS if m in gw.WEIGHTINGS]:
    final, per_step = train(method)
    values = " ".join(f"{x:9.4f}" for x in final)
    print(f"{method:>12} {values} {sum(final) / N_TASKS:9.4f} {per_step * 1e3:8.2f}")
