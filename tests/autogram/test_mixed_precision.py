"""The engine under ``torch.autocast`` (bfloat16 on CPU) and with ``torch.amp.GradScaler``."""

from __future__ import annotations

import torch
from torch import nn

import gramweight as gw
from gramweight.autogram import Engine, unscale


def model_and_data():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.GELU(), nn.Linear(64, 64), nn.GELU(),
                          nn.Linear(64, 4))
    return model, torch.randn(32, 16)


def test_gramian_outside_the_autocast_block_is_that_of_the_autocast_model():
    # the reference: one autograd.grad per loss through the same autocast forward, J J^T in
    # float64. The engine's output gradients are autograd's (bfloat16 activations); its rules
    # then run in float32 when gramian is called outside the autocast block (measured: 1.5e-4
    # relative, against 1.5e-3 inside it, where autocast runs the rules' products in bfloat16)
    model, x = model_and_data()
    params = list(model.parameters())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = model(x).float().pow(2).sum(1)
    rows = [torch.cat([g.reshape(-1).double()
                       for g in torch.autograd.grad(losses[i], params, retain_graph=True)])
            for i in range(losses.shape[0])]
    J = torch.stack(rows)
    expected = J @ J.T

    errors = {}
    for where in ("inside", "outside"):
        with Engine(model, batch_dim=0) as engine:
            with torch.autocast("cpu", dtype=torch.bfloat16):
                losses = model(x).float().pow(2).sum(1)
                G = engine.gramian(losses) if where == "inside" else None
            if G is None:
                G = engine.gramian(losses)
        assert G.dtype == torch.float32  # the losses' dtype
        errors[where] = float((G.double() - expected).norm() / expected.norm())
    assert errors["outside"] < 1e-3
    assert errors["outside"] < errors["inside"]


def test_grad_scaler_recipe_gives_the_unscaled_step():
    # G of the scaled losses is S^2 G: unscale(G, scaler) gives it back (exactly: S is a power
    # of two), the weights come from it, engine.backward writes S-scaled gradients, which
    # scaler.step unscales, as it does for loss.backward()
    model, x = model_and_data()
    reference = [p.detach().clone() for p in model.parameters()]

    def step(scaler):
        with torch.no_grad():  # the same starting point for both steps
            for p, r in zip(model.parameters(), reference):
                p.copy_(r)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        with Engine(model, batch_dim=0) as engine:
            losses = model(x).pow(2).sum(1)
            if scaler is None:
                G = engine.gramian(losses)
            else:
                G = unscale(engine.gramian(scaler.scale(losses)), scaler)
            w = gw.upgrad(G)
            optimizer.zero_grad()
            engine.backward(w)
            if scaler is None:
                optimizer.step()
            else:
                scaler.step(optimizer)
                scaler.update()
        return G, [p.detach().clone() for p in model.parameters()]

    G_plain, after_plain = step(None)
    G_scaled, after_scaled = step(torch.amp.GradScaler("cpu", init_scale=2.0 ** 12))
    torch.testing.assert_close(G_scaled, G_plain, rtol=1e-6, atol=0)
    for a, b in zip(after_scaled, after_plain):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
