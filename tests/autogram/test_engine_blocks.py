"""Blocks beyond modules (per parameter, user groups) and the shared-representation mode
(``task_specific``), against one ``torch.autograd.grad`` per loss (issue 13, items 3-4)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gramweight.autogram import Engine

DT = torch.float64


def jacobians(params, losses):
    """One autograd.grad per loss: the (m, numel) Jacobian of each parameter."""
    rows = [torch.autograd.grad(l, params, retain_graph=True, allow_unused=True)
            for l in losses.flatten()]
    return [torch.stack([(torch.zeros_like(p) if r[k] is None else r[k]).reshape(-1)
                         for r in rows]) for k, p in enumerate(params)]


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12 * float(b.abs().max()))


class EncDec(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4))
        self.dec = nn.Sequential(nn.LayerNorm(4), nn.Linear(4, 2))

    def forward(self, x):
        return self.dec(self.enc(x))


def setup():
    torch.manual_seed(0)
    return EncDec().to(DT), torch.randn(5, 3, dtype=DT)


GROUPINGS = {
    "parameter": None,
    "two groups": {"enc": "encoder", "dec": "decoder"},
    "longest prefix": {"enc": "a", "enc.2.bias": "b", "": "rest"},
}


@pytest.mark.parametrize("name", GROUPINGS)
def test_blocks_per_parameter_and_per_group_are_exact(name):
    model, x = setup()
    per = "parameter" if GROUPINGS[name] is None else GROUPINGS[name]
    params = list(model.parameters())
    paths = [n for n, _ in model.named_parameters()]
    Js = jacobians(params, (model(x) ** 2).sum(1))
    # the expected group of each parameter, written out by hand for each grouping
    expected_group = {
        "parameter": paths,
        "two groups": ["encoder"] * 4 + ["decoder"] * 4,
        "longest prefix": ["a", "a", "a", "b", "rest", "rest", "rest", "rest"],
    }[name]
    groups = list(dict.fromkeys(expected_group))
    with Engine(model, batch_dim=0) as engine:
        assert engine.groups(per) == tuple(groups)
        Gs = engine.gramian((model(x) ** 2).sum(1), per=per)
        assert Gs.shape == (len(groups), 5, 5)
        for k, g in enumerate(groups):
            J = torch.cat([J for J, e in zip(Js, expected_group) if e == g], 1)
            close(Gs[k], J @ J.T)

        W = torch.randn(len(groups), 5, dtype=DT)
        model.zero_grad(set_to_none=True)
        engine.backward(W)
    for p, J, g in zip(params, Js, expected_group):
        close(p.grad.reshape(-1), W[groups.index(g)] @ J)


def test_parameter_names_are_the_paths_in_the_model():
    model, _ = setup()
    with Engine(model, batch_dim=0) as engine:
        assert engine.parameter_names == tuple(n for n, _ in model.named_parameters())
        assert engine.groups() == engine.blocks == ("enc.0", "enc.2", "dec.0", "dec.1")


def test_a_grouping_that_leaves_a_parameter_out_is_refused():
    model, x = setup()
    with Engine(model, batch_dim=0) as engine:
        with pytest.raises(ValueError, match=r"^`per` must be a mapping that gives every hooked "
                                             r"parameter a group.*got no group for 'dec.0.weight', "
                                             r"'dec.0.bias', 'dec.1.weight', \.\.\.\.$"):
            engine.gramian((model(x) ** 2).sum(1), per={"enc": "e"})


def test_a_grouping_with_a_path_that_matches_nothing_is_refused():
    model, _ = setup()
    with Engine(model, batch_dim=0) as engine:
        with pytest.raises(ValueError, match=r"got the path 'encoder', which matches no "
                                             r"parameter\.$"):
            engine.groups({"enc": "e", "dec": "d", "encoder": "x"})
        with pytest.raises(TypeError, match=r"^`per` must be a non-empty mapping"):
            engine.groups({"enc": 1})


def test_backward_blocks_follow_the_last_gramian_call():
    model, x = setup()
    with Engine(model, batch_dim=0) as engine:
        engine.gramian((model(x) ** 2).sum(1), per="parameter")
        with pytest.raises(ValueError, match=r"^`weights` must be of shape \(5,\) or \(8, 5\)"):
            engine.backward(torch.ones(4, 5, dtype=DT))


# ------------------------------------------------------------------ shared representation
class Trunk(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 6), nn.Tanh(), nn.Linear(6, 4), nn.Tanh())

    def forward(self, x):
        return self.net(x)


def multitask():
    torch.manual_seed(0)
    trunk = Trunk().to(DT)
    heads = nn.ModuleList([nn.Linear(4, 1), nn.Linear(4, 2), nn.Linear(4, 1)]).to(DT)
    x, y = torch.randn(6, 3, dtype=DT), torch.randn(6, dtype=DT)

    def losses_fn():
        z = trunk(x)
        return torch.stack([((heads[0](z)[:, 0] - y) ** 2).mean(),
                            heads[1](z).logsumexp(1).mean(),
                            torch.sin(heads[2](z)).mean()])
    return trunk, heads, losses_fn


def test_shared_representation_mode_is_exact():
    # the trunk's Gramian and w @ J_trunk on the trunk, each head its own task's gradient,
    # from one engine.backward: TorchJD's mtl_backward, LibMTL's rep_grad
    trunk, heads, losses_fn = multitask()
    tparams = list(trunk.parameters())
    Jt = torch.cat(jacobians(tparams, losses_fn()), 1)
    own = [torch.autograd.grad(losses_fn()[k], list(h.parameters())) for k, h in enumerate(heads)]
    w = torch.tensor([0.7, -0.2, 1.3], dtype=DT)

    with Engine(trunk, batch_dim=None, task_specific=heads) as engine:
        G = engine.gramian(losses_fn())
        close(G, Jt @ Jt.T)
        engine.backward(w)
    close(torch.cat([p.grad.reshape(-1) for p in tparams]), w @ Jt)
    for h, gs in zip(heads, own):
        for p, g in zip(h.parameters(), gs):
            close(p.grad, g)  # unweighted: the head's own loss only


def test_task_specific_parameters_with_per_sample_losses():
    torch.manual_seed(0)
    trunk = Trunk().to(DT)
    head = nn.Linear(4, 2).to(DT)
    x = torch.randn(5, 3, dtype=DT)
    losses_fn = lambda: (head(trunk(x)) ** 2)  # (B, 2)
    tparams = list(trunk.parameters())
    Jt = torch.cat(jacobians(tparams, losses_fn()), 1)
    plain = torch.autograd.grad(losses_fn().sum(), list(head.parameters()))
    with Engine(trunk, batch_dim=0, task_specific=[head.weight, head.bias]) as engine:
        close(engine.gramian(losses_fn()), Jt @ Jt.T)
        engine.backward(torch.ones(10, dtype=DT))
    for p, g in zip(head.parameters(), plain):
        close(p.grad, g)


def test_a_hooked_parameter_cannot_be_task_specific():
    trunk = Trunk().to(DT)
    with pytest.raises(ValueError, match=r"^`task_specific` must be parameters outside the "
                                         r"hooked modules.*got the hooked parameter "
                                         r"'net.0.weight'\.$"):
        Engine(trunk, batch_dim=None, task_specific=trunk.net[0])
    with pytest.raises(TypeError, match=r"^`task_specific` must be a module, a parameter, or "
                                        r"an iterable of them, got Tensor\.$"):
        Engine(trunk, batch_dim=None, task_specific=[torch.ones(2)])
