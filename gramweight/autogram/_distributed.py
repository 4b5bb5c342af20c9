r"""Data parallelism over ``torch.distributed``: the Gramian over the global batch, and ``.grad``.

The engine hands ``Distributed`` the factors of every parameter once its Gramian pass has
them (``Engine._assemble``) and the weights in ``Engine.backward`` (``Engine._accumulate``).

Scope ``"global"``, instance-wise losses (``batch_dim=0``, rank ``r`` has ``n_r`` samples and
``t`` losses each, ``m_r = n_r t`` rows): the Gramian is over the ``M = sum_r m_r`` losses of the
global batch, rows in rank order. The block of ranks ``(r, s)`` of a parameter is
``J_r J_s^T``. Each parameter has an owner, the rank that computes its Gramian, and every rank
sends the owner whichever is smaller of

- the layer factors of an ``Outer`` (inputs ``X`` (n, P, g, I) and output gradients
  ``dY`` (t, n, P, g, O)): the factors of all ranks, concatenated over the samples, are the
  factor of the global batch, whose Gramian (ghost or materialised, by the single-process cost
  model) holds every block;
- the per-loss gradients (m_r, numel), concatenated over the ranks.

Embedding tables (``Rows``) send their compact rows (the row indices travel in an
``all_gather``); the bias of a Linear whose weight sends its factors sends nothing (its
gradients are the gathered ``dY`` summed over positions). One small ``all_gather`` of the sizes
first decides, identically on every rank, what is sent, the padded widths (the largest
rank's) and the owners (the largest payloads first, each to the least loaded rank). Then one
``all_to_all`` carries every payload to its owner, each owner sums the Gramians of its
parameters, and one ``all_gather`` of these partial Gramians, summed in rank order on every
rank, gives every rank the same ``G``, bit for bit.

Scope ``"global"``, multi-task losses (``batch_dim=None``, (m,) losses per rank, each a mean over
the rank's batch): the losses are averaged over the ranks, ``J = (1/R) sum_r J_r`` and
``G = J J^T`` (not the mean of the ``J_r J_r^T``). Per parameter either the per-loss gradients
are summed (``all_reduce``, all of them in one call) or the factors are sent to the owner and
concatenated over the positions, with the output gradients divided by ``R``.

Scope ``"local"``: each rank's Gramian is its own (no exchange in ``gramian``).

``backward``: each rank applies its weights to its own factors (its slice of the global weights
for instance-wise losses), and one ``all_reduce`` (sum) of every parameter's gradient,
flattened into one buffer, gives every rank the same ``.grad``; for multi-task losses and for
the local scope the sum is divided by ``R`` (the mean over ranks, as DDP does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .._checks import message
from .rules._factors import BiasOf, Factor, Outer, Rows, rows_of

__all__ = ["Distributed", "check_same_on_every_rank", "resolve_group"]

_META = 6  # sizes exchanged per parameter (see Distributed._meta)

# kinds of a parameter's factor on one rank, as exchanged in the sizes
_NONE, _OUTER, _GRADS, _ROWS, _BIAS = 0, 1, 2, 3, 4
# the routes a parameter's exchange takes (the same on every rank); "bias" exchanges nothing:
# the bias of a Linear whose weight takes the "factors" route is read from its gathered dY
_SKIP, _FACTORS, _PER_LOSS, _TABLE, _BIAS_OF = "skip", "factors", "per-loss", "rows", "bias"


def resolve_group(process_group: Any) -> Any:
    """``"world"`` -> the default group; a ``ProcessGroup`` is kept; anything else refused."""
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(message("process_group", "given once torch.distributed is "
                                   "initialised (call torch.distributed.init_process_group "
                                   "first)", f"{process_group!r} before initialisation"))
    if isinstance(process_group, str):
        if process_group != "world":
            raise ValueError(message("process_group", 'None, "world" or a '
                                     "torch.distributed.ProcessGroup", repr(process_group)))
        return dist.group.WORLD
    if not isinstance(process_group, dist.ProcessGroup):
        raise TypeError(message("process_group", 'None, "world" or a '
                                "torch.distributed.ProcessGroup", type(process_group).__name__))
    return process_group


def check_same_on_every_rank(tensor: Tensor, process_group: Any = "world") -> None:
    """Raise unless ``tensor`` is bitwise the same on every rank of the group.

    A check for the weights (or anything else every rank must agree on) while setting up a
    training loop: it costs one ``all_gather`` of the tensor. Call it on every rank.

    Raises:
        RuntimeError: naming the first rank whose tensor differs from rank 0's.
    """
    group = resolve_group(process_group)
    R = dist.get_world_size(group)
    x = tensor.detach().contiguous().reshape(-1)
    got = [torch.empty_like(x) for _ in range(R)]
    dist.all_gather(got, x, group=group)
    for r, y in enumerate(got):
        if not torch.equal(y.view(torch.uint8), got[0].view(torch.uint8)):
            raise RuntimeError(message("the tensor", "the same on every rank", f"rank {r} "
                                       "differing from rank 0"))


def _nbytes(numel: int, dtype: torch.dtype) -> int:
    return int(numel) * torch.empty((), dtype=dtype).element_size()


class Distributed:
    """The exchanges of one engine (see the module docstring).

    Args:
        group: the resolved process group.
        scope: ``"global"`` or ``"local"``.
        batch_dim: the engine's ``batch_dim``.
    """

    def __init__(self, group: Any, scope: str, batch_dim: int | None):
        self.group, self.scope, self.batch_dim = group, scope, batch_dim
        self.rank = dist.get_rank(group)
        self.size = dist.get_world_size(group)
        self._offset, self._rows = 0, 0  # this rank's rows of the global losses
        self.traffic: dict[str, Any] = {}
        """Bytes this rank received in the last ``gramian`` / ``backward`` (ring estimates for
        ``all_reduce``), and how many parameters took each route."""

    @property
    def exchanges(self) -> bool:
        """Whether ``gramian`` exchanges factors (the global scope)."""
        return self.scope == "global"

    # ------------------------------------------------------------------ gramian
    def gramian(self, params: Sequence[nn.Parameter], factors: Mapping[int, Any],
                block_of: Mapping[int, int], K: int, per: bool, m: int,
                t: int, like: Tensor) -> tuple[Tensor, int]:
        """The global Gramian (``(M, M)`` or ``(K, M, M)``) and ``M``, the same on every rank.

        Args:
            params: the engine's parameters, in its order (the same on every rank).
            factors: ``id(p) -> (p, [factor])`` of this rank, one factor per parameter.
            block_of: ``id(p) -> block index``.
            K: number of blocks; per: whether the stack of the K blocks is asked for.
            m: this rank's number of losses (rows); t: losses per sample (``m`` with
                ``batch_dim=None``).
            like: the losses, whose dtype and device the Gramian takes.
        """
        R, instance = self.size, self.batch_dim is not None
        fs = [factors[id(p)][1][0] if id(p) in factors else None for p in params]
        dtypes = [f.dtype for f in fs if f is not None]
        dtype = like.dtype
        for d in dtypes:
            dtype = torch.promote_types(dtype, d)
        device = like.device

        # sizes: rows of each rank, then per parameter (kind, samples, positions, table rows,
        # groups, input features)
        meta = [m]
        index = {id(f): i for i, f in enumerate(fs) if f is not None}
        for f in fs:
            meta += self._meta(f, index)
        local = torch.tensor(meta, dtype=torch.int64, device=device)
        sizes = [torch.empty_like(local) for _ in range(R)]
        dist.all_gather(sizes, local, group=self.group)
        sizes = torch.stack(sizes).cpu()
        rows = sizes[:, 0].tolist()
        M = sum(rows) if instance else m
        self._offset, self._rows = sum(rows[:self.rank]), m
        info = sizes[:, 1:].reshape(R, len(params), _META)

        routes = [self._route(p, info[:, i], rows, t) for i, p in enumerate(params)]
        for i, (route, pad) in enumerate(routes):  # a bias whose weight's dY is not gathered
            if route == _BIAS_OF and routes[pad["of"]][0] != _FACTORS:
                routes[i] = (_PER_LOSS, {"width": max(rows) * params[i].numel()})
        owner = self._owners(routes)
        # the payload: this rank's part of every exchanged parameter, padded to the largest
        # rank, sent to the parameter's owner (one all_to_all for all of them)
        pieces: list[list[Tensor]] = [[] for _ in range(R)]
        reduce_pieces, index_pieces = [], []
        for i, (p, f, (route, pad)) in enumerate(zip(params, fs, routes)):
            if route in (_SKIP, _BIAS_OF):
                continue
            if route == _PER_LOSS and not instance:
                g = _grads(f, m, p).to(dtype)
                reduce_pieces.append(rows_of(g).reshape(-1))
                continue
            pieces[owner[i]].append(self._payload(f, route, pad, p, dtype, device))
            if route == _TABLE:
                idx = f.rows if f is not None else torch.empty(0, dtype=torch.int64,
                                                              device=device)
                index_pieces.append(torch.nn.functional.pad(idx.to(torch.int64),
                                                            (0, pad["U"] - idx.numel()),
                                                            value=-1))
        received = self._all_to_all(pieces, dtype, device)
        gathered_idx = self._all_gather(index_pieces, torch.int64, device)
        summed = self._all_reduce(reduce_pieces, dtype, device)

        # this rank's share: the Gramians of the parameters it owns, from every rank's payload
        G = like.new_zeros(K, M, M) if per else like.new_zeros(M, M)
        at, at_idx, at_sum = 0, 0, 0
        # the global factors and their dY, for the biases read from them
        outers: dict[int, tuple[Outer, Tensor]] = {}
        biases = [i for i, (r, _) in enumerate(routes) if r == _BIAS_OF]
        for i in [i for i in range(len(params)) if i not in biases] + biases:
            p, (route, pad) = params[i], routes[i]
            if route == _TABLE:
                at_idx += pad["U"]
            if route == _PER_LOSS and not instance:
                at_sum += m * p.numel()
            if route == _SKIP or owner[i] != self.rank:
                continue
            if route == _BIAS_OF:
                Gp = _bias_gramian(*outers[pad["of"]])
            elif route == _PER_LOSS and not instance:
                g = summed[at_sum - m * p.numel():at_sum].reshape(m, -1) / R
                Gp = g @ g.T
            else:
                width = pad["width"]
                parts = received[:, at:at + width]
                at += width
                idx = (gathered_idx[:, at_idx - pad["U"]:at_idx] if route == _TABLE else None)
                Gp = self._block(route, pad, parts, idx, info[:, i], rows, p)
                if route == _FACTORS:
                    outers[i] = (Gp, Gp.dY)  # gramian() may drop its dY
                    Gp = Gp.gramian()
            if per:
                G[block_of[id(p)]] += Gp.to(like.dtype)
            else:
                G += Gp.to(like.dtype)
        # every rank sums the same shares in the same order: the same G, bit for bit
        shares = [torch.empty_like(G) for _ in range(R)]
        dist.all_gather(shares, G.contiguous(), group=self.group)
        G = _total_in_order(shares)
        received_numel = sum(x.numel() for x in pieces[self.rank])  # per sender
        self.traffic = {
            "routes": {r: sum(x == r for x, _ in routes) for r in {x for x, _ in routes}},
            "sizes": _nbytes((R - 1) * local.numel(), torch.int64),
            "gramian": (_nbytes((R - 1) * received_numel, dtype)
                        + _nbytes((R - 1) * sum(x.numel() for x in index_pieces), torch.int64)
                        + _nbytes(2 * (R - 1) * sum(x.numel() for x in reduce_pieces) // R,
                                  dtype)
                        + _nbytes((R - 1) * G.numel(), G.dtype)),
        }
        return G, M

    def _owners(self, routes: list[tuple[str, dict]]) -> list[int]:
        """The rank that computes each parameter's Gramian: the largest payloads first, each to
        the least loaded rank (the same on every rank); a bias goes with its weight."""
        owner = [0] * len(routes)
        load = [0] * self.size
        sized = [(pad.get("width", 0), i) for i, (r, pad) in enumerate(routes)
                 if r not in (_SKIP, _BIAS_OF)]
        for width, i in sorted(sized, key=lambda x: (-x[0], x[1])):
            owner[i] = min(range(self.size), key=lambda r: (load[r], r))
            load[owner[i]] += max(1, width)
        for i, (r, pad) in enumerate(routes):
            if r == _BIAS_OF:
                owner[i] = owner[pad["of"]]
        return owner

    def _meta(self, f: Factor | None, index: Mapping[int, int]) -> list[int]:
        if isinstance(f, BiasOf) and id(f.outer) in index:
            return [_BIAS, index[id(f.outer)], 0, 0, 0, 0]
        if isinstance(f, Outer) and f.X is not None and f._grads is None:
            n, P, g, I = f.X.shape
            return [_OUTER, n, P, 0, g, I]
        if isinstance(f, Rows):
            return [_ROWS, f.compact.shape[0], 0, f.rows.numel(), 0, 0]
        return [_NONE if f is None else _GRADS, 0, 0, 0, 0, 0]

    def _route(self, p: nn.Parameter, info: Tensor, rows: list[int], t: int
               ) -> tuple[str, dict]:
        """What is exchanged for ``p`` (decided from the sizes only: the same on every rank)."""
        kinds = {k for k in info[:, 0].tolist() if k != _NONE}
        if not kinds:
            return _SKIP, {}
        R, instance = self.size, self.batch_dim is not None
        t_rows = max(rows)
        if kinds == {_BIAS} and len(set(info[info[:, 0] == _BIAS, 1].tolist())) == 1:
            return _BIAS_OF, {"of": int(info[info[:, 0] == _BIAS][0, 1])}
        if kinds == {_ROWS}:
            U = max(1, max(info[:, 3].tolist()))
            D = p[0].numel() if p.dim() else 1
            return _TABLE, {"U": U, "D": D, "width": t_rows * U * D}
        per_loss = {"width": t_rows * p.numel()}
        outer = info[info[:, 0] == _OUTER]
        if kinds != {_OUTER} or (instance and len(set(outer[:, 2].tolist())) > 1):
            return _PER_LOSS, per_loss
        g, I = (int(x) for x in outer[0, 4:6].tolist())
        P = max(outer[:, 2].tolist())
        O = p.numel() // (g * I)
        if instance:
            n = t_rows // t
            factors = n * P * g * (I + t * O)
            if factors < t_rows * p.numel():
                return _FACTORS, {"n": n, "P": P, "g": g, "I": I, "O": O, "t": t,
                                  "width": factors}
            return _PER_LOSS, per_loss
        m = t_rows
        factors = P * g * (I + m * O)
        # all_gather receives (R - 1) payloads; a ring all_reduce about 2 (R - 1) / R of one
        if (R - 1) * factors < 2 * (R - 1) * m * p.numel() / R:
            return _FACTORS, {"n": 1, "P": P, "g": g, "I": I, "O": O, "t": m, "width": factors}
        return _PER_LOSS, per_loss

    def _payload(self, f: Factor | None, route: str, pad: dict, p: nn.Parameter,
                 dtype: torch.dtype, device) -> Tensor:
        out = torch.zeros(pad["width"], dtype=dtype, device=device)
        if f is None:
            return out
        if route == _FACTORS:
            n, P, g, I, O, t = (pad[k] for k in "nPgIOt")
            X, dY = f.X.to(dtype), f.dY.to(dtype)
            if self.batch_dim is None:  # pad the positions
                n_r, P_r = 1, X.shape[1]
                Xp = X.new_zeros(1, P, g, I)
                Xp[:, :P_r] = X
                dYp = dY.new_zeros(t, 1, P, g, O)
                dYp[:, :, :P_r] = dY
            else:  # pad the samples
                n_r = X.shape[0]
                Xp = X.new_zeros(n, P, g, I)
                Xp[:n_r] = X
                dYp = dY.new_zeros(t, n, P, g, O)
                dYp[:, :n_r] = dY
            return torch.cat([Xp.reshape(-1), dYp.reshape(-1)])
        if route == _TABLE:
            U, D = pad["U"], pad["D"]
            c = f.compact.to(dtype).reshape(f.compact.shape[0], -1, D)
            full = c.new_zeros(pad["width"] // (U * D), U, D)
            full[:c.shape[0], :c.shape[1]] = c
            return full.reshape(-1)
        g = rows_of(_grads(f, self._rows, p).to(dtype))
        out.view(-1, p.numel())[:g.shape[0]] = g
        return out

    def _block(self, route: str, pad: dict, parts: Tensor, idx: Tensor | None, info: Tensor,
               rows: list[int], p: nn.Parameter) -> Tensor:
        """The Gramian of ``p`` over the global batch, from every rank's payload."""
        R, instance = self.size, self.batch_dim is not None
        if route == _FACTORS:
            n, P, g, I, O, t = (pad[k] for k in "nPgIOt")
            Xs, dYs = [], []
            for r in range(R):
                X = parts[r, :n * P * g * I].reshape(n, P, g, I)
                dY = parts[r, n * P * g * I:].reshape(t, n, P, g, O)
                kind, n_r, P_r = info[r, :3].tolist()
                if kind == _NONE:
                    continue
                if instance:
                    Xs.append(X[:n_r])
                    dYs.append(dY[:, :n_r])
                else:
                    Xs.append(X[:, :P_r])
                    dYs.append(dY[:, :, :P_r] / R)
            if instance:  # ranks without a factor have zero rows: the engine has their slots
                X_all, dY_all = _fill(Xs, dYs, info, rows, t, P, g, I, O)
            else:
                X_all, dY_all = torch.cat(Xs, 1), torch.cat(dYs, 2)
            return Outer(X_all, dY_all, p.shape)
        if route == _TABLE:
            U, D = pad["U"], pad["D"]
            t_rows = max(rows)
            cs = parts.reshape(R, t_rows, U, D)
            valid = idx[idx >= 0]
            union = torch.unique(valid)
            where = torch.searchsorted(union, idx.clamp_min(0))
            m_all = sum(rows) if instance else t_rows
            full = parts.new_zeros(m_all, union.numel(), D)
            at = 0
            for r in range(R):
                U_r, m_r = int(info[r, 3]), rows[r] if instance else t_rows
                if info[r, 0] != _NONE:
                    c = cs[r, :m_r, :U_r]
                    if instance:
                        full[at:at + m_r].index_add_(1, where[r, :U_r], c)
                    else:
                        full.index_add_(1, where[r, :U_r], c / R)
                if instance:
                    at += m_r
            c = full.reshape(m_all, -1)
            return c @ c.T
        # per-loss gradients, instance-wise: concatenated in rank order
        g = torch.cat([parts[r].reshape(-1, p.numel())[:rows[r]] for r in range(R)])
        return g @ g.T

    def _all_gather(self, pieces: list[Tensor], dtype, device) -> Tensor:
        if not pieces:
            return torch.empty(self.size, 0, dtype=dtype, device=device)
        local = torch.cat(pieces)
        out = [torch.empty_like(local) for _ in range(self.size)]
        dist.all_gather(out, local, group=self.group)
        return torch.stack(out)

    def _all_to_all(self, pieces: list[list[Tensor]], dtype, device) -> Tensor:
        """Send ``pieces[r]`` to rank r; returns what every rank sent here, (R, width)."""
        sent = [x for ps in pieces for x in ps]
        mine = sum(x.numel() for x in pieces[self.rank])  # every rank sends me this many
        if not sent:
            return torch.empty(self.size, 0, dtype=dtype, device=device)
        out = torch.empty(self.size * mine, dtype=dtype, device=device)
        dist.all_to_all_single(out, torch.cat(sent), [mine] * self.size,
                               [sum(x.numel() for x in ps) for ps in pieces], group=self.group)
        return out.reshape(self.size, mine)

    def _all_reduce(self, pieces: list[Tensor], dtype, device) -> Tensor:
        if not pieces:
            return torch.empty(0, dtype=dtype, device=device)
        buf = torch.cat(pieces)
        dist.all_reduce(buf, group=self.group)
        return buf

    # ------------------------------------------------------------------ backward
    def accumulate(self, params: Sequence[nn.Parameter], kept: dict, weights: Tensor,
                   block_of: Mapping[int, int],
                   plain: Sequence[tuple[nn.Parameter, Tensor | None]] = ()) -> None:
        """Every rank's weighted gradients, summed (one ``all_reduce``), into ``.grad``.

        ``plain``: the engine's ``task_specific`` parameters with this rank's plain gradient
        (None where its losses do not reach one), reduced in the same buffer and the same way.
        """
        trainable = [p for p in params if p.requires_grad] + [p for p, _ in plain]
        given = {id(p): g for p, g in plain}
        if self.exchanges and self.batch_dim is not None:
            weights = weights[..., self._offset:self._offset + self._rows]
        dtype = weights.dtype
        for p in trainable:
            dtype = torch.promote_types(dtype, p.dtype)
        total = sum(p.numel() for p in trainable)
        buf = torch.zeros(total + len(trainable), dtype=dtype, device=weights.device)
        at = 0
        for i, p in enumerate(trainable):
            if id(p) in given:
                if given[id(p)] is not None:
                    buf[at:at + p.numel()] = given[id(p)].reshape(-1)
                    buf[total + i] = 1
                at += p.numel()
                continue
            entry = kept.pop(id(p), None)
            if entry is not None:
                fs = entry[1]
                w = weights if weights.dim() == 1 else weights[block_of[id(p)]]
                g = fs[0].weighted(w)
                for f in fs[1:]:
                    g = g + f.weighted(w)
                buf[at:at + p.numel()] = g.reshape(-1)
                buf[total + i] = 1  # this rank reached p: the sum says whether any did
                del entry, fs, g
            at += p.numel()
        dist.all_reduce(buf, group=self.group)
        self.traffic = {"backward": _nbytes(2 * (self.size - 1) * buf.numel() // self.size,
                                            dtype)}
        if not (self.exchanges and self.batch_dim is not None):
            buf[:total] /= self.size
        reached = (buf[total:] > 0).tolist()  # one device-to-host copy for all the flags
        at = 0
        for i, p in enumerate(trainable):
            if reached[i]:
                g = buf[at:at + p.numel()].reshape(p.shape).to(p.dtype)
                if p.grad is None:
                    p.grad = g.clone()
                else:
                    p.grad += g
            at += p.numel()


def _total_in_order(tensors: list[Tensor]) -> Tensor:
    total = tensors[0]
    for x in tensors[1:]:
        total = total + x
    return total


def _bias_gramian(outer: Outer, dY: Tensor) -> Tensor:
    """Gramian of the bias of a Linear from its weight's global factor (``BiasOf``'s maths)."""
    if outer.output_gramian is not None:  # the weight's ghost form computed it
        return outer.output_gramian
    dY = dY.sum(2)[:, :, 0]  # (t, n, O): summed over the positions
    b = dY.transpose(0, 1).reshape(-1, dY.shape[-1])
    return b @ b.T


def _grads(f: Factor | None, m: int, p: nn.Parameter) -> Tensor:
    if f is None:
        return torch.zeros(m, *p.shape, dtype=p.dtype, device=p.device)
    return f.grads()


def _fill(Xs, dYs, info, rows, t, P, g, I, O):
    """Concatenate the ranks' factors; a rank without one has zero inputs for its rows."""
    X_all, dY_all, k = [], [], 0
    for r in range(info.shape[0]):
        if info[r, 0] == _NONE:
            n_r = rows[r] // t
            X_all.append(Xs[0].new_zeros(n_r, P, g, I))
            dY_all.append(dYs[0].new_zeros(t, n_r, P, g, O))
        else:
            X_all.append(Xs[k])
            dY_all.append(dYs[k])
            k += 1
    return torch.cat(X_all), torch.cat(dY_all, 1)
