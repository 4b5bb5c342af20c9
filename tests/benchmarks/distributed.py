"""Data parallelism on 2 CPU ranks (gloo): plain DDP vs gramweight's global and local steps.

Run from the repository root::

    python tests/benchmarks/distributed.py                      # mlp, cnn, transformer
    python tests/benchmarks/distributed.py --models mlp --repeat 5

The models and per-rank batches are those of ``tests/benchmarks/autogram.py`` (each rank has
the whole batch of that benchmark: the global batch is twice as large). Steps, each ending with
an SGD update:

- ``ddp``: ``DistributedDataParallel(model)``, ``losses.mean().backward()`` (DDP's bucketed
  all-reduce of the gradients);
- ``gw_global``: ``Engine(model, batch_dim=0, process_group="world")``, the Gramian over the
  global batch, ``gw.mean``, ``engine.backward(w)``;
- ``gw_global_upgrad``: the same with ``gw.upgrad``;
- ``gw_local``: ``scope="local"``: each rank's own Gramian, ``gw.mean``, ``engine.backward``.

Time: median over ``--repeat`` steps after warm-up, measured on rank 0 between barriers, one
torch thread per rank. Bytes: what the busiest rank receives per step, from the sizes of what
is sent (``(R - 1)`` payloads for an ``all_gather``, ``2 (R - 1) / R`` of the buffer for a ring
``all_reduce``, DDP's included). The 2 ranks share a 2-core machine with whatever else runs:
expect noise of 10-20 %.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import gramweight as gw  # noqa: E402
from tests.benchmarks.autogram import MODELS, _sgd  # noqa: E402

R = 2
# the batches of tests/benchmarks/autogram.py (its models, a batch of the same shapes per rank)
INPUTS = {"mlp": (128, 784), "cnn": (64, 3, 32, 32), "transformer": (32, 64, 128)}


def _ring_allreduce_bytes(numel: int, element_size: int) -> int:
    return 2 * (R - 1) * numel * element_size // R


def setup(model_name: str, rank: int):
    torch.manual_seed(0)  # the same model on every rank
    model, _ = MODELS[model_name]()
    g = torch.Generator().manual_seed(1 + rank)  # each rank its own samples
    x = torch.randn(*INPUTS[model_name], generator=g)
    y = torch.randint(0, 10, (x.shape[0],), generator=g)
    return model, lambda forward: torch.nn.functional.cross_entropy(forward(x), y,
                                                                    reduction="none")


def ddp_step(model, losses_fn):
    ddp = DDP(model)
    nbytes = _ring_allreduce_bytes(sum(p.numel() for p in model.parameters()), 4)

    def step():
        losses_fn(ddp).mean().backward()
        _sgd(model)
        return nbytes
    return step, lambda: None


def gw_step(weighting, scope):
    def make(model, losses_fn):
        engine = gw.autogram.Engine(model, batch_dim=0, process_group="world", scope=scope)

        def step():
            G = engine.gramian(losses_fn(model))
            sent = dict(engine._dist.traffic)
            engine.backward(weighting(G))
            _sgd(model)
            return (sent.get("sizes", 0) + sent.get("gramian", 0)
                    + engine._dist.traffic["backward"])
        return step, engine.close
    return make


STEPS = {"ddp": ddp_step, "gw_global": gw_step(gw.mean, "global"),
         "gw_global_upgrad": gw_step(gw.upgrad, "global"),
         "gw_local": gw_step(gw.mean, "local")}


def worker(rank, port, models, repeat, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=R, timeout=timedelta(seconds=300))
    torch.set_num_threads(1)
    results = {}
    for model_name in models:
        runs = {}
        for name, make in STEPS.items():
            step, close = make(*setup(model_name, rank))
            for _ in range(2):
                step()
            runs[name] = (step, close, [], [])
        for _ in range(repeat):  # in turns, so that a change of load affects every step
            for name, (step, _, times, sizes) in runs.items():
                dist.barrier()
                t0 = time.perf_counter()
                nbytes = torch.tensor(float(step()))
                dist.barrier()
                times.append(time.perf_counter() - t0)
                dist.all_reduce(nbytes, op=dist.ReduceOp.MAX)  # the busiest rank's bytes
                sizes.append(nbytes.item())
        results[model_name] = {}
        for name, (_, close, times, sizes) in runs.items():
            close()
            results[model_name][name] = (statistics.median(times), statistics.median(sizes))
    if rank == 0:
        out.put(results)
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("fork")
    out = ctx.SimpleQueue()
    mp.start_processes(worker, args=(port, args.models, args.repeat, out), nprocs=R,
                       start_method="fork")
    results = out.get()
    print(f"torch {torch.__version__}, {R} ranks (gloo, CPU), 1 thread per rank")
    for model_name, rows in results.items():
        base_t, base_b = rows["ddp"]
        print(f"\n### {model_name}\n")
        print("| step | median ms | time / ddp | MiB received per rank | bytes / ddp |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for name, (t, b) in rows.items():
            print(f"| {name} | {t * 1e3:.1f} | {t / base_t:.2f} | {b / 2 ** 20:.2f} "
                  f"| {b / base_b:.3f} |")


if __name__ == "__main__":
    main()
