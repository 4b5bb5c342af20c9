"""What to watch during multi-task training: conflicts, cosine similarities, the update.

A shared trunk with three heads is trained with `upgrad` through the autogram engine, with
`Weighter` holding the method and `gramweight.monitor` turning each step's Gramian and weights
into numbers for a log: the number of conflicting task pairs, the smallest cosine
similarity between task gradients, the update's norm, and the weights. A table is printed every
few steps, and a figure of the run is written (matplotlib, if installed) to
`monitoring.png` in the directory given by `--out` (default: a temporary directory).

Run: python examples/monitoring.py [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch
from torch import nn

import gramweight as gw

# the models here are tiny: threads only add synchronisation (on a busy 2-core machine, a
# step took 6x longer with two)
torch.set_num_threads(1)

SMALL = bool(os.environ.get("GRAMWEIGHT_EXAMPLE_SMALL"))
STEPS = 40 if SMALL else 200
N_TASKS = 3


def run(steps: int = STEPS) -> list[dict]:
    """Train and return one `gw.monitor.summary` per step (plus the step's losses)."""
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 4), nn.Tanh())
    heads = nn.ModuleList([nn.Linear(4, 1) for _ in range(N_TASKS)])
    params = [*trunk.parameters(), *heads.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    generator = torch.Generator().manual_seed(1)
    X = torch.randn(256, 8, generator=generator)
    A = torch.randn(N_TASKS, 8, generator=generator)
    Y = torch.sin(X @ A.T) * torch.tensor([1.0, 2.0, 0.5])  # three tasks of different scales

    weighter = gw.Weighter("upgrad")
    log = []
    # shared-representation mode: the Gramian over the trunk, each head its own gradient
    with gw.autogram.Engine(trunk, batch_dim=None, task_specific=heads) as engine:
        for step in range(steps):
            z = trunk(X)
            out = torch.cat([h(z) for h in heads], 1)
            losses = ((out - Y) ** 2).mean(0)
            G = engine.gramian(losses)
            w = weighter(G)
            stats = gw.monitor.summary(G, w)
            stats["losses"] = losses.tolist()
            log.append(stats)
            optimizer.zero_grad()
            engine.backward(w)
            optimizer.step()
    return log


def plot(log: list[dict], path: Path) -> bool:
    """The run in four panels; False when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    steps = range(len(log))
    fig, axes = plt.subplots(1, 4, figsize=(14, 3))
    for k in range(N_TASKS):
        axes[0].plot(steps, [s["losses"][k] for s in log], label=f"task {k}")
        axes[3].plot(steps, [s["weights"][k] for s in log], label=f"task {k}")
    axes[0].set(title="losses", yscale="log")
    axes[1].plot(steps, [s["min_cosine"] for s in log])
    axes[1].axhline(0, color="grey", lw=0.5)
    axes[1].set(title="smallest cosine between task gradients")
    axes[2].plot(steps, [s["update_norm"] for s in log])
    axes[2].set(title="update norm", yscale="log")
    axes[3].set(title="upgrad weights")
    axes[3].legend(fontsize=8)
    for ax in axes:
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="where to write monitoring.png")
    args = parser.parse_args()
    log = run()
    print(f"{'step':>5} {'conflicts':>9} {'min cos':>8} {'|update|':>9}  weights")
    for step in range(0, len(log), max(1, len(log) // 8)):
        s = log[step]
        weights = " ".join(f"{x:.3f}" for x in s["weights"])
        print(f"{step:5d} {s['conflicting_pairs']:9d} {s['min_cosine']:8.3f} "
              f"{s['update_norm']:9.4f}  {weights}")
    out = args.out or Path(tempfile.mkdtemp(prefix="gramweight-"))
    out.mkdir(parents=True, exist_ok=True)
    if plot(log, out / "monitoring.png"):
        print(f"figure: {out / 'monitoring.png'}")
    else:
        print("(install matplotlib for the figure)")


if __name__ == "__main__":
    main()
