"""Regressions of the engine: arguments, foreign and 0-dim parameters, the graph, messages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gramweight.autogram import Engine

DT = torch.float64


def loop_gramian(model, losses_fn):
    """Reference: one ``torch.autograd.grad`` per loss, rows stacked, ``J @ J.T``."""
    params = [p for p in model.parameters() if p.requires_grad]
    losses = losses_fn().flatten()
    rows = []
    for i in range(losses.shape[0]):
        gs = torch.autograd.grad(losses[i], params, retain_graph=True, allow_unused=True)
        rows.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                               for g, p in zip(gs, params)]))
    J = torch.stack(rows)
    return J @ J.T


class ForeignInput(nn.Module):
    # the Linear (a ruled module) is called with a parameter it does not own
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.table = nn.Parameter(torch.randn(4, 3))

    def forward(self, x):
        return self.lin(self.table) * x[:, :2]


@pytest.mark.parametrize("batch_dim", [0, None])
def test_ruled_module_given_a_foreign_parameter_is_exact(batch_dim):
    # used to crash with a TypeError with batch_dim=0 (the call's outputs were freed by its
    # rule before its generic use read them)
    torch.manual_seed(0)
    model, x = ForeignInput().to(DT), torch.randn(4, 3, dtype=DT)

    def losses_fn():
        out = model(x)
        return out.sum(1) if batch_dim == 0 else torch.stack([out.sum(), (out ** 2).mean()])

    expected = loop_gramian(model, losses_fn)
    with Engine(model, batch_dim=batch_dim) as engine:
        G = engine.gramian(losses_fn())
    torch.testing.assert_close(G, expected, rtol=1e-10, atol=1e-12)
