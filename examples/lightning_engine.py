"""The autogram engine inside PyTorch Lightning: manual optimisation, one engine per module.

A `LightningModule` with `automatic_optimization = False` owns the engine (opened in
`on_fit_start`, closed in `on_fit_end`). Each `training_step` computes the per-task losses,
takes their Gramian, weights it with `upgrad` and lets `engine.backward(w)` fill `.grad`, then
steps the optimiser itself: Lightning's own `manual_backward` is not called, since the engine
has already written the gradients. The losses and the number of conflicting task pairs are
logged with `self.log`.

Needs lightning: pip install -e ".[examples]" (with torch pinned, see .ci/run)
Run: python examples/lightning_engine.py
"""

from __future__ import annotations

import logging
import os
import sys
import warnings

import torch
from torch import nn

import gramweight as gw

try:
    import lightning as L
except ImportError:
    sys.exit("this example needs lightning: pip install -e '.[examples]'")

SMALL = bool(os.environ.get("GRAMWEIGHT_EXAMPLE_SMALL"))
EPOCHS = 3 if SMALL else 10


class MultiTask(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False  # the engine writes .grad
        self.trunk = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 8), nn.Tanh())
        self.heads = nn.ModuleList([nn.Linear(8, 1) for _ in range(3)])
        self.weighter = gw.Weighter("upgrad")
        self.engine: gw.autogram.Engine | None = None

    def on_fit_start(self) -> None:
        # the Gramian over the trunk; each head gets its own task's gradient
        self.engine = gw.autogram.Engine(self.trunk, batch_dim=None, task_specific=self.heads)

    def on_fit_end(self) -> None:
        self.engine.close()

    def training_step(self, batch, batch_idx):
        x, y = batch
        z = self.trunk(x)
        out = torch.cat([h(z) for h in self.heads], 1)
        losses = ((out - y) ** 2).mean(0)  # (3,)
        G = self.engine.gramian(losses)
        optimizer = self.optimizers()
        optimizer.zero_grad()
        self.engine.backward(self.weighter(G))
        optimizer.step()
        stats = gw.monitor.summary(G)
        self.log("loss", losses.sum(), prog_bar=True, on_epoch=True, on_step=False)
        self.log("conflicts", float(stats["conflicting_pairs"]), on_epoch=True, on_step=False)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class Printer(L.Callback):
    def on_train_epoch_end(self, trainer, module) -> None:
        m = trainer.callback_metrics
        print(f"epoch {trainer.current_epoch}: loss {float(m['loss']):.4f}, "
              f"conflicting pairs {float(m['conflicts']):.2f}")


def main() -> None:
    generator = torch.Generator().manual_seed(0)
    X = torch.randn(512, 8, generator=generator)
    A = torch.randn(3, 8, generator=generator)
    Y = torch.sin(X @ A.T) * torch.tensor([1.0, 2.0, 0.5])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, Y), batch_size=64,
                                         shuffle=True,
                                         generator=torch.Generator().manual_seed(1))
    torch.manual_seed(0)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # its banner and tips
    with warnings.catch_warnings():
        # Lightning's advice to use more DataLoader workers, irrelevant for in-memory tensors,
        # and its own use of a torch.utils._pytree name that torch deprecated
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        trainer = L.Trainer(max_epochs=EPOCHS, accelerator="cpu", devices=1, logger=False,
                            enable_checkpointing=False, enable_progress_bar=False,
                            enable_model_summary=False, callbacks=[Printer()])
        trainer.fit(MultiTask(), loader)


if __name__ == "__main__":
    main()
