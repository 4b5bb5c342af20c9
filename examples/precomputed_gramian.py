"""Weights from a Gramian you already have.

Here the per-task gradients come from plain ``torch.autograd.grad`` on a small two-head model;
their Gramian is all a weighting needs, and the update is applied to the parameters by hand.

Run: python examples/precomputed_gramian.py
"""

import torch
from torch import nn

import gramweight as gw

torch.manual_seed(0)  # model initialisation only; weightings never read the global RNG
trunk = nn.Sequential(nn.Linear(8, 16), nn.Tanh())
heads = nn.ModuleList([nn.Linear(16, 1) for _ in range(3)])
params = [p for module in (trunk, *heads) for p in module.parameters()]
optimizer = torch.optim.SGD(params, lr=0.05)

generator = torch.Generator().manual_seed(1)
X = torch.randn(128, 8, generator=generator)
directions = torch.randn(3, 8, generator=generator)
directions[1] = -directions[0] + 0.2 * directions[1]  # tasks 0 and 1 pull against each other
Y = X @ directions.T

state = gw.gradvac_init(3)
for step in range(60):
    features = trunk(X)
    losses = torch.stack(
        [((head(features).squeeze(1) - Y[:, t]) ** 2).mean() for t, head in enumerate(heads)]
    )
    # Your own per-task gradients, flattened into the rows of J (3 x n).
    # A head's parameters get a zero gradient from the other tasks' losses.
    rows = []
    for loss in losses:
        grads = torch.autograd.grad(loss, params, retain_graph=True, materialize_grads=True)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    J = torch.stack(rows)
    G = J @ J.T  # 3 x 3: everything the weighting sees

    w, state = gw.gradvac(G, state, key=step)  # stateful: new state back, key = step
    update = w @ J
    optimizer.zero_grad()
    offset = 0
    for p in params:  # write the update into .grad and let the optimiser step
        p.grad = update[offset:offset + p.numel()].view_as(p).clone()
        offset += p.numel()
    optimizer.step()
    if step % 20 == 0 or step == 59:
        print(f"step {step:2d}  losses {[round(x, 3) for x in losses.tolist()]}"
              f"  gradvac weights {[round(x, 3) for x in w.tolist()]}")
