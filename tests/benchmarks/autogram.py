"""Time and peak memory of one training step: plain SGD vs gramweight autogram vs TorchJD.

Run from the repository root::

    python tests/benchmarks/autogram.py                 # every model, timings + peak memory
    python tests/benchmarks/autogram.py --models mlp --repeat 10 --no-memory

Models (instance-wise losses, one per sample, float32 on the CPU):

- ``mlp``: 784-1024-1024-10, B = 128;
- ``cnn``: two convolutions and two linear layers on 3x32x32, B = 64;
- ``transformer``: 2-layer batch-first ``TransformerEncoder`` (d_model 128, 4 heads,
  sequence 64), B = 32.

Steps (each ends with an SGD update of the parameters):

- ``plain``: ``losses.mean().backward()``;
- ``gw_mean``: ``engine.gramian(losses)``, ``gw.mean``, ``engine.backward(w)``;
- ``gw_mean_keep``: the same with ``Engine(..., keep_gradients=True)``;
- ``gw_upgrad``: the same with ``gw.upgrad`` (skipped while the library has no ``upgrad``);
- ``tjd_autogram``: TorchJD's ``autogram.Engine(model, batch_dim=0)``, ``UPGradWeighting``,
  ``losses.backward(weights)``;
- ``tjd_autojac``: TorchJD's ``autojac.backward(losses)`` + ``jac_to_grad(..., UPGrad())``.

Timings are medians over ``--repeat`` steps after warm-up, all in this process. Peak memory is
measured in a fresh process per (model, step): the growth of the resident set size (VmHWM,
reset after the model, the batch and one warm-up step exist, freed heap returned to the
system, glibc's mmap threshold fixed so that RSS follows live memory) over three steps. The machine is shared and has
2 cores: expect noise of 10-20 % between runs.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import gramweight as gw  # noqa: E402

try:
    import torchjd
    import torchjd.aggregation as tjd_agg
    import torchjd.autogram as tjd_autogram
    import torchjd.autojac as tjd_autojac
except ImportError:  # the peer is an optional extra
    torchjd = None


# ---------------------------------------------------------------------------- models
def mlp():
    model = nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                          nn.Linear(1024, 10))
    x, y = torch.randn(128, 784), torch.randint(0, 10, (128,))
    return model, lambda: nn.functional.cross_entropy(model(x), y, reduction="none")


def cnn():
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 128), nn.ReLU(), nn.Linear(128, 10),
    )
    x, y = torch.randn(64, 3, 32, 32), torch.randint(0, 10, (64,))
    return model, lambda: nn.functional.cross_entropy(model(x), y, reduction="none")


class Transformer(nn.Module):
    def __init__(self):
        super().__init__()
        layer = nn.TransformerEncoderLayer(128, 4, dim_feedforward=512, dropout=0.0,
                                           batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(128, 10)

    def forward(self, x):
        return self.head(self.encoder(x).mean(1))


def transformer():
    model = Transformer()
    x, y = torch.randn(32, 64, 128), torch.randint(0, 10, (32,))
    return model, lambda: nn.functional.cross_entropy(model(x), y, reduction="none")


MODELS = {"mlp": mlp, "cnn": cnn, "transformer": transformer}


# ---------------------------------------------------------------------------- steps
def _sgd(model: nn.Module, lr: float = 1e-3) -> None:
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.add_(p.grad, alpha=-lr)
                p.grad = None


def plain(model, losses_fn):
    def step():
        losses_fn().mean().backward()
        _sgd(model)
    return step, lambda: None


def _gw(weighting, **options):
    def make(model, losses_fn):
        engine = gw.autogram.Engine(model, batch_dim=0, **options)

        def step():
            G = engine.gramian(losses_fn())
            engine.backward(weighting(G))
            _sgd(model)
        return step, engine.close
    return make


def tjd_autogram_step(model, losses_fn):
    engine = tjd_autogram.Engine(model, batch_dim=0)
    weighting = tjd_agg.UPGradWeighting()

    def step():
        losses = losses_fn()
        losses.backward(weighting(engine.compute_gramian(losses)))
        _sgd(model)
    return step, lambda: None


def tjd_autojac_step(model, losses_fn):
    aggregator = tjd_agg.UPGrad()
    params = list(model.parameters())

    def step():
        tjd_autojac.backward(losses_fn(), inputs=params)
        tjd_autojac.jac_to_grad(params, aggregator)
        _sgd(model)
    return step, lambda: None


STEPS: dict[str, Callable] = {"plain": plain, "gw_mean": _gw(gw.mean),
                              "gw_mean_keep": _gw(gw.mean, keep_gradients=True)}
if hasattr(gw, "upgrad"):
    STEPS["gw_upgrad"] = _gw(gw.upgrad)
if torchjd is not None:
    STEPS["tjd_autogram"] = tjd_autogram_step
    STEPS["tjd_autojac"] = tjd_autojac_step


def time_steps(model_name: str, repeat: int, warmup: int = 2) -> dict[str, float]:
    """Median seconds per step. The steps run in turns (one of each per round), so that a
    change of load on the machine affects every step alike."""
    runs = {}
    for name, make in STEPS.items():
        torch.manual_seed(0)
        model, losses_fn = MODELS[model_name]()
        step, close = make(model, losses_fn)
        for _ in range(warmup):
            step()
        runs[name] = (step, close, [])
    slow = {"tjd_autojac"}  # seconds per step: fewer rounds
    for r in range(repeat):
        for name, (step, _, times) in runs.items():
            if name in slow and r >= max(3, repeat // 4):
                continue
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    out = {}
    for name, (_, close, times) in runs.items():
        close()
        out[name] = statistics.median(times)
    return out


# ---------------------------------------------------------------------------- memory
def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def peak_extra_mib(model_name: str, step_name: str) -> float:
    """In this process: growth of the peak resident set over three steps, in MiB."""
    torch.manual_seed(0)
    model, losses_fn = MODELS[model_name]()
    step, close = STEPS[step_name](model, losses_fn)
    step()  # warm-up: lazy imports and initialisations are not the step's memory
    ctypes.CDLL("libc.so.6").malloc_trim(0)  # give freed heap back: RSS = live memory
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    base = _rss_kib("VmRSS")
    for _ in range(3):
        step()
    close()
    return (_rss_kib("VmHWM") - base) / 1024


def peak_in_subprocess(model_name: str, step_name: str) -> float:
    cmd = [sys.executable, __file__, "--peak", model_name, step_name]
    # a fixed mmap threshold: freed blocks go back to the system, so RSS follows live memory
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return json.loads(res.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------- main
def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "n/a"


TARGET_PLAIN = {"mlp": 1.3, "cnn": 2.0, "transformer": 1.6}
TARGET_TJD = {"mlp": 50.0, "cnn": 3.0, "transformer": 1.5}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1 is the stable choice on a shared 2-core machine)")
    parser.add_argument("--peak", nargs=2, metavar=("MODEL", "STEP"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.peak:
        print(json.dumps(peak_extra_mib(*args.peak)))
        return
    print(f"torch {torch.__version__}, torchjd {_version('torchjd')}, "
          f"{torch.get_num_threads()} threads")
    for model_name in args.models:
        times = time_steps(model_name, args.repeat)
        ours = times["gw_mean"]
        print(f"\n### {model_name}\n")
        print("| step | median ms | time / plain | time / gw_mean | extra peak MiB | peak / plain |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        base = None
        for name, t in times.items():
            mem = ratio = ""
            if not args.no_memory:
                peak = peak_in_subprocess(model_name, name)
                base = peak if base is None else base
                mem, ratio = f"{peak:.1f}", f"{peak / base:.2f}"
            print(f"| {name} | {t * 1e3:.1f} | {t / times['plain']:.2f} | {t / ours:.2f} | {mem} "
                  f"| {ratio} |", flush=True)
        print(f"\ntargets: gw_mean / plain <= {TARGET_PLAIN[model_name]} "
              f"(got {ours / times['plain']:.2f})", end="")
        if "tjd_autogram" in times:
            print(f"; tjd_autogram / gw_mean >= {TARGET_TJD[model_name]} "
                  f"(got {times['tjd_autogram'] / ours:.1f})")
        else:
            print()


if __name__ == "__main__":
    main()
