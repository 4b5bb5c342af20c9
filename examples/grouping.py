"""GradVac per layer: block Gramians from the engine, one set of weights per layer.

GradVac (Wang et al., ICLR 2021) can treat the whole model as one block or each layer
separately. The engine gives one Gramian per module (``per="module"``), GradVac returns one
weight vector per block, and ``engine.backward(W)`` applies block k's weights to block k's
parameters only. Both groupings train the same model; the second also prints how the
per-layer weights differ.

Run: python examples/grouping.py
"""

import os

import torch
from torch import nn

import gramweight as gw

# the models here are tiny: threads only add synchronisation (on a busy 2-core machine, a
# step took 6x longer with two)
torch.set_num_threads(1)

STEPS = 20 if os.environ.get("GRAMWEIGHT_EXAMPLE_SMALL") else 100


def make_model() -> nn.Module:
    torch.manual_seed(0)  # the same initial model for both groupings
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))


generator = torch.Generator().manual_seed(1)
X = torch.randn(64, 10, generator=generator)
A = torch.randn(10, 3, generator=generator)
A[:, 1] = -A[:, 0] + 0.5 * A[:, 1]  # tasks 0 and 1 conflict
Y = torch.tanh(X @ A)


def train(per_layer: bool) -> None:
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    with gw.autogram.Engine(model, batch_dim=None) as engine:
        K = len(engine.blocks)
        state = gw.gradvac_init(3, blocks=K) if per_layer else gw.gradvac_init(3)
        for step in range(STEPS):
            losses = ((model(X) - Y) ** 2).mean(dim=0)  # 3 task losses
            if per_layer:
                Gs = engine.gramian(losses, per="module")  # (K, 3, 3), one per Linear
                W, state = gw.gradvac(Gs, state, key=step)  # (K, 3)
            else:
                G = engine.gramian(losses)  # (3, 3)
                W, state = gw.gradvac(G, state, key=step)  # (3,)
            optimizer.zero_grad()
            engine.backward(W)
            optimizer.step()
        label = f"per layer ({K} blocks: {', '.join(engine.blocks)})" if per_layer else "whole model"
        print(f"GradVac {label}")
        print(f"  final losses {[round(x, 4) for x in losses.tolist()]}")
        if per_layer:
            for name, w in zip(engine.blocks, W):
                print(f"  block {name:>3}: weights {[round(x, 3) for x in w.tolist()]}")
            print(f"  cosine targets of block 0:\n{state.targets[0]}")


train(per_layer=False)
train(per_layer=True)
