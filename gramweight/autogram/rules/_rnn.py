"""``nn.RNN``, ``nn.LSTM``, ``nn.GRU``: the fused recurrent op unrolled in time, so that the
Linear rule covers every one of their parameters, exactly, with per-sample losses.

With ``batch_dim`` set, the engine's recorder intercepts the fused functions these modules
call (``torch.rnn_tanh``, ``torch.rnn_relu``, ``torch.lstm``, ``torch.gru``, the same objects
as ``torch._VF.*``) and calls the decompositions here instead (with ``batch_dim=None`` it
does not: the fused op in the generic fallback is exact there, and several times faster).
Each one recomputes the op with torch's own equations, batch first, with every parameter use
going through ``linear(x, weight, bias)``, a callback that records the use for the Linear
rule:

- per layer and direction, the input projection of the whole sequence is one use,
  ``linear(x, W_ih, b_ih)`` with ``x`` of shape (B, T, I);
- the hidden projection is one use per time step, ``linear(h, W_hh, b_hh)`` with ``h`` of
  shape (B, H), and the LSTM's projection (``proj_size``) one more, ``linear(h, W_hr)``. The
  engine sums the per-sample gradients of the T uses of a weight, so the cross terms between
  steps are exact.

Every recorded input and output has the batch on dimension 0, whatever ``batch_first`` is.
The results are those of the fused op up to round-off, with its tuple structure, shapes,
strides and dtype. Inter-layer dropout (``dropout > 0`` in training mode) is drawn by
``F.dropout`` on each layer's output, so its masks are not those the fused kernel would draw;
the Gramian is exact for the masks drawn.

Two kinds of calls return ``NotImplemented`` (``not_unrolled`` says which): packed
sequences (the ``batch_sizes`` overload), whose samples are sorted by length in an order the
fused op does not see, and weights computed from other tensors (a parametrization), which the
Linear rule does not differentiate through. The engine refuses them (``batch_dim`` is set).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DECOMPOSITIONS", "RNN_FUNCTIONS", "gru", "lstm", "not_unrolled", "rnn_relu",
           "rnn_tanh"]

Linear = Callable[..., Tensor]

# the arguments of the padded overload, after the input (the packed one has batch_sizes, hx,
# params, ... and no batch_first)
_PADDED = ("hx", "params", "has_biases", "num_layers", "dropout", "train", "bidirectional",
           "batch_first")


def _bind(args: tuple, kwargs: dict) -> dict | None:
    """The padded overload's arguments by name, or None for the packed overload."""
    if "batch_sizes" in kwargs or "data" in kwargs:
        return None
    names = ("input", *_PADDED)
    bound = dict(zip(names, args))
    bound.update(kwargs)
    # packed: (data, batch_sizes, hx, params, has_biases, ...), so has_biases is a list
    if set(bound) != set(names) or not isinstance(bound["has_biases"], bool):
        return None
    return bound


def not_unrolled(func: Callable, args: tuple, kwargs: dict) -> str | None:
    """Why a call of a fused RNN function is not unrolled, as messages say it; None if it is."""
    a = _bind(args, kwargs)
    if a is None:
        return "a packed sequence"
    if any(isinstance(w, Tensor) and w.grad_fn is not None for w in a["params"]):
        return "a weight computed from other tensors (a parametrization)"
    hx = a["hx"]
    D = 2 if a["bidirectional"] else 1
    lstm = func is torch.lstm
    if (a["input"].dim() != 3 or 0 in a["input"].shape[:2] or lstm == isinstance(hx, Tensor)
            or (lstm and len(hx) != 2)
            or _weights(a["params"], a["has_biases"], a["num_layers"], D, lstm) is None):
        return "a call of the fused op that the engine cannot unroll"
    return None


def _rnn_cell(act: Callable[[Tensor], Tensor]):
    def cell(xp: Tensor, h: Tensor, c: None, w: Sequence, linear: Linear):
        _, w_hh, _, b_hh, _ = w
        return act(xp + linear(h, w_hh, b_hh)), None
    return cell


def _lstm_cell(xp: Tensor, h: Tensor, c: Tensor, w: Sequence, linear: Linear):
    _, w_hh, _, b_hh, w_hr = w
    i, f, g, o = (xp + linear(h, w_hh, b_hh)).chunk(4, dim=-1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h = torch.sigmoid(o) * torch.tanh(c)
    return (h if w_hr is None else linear(h, w_hr)), c


def _gru_cell(xp: Tensor, h: Tensor, c: None, w: Sequence, linear: Linear):
    _, w_hh, _, b_hh, _ = w
    x_r, x_z, x_n = xp.chunk(3, dim=-1)
    h_r, h_z, h_n = linear(h, w_hh, b_hh).chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return n + z * (h - n), None


def _weights(params: Sequence[Tensor], has_biases: bool, layers: int, directions: int,
             lstm: bool) -> list[tuple] | None:
    """(w_ih, w_hh, b_ih, b_hh, w_hr) per layer and direction, None where absent."""
    per = len(params) // (layers * directions) if layers * directions else 0
    plain = 4 if has_biases else 2
    if per * layers * directions != len(params) or per not in (plain, plain + lstm):
        return None
    out = []
    for k in range(layers * directions):
        w = list(params[k * per:(k + 1) * per])
        w_ih, w_hh = w[0], w[1]
        b_ih, b_hh = (w[2], w[3]) if has_biases else (None, None)
        out.append((w_ih, w_hh, b_ih, b_hh, w[plain] if per > plain else None))
    return out


def _unroll(cell, input: Tensor, h0: Tensor, c0: Tensor | None, params: Sequence[Tensor],
            has_biases: bool, num_layers: int, dropout: float, train: bool,
            bidirectional: bool, batch_first: bool, linear: Linear, lstm: bool = False):
    """The padded fused op: (output, h_n) or, with ``c0``, (output, h_n, c_n)."""
    D = 2 if bidirectional else 1
    weights = _weights(params, has_biases, num_layers, D, lstm)
    x = input if batch_first else input.transpose(0, 1)  # (B, T, I)
    T = x.shape[1]
    h_n, c_n = [], []
    for layer in range(num_layers):
        if layer > 0 and dropout > 0 and train:
            x = F.dropout(x, dropout, training=True)
        per_direction = []
        for d in range(D):
            k = layer * D + d
            w = weights[k]
            xp = linear(x, w[0], w[2])  # the whole sequence's input projection: (B, T, G)
            h, c = h0[k], None if c0 is None else c0[k]
            outs: list[Tensor] = [None] * T  # type: ignore[list-item]
            for t in (reversed(range(T)) if d == 1 else range(T)):
                h, c = cell(xp[:, t], h, c, w, linear)
                outs[t] = h
            h_n.append(h)
            c_n.append(c)
            per_direction.append(outs)
        steps = [torch.cat(hs, dim=-1) if D > 1 else hs[0] for hs in zip(*per_direction)]
        if layer < num_layers - 1:
            x = torch.stack(steps, dim=1)
    # time-major and contiguous, transposed for batch_first, as the fused op returns it
    output = torch.stack(steps, dim=0)
    if batch_first:
        output = output.transpose(0, 1)
    if c0 is None:
        return output, torch.stack(h_n)
    return output, torch.stack(h_n), torch.stack(c_n)


def _decomposition(func: Callable, cell: Callable) -> Callable:
    lstm = func is torch.lstm

    def decomposition(*args, linear: Linear, **kwargs):
        if not_unrolled(func, args, kwargs) is not None:
            return NotImplemented
        a = _bind(args, kwargs)
        h0, c0 = a["hx"] if lstm else (a["hx"], None)
        return _unroll(cell, a["input"], h0, c0, *(a[k] for k in _PADDED[1:]), linear=linear,
                       lstm=lstm)

    decomposition.__name__ = decomposition.__qualname__ = func.__name__
    decomposition.__doc__ = (f"``torch.{func.__name__}`` (padded overload) plus the ``linear`` "
                             "callback.")
    return decomposition


rnn_tanh = _decomposition(torch.rnn_tanh, _rnn_cell(torch.tanh))
rnn_relu = _decomposition(torch.rnn_relu, _rnn_cell(torch.relu))
lstm = _decomposition(torch.lstm, _lstm_cell)
gru = _decomposition(torch.gru, _gru_cell)

DECOMPOSITIONS = {torch.rnn_tanh: rnn_tanh, torch.rnn_relu: rnn_relu, torch.lstm: lstm,
                  torch.gru: gru}
"""Fused recurrent functions the recorder replaces by their unrolled equivalent."""

RNN_FUNCTIONS = frozenset(DECOMPOSITIONS)
"""The fused recurrent functions: not unrolled, they lay the samples out in their own way."""
