"""Each built-in rule against ``reference_gramian`` on hypothesis-drawn shapes and options."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

import gramweight as gw
from gramweight.testing import reference_gramian

DT = torch.float64
SHAPES = st.sampled_from(["instance", "mixed", "multitask"])


def _check(model, x, shape, seed):
    def losses_fn():
        out = model(x).flatten(1)
        c = torch.linspace(-1, 1, out.shape[1], dtype=DT)
        if shape == "instance":
            return (out * c).sum(1) ** 2
        if shape == "mixed":
            return torch.stack([(out * c).sum(1) ** 2, out.sum(1)], 1)
        return torch.stack([(out ** 2).mean(), (out * c).mean()])
    batch_dim = None if shape == "multitask" else 0
    with gw.autogram.Engine(model, batch_dim=batch_dim) as engine:
        G = engine.gramian(losses_fn())
    R = reference_gramian(model, losses_fn)
    torch.testing.assert_close(G, R, rtol=1e-9, atol=1e-11 * max(1.0, float(R.abs().max())),
                               msg=f"seed {seed}")


@given(B=st.integers(1, 4), seq=st.sampled_from([(), (1,), (3,), (2, 3)]),
       i=st.integers(1, 5), o=st.integers(1, 5), bias=st.booleans(), shape=SHAPES,
       seed=st.integers(0, 2**16))
def test_linear(B, seq, i, o, bias, shape, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(i, o, bias=bias)).to(DT)
    _check(model, torch.randn(B, *seq, i, dtype=DT), shape, seed)


@given(B=st.integers(1, 3), d=st.sampled_from([1, 2]), groups=st.sampled_from([1, 2]),
       k=st.integers(1, 3), stride=st.integers(1, 2), dilation=st.integers(1, 2),
       padding=st.sampled_from([0, 1, "same"]), mode=st.sampled_from(["zeros", "reflect"]),
       bias=st.booleans(), shape=SHAPES, seed=st.integers(0, 2**16))
def test_conv(B, d, groups, k, stride, dilation, padding, mode, bias, shape, seed):
    if padding == "same":
        stride = 1
    torch.manual_seed(seed)
    cls = nn.Conv1d if d == 1 else nn.Conv2d
    model = nn.Sequential(cls(2, 4, k, stride=stride, padding=padding, dilation=dilation,
                              groups=groups, bias=bias, padding_mode=mode)).to(DT)
    x = torch.randn(B, 2, *([7] * d), dtype=DT)
    _check(model, x, shape, seed)


@given(B=st.integers(1, 4), length=st.integers(1, 4), padding_idx=st.sampled_from([None, 0]),
       shape=SHAPES, seed=st.integers(0, 2**16))
def test_embedding(B, length, padding_idx, shape, seed):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Embedding(5, 3, padding_idx=padding_idx)).to(DT)
    _check(model, torch.randint(0, 5, (B, length)), shape, seed)


@given(B=st.integers(1, 4), kind=st.sampled_from(["layer", "rms", "group"]),
       shape=SHAPES, seed=st.integers(0, 2**16))
def test_norms(B, kind, shape, seed):
    torch.manual_seed(seed)
    norm = {"layer": nn.LayerNorm(4), "rms": nn.RMSNorm(4), "group": nn.GroupNorm(2, 4)}[kind]
    with torch.no_grad():
        for p in norm.parameters():
            p.normal_()
    x = torch.randn(B, 4, 3, dtype=DT) if kind == "group" else torch.randn(B, 3, 4, dtype=DT)
    _check(nn.Sequential(norm).to(DT), x, shape, seed)


def test_a_rule_by_qualified_name_applies_without_importing_its_library():
    from gramweight.autogram.rules._registry import RULES, RULES_BY_NAME, rule_for

    from ._zoo import Conv1D, OwnForwardConv1D

    rule = RULES_BY_NAME["transformers.pytorch_utils.Conv1D"]
    assert rule_for(RULES, Conv1D(3, 2)) is rule
    assert rule_for(RULES, OwnForwardConv1D(3, 2)) is None  # its own forward: no rule
    assert rule_for({Conv1D: "mine"}, Conv1D(3, 2)) == "mine"  # by type first
