"""Draw the figures of the documentation (needs matplotlib: pip install -e ".[docs]").

Run from the repository root: python docs/figures/make_figures.py
It writes docs/figures/directions.png, docs/figures/weights.png and
docs/figures/monitoring.png (the run of examples/monitoring.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

import gramweight as gw  # noqa: E402

HERE = Path(__file__).resolve().parent

# Required options of the methods that have some; every other option keeps its default. The
# methods that read the losses get equal losses (1, ..., 1); EPO the preference (1, ..., 1);
# Pareto MTL the unit vectors as its preferences, the first one as its subproblem.
REQUIRED: dict[str, Any] = {
    "constant": lambda m: {"weights": [1.0] * m},
    "cr_mogm": lambda m: {"inner": gw.upgrad},
    "db_mtl": lambda m: {"losses": [1.0] * m},
    "gradnorm": lambda m: {"losses": [1.0] * m},
    "imtl": lambda m: {"losses": [1.0] * m},
    "epo": lambda m: {"losses": [1.0] * m, "preference": [1.0] * m},
    "pmtl": lambda m: {"losses": [1.0] * m, "preferences": torch.eye(m).tolist(), "index": 0},
}
# Krum needs at least n_byzantine + 3 gradients: it has no picture with two.
TWO_TASKS = [name for name in gw.WEIGHTINGS if name != "krum"]


class Runner:
    """Calls one weighting step after step, carrying its state and a fresh key each time."""

    def __init__(self, name: str, m: int) -> None:
        entry = gw.weightings.REGISTRY[name]  # the method's kind: stochastic, stateful
        self.fn = entry.fn
        self.kwargs = REQUIRED[name](m) if name in REQUIRED else {}
        self.takes_key = entry.stochastic
        self.state = entry.init(m) if entry.stateful else None
        self.step = 0

    def __call__(self, G: torch.Tensor) -> torch.Tensor:
        kwargs = dict(self.kwargs)
        if self.takes_key:
            kwargs["key"] = self.step
        self.step += 1
        if self.state is None:
            return self.fn(G, **kwargs)
        w, self.state = self.fn(G, self.state, **kwargs)
        return w


def directions() -> None:
    """The update of every method on two conflicting gradients in the plane."""
    J = torch.tensor([[2.0, 0.4], [-0.8, 1.2]], dtype=torch.float64)
    G = J @ J.T
    names = TWO_TASKS
    cols = 6
    rows = -(-len(names) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3 * cols, 3 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names):
        update = Runner(name, 2)(G) @ J
        for g, color in zip(J, ("tab:blue", "tab:orange")):
            ax.annotate("", xy=g.tolist(), xytext=(0, 0),
                        arrowprops={"arrowstyle": "->", "color": color, "lw": 1.5})
        ax.annotate("", xy=update.tolist(), xytext=(0, 0),
                    arrowprops={"arrowstyle": "->", "color": "black", "lw": 2.5})
        # The dual cone {x : J x >= 0}: directions that conflict with neither gradient.
        ts = torch.linspace(0, 1, 2)
        for i, g in enumerate(J):
            normal = torch.tensor([-g[1], g[0]])
            normal = normal if float(normal @ J[1 - i]) >= 0 else -normal
            ax.plot(*(3 * ts[:, None] * normal / normal.norm()).T.tolist(), color="0.8", lw=1)
        ax.set_title(name)
        ax.set_xlim(-2.5, 3)
        ax.set_ylim(-1, 3)
        ax.set_aspect("equal")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in list(axes.flat)[len(names):]:
        ax.axis("off")
    fig.suptitle("Update (black) of each method on two conflicting gradients (blue, orange)")
    fig.tight_layout()
    fig.savefig(HERE / "directions.png", dpi=80)
    plt.close(fig)


def weights_over_training(steps: int = 60) -> None:
    """Weights of a few methods while training a tiny two-task regression."""
    names = ["mean", "upgrad", "mgda", "pcgrad", "gradvac", "nash_mtl", "fairgrad", "cagrad"]
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(64, 5, generator=generator, dtype=torch.float64)
    targets = [X @ torch.randn(5, generator=generator, dtype=torch.float64) for _ in range(2)]
    targets[1] = -targets[0] + 0.3 * targets[1]  # conflicting tasks
    fig, axes = plt.subplots(2, len(names) // 2, figsize=(3 * len(names) // 2, 5.6), squeeze=False)
    for ax, name in zip(axes.flat, names):
        theta = torch.zeros(5, dtype=torch.float64)
        runner = Runner(name, 2)
        history = []
        for _ in range(steps):
            theta.requires_grad_(True)
            losses = torch.stack([((X @ theta - y) ** 2).mean() for y in targets])
            J = torch.stack([torch.autograd.grad(loss, theta, retain_graph=True)[0] for loss in losses])
            w = runner((J @ J.T).detach())
            history.append(w.tolist())
            theta = (theta - 0.05 * (w @ J)).detach()
        hist = torch.tensor(history)
        ax.plot(hist[:, 0], label="w₁")
        ax.plot(hist[:, 1], label="w₂")
        ax.set_title(name)
        ax.set_xlabel("step")
    axes.flat[0].legend()
    fig.tight_layout()
    fig.savefig(HERE / "weights.png", dpi=80)
    plt.close(fig)


def monitoring() -> None:
    """The run of examples/monitoring.py, drawn by that example."""
    import importlib.util

    path = HERE.parents[1] / "examples" / "monitoring.py"
    spec = importlib.util.spec_from_file_location("monitoring_example", path)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    example.plot(example.run(), HERE / "monitoring.png")


if __name__ == "__main__":
    directions()
    weights_over_training()
    monitoring()
    print(f"wrote {HERE / 'directions.png'}, {HERE / 'weights.png'} and "
          f"{HERE / 'monitoring.png'}")
