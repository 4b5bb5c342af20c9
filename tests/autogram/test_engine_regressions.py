"""Regressions of the engine: arguments, foreign and 0-dim parameters, the graph, messages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gramweight.autogram import Engine, PerLoss

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


class FreeScale(nn.Module):
    # a parameter no rule covers: the generic fallback
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.scale = nn.Parameter(torch.tensor([1.5, -0.5]))

    def forward(self, x):
        return self.scale * torch.tanh(self.lin(x))


@pytest.mark.parametrize("batch_dim", [0, None])
def test_graph_is_freed_without_retain_graph_with_generic_uses(batch_dim):
    torch.manual_seed(0)
    model, x = FreeScale().to(DT), torch.randn(4, 3, dtype=DT)
    with Engine(model, batch_dim=batch_dim) as engine:
        out = model(x)
        losses = out.sum(1) if batch_dim == 0 else out.sum(0)
        engine.gramian(losses)
        # autograd's own error for a freed graph: the gramian did not keep it
        with pytest.raises(RuntimeError, match="backward through the graph a second time"):
            losses.sum().backward()

        out = model(x)
        losses = out.sum(1) if batch_dim == 0 else out.sum(0)
        engine.gramian(losses, retain_graph=True)
        losses.sum().backward()  # kept when asked


# ------------------------------------------------------------------ batch_dim is required
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        return self.head(self.enc(x))


def net():
    torch.manual_seed(0)
    return Net().to(DT), torch.randn(5, 3, dtype=DT)


def test_batch_dim_is_required_and_the_error_names_both_choices():
    model, _ = net()
    with pytest.raises(TypeError, match=r"^`batch_dim` must be given: 0 when loss i .*depends on "
                                        r"sample i only, None for losses of shape \(m,\).*"
                                        r"got no batch_dim\.$"):
        Engine(model)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_multitask_losses_with_batch_dim_0_and_B_not_m_suggest_batch_dim_none():
    model, x = net()
    with Engine(model, batch_dim=0) as engine:
        out = model(x)
        losses = torch.stack([out.sum(), out.mean(), (out ** 2).sum()])  # (3,), B = 5
        with pytest.raises(ValueError, match=r"^`batch_dim=0` must be the sample dimension.*"
                                             r"pass batch_dim=None for losses of shape \(m,\).*"
                                             r"got an output of Linear '(enc\.0|head)' with 5 rows "
                                             r"for 3 losses\.$"):
            engine.gramian(losses)


def test_multitask_losses_with_B_equal_m_are_exact_with_batch_dim_none():
    # the case a default batch_dim=0 got 47 % wrong without an error: m == B == 3
    model, _ = net()
    x = torch.randn(3, 3, dtype=DT)

    def losses_fn():
        out = model(x)
        return torch.stack([out.sum(), (out ** 2).mean(), out[:, 0].prod()])

    expected = loop_gramian(model, losses_fn)
    with Engine(model, batch_dim=None) as engine:
        G = engine.gramian(losses_fn())
    torch.testing.assert_close(G, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(5, 2), (5, 1), (1, 5), ()])
def test_batch_dim_none_requires_one_dimensional_losses(shape):
    model, x = net()
    with Engine(model, batch_dim=None) as engine:
        losses = model(x).sum() * torch.ones(shape, dtype=DT)
        with pytest.raises(ValueError, match=r"^`losses` must be of shape \(m,\) with m >= 1 when "
                                             r"batch_dim is None .*got shape \("):
            engine.gramian(losses)


# ------------------------------------------------------------------ messages name the module path
def test_two_forwards_of_different_sizes_name_the_module_and_what_to_do():
    model, x = net()
    with Engine(model, batch_dim=0) as engine:
        losses = torch.cat([model(x).sum(1), model(x[:2]).sum(1)])  # 7 losses, outputs of 5, 2
        with pytest.raises(ValueError, match=r"one forward per gramian call.*got an output of "
                                             r"Linear '(enc\.0|head)' with [52] rows for 7 "
                                             r"losses\.$"):
            engine.gramian(losses)


def test_broadcast_output_names_the_module_path():
    model, x = net()
    with Engine(model, batch_dim=0) as engine:
        losses = model(x[:1]).expand(5, 2).sum(1)
        with pytest.raises(ValueError, match=r"got an output of Linear '(enc\.0|head)' with 1 rows "
                                             r"for 5 losses\.$"):
            engine.gramian(losses)


def test_in_place_change_names_the_module_path_and_the_fix():
    model, x = net()
    with Engine(model, batch_dim=0) as engine:
        h = model.enc[0](x)
        losses = model.head(h).sum(1)
        h.add_(1.0)
        with pytest.raises(RuntimeError, match=r"use the out-of-place op.*got an input \(or an "
                                               r"output that is a view\) of Linear 'head' "
                                               r"modified in place\.$"):
            engine.gramian(losses)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


def test_decomposed_projection_is_named_by_its_attention_module_not_an_internal_class():
    torch.manual_seed(0)
    model = nn.Sequential(Attention()).to(DT)
    with Engine(model, batch_dim=0) as engine:
        losses = model(torch.randn(5, 3, 4, dtype=DT)).sum((1, 2))[:3]
        with pytest.raises(ValueError) as err:
            engine.gramian(losses)
    assert "_LinearUse" not in str(err.value)
    assert "a linear projection inside MultiheadAttention '0.attn' with 5 rows" in str(err.value)


def test_a_rule_given_mismatched_batch_sizes_uses_the_one_template():
    from gramweight.autogram.rules._registry import split_samples

    with pytest.raises(ValueError, match=r"^`batch_dim=0` must be the sample dimension .*got an "
                                         r"input of 4 rows and an output of 3 rows\.$"):
        split_samples(torch.zeros(4, 2), torch.zeros(1, 3, 5), True, 1)


def test_parameter_used_outside_the_forward_is_named_by_its_path():
    model, x = net()
    with Engine(model, batch_dim=0) as engine:
        losses = model(x).sum(1) + (model.enc[0].weight ** 2).sum()
        with pytest.raises(ValueError, match=r"got a use of parameter 'enc\.0\.weight' of shape "
                                             r"\(4, 3\) outside it\.$"):
            engine.gramian(losses)


# ------------------------------------------------------------------ 0-dim parameters
def _scalar_model():
    from ._zoo import ZOO

    torch.manual_seed(0)
    model, x, _ = ZOO["scalar_parameters"].build()
    return model.to(DT), x.to(DT)


def _loss_fn(model, x, batch_dim):
    def losses_fn():
        out = model(x)
        if batch_dim == 0:
            return torch.stack([(out ** 2).sum(1), torch.sin(out).sum(1)], 1)  # (B, 2)
        return torch.stack([(out ** 2).mean(), torch.cos(out).sum(), out[:, 0].mean()])
    return losses_fn


@pytest.mark.parametrize("batch_dim", [0, None])
def test_zero_dim_parameters_blocks_and_block_weights_are_exact(batch_dim):
    # used to raise an internal IndexError; each block against a per-loss autograd loop over
    # that block's parameters only, and backward with (K, m) weights against autograd
    model, x = _scalar_model()
    losses_fn = _loss_fn(model, x, batch_dim)
    with Engine(model, batch_dim=batch_dim) as engine:
        blocks = engine.blocks
        Gs = engine.gramian(losses_fn(), per="module")
        W = torch.rand(len(blocks), Gs.shape[1], dtype=DT) - 0.3
        model.zero_grad(set_to_none=True)
        engine.gramian(losses_fn())
        engine.backward(W)
        got = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert blocks == ("ScaledHead", "lin", "inner", "out")
    owned = {"ScaledHead": ["scale"], "lin": ["lin.weight", "lin.bias", "lin.temperature"],
             "inner": ["inner.scale"], "out": ["out.weight", "out.bias"]}
    params = dict(model.named_parameters())
    for k, block in enumerate(blocks):
        for n, p in params.items():
            p.requires_grad_(n in owned[block])
        torch.testing.assert_close(Gs[k], loop_gramian(model, losses_fn), rtol=1e-10,
                                   atol=1e-12, msg=block)
        model.zero_grad(set_to_none=True)
        losses_fn().flatten().backward(W[k])
        for n in owned[block]:
            torch.testing.assert_close(got[n], params[n].grad, rtol=1e-10, atol=1e-12, msg=n)
    assert got["scale"].dim() == 0 and got["lin.temperature"].dim() == 0


class Temp(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(0.8, dtype=DT))

    def forward(self, x):
        return self.scale * x


def temp_rule(module, inputs, grad_output, *, batched):
    # d(loss)/d(scale) = <dY, x> per sample and task: a (m,) gradient for a 0-dim parameter
    (x,) = inputs
    t, B = grad_output.shape[0], grad_output.shape[1]
    dims = tuple(range(2, grad_output.dim()))
    if not batched:
        return {"scale": PerLoss((grad_output * x.unsqueeze(0)).flatten(1).sum(1))}
    g = (grad_output * x.unsqueeze(0)).sum(dims) if dims else grad_output * x
    return {"scale": PerLoss(g.transpose(0, 1).reshape(B * t))}


@pytest.mark.parametrize("batch_dim", [0, None])
def test_user_rule_for_a_zero_dim_parameter_is_exact(batch_dim):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), Temp(), nn.Tanh(), nn.Linear(4, 2)).to(DT)
    x = torch.randn(5, 3, dtype=DT)

    def losses_fn():
        out = model(x)
        return (out ** 2).sum(1) if batch_dim == 0 else torch.stack([out.sum(), out.prod()])

    calls = []

    def spy(*a, **k):
        calls.append(1)
        return temp_rule(*a, **k)

    expected = loop_gramian(model, losses_fn)
    with Engine(model, batch_dim=batch_dim, rules={Temp: spy}) as engine:
        G = engine.gramian(losses_fn())
        w = torch.rand(G.shape[0], dtype=DT)
        model.zero_grad(set_to_none=True)
        engine.gramian(losses_fn())
        engine.backward(w)
        got = model[1].scale.grad.clone()
    assert calls
    torch.testing.assert_close(G, expected, rtol=1e-10, atol=1e-12)
    model.zero_grad(set_to_none=True)
    losses_fn().backward(w)
    torch.testing.assert_close(got, model[1].scale.grad, rtol=1e-10, atol=1e-12)


class FunctionalBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)

    def forward(self, x):
        return nn.functional.batch_norm(self.lin(x), None, None, training=True)


def test_batchnorm_refusals_name_the_module_path():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3).eval(), FunctionalBN()).to(DT)
    x = torch.randn(5, 3, dtype=DT)
    with Engine(model, batch_dim=0) as engine:
        with pytest.raises(RuntimeError, match=r"pass batch_dim=None, got a batch_norm call in "
                                               r"training mode inside FunctionalBN '2'\.$"):
            model(x)
        engine.reset()
        model[1].train()
        with pytest.raises(RuntimeError, match=r"got BatchNorm1d '1' in training\.$"):
            model(x)


class TwiceOrPair(nn.Module):
    def __init__(self, mode):
        super().__init__()
        self.w = nn.Parameter(torch.ones(3, dtype=DT))
        self.mode = mode

    def forward(self, x):
        if self.mode == "twice":
            return self.w * x * self.w
        if self.mode == "pair":
            return self.w * x, x
        return self.w * x


@pytest.mark.parametrize(("mode", "error"), [
    ("twice", (r"^`a call of TwiceOrPair 'block\.0'` must be using each of its own "
               r"parameters at most once .*got parameter 'w' used twice\.$")),
    ("pair", (r"^`rule modules` must be called so that they return one tensor .*got "
              r"TwiceOrPair 'block\.0' returning tuple\.$")),
    ("empty", (r"^`the rule for TwiceOrPair 'block\.0'` must be returning a factor for 'w' "
               r"\(fix the registered rule\), got none\.$")),
])
def test_rule_module_refusals_name_the_module_path(mode, error):
    model = nn.Module()
    model.block = nn.Sequential(TwiceOrPair(mode))  # "empty": used once, the rule returns {}
    x = torch.randn(5, 3, dtype=DT)
    rules = {TwiceOrPair: lambda module, inputs, grad_output, *, batched: {}}
    with Engine(model, batch_dim=0, rules=rules) as engine:
        with pytest.raises(RuntimeError, match=error):
            out = model.block(x)
            engine.gramian((out if isinstance(out, torch.Tensor) else out[0]).sum(1))
