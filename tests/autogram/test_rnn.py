"""RNN, LSTM, GRU unrolled in time (``rules/_rnn.py``): the fused op's values, the exact Gramian
with ``batch_dim=0`` in every configuration, dropout, and the packed sequences refused."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import gramweight as gw
from gramweight.autogram.rules import _rnn
from gramweight.testing import reference_gramian

DT = torch.float64
B, T, I, H = 3, 4, 3, 4

FUSED = {"tanh": torch.rnn_tanh, "relu": torch.rnn_relu, "lstm": torch.lstm, "gru": torch.gru}

VARIANTS = [(kind, batch_first, bidirectional, layers, bias, proj)
            for kind, batch_first, bidirectional, layers, bias, proj in itertools.product(
                FUSED, (True, False), (False, True), (1, 2), (True, False), (0, 2))
            if not proj or kind == "lstm"]


def _ids(v):
    kind, batch_first, bidirectional, layers, bias, proj = v
    return (f"{kind}-{'bf' if batch_first else 'tf'}-{'bi' if bidirectional else 'uni'}-L{layers}"
            f"{'' if bias else '-nobias'}{f'-proj{proj}' if proj else ''}")


def _rnn_module(kind, batch_first, bidirectional, layers, bias, proj, dropout=0.0):
    kw = dict(num_layers=layers, bias=bias, batch_first=batch_first,
              bidirectional=bidirectional, dropout=dropout)
    if kind == "lstm":
        return nn.LSTM(I, H, proj_size=proj, **kw).to(DT)
    if kind == "gru":
        return nn.GRU(I, H, **kw).to(DT)
    return nn.RNN(I, H, nonlinearity=kind, **kw).to(DT)


def _input(batch_first):
    return torch.randn((B, T, I) if batch_first else (T, B, I), dtype=DT)


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_decomposition_equals_the_fused_op(variant):
    kind, batch_first, bidirectional, layers, bias, proj = variant
    torch.manual_seed(0)
    rnn = _rnn_module(*variant)
    x = _input(batch_first)
    D = 2 if bidirectional else 1
    h0 = torch.randn(layers * D, B, proj or H, dtype=DT)
    hx = (h0, torch.randn(layers * D, B, H, dtype=DT)) if kind == "lstm" else h0
    args = (x, hx, rnn._flat_weights, bias, layers, 0.0, True, bidirectional, batch_first)
    expected = FUSED[kind](*args)
    got = _rnn.DECOMPOSITIONS[FUSED[kind]](*args, linear=F.linear)
    assert type(got) is type(expected) and len(got) == len(expected)
    for g, e in zip(got, expected):
        assert (g.shape, g.stride(), g.dtype) == (e.shape, e.stride(), e.dtype)
        torch.testing.assert_close(g, e, rtol=0, atol=1e-12)


class Head(nn.Module):
    """The RNN's last output and its final hidden state h_n, to a (B, 2) output."""

    def __init__(self, rnn):
        super().__init__()
        self.rnn, self.batch_first = rnn, rnn.batch_first
        D = 2 if rnn.bidirectional else 1
        self.out = nn.Linear(D * (rnn.proj_size or rnn.hidden_size), 2).to(DT)

    def forward(self, x, hx=None):
        y, h = self.rnn(x, hx)
        h = h[0] if isinstance(h, tuple) else h
        last = y[:, -1] if self.batch_first else y[-1]
        return self.out(last) + h.sum(0).sum(-1, keepdim=True)


@pytest.mark.parametrize("variant", VARIANTS, ids=_ids)
def test_gramian_is_exact_with_batch_dim_0(variant):
    torch.manual_seed(0)
    model = Head(_rnn_module(*variant))
    x = _input(variant[1])

    def losses():
        return ((model(x) - 0.5) ** 2).sum(1)

    expected = reference_gramian(model, losses)
    with gw.autogram.Engine(model, batch_dim=0) as engine:
        G = engine.gramian(losses())
    torch.testing.assert_close(G, expected, rtol=1e-9, atol=1e-12 * expected.abs().max())


def _per_sample_gramian(model, losses):
    rows = []
    params = list(model.parameters())
    for loss in losses:
        gs = torch.autograd.grad(loss, params, retain_graph=True)
        rows.append(torch.cat([g.reshape(-1) for g in gs]))
    J = torch.stack(rows)
    return J @ J.T


@pytest.mark.parametrize("kind", list(FUSED))
def test_inter_layer_dropout_in_training_is_exact_for_the_masks_drawn(kind):
    # the unrolled op draws its masks with F.dropout, not the fused kernel's: the reference is
    # the same unrolled forward (plain F.linear), same seed, differentiated per sample
    torch.manual_seed(0)
    rnn = _rnn_module(kind, True, True, 3, True, 0, dropout=0.5)
    x = _input(True)

    def unrolled_losses():
        torch.manual_seed(1)
        h0 = torch.zeros(6, B, H, dtype=DT)
        hx = (h0, h0) if kind == "lstm" else h0
        y = _rnn.DECOMPOSITIONS[FUSED[kind]](x, hx, rnn._flat_weights, True, 3, 0.5, True,
                                             True, True, linear=F.linear)[0]
        return (y[:, -1] ** 2).sum(1)

    def losses():
        torch.manual_seed(1)
        return (rnn(x)[0][:, -1] ** 2).sum(1)

    with gw.autogram.Engine(rnn, batch_dim=0) as engine:
        G = engine.gramian(losses())
        expected = _per_sample_gramian(rnn, unrolled_losses())
        torch.testing.assert_close(G, expected, rtol=1e-9, atol=1e-12 * expected.abs().max())
        rnn.eval()  # the masks matter
        assert not torch.allclose(engine.gramian(losses()), G)


class Packed(nn.Module):
    def __init__(self, rnn):
        super().__init__()
        self.rnn = rnn

    def forward(self, x, lengths):
        packed = nn.utils.rnn.pack_padded_sequence(x, lengths, batch_first=True,
                                                   enforce_sorted=False)
        h = self.rnn(packed)[1]
        return (h[0] if isinstance(h, tuple) else h)[-1]


@pytest.mark.parametrize("kind", list(FUSED))
def test_packed_sequence_is_refused_with_batch_dim_and_exact_without(kind):
    torch.manual_seed(0)
    model = Packed(_rnn_module(kind, True, False, 1, True, 0))
    x, lengths = _input(True), torch.tensor([2, 4, 3])
    with gw.autogram.Engine(model, batch_dim=0) as engine:
        with pytest.raises(RuntimeError, match=r"^`RNNs` must be given a padded tensor and "
                           r"their own parameters when batch_dim is set .*, got a packed "
                           rf"sequence in {type(model.rnn).__name__} 'rnn'\.$"):
            model(x, lengths)
        engine.reset()
        padded = model.rnn(x)[0]  # the padded batch is exact (see above): the engine is usable
        assert engine.gramian((padded ** 2).sum((1, 2))).shape == (B, B)

    def losses():
        out = model(x, lengths)
        return torch.stack([(out ** 2).sum(), out.sin().sum()])

    expected = _per_sample_gramian(model, losses())  # torch.func cannot run the packed op
    with gw.autogram.Engine(model, batch_dim=None) as engine:
        G = engine.gramian(losses())
    torch.testing.assert_close(G, expected, rtol=1e-9, atol=1e-12 * expected.abs().max())


@pytest.mark.parametrize("kind", list(FUSED))
def test_packed_overload_is_not_decomposed(kind):
    rnn = _rnn_module(kind, False, False, 1, True, 0)
    data, batch_sizes = torch.randn(5, I, dtype=DT), torch.tensor([2, 2, 1])
    h0 = torch.zeros(1, 2, H, dtype=DT)
    hx = (h0, h0) if kind == "lstm" else h0
    args = (data, batch_sizes, hx, rnn._flat_weights, True, 1, 0.0, False, False)
    assert _rnn.DECOMPOSITIONS[FUSED[kind]](*args, linear=F.linear) is NotImplemented


def test_reparametrized_weight_is_refused_with_batch_dim_and_exact_without():
    # the weight is computed inside the call: the Linear rule does not reach its originals
    torch.manual_seed(0)
    model = Head(_rnn_module("lstm", True, False, 1, True, 0))
    nn.utils.parametrizations.weight_norm(model.rnn, "weight_hh_l0")
    x = _input(True)
    with gw.autogram.Engine(model, batch_dim=0) as engine:
        with pytest.raises(RuntimeError, match=r"^`RNNs` must be given .*, got a weight "
                           r"computed from other tensors \(a parametrization\) in "
                           r"ParametrizedLSTM 'rnn'\.$"):
            model(x)

    def losses():
        out = model(x)
        return torch.stack([(out ** 2).sum(), out.sin().sum()])

    expected = _per_sample_gramian(model, losses())
    with gw.autogram.Engine(model, batch_dim=None) as engine:
        G = engine.gramian(losses())
    torch.testing.assert_close(G, expected, rtol=1e-9, atol=1e-12 * expected.abs().max())
