"""Instance-wise risk minimisation of a small MLP with the autogram engine and UPGrad.

Every sample has its own loss; UPGrad weights them so that each step conflicts with no
sample's gradient. The engine computes the Gramian of the per-sample losses without building
the Jacobian, and ``engine.backward(w)`` applies the weights in the same backward pass. At the
end, every weighting of the library is shown on the Gramian of a few of the samples.

Run: python examples/quickstart.py
"""

import os

import torch
from torch import nn

import gramweight as gw

# the models here are tiny: threads only add synchronisation (on a busy 2-core machine, a
# step took 6x longer with two)
torch.set_num_threads(1)

EPOCHS = 3 if os.environ.get("GRAMWEIGHT_EXAMPLE_SMALL") else 10
BATCH = 32

torch.manual_seed(0)  # model initialisation; the weightings never read the global RNG
generator = torch.Generator().manual_seed(0)
X = torch.randn(512, 8, generator=generator)
Y = torch.sin(X @ torch.randn(8, 1, generator=generator))
Y += 0.1 * torch.randn(512, 1, generator=generator)  # noise
model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
optimizer = torch.optim.SGD(model.parameters(), lr=0.05)

with gw.autogram.Engine(model, batch_dim=0) as engine:
    for epoch in range(EPOCHS):
        total = 0.0
        for start in range(0, len(X), BATCH):
            x, y = X[start:start + BATCH], Y[start:start + BATCH]
            losses = ((model(x) - y) ** 2).squeeze(1)  # (BATCH,): one loss per sample
            G = engine.gramian(losses)                 # (BATCH, BATCH)
            w = gw.upgrad(G)
            optimizer.zero_grad()
            engine.backward(w)                         # .grad = w @ J
            optimizer.step()
            total += float(losses.detach().sum())
        print(f"epoch {epoch + 1:2d}  mean loss {total / len(X):.4f}")

    # Every weighting on the Gramian of the first 4 samples' losses.
    losses = ((model(X[:4]) - Y[:4]) ** 2).squeeze(1)
    G = engine.gramian(losses)
    engine.reset()  # no backward follows this Gramian

REQUIRED = {  # options that some methods require; everything else has defaults
    "constant": {"weights": [0.4, 0.3, 0.2, 0.1]},
    "krum": {"n_byzantine": 1},
    "cr_mogm": {"inner": gw.upgrad},  # smooths any weighting over steps
    "db_mtl": {"losses": losses.detach()},  # the loss values, for the methods that use them
    "gradnorm": {"losses": losses.detach()},
    "imtl": {"losses": losses.detach()},
    "epo": {"losses": losses.detach(), "preference": [1.0, 1.0, 1.0, 1.0]},  # the ray to reach
    "pmtl": {"losses": losses.detach(), "preferences": torch.eye(4) + 0.1, "index": 0},
}
print(f"\nweights of every method on the Gramian of 4 per-sample losses (cosine of samples 0 and 1:"
      f" {float(G[0, 1] / (G[0, 0] * G[1, 1]).sqrt()):.3f})")
for name, entry in gw.weightings.REGISTRY.items():  # each method's kind, by name
    kwargs = dict(REQUIRED.get(name, {}))
    if entry.stochastic:
        kwargs["key"] = 0  # the random key: the step number in training
    if entry.stateful:  # start from a fresh state, get the new one back
        w, state = entry.fn(G, entry.init(4), **kwargs)
    else:
        w = entry.fn(G, **kwargs)
    print(f"{name:>12}  {[round(x, 4) for x in w.tolist()]}")
