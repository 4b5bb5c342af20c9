"""Regressions of the engine on the patterns of third-party models (issue 12): in-place ops
after a call, outputs broadcast over the batch, BatchNorm, rules found along the MRO.

Exactness on whole models is checked by the zoo (``_zoo.py``, ``test_zoo.py``); these tests
pin the traps and the refusals, each against one ``torch.autograd.grad`` per loss.
"""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from gramweight.autogram import Engine
from gramweight.autogram.rules import RULES
from gramweight.autogram.rules._registry import rule_for

from ._zoo import PositionLM, TransposedLinear, resnet
from .test_engine_regressions import loop_gramian

DT = torch.float64


def close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12 * float(b.abs().max()))


# ------------------------------------------------------------------ in-place ops after a call
class Scaled(nn.Module):
    # no rule: its parameter goes to the generic fallback
    def __init__(self):
        super().__init__()
        self.s = nn.Parameter(torch.tensor([1.5, -0.5, 2.0], dtype=DT))

    def forward(self, x):
        return x * self.s


class InPlaceAfterGeneric(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin, self.scaled, self.out = (nn.Linear(3, 3).to(DT), Scaled(),
                                           nn.Linear(3, 2).to(DT))

    def forward(self, x):
        h = self.scaled(self.lin(x))
        h += x            # in place on the output of a module without a rule
        h.tanh_()
        return self.out(h)


@pytest.mark.parametrize("batch_dim", [0, None])
def test_in_place_ops_on_the_output_of_a_module_without_a_rule_are_exact(batch_dim):
    # used to be refused ("an input or output of Scaled modified in place"), which also
    # blocked torchvision's ResNet (out += identity after BatchNorm in eval mode)
    torch.manual_seed(0)
    model, x = InPlaceAfterGeneric(), torch.randn(5, 3, dtype=DT)

    def losses_fn():
        out = model(x)
        return (out ** 2).sum(1) if batch_dim == 0 else torch.stack([out.mean(), out.std()])

    expected = loop_gramian(model, losses_fn)
    with Engine(model, batch_dim=batch_dim) as engine:
        close(engine.gramian(losses_fn()), expected)


class PartialView(nn.Module):
    def __init__(self):
        super().__init__()
        self.s = nn.Parameter(torch.ones(4, dtype=DT))

    def forward(self, x):
        return (x * self.s)[:, :2]  # a view of part of a tensor


def test_in_place_change_of_an_output_that_is_a_partial_view_is_refused_with_its_path():
    # an in-place op on a partial view rebases the view's own gradient edge
    model = nn.Sequential(nn.Linear(3, 4).to(DT), PartialView())
    with Engine(model, batch_dim=0) as engine:
        out = model(torch.randn(5, 3, dtype=DT))
        out.mul_(2.0)
        with pytest.raises(RuntimeError, match=r"got an input \(or an output that is a view\) "
                                               r"of PartialView '1' modified in place\.$"):
            engine.gramian(out.sum(1))


def test_in_place_op_on_a_whole_view_output_is_exact():
    # Hugging Face's Conv1D returns addmm(...).view(...): a view of all of its base, whose
    # base's edge stands for it
    torch.manual_seed(0)
    model = TransposedLinear(3, 4).to(DT)
    x = torch.randn(5, 2, 3, dtype=DT)

    def losses_fn():
        out = model(x)
        assert out._is_view()
        out.sin_()
        return (out ** 2).sum((1, 2))

    expected = loop_gramian(model, losses_fn)
    with Engine(model, batch_dim=0) as engine:
        close(engine.gramian(losses_fn()), expected)


# ------------------------------------------------------------------ BatchNorm
def test_batchnorm_in_training_with_running_statistics_is_exact_with_batch_dim_none():
    # the zoo's reference (jacrev) cannot update running statistics; one autograd.grad per
    # loss can. The running statistics of the engine's forward are those of a plain one.
    torch.manual_seed(0)
    model = resnet().to(DT).train()
    x = torch.randn(6, 2, 6, 6, dtype=DT)

    def losses_fn():
        out = model(x)
        return torch.stack([out.pow(2).mean(), out[:, 0].mean(), out.sin().mean()])

    expected = loop_gramian(model, losses_fn)
    before = model[1].running_mean.clone()
    with Engine(model, batch_dim=None) as engine:
        G = engine.gramian(losses_fn())
    close(G, expected)
    assert not torch.equal(model[1].running_mean, before)  # the forwards updated them


def test_batchnorm_eval_without_running_statistics_is_refused_with_batch_dim_0():
    # track_running_stats=False: eval mode still normalises with the batch's statistics
    bn = nn.BatchNorm1d(3, track_running_stats=False).eval()
    model = nn.Sequential(nn.Linear(2, 3), bn)
    with pytest.raises(ValueError, match=r"free of BatchNorm using the batch's statistics.*got "
                                         r"BatchNorm1d '1'\.$"):
        Engine(model, batch_dim=0)


def test_batchnorm_eval_uses_its_rule_and_is_exact():
    torch.manual_seed(0)
    model = resnet().to(DT).eval()
    assert rule_for(RULES, model[1]) is not None
    x = torch.randn(4, 2, 6, 6, dtype=DT)

    def losses_fn():
        return model(x).pow(2).sum(1)

    expected = loop_gramian(model, losses_fn)
    with Engine(model, batch_dim=0) as engine:
        close(engine.gramian(losses_fn()), expected)


# ------------------------------------------------------------------ rules along the MRO
def test_rule_lookup_follows_the_mro_unless_forward_is_overridden():
    class KeepsForward(nn.LayerNorm):
        pass

    class OwnForward(nn.LayerNorm):
        def forward(self, x):
            return super().forward(x) * 2.0

    assert rule_for(RULES, KeepsForward(3)) is RULES[nn.LayerNorm]
    assert rule_for(RULES, OwnForward(3)) is None
    assert rule_for(RULES, nn.BatchNorm2d(3)) is RULES[nn.modules.batchnorm._BatchNorm]
    assert rule_for(RULES, nn.SyncBatchNorm(3)) is None  # its own forward


# ------------------------------------------------------------------ broadcast outputs
@pytest.mark.parametrize("ids_shape", [(1, 4), (4,)])
def test_a_position_lookup_broadcast_over_the_batch_is_exact(ids_shape):
    # GPT-2 / BERT look positions up with ids of shape (1, T): refused before. With ids (T,)
    # and T == B, the (T, D) output has B rows without being a batch: the Embedding rule
    # took the positions for samples, a silently wrong Gramian (1.8 % off on a
    # tok + pos model with B = T = 4, no error).
    torch.manual_seed(0)
    model = PositionLM(4, ids_shape, in_place=len(ids_shape) == 1).to(DT)
    ids = torch.randint(0, 7, (4, 4))

    def losses_fn():
        return (model(ids) ** 2).sum(1)

    expected = loop_gramian(model, losses_fn)
    with Engine(model, batch_dim=0) as engine:
        close(engine.gramian(losses_fn()), expected)
        Gs = engine.gramian(losses_fn(), per="module")
        close(Gs.sum(0), expected)


class BroadcastAndMore(nn.Module):
    def __init__(self, derived):
        super().__init__()
        self.tok, self.pos = nn.Embedding(5, 3).to(DT), nn.Embedding(4, 3).to(DT)
        self.derived = derived

    def forward(self, ids):
        pos = self.pos(torch.arange(ids.shape[1]).unsqueeze(0))
        h = self.tok(ids)
        if self.derived:
            return h * torch.sigmoid(pos)  # broadcast after another op: not expanded
        return h + pos + pos.sum()  # broadcast, and also used another way


def test_a_broadcast_output_also_used_another_way_is_refused_with_its_path():
    model = BroadcastAndMore(derived=False)
    with Engine(model, batch_dim=0) as engine:
        losses = model(torch.randint(0, 5, (3, 4))).sum((1, 2))
        with pytest.raises(ValueError, match=r"got an output of Embedding 'pos' broadcast over "
                                             r"the batch and also used another way"):
            engine.gramian(losses)


def test_an_output_broadcast_after_another_op_is_refused_with_its_path():
    model = BroadcastAndMore(derived=True)
    with Engine(model, batch_dim=0) as engine:
        losses = model(torch.randint(0, 5, (3, 4))).sum((1, 2))
        with pytest.raises(ValueError, match=r"expand an output of batch size 1 to the batch "
                                             r"yourself.*got an output of Embedding 'pos' with "
                                             r"1 rows for 3 losses\.$"):
            engine.gramian(losses)


# ------------------------------------------------------------------ messages
@pytest.mark.skipif(sys.version_info < (3, 11), reason="exception notes are Python 3.11+")
def test_an_error_inside_a_rule_names_the_module_by_its_path():
    class Odd(nn.Linear):
        pass

    def broken(module, inputs, grad_output, *, batched):
        raise ValueError("`inputs` must be 2-D, got 3-D.")

    model = nn.Sequential(nn.Linear(2, 3), Odd(3, 1)).to(DT)
    with Engine(model, batch_dim=0, rules={Odd: broken}) as engine:
        losses = model(torch.randn(4, 2, dtype=DT)).sum(1)
        with pytest.raises(ValueError, match="must be 2-D") as info:
            engine.gramian(losses)
    assert "(raised by the rule for Odd '1')" in getattr(info.value, "__notes__", [])



class Doubler(nn.Module):
    # its output has twice the rows of its input: dimension 0 is no sample dimension
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 2, dtype=DT))

    def forward(self, x):
        return (x @ self.w).repeat(2, 1)


def test_a_rule_input_without_one_row_per_sample_is_refused_with_its_path():
    def rule(module, inputs, grad_output, *, batched):  # never reached
        raise AssertionError("the rule ran on inputs of the wrong batch size")

    model = nn.Sequential(Doubler())
    with Engine(model, batch_dim=0, rules={Doubler: rule}) as engine:
        out = model(torch.randn(2, 3, dtype=DT))  # 2 samples in, 4 rows out
        with pytest.raises(ValueError, match=r"got an input of Doubler '0' with 2 rows for 4 "
                                             r"losses\.$"):
            engine.gramian(out.sum(1))
