"""Data-parallel training on 2 CPU processes, with UPGrad over the Gramian of the global batch.

Each process (rank) trains on its own shard of a regression data set. Every step, the engine
computes the Gramian of the per-sample losses of the *global* batch (the shards of both ranks),
exactly, by exchanging layer inputs and output gradients; every rank computes the same UPGrad
weights from it, and ``engine.backward`` all-reduces the weighted gradients, so the replicas
stay identical. The model is wrapped in ``DistributedDataParallel`` (its constructor copies rank
0's parameters to every rank); its gradient all-reduce never runs, the engine's does.

Run:
    torchrun --nproc_per_node 2 examples/distributed.py
    python examples/distributed.py          # starts the 2 processes itself
"""

import os
import socket
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

import gramweight as gw

SMALL = bool(os.environ.get("GRAMWEIGHT_EXAMPLE_SMALL"))
EPOCHS = 3 if SMALL else 10
SAMPLES, BATCH = (128, 16) if SMALL else (512, 32)  # BATCH: per rank


def data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)  # the same data set on every rank
    X = torch.randn(SAMPLES, 8, generator=g)
    Y = torch.sin(X @ torch.randn(8, 1, generator=g)) + 0.1 * torch.randn(SAMPLES, 1, generator=g)
    return X, Y


def train() -> None:
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    torch.manual_seed(rank)  # different on purpose: DDP starts every rank from rank 0's
    model = nn.Sequential(nn.Linear(8, 32), nn.Tanh(), nn.Linear(32, 1))
    ddp = DDP(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    X, Y = data()
    shard = torch.arange(rank, SAMPLES, world)  # this rank's samples
    with gw.autogram.Engine(model, batch_dim=0, process_group="world") as engine:
        for epoch in range(EPOCHS):
            order = shard[torch.randperm(len(shard), generator=torch.Generator().manual_seed(
                epoch * world + rank))]
            total = torch.zeros(2)  # sum of the losses, number of samples
            for i in range(0, len(order), BATCH):
                x, y = X[order[i:i + BATCH]], Y[order[i:i + BATCH]]
                losses = ((ddp(x) - y) ** 2).squeeze(1)  # (BATCH,): this rank's samples
                G = engine.gramian(losses)  # (world * BATCH)^2: the global batch
                w = gw.upgrad(G)  # the same on every rank: computed from the same G
                optimizer.zero_grad()
                engine.backward(w)  # the same .grad on every rank (one all_reduce)
                optimizer.step()
                total += torch.tensor([losses.sum().item(), len(losses)])
            dist.all_reduce(total)
            if rank == 0:
                print(f"epoch {epoch}: mean loss {total[0] / total[1]:.4f}", flush=True)
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    gw.autogram.check_same_on_every_rank(flat)  # the replicas never drifted apart
    if rank == 0:
        print(f"{world} ranks, parameters identical on every rank")


def spawned(rank: int, world: int, port: int) -> None:
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=120))
    try:
        train()
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    if "LOCAL_RANK" in os.environ:  # launched by torchrun, which sets the rendezvous
        dist.init_process_group("gloo", timeout=timedelta(seconds=120))
        try:
            train()
        finally:
            dist.destroy_process_group()
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            free_port = s.getsockname()[1]
        mp.spawn(spawned, args=(2, free_port), nprocs=2)
