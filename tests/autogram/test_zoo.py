"""Engine Gramian == jacrev Gramian over a zoo of architectures, in the three loss shapes."""

from __future__ import annotations

import pytest
import torch

import gramweight as gw
from gramweight.testing import reference_gramian

from ._zoo import SHAPES, ZOO, batch_dim_of, losses_of

CASES = [(name, shape) for name, a in ZOO.items() for shape in SHAPES
         if a.instance_wise or shape == "multitask"]


def _setup(name, dtype=torch.float64):
    torch.manual_seed(0)
    with torch.no_grad():
        model, inputs, forward = ZOO[name].build()
    model = model.to(dtype)
    inputs = torch.utils._pytree.tree_map(
        lambda x: x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x,
        inputs)
    return model, inputs, forward


def _losses(model, inputs, forward, shape):
    torch.manual_seed(1)  # same dropout masks in every pass
    return losses_of(forward(model, inputs), shape)


def test_zoo_is_large_enough():
    assert len(ZOO) >= 25


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_gramian_blocks_and_backward(name, shape):
    model, inputs, forward = _setup(name)
    expected = reference_gramian(model, lambda: _losses(model, inputs, forward, shape))

    with gw.autogram.Engine(model, batch_dim=batch_dim_of(shape)) as engine:
        losses = _losses(model, inputs, forward, shape)
        G = engine.gramian(losses)
        torch.testing.assert_close(G, expected, rtol=1e-9, atol=1e-12 * expected.abs().max())

        Gs = engine.gramian(_losses(model, inputs, forward, shape), per="module")
        assert Gs.shape == (len(engine.blocks), *G.shape)
        torch.testing.assert_close(Gs.sum(0), expected, rtol=1e-9,
                                   atol=1e-12 * expected.abs().max())

        w = torch.rand(G.shape[0], dtype=G.dtype) - 0.3
        model.zero_grad(set_to_none=True)
        engine.gramian(_losses(model, inputs, forward, shape))
        engine.backward(w)
        got = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}

    model.zero_grad(set_to_none=True)
    losses = _losses(model, inputs, forward, shape)
    losses.backward(w.reshape(losses.shape))
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            assert got[n] is None or torch.all(got[n] == 0), n
        else:
            torch.testing.assert_close(got[n], p.grad, rtol=1e-9, atol=1e-12, msg=n)


@pytest.mark.parametrize(("name", "shape"), CASES)
def test_gramian_float32(name, shape):
    model, inputs, forward = _setup(name, torch.float32)
    expected = reference_gramian(model, lambda: _losses(model, inputs, forward, shape))
    with gw.autogram.Engine(model, batch_dim=batch_dim_of(shape)) as engine:
        G = engine.gramian(_losses(model, inputs, forward, shape))
    assert G.dtype == torch.float32
    torch.testing.assert_close(G, expected, rtol=1e-4, atol=1e-5 * expected.abs().max())
