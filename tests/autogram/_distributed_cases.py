"""The cases of ``test_distributed.py``, run by 3 processes over gloo on loopback.

Run as a script (``python tests/autogram/_distributed_cases.py``): it spawns 3 processes with
``torch.multiprocessing``. Cases with 3 ranks use the whole world; cases with 2 ranks use a
``ProcessGroup`` of ranks 0 and 1 (rank 2 skips them). Every case checks, on every rank,
against independent references on the concatenated global batch (``reference_gramian``, i.e.
``jacrev``, and plain autograd), in float64:

- the Gramian (exact to 1e-10 relative), the same bit for bit on every rank;
- the weights (``upgrad``), the same bit for bit on every rank;
- ``.grad`` after ``engine.backward(w)`` (to 1e-10 relative);
- the parameters after 3 optimiser steps, the same bit for bit on every rank.

An exception in any case ends every process (``torch.multiprocessing.spawn``) and the script
exits with a non-zero code and the traceback.
"""

from __future__ import annotations

import os
import socket
import sys
import time
import warnings
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import gramweight as gw  # noqa: E402
from gramweight.autogram import check_same_on_every_rank  # noqa: E402
from gramweight.testing import reference_gramian  # noqa: E402

DT = torch.float64
START = time.perf_counter()
WORLD = 3


# ---------------------------------------------------------------------------- models
def mlp():
    return nn.Sequential(nn.Linear(5, 8), nn.Tanh(), nn.Linear(8, 3))


def mlp_data(g, N):
    return (torch.randn(N, 5, generator=g, dtype=DT),)


def cnn():
    return nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 4, 3),
                         nn.Flatten(), nn.Linear(16, 3))


def cnn_data(g, N):
    return (torch.randn(N, 2, 4, 4, generator=g, dtype=DT),)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=16, dropout=0.0,
                                                batch_first=True)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.layer(x).mean(1))


def encoder_data(g, N):
    return (torch.randn(N, 4, 8, generator=g, dtype=DT),)


class Tied(nn.Module):
    """Tokens -> embedding (tied to the output projection) + a second, untied embedding."""

    def __init__(self):
        super().__init__()
        self.tokens = nn.Embedding(11, 6)
        self.tags = nn.Embedding(7, 6)
        self.mix = nn.Linear(6, 6)

    def forward(self, tok, tag):
        h = torch.tanh(self.mix(self.tokens(tok) + self.tags(tag)))
        return F.linear(h, self.tokens.weight).logsumexp(-1)  # (N, 3)


def tied_data(g, N):
    return (torch.randint(0, 11, (N, 3), generator=g), torch.randint(0, 7, (N, 3), generator=g))


class Branchy(nn.Module):
    """A layer that only batches of 2 samples or more use: a rank with 1 sample never reaches
    it (its factors are missing on that rank only)."""

    def __init__(self):
        super().__init__()
        self.first, self.extra, self.last = nn.Linear(5, 6), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = self.first(x)
        if x.shape[0] >= 2:
            h = h + self.extra(torch.tanh(h))
        return self.last(torch.tanh(h))


MODELS = {"mlp": (mlp, mlp_data), "branchy": (Branchy, mlp_data), "cnn": (cnn, cnn_data), "encoder": (Encoder, encoder_data),
          "tied": (Tied, tied_data)}


def losses_of(out, shape):
    """(N, 3) outputs -> losses of the given shape: "iwrm" (N,), "bt" (N, 3), "mt" (3,)."""
    if shape == "iwrm":
        return (out ** 2).sum(1)
    if shape == "bt":
        return out ** 2
    return (out ** 2).mean(0)


# ---------------------------------------------------------------------------- checks
def close(got, want, what):
    scale = want.abs().max().item() or 1.0
    err = (got - want).abs().max().item()
    assert err <= 1e-10 * scale, f"{what}: max error {err:.3g} for a scale of {scale:.3g}"


def counting_hook(state, bucket):
    state["calls"] += 1
    return allreduce_hook(state["group"], bucket)


def run_case(group, name, shape, sizes, *, wrapper=None, per=None, scope="global",
             frozen=False):
    rank, R = dist.get_rank(group), dist.get_world_size(group)
    if os.environ.get("GRAMWEIGHT_DIST_VERBOSE"):
        print(f"rank {rank}/{R} {time.perf_counter() - START:5.1f} s: {name} {shape} {sizes} "
              f"{wrapper} {per} {scope}", flush=True)
    make, data = MODELS[name]
    g = torch.Generator().manual_seed(7)
    full = data(g, sum(sizes))
    offsets = [sum(sizes[:s]) for s in range(R)]
    slices = [slice(o, o + b) for o, b in zip(offsets, sizes)]
    local = tuple(x[slices[rank]] for x in full)

    torch.manual_seed(0)
    model = make().to(DT)
    if frozen:
        model[0].bias.requires_grad_(False)
    ref = make().to(DT)
    ref.load_state_dict(model.state_dict())
    if frozen:
        ref[0].bias.requires_grad_(False)
    if wrapper is not None:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(rank)  # ranks start apart: DDP's constructor broadcasts rank 0's
        ddp = DDP(model, process_group=group, find_unused_parameters=wrapper == "ddp-unused")
        # DDP's own all-reduces, counted: the engine must leave them idle
        reductions = {"calls": 0, "group": group}
        ddp.register_comm_hook(reductions, counting_hook)
        forward = ddp
        hooked = ddp if wrapper == "hook-wrapper" else model
    else:
        forward = hooked = model
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    engine = gw.autogram.Engine(hooked, batch_dim=None if shape == "mt" else 0,
                                process_group=group, scope=scope)
    blocks = engine.blocks
    block_of = {}
    for pname, _ in ref.named_parameters():
        owner = pname.rsplit(".", 1)[0]
        owner = owner.removeprefix("module.")
        block_of[pname] = next(k for k, b in enumerate(blocks)
                               if b.removeprefix("module.") == owner)

    def ref_losses(batches):
        if shape == "mt" and scope == "global":  # the losses averaged over the ranks
            return sum(losses_of(ref(*b), shape) for b in batches) / R
        if shape == "mt":
            return losses_of(ref(*batches[0]), shape)
        # instance-wise: the global batch's losses, each rank's computed as that rank does
        return torch.cat([losses_of(ref(*b), shape) for b in batches])

    batches = [tuple(x[s] for x in full) for s in slices]
    ref_batches = [batches[rank]] if scope == "local" else batches
    for step in range(3):
        if wrapper == "no_sync":
            with ddp.no_sync():
                out = forward(*local)
        else:
            out = forward(*local)
        G = engine.gramian(losses_of(out, shape), per=per)
        if os.environ.get("GRAMWEIGHT_DIST_VERBOSE") and step == 0 and rank == 0:
            print("   ", engine._dist.traffic, flush=True)
        if scope == "global":
            check_same_on_every_rank(G, group)
        if per:
            W = torch.stack([gw.upgrad(Gk) for Gk in G])
        elif scope == "local":
            W = gw.mean(G)
        else:
            W = gw.upgrad(G)
        if scope == "global":
            check_same_on_every_rank(W, group)
        opt.zero_grad()
        engine.backward(W)
        if step == 0:
            check_first_step(ref, ref_losses, ref_batches, batches, G, W, model, per, scope,
                             shape, R, block_of, f"{name}/{shape}/{sizes}/{wrapper}/{per}")
        opt.step()
    check_same_on_every_rank(torch.cat([p.detach().reshape(-1) for p in model.parameters()]),
                             group)
    if wrapper is not None:
        assert reductions["calls"] == 0, f"DDP all-reduced {reductions['calls']} buckets"
    engine.close()


def check_first_step(ref, ref_losses, ref_batches, batches, G, W, model, per, scope, shape, R,
                     block_of, what):
    params = dict(ref.named_parameters())
    trainable = [n for n, p in params.items() if p.requires_grad]
    if per:
        for k in range(G.shape[0]):
            for n in trainable:
                params[n].requires_grad_(block_of[n] == k)
            if any(block_of[n] == k for n in trainable):
                close(G[k], reference_gramian(ref, lambda: ref_losses(ref_batches)),
                      f"{what} block {k}")
        for n in trainable:
            params[n].requires_grad_(True)
    else:
        close(G, reference_gramian(ref, lambda: ref_losses(ref_batches)), f"{what} Gramian")
    # .grad: the weighted step on the global batch (local scope: the mean over the ranks of
    # each rank's mean step)
    want = {n: torch.zeros_like(params[n]) for n in trainable}
    if scope == "local":
        for b in batches:
            ref.zero_grad()
            losses = ref_losses([b]).flatten()
            losses.backward(torch.full_like(losses, 1 / losses.numel()) / R)
            for n in trainable:
                if params[n].grad is not None:
                    want[n] += params[n].grad
    else:
        rows = W if W.dim() == 2 else W.unsqueeze(0)
        for k, w in enumerate(rows):
            ref.zero_grad()
            ref_losses(ref_batches).flatten().backward(w)
            for n in trainable:
                if (not per or block_of[n] == k) and params[n].grad is not None:
                    want[n] += params[n].grad
    got = dict(model.named_parameters())
    for n in trainable:
        assert got[n].grad is not None, f"{what}: no .grad for {n}"
        close(got[n].grad, want[n], f"{what} .grad of {n}")
    for n, p in got.items():
        if not p.requires_grad:
            assert p.grad is None, f"{what}: a frozen parameter got a .grad"


def toy_mean_of_local_gramians(group):
    """Multi-task, 2 ranks: the mean of the local Gramians is not the Gramian of the mean."""
    rank = dist.get_rank(group)
    torch.manual_seed(0)
    model = nn.Linear(2, 2, bias=False).to(DT)
    x = torch.tensor([[1.0, 0.0]], dtype=DT) if rank == 0 else torch.tensor([[0.0, 1.0]],
                                                                           dtype=DT)
    with gw.autogram.Engine(model, batch_dim=None, process_group=group) as engine:
        G = engine.gramian(model(x)[0])
    with gw.autogram.Engine(model, batch_dim=None, process_group=group, scope="local") as e:
        local = e.gramian(model(x)[0])
    dist.all_reduce(local, group=group)
    mean_of_local = local / 2
    # J_r = e_k x_r^T per task: J = (1/2)(J_0 + J_1), G = (1/4)|x_0 + x_1|^2 I = (1/2) I,
    # while the mean of the local Gramians is |x_r|^2 I = I
    close(G, torch.eye(2, dtype=DT) / 2, "toy exact Gramian")
    close(mean_of_local, torch.eye(2, dtype=DT), "toy mean of local Gramians")
    # the check itself: a tensor that differs on rank 1 is caught, on every rank
    try:
        check_same_on_every_rank(torch.tensor([1.0, float(rank)]), group)
    except RuntimeError as e:
        assert "rank 1 differing from rank 0" in str(e), str(e)
    else:
        raise AssertionError("check_same_on_every_rank missed a difference")


def shared_representation(group):
    """task_specific heads: the trunk's global Gramian, each head's plain gradient reduced like
    the trunk's (the global batch's), against plain autograd on the concatenated batch."""
    rank, R = dist.get_rank(group), dist.get_world_size(group)
    for shape in ("iwrm", "mt"):
        torch.manual_seed(0)
        trunk = nn.Sequential(nn.Linear(3, 5), nn.Tanh()).to(DT)
        heads = nn.ModuleList([nn.Linear(5, 1), nn.Linear(5, 2)]).to(DT)
        X = torch.randn(2 * R, 3, generator=torch.Generator().manual_seed(1), dtype=DT)

        def losses_of_batch(x):
            z = trunk(x)
            per_sample = torch.stack([heads[0](z)[:, 0] ** 2, heads[1](z).sin().sum(1)], 1)
            # equal shards: the mean of the ranks' means is the global batch's mean
            return per_sample.sum(1) if shape == "iwrm" else per_sample.mean(0)

        tparams, hparams = list(trunk.parameters()), list(heads.parameters())
        losses = losses_of_batch(X)
        J = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(
            loss, tparams, retain_graph=True)]) for loss in losses])
        w = gw.upgrad(J @ J.T)
        want_trunk = w @ J
        want_heads = torch.autograd.grad(losses.sum(), hparams)
        batch_dim = 0 if shape == "iwrm" else None
        with gw.autogram.Engine(trunk, batch_dim=batch_dim, process_group=group,
                                task_specific=heads) as engine:
            G = engine.gramian(losses_of_batch(X[2 * rank:2 * rank + 2]))
            close(G, J @ J.T, f"shared representation {shape}: G")
            engine.backward(gw.upgrad(G))
        close(torch.cat([p.grad.reshape(-1) for p in tparams]), want_trunk,
              f"shared representation {shape}: trunk .grad")
        for p, g in zip(hparams, want_heads):
            close(p.grad, g, f"shared representation {shape}: head .grad")


def rank_that_raises():
    """Rank 1 raises before the exchange: rank 0 gets the group's timeout error, no hang."""
    rank = dist.get_rank()
    group = dist.new_group([0, 1], timeout=timedelta(seconds=2))  # every rank creates it
    if rank == 2:
        return
    model = mlp().to(DT)
    with gw.autogram.Engine(model, batch_dim=0, process_group=group) as engine:
        out = model(torch.randn(2, 5, dtype=DT))
        if rank == 1:
            try:
                engine.gramian(out.sum())  # losses of the wrong shape: refused
            except ValueError:
                return
            raise AssertionError("rank 1 should have raised")
        try:
            engine.gramian(out.sum(1))
        except RuntimeError as e:  # gloo: "Timed out waiting ..." after the group's timeout
            assert "timed out" in str(e).lower() or "timeout" in str(e).lower(), str(e)
        else:
            raise AssertionError("rank 0 should have timed out")


CASES_3 = [
    ("mlp", "iwrm", [2, 1, 3], {}),
    ("branchy", "bt", [1, 2, 2], {"per": "module"}),
    ("mlp", "bt", [2, 3, 1], {"per": "module"}),
    ("mlp", "mt", [2, 2, 2], {}),
    ("cnn", "iwrm", [1, 2, 2], {"wrapper": "no_sync"}),
    ("encoder", "iwrm", [2, 1, 2], {}),
    ("tied", "iwrm", [2, 1, 2], {"wrapper": "ddp-unused"}),
]
CASES_2 = [
    ("branchy", "iwrm", [3, 1], {}),
    ("branchy", "mt", [1, 2], {"wrapper": "ddp-unused"}),
    ("mlp", "iwrm", [3, 1], {"wrapper": "ddp", "frozen": True}),
    ("mlp", "mt", [3, 1], {"wrapper": "hook-wrapper"}),
    ("mlp", "iwrm", [3, 2], {"scope": "local"}),
    ("cnn", "bt", [2, 1], {"per": "module", "wrapper": "ddp"}),
    ("cnn", "mt", [2, 2], {}),
    ("encoder", "bt", [1, 2], {"wrapper": "no_sync"}),
    ("encoder", "mt", [2, 2], {}),
    ("tied", "bt", [1, 3], {}),
    ("tied", "mt", [2, 1], {"scope": "local"}),
]


def worker(rank, port):
    if os.environ.get("GRAMWEIGHT_DIST_VERBOSE"):
        print(f"rank {rank} imported after {time.perf_counter() - START:.1f} s", flush=True)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD, timeout=timedelta(seconds=60))
    torch.set_num_threads(1)
    # vmap over attention's backward (tasks of (B, t) losses) has no batching rule yet
    warnings.filterwarnings("ignore", message="There is a performance drop")
    pair = dist.new_group([0, 1])
    for name, shape, sizes, options in CASES_3:
        run_case(dist.group.WORLD, name, shape, sizes, **options)
    if rank < 2:
        for name, shape, sizes, options in CASES_2:
            run_case(pair, name, shape, sizes, **options)
        toy_mean_of_local_gramians(pair)
    shared_representation(dist.group.WORLD)
    rank_that_raises()
    dist.barrier()
    dist.destroy_process_group()


def main():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # fork: the children start with torch and gramweight already imported (seconds each)
    mp.start_processes(worker, args=(port,), nprocs=WORLD, start_method="fork")
    print("all distributed cases passed")


if __name__ == "__main__":
    main()
