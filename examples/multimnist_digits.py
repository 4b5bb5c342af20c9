"""MultiMNIST-style multi-task classification on scikit-learn's digits, several methods compared.

Each input overlays two 8x8 digits of scikit-learn's `load_digits` (1797 images shipped with
the package, no download): one shifted to the left, one to the right, on an 8x12 canvas where
they overlap on 4 columns (the brighter pixel wins). Task 0 reads the left digit, task 1 the
right one. A small CNN trunk is shared, each task has its own linear head, and the two
cross-entropy losses are combined by each method in the shared-representation mode: the
Gramian over the trunk, each head its own gradient (`task_specific=`). Every method starts from
the same initial model and sees the same batches.

Prints a progress bar per method, a table of test accuracies and time per step, and writes a
figure of the test accuracy per epoch (matplotlib, if installed) to `multimnist.png` in
`--out` (default: a temporary directory).

Needs scikit-learn: pip install -e ".[examples]"
Run: python examples/multimnist_digits.py [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

import gramweight as gw

SMALL = bool(os.environ.get("GRAMWEIGHT_EXAMPLE_SMALL"))
N_TRAIN, N_TEST = (2000, 500) if SMALL else (3200, 1000)
EPOCHS = 4
BATCH = 100
METHODS = ["mean", "upgrad", "mgda", "nash_mtl"] if SMALL else [
    "mean", "upgrad", "mgda", "pcgrad", "cagrad", "nash_mtl", "fairgrad", "imtl_g"]


def make_pairs(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """n overlaid pairs (n, 1, 8, 12) in [0, 1] and their labels (n, 2): left, right."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit("this example needs scikit-learn: pip install -e '.[examples]'")
    digits = load_digits()
    images = torch.tensor(digits.images, dtype=torch.float32) / 16.0  # (1797, 8, 8)
    labels = torch.tensor(digits.target)
    i = torch.randint(0, len(images), (n,), generator=generator)
    j = torch.randint(0, len(images), (n,), generator=generator)
    canvas = torch.zeros(n, 8, 12)
    canvas[:, :, :8] = images[i]
    canvas[:, :, 4:] = torch.maximum(canvas[:, :, 4:], images[j])
    return canvas.unsqueeze(1), torch.stack([labels[i], labels[j]], 1)


class Trunk(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),      # (16, 4, 6)
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),     # (32, 2, 3)
            nn.Flatten(), nn.Linear(32 * 2 * 3, 64), nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def progress(method: str, done: int, total: int, note: str = "") -> None:
    width = 24
    filled = width * done // total
    bar = "#" * filled + "." * (width - filled)
    end = "\n" if done == total else ""
    print(f"\r{method:>10} [{bar}] {done}/{total} {note}", end=end, flush=True)


def train(method: str, data) -> tuple[list[list[float]], float]:
    """Test accuracy of each task after each epoch, and the mean time per step."""
    (X, Y), (Xt, Yt) = data
    torch.manual_seed(0)
    trunk, heads = Trunk(), nn.ModuleList([nn.Linear(64, 10) for _ in range(2)])
    optimizer = torch.optim.Adam([*trunk.parameters(), *heads.parameters()], lr=5e-3)
    weighter = gw.Weighter(method)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.Generator().manual_seed(1)
    steps_per_epoch = len(X) // BATCH
    history, elapsed = [], 0.0
    with gw.autogram.Engine(trunk, batch_dim=None, task_specific=heads) as engine:
        for epoch in range(EPOCHS):
            perm = torch.randperm(len(X), generator=order)
            for s in range(steps_per_epoch):
                idx = perm[s * BATCH:(s + 1) * BATCH]
                start = time.perf_counter()
                z = trunk(X[idx])
                losses = torch.stack([loss_fn(h(z), Y[idx, k]) for k, h in enumerate(heads)])
                G = engine.gramian(losses)  # (2, 2) over the trunk
                optimizer.zero_grad()
                engine.backward(weighter(G))
                optimizer.step()
                elapsed += time.perf_counter() - start
            with torch.no_grad():
                z = trunk(Xt)
                acc = [(h(z).argmax(1) == Yt[:, k]).float().mean().item()
                       for k, h in enumerate(heads)]
            history.append(acc)
            progress(method, epoch + 1, EPOCHS, f"test acc {acc[0]:.3f} / {acc[1]:.3f}")
    return history, elapsed / (EPOCHS * steps_per_epoch)


def plot(results: dict, path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2), sharey=True)
    for method, (history, _) in results.items():
        for k, ax in enumerate(axes):
            ax.plot(range(1, len(history) + 1), [h[k] for h in history], marker="o",
                    label=method)
    for k, ax in enumerate(axes):
        ax.set(title=f"task {k} ({'left' if k == 0 else 'right'} digit)", xlabel="epoch")
    axes[0].set_ylabel("test accuracy")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="where to write multimnist.png")
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    data = (make_pairs(N_TRAIN, generator), make_pairs(N_TEST, generator))
    print(f"{N_TRAIN} training pairs, {N_TEST} test pairs, {EPOCHS} epochs, batch {BATCH}\n")
    results = {method: train(method, data) for method in METHODS}
    print(f"\n{'method':>10} {'left':>7} {'right':>7} {'mean':>7} {'ms/step':>8}")
    for method, (history, per_step) in results.items():
        left, right = history[-1]
        print(f"{method:>10} {left:7.3f} {right:7.3f} {(left + right) / 2:7.3f} "
              f"{per_step * 1e3:8.2f}")
    out = args.out or Path(tempfile.mkdtemp(prefix="gramweight-"))
    out.mkdir(parents=True, exist_ok=True)
    if plot(results, out / "multimnist.png"):
        print(f"\nfigure: {out / 'multimnist.png'}")


if __name__ == "__main__":
    main()
