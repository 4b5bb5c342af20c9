"""Time and peak memory of one training step: plain SGD vs gramweight autogram vs TorchJD.

Run from the repository root::

    python tests/benchmarks/autogram.py                 # every model, timings + peak memory
    python tests/benchmarks/autogram.py --models mlp --repeat 10 --no-memory

Models (instance-wise losses, one per sample, unless said; float32 on the CPU):

- ``mlp``: 784-1024-1024-10, B = 128;
- ``cnn``: two convolutions and two linear layers on 3x32x32, B = 64;
- ``transformer``: 2-layer batch-first ``TransformerEncoder`` (d_model 128, 4 heads,
  sequence 64), B = 32;
- ``mlp_multitask``: trunk 256-512-512 with 4 one-output heads, B = 128, losses (4,) of the
  whole batch (``batch_dim=None``);
- ``resnet18``: ResNet-18's layout (2-2-2-2 basic blocks) at width 16 on 3x32x32, eval-mode
  BatchNorm, B = 32;
- with transformers installed (small random configs, no download; skipped without it):
  ``gpt2`` (4 layers, d 256, V = 50257 tied, T = 64, B = 16), ``llama`` (4 layers, d 256,
  V = 32000, T = 64, B = 16), ``vit`` (4 layers, d 256, 32x32 images in 4x4 patches, B = 32).

A step that fails on a model (TorchJD's autogram refuses BatchNorm with ``batch_dim=0``)
shows ``n/a``. ``--steps`` picks the steps; a summary table ends the output.

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


class MultiTask(nn.Module):
    def __init__(self, tasks=4):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU())
        self.heads = nn.ModuleList(nn.Linear(512, 1) for _ in range(tasks))

    def forward(self, x):
        h = self.trunk(x)
        return torch.cat([head(h) for head in self.heads], 1)


def mlp_multitask():
    model = MultiTask()
    x, y = torch.randn(128, 256), torch.randn(128, 4)
    return model, lambda: ((model(x) - y) ** 2).mean(0)  # (4,): batch_dim=None


class BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False),
                                      nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += x if self.down is None else self.down(x)
        return self.relu(out)


class ResNet18(nn.Module):
    """torchvision's ResNet-18 layout (2-2-2-2 basic blocks) at width ``w``, for 32x32 inputs."""

    def __init__(self, w=16, classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU(inplace=True))
        blocks, c = [], w
        for k, stride in enumerate((1, 2, 2, 2)):
            out = w * 2 ** k
            blocks += [BasicBlock(c, out, stride), BasicBlock(out, out, 1)]
            c = out
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        return self.fc(self.blocks(self.stem(x)).mean((2, 3)))


def resnet18():
    model = ResNet18().eval()  # BatchNorm with running statistics: samples independent
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    return model, lambda: nn.functional.cross_entropy(model(x), y, reduction="none")


MODELS = {"mlp": mlp, "cnn": cnn, "transformer": transformer, "mlp_multitask": mlp_multitask,
          "resnet18": resnet18}
BATCH_DIM = {"mlp_multitask": None}  # every other model: batch_dim=0, one loss per sample

try:  # Hugging Face models from small random configs (no download); skipped without it
    import transformers
except ImportError:
    transformers = None


def _lm(model, B=16, T=64):
    ids = torch.randint(0, model.config.vocab_size, (B, T))

    def losses():
        logits = model(input_ids=ids).logits
        return nn.functional.cross_entropy(logits.flatten(0, 1), ids.flatten(),
                                           reduction="none").view(B, T).mean(1)
    return model, losses


def gpt2():
    config = transformers.GPT2Config(n_layer=4, n_embd=256, n_head=4, n_positions=64,
                                     vocab_size=50257, attn_pdrop=0.0, resid_pdrop=0.0,
                                     embd_pdrop=0.0)
    return _lm(transformers.GPT2LMHeadModel(config))


def llama():
    config = transformers.LlamaConfig(hidden_size=256, intermediate_size=688,
                                      num_hidden_layers=4, num_attention_heads=4,
                                      num_key_value_heads=4, vocab_size=32000,
                                      max_position_embeddings=64)
    return _lm(transformers.LlamaForCausalLM(config))


def vit():
    config = transformers.ViTConfig(image_size=32, patch_size=4, hidden_size=256,
                                    num_hidden_layers=4, num_attention_heads=4,
                                    intermediate_size=512, num_labels=10,
                                    hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = transformers.ViTForImageClassification(config)
    x, y = torch.randn(32, 3, 32, 32), torch.randint(0, 10, (32,))
    return model, lambda: nn.functional.cross_entropy(model(pixel_values=x).logits, y,
                                                      reduction="none")


if transformers is not None:
    transformers.logging.set_verbosity_error()
    MODELS.update(gpt2=gpt2, llama=llama, vit=vit)


# ---------------------------------------------------------------------------- steps
def _sgd(model: nn.Module, lr: float = 1e-3) -> None:
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p.add_(p.grad, alpha=-lr)
                p.grad = None


def plain(model, losses_fn, batch_dim):
    def step():
        losses_fn().mean().backward()
        _sgd(model)
    return step, lambda: None


def _gw(weighting, **options):
    def make(model, losses_fn, batch_dim):
        engine = gw.autogram.Engine(model, batch_dim=batch_dim, **options)

        def step():
            G = engine.gramian(losses_fn())
            engine.backward(weighting(G))
            _sgd(model)
        return step, engine.close
    return make


def tjd_autogram_step(model, losses_fn, batch_dim):
    engine = tjd_autogram.Engine(model, batch_dim=batch_dim)
    weighting = tjd_agg.UPGradWeighting()

    def step():
        losses = losses_fn()
        losses.backward(weighting(engine.compute_gramian(losses)))
        _sgd(model)
    return step, lambda: None


def tjd_autojac_step(model, losses_fn, batch_dim):
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


def _make(model_name: str, step_name: str):
    torch.manual_seed(0)
    model, losses_fn = MODELS[model_name]()
    return STEPS[step_name](model, losses_fn, BATCH_DIM.get(model_name, 0))


def time_steps(model_name: str, repeat: int, steps: list[str], warmup: int = 2
               ) -> dict[str, float | None]:
    """Median seconds per step (None for a step that fails on this model). The steps run in
    turns (one of each per round), so that a change of load on the machine affects every
    step alike."""
    runs, out = {}, {}
    for name in steps:
        try:
            step, close = _make(model_name, name)
            for _ in range(warmup):
                step()
        except Exception as e:  # a peer that does not support the model: say so, go on
            print(f"{model_name}/{name}: {type(e).__name__}: {str(e)[:200]}", file=sys.stderr)
            out[name] = None
            continue
        runs[name] = (step, close, [])
    slow = {"tjd_autojac"}  # seconds per step: fewer rounds
    for r in range(repeat):
        for name, (step, _, times) in runs.items():
            if name in slow and r >= max(3, repeat // 4):
                continue
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
    for name, (_, close, times) in runs.items():
        close()
        out[name] = statistics.median(times)
    return {name: out[name] for name in steps}


# ---------------------------------------------------------------------------- memory
def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def peak_extra_mib(model_name: str, step_name: str) -> float:
    """In this process: growth of the peak resident set over three steps, in MiB."""
    step, close = _make(model_name, step_name)
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


TARGET_PLAIN = {"mlp": 1.3, "cnn": 2.0, "transformer": 1.6, "mlp_multitask": 3.0}
TARGET_TJD = {"mlp": 50.0, "cnn": 3.0, "transformer": 1.5, "mlp_multitask": 2.0}


def _fmt(x: float | None, spec: str) -> str:
    return "n/a" if x is None else format(x, spec)


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    parser.add_argument("--steps", nargs="*", default=list(STEPS),
                        help="steps to time (plain always runs)")
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
    steps = ["plain"] + [s for s in args.steps if s in STEPS and s != "plain"]
    ours_name = "gw_upgrad" if "gw_upgrad" in steps else "gw_mean"
    print(f"torch {torch.__version__}, torchjd {_version('torchjd')}, "
          f"transformers {_version('transformers') if transformers else 'n/a'}, "
          f"{torch.get_num_threads()} threads")
    summary = []
    for model_name in args.models:
        times = time_steps(model_name, args.repeat, steps)
        plain_t, ours = times["plain"], times.get(ours_name)
        print(f"\n### {model_name}\n")
        print(f"| step | median ms | time / plain | time / {ours_name} | extra peak MiB "
              "| peak / plain |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        peaks = {}
        for name, t in times.items():
            mem = ratio = ""
            if not args.no_memory and t is not None:
                peaks[name] = peak_in_subprocess(model_name, name)
                mem = f"{peaks[name]:.1f}"
                ratio = _fmt(_ratio(peaks[name], peaks.get("plain")), ".2f")
            print(f"| {name} | {_fmt(t and t * 1e3, '.1f')} | {_fmt(_ratio(t, plain_t), '.2f')} "
                  f"| {_fmt(_ratio(t, ours), '.2f')} | {mem} | {ratio} |", flush=True)
        tjd = _ratio(times.get("tjd_autogram"), ours)
        summary.append((model_name, _ratio(ours, plain_t), tjd,
                        _ratio(peaks.get(ours_name), peaks.get("plain"))))
        if model_name in TARGET_PLAIN:
            print(f"\ntargets: {ours_name} / plain <= {TARGET_PLAIN[model_name]} "
                  f"(got {_fmt(_ratio(ours, plain_t), '.2f')}); tjd_autogram / {ours_name} >= "
                  f"{TARGET_TJD[model_name]} (got {_fmt(tjd, '.2f')})")
    print(f"\n### summary ({ours_name})\n")
    print(f"| model | {ours_name} / plain | tjd_autogram / {ours_name} | extra peak / plain's |")
    print("| --- | ---: | ---: | ---: |")
    for name, a, b, c in summary:
        print(f"| {name} | {_fmt(a, '.2f')} | {_fmt(b, '.2f')} | {_fmt(c, '.2f')} |")


if __name__ == "__main__":
    main()
