"""Median time per call of every weighting, side by side with TorchJD's equivalent.

Run from the repository root::

    python tests/benchmarks/weightings.py            # m in {2, 8, 32, 128, 512, 1024, 2048}
    python tests/benchmarks/weightings.py --quick    # m in {2, 8, 32}
    python tests/benchmarks/weightings.py --only upgrad mgda --markdown
    python tests/benchmarks/weightings.py --quick --no-host       # tensor paths only
    python tests/benchmarks/weightings.py --sizes 2 8 --host-ratio
    python tests/benchmarks/weightings.py --sizes 1024 2048 --memory --peer-max-m 1024

TorchJD (``pip install -e ".[bench]"``) is optional: without it, only gramweight is timed.
Both libraries get the same float32 Gramian ``G = J Jᵀ`` of a random Jacobian with 4m
columns, on the CPU, in the same process. ``ratio`` is TorchJD's median divided by ours.
TorchJD is timed only up to ``--peer-max-m`` (default 512: its UPGrad alone takes minutes a
call beyond); its cells above say "not timed".

``--memory`` adds the peak memory of one call of gramweight, measured in a fresh process as
``autogram.py`` measures it (Linux with glibc only; see ``peak_memory``).

``--no-host`` sends every small problem to its tensor path (``gramweight._host.disabled``),
and ``--host-ratio`` times gramweight against itself with the host paths disabled instead of
against TorchJD: its ``ratio`` is what the host twins buy.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import ctypes
import os
import statistics
import subprocess
import sys
import time
from importlib.metadata import version
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import gramweight as gw  # noqa: E402
import gramweight._host as host  # noqa: E402
from tests._calling import initial_state, options, supports  # noqa: E402

try:
    import torchjd.aggregation as tjd
except ImportError:  # the peer is an optional extra
    tjd = None

# our name -> (factory of m -> TorchJD callable on a Gramian), for the methods TorchJD has.
TORCHJD: dict[str, Callable[[int], Callable[[torch.Tensor], Any]]] = {}
if tjd is not None:
    TORCHJD.update(
        {
            "mean": lambda m: tjd.MeanWeighting(),
            "sum": lambda m: tjd.SumWeighting(),
            "constant": lambda m: tjd.ConstantWeighting(torch.linspace(0.5, 1.5, m)),
            "random": lambda m: tjd.RandomWeighting(),
            "upgrad": lambda m: tjd.UPGradWeighting(),
            "dualproj": lambda m: tjd.DualProjWeighting(),
            "mgda": lambda m: tjd.MGDAWeighting(),
            "imtl_g": lambda m: tjd.IMTLGWeighting(),
            "aligned_mtl": lambda m: tjd.AlignedMTLWeighting(),
            "cagrad": lambda m: tjd.CAGradWeighting(c=0.5),
            "krum": lambda m: tjd.KrumWeighting(**options("krum", m)),
            "fairgrad": lambda m: tjd.FairGradWeighting(alpha=1.0),
            # ConFIG and NashMTL exist only as aggregators of a matrix: they get G itself as
            # the matrix (m x m, cheaper for them than the real m x 4m Jacobian).
            "config": lambda m: tjd.ConFIG(),
            "nash_mtl": lambda m: tjd.NashMTL(n_tasks=m),
            "pcgrad": lambda m: tjd.PCGradWeighting(),
            "gradvac": lambda m: tjd.GradVacWeighting(),
            # tests/_calling.py smooths pcgrad: the same inner weighting on both sides.
            "cr_mogm": lambda m: tjd.CRMOGMWeighting(tjd.PCGradWeighting()),
            "modo": lambda m: tjd.MoDoWeighting(),
            "sdmgrad": lambda m: tjd.SDMGradWeighting(),
            "pcd": lambda m: tjd.PCDWeighting(),
        }
    )


def gramweight_call(name: str, m: int) -> Callable[[torch.Tensor, int], Any]:
    """A closure running one step of weighting ``name``, carrying its state if it has one."""
    fn = gw.WEIGHTINGS[name]
    state = initial_state(name, m)
    # The options are built once (building them inspects the signature: ~10 µs that would be
    # timed with every call); only the key changes from step to step.
    base = options(name, m)
    keyed = "key" in base

    def kwargs(step: int) -> dict[str, Any]:
        return {**base, "key": step} if keyed else base

    if state is None:
        return lambda G, step: fn(G, **kwargs(step))

    holder = [state]

    def step_fn(G: torch.Tensor, step: int) -> Any:
        w, holder[0] = fn(G, holder[0], **kwargs(step))
        return w

    return step_fn


def paired_times(
    ours: Callable[[int], Any],
    theirs: Callable[[int], Any] | None,
    budget: float,
    their_context: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext,
) -> tuple[float, float | None]:
    """Median seconds per call of ``ours`` and ``theirs``, measured in alternating rounds.

    After two warm-up calls each, every round times a batch of calls of one, then of the other
    (each batch about 5 ms long); the rounds go on for about ``2 * budget`` seconds (at least 5
    of them). Load that comes and goes on a shared machine then hits both sides alike, so the
    ratio is steadier than with two measurements taken one after the other. A warm-up slower
    than ``budget`` is the measurement itself (a single call of minutes). ``theirs`` runs its
    batches inside ``their_context()``, entered outside the timed calls.
    """
    step = [0]

    def run(call: Callable[[int], Any], n: int) -> float:
        with their_context() if call is theirs else contextlib.nullcontext():
            t0 = time.perf_counter()
            for _ in range(n):
                step[0] += 1
                call(step[0])
            return (time.perf_counter() - t0) / n

    sides = [ours] if theirs is None else [ours, theirs]
    # two warm-up calls (the first of a process can load a library: LAPACK's eigensolver),
    # one only for a call slower than the budget
    warm = [run(call, 1) for call in sides]
    warm = [w if w > budget else run(call, 1) for w, call in zip(warm, sides)]
    if max(warm) > budget:  # a very slow call: one more measurement of the fast side at most
        out = [w if w > budget else run(call, 3) for w, call in zip(warm, sides)]
        return out[0], (out[1] if theirs is not None else None)
    batch = [max(1, min(200, int(0.005 / max(w, 1e-7)))) for w in warm]
    rounds: list[list[float]] = [[] for _ in sides]
    start = time.perf_counter()
    while time.perf_counter() - start < 2 * budget or len(rounds[0]) < 5:
        for k, call in enumerate(sides):
            rounds[k].append(run(call, batch[k]))
    medians = [statistics.median(r) for r in rounds]
    return medians[0], (medians[1] if theirs is not None else None)


def peak_memory(name: str, m: int) -> int | None:
    """The growth of the peak resident memory (bytes) over one call of weighting ``name`` on
    the benchmark's (m, m) Gramian, or None off Linux.

    Measured as ``autogram.py`` measures it, in a fresh process (so that the timed calls keep
    the allocator's defaults): with a fixed mmap threshold of 128 KiB, every large tensor is
    mapped and unmapped whole; after a warm-up call, freed heap is given back
    (``malloc_trim``) and the kernel's high-water mark is reset to the current resident set
    (``/proc/self/clear_refs``), so that the mark's growth over the call is the call's peak
    of live memory."""
    if not Path("/proc/self/status").exists():
        return None
    cmd = [sys.executable, __file__, "--peak", name, str(m)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}
    res = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return int(res.stdout.strip().splitlines()[-1])


def _peak_here(name: str, m: int) -> int:
    """:func:`peak_memory`'s measurement, in this process."""

    def kib(field: str) -> int:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise RuntimeError(field)

    G = gramian(m)
    call = gramweight_call(name, m)
    call(G, 0)  # warm-up: lazy imports and initialisations are not the call's memory
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    base = kib("VmRSS")
    call(G, 1)
    return (kib("VmHWM") - base) * 1024


def gramian(m: int) -> torch.Tensor:
    """The benchmark's float32 Gramian of size m: ``J Jᵀ`` of a random m x 4m Jacobian (the
    generator seeded once per size)."""
    gen = torch.Generator().manual_seed(m)
    J = torch.randn(m, 4 * m, generator=gen)
    G = J @ J.T
    return (G + G.T) / 2


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "—"
    if n < 1 << 20:
        return "< 1 MB"
    return f"{n / (1 << 20):.0f} MB" if n < 1 << 30 else f"{n / (1 << 30):.2f} GB"


def fmt(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="m in {2, 8, 32} only")
    parser.add_argument(
        "--peer-max-m",
        type=int,
        default=512,
        help="time TorchJD only up to this m (default 512; its cells above say 'not timed')",
    )
    parser.add_argument(
        "--memory", action="store_true", help="add the peak memory of one call of gramweight"
    )
    parser.add_argument("--only", nargs="*", help="weighting names to time (default: all)")
    parser.add_argument("--sizes", nargs="*", type=int, help="values of m")
    parser.add_argument("--budget", type=float, default=0.3, help="seconds per cell (default 0.3)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    paths = parser.add_mutually_exclusive_group()
    paths.add_argument(
        "--no-host", action="store_true", help="every small problem on its tensor path"
    )
    paths.add_argument(
        "--host-ratio",
        action="store_true",
        help="time gramweight against itself with the host paths disabled (not TorchJD)",
    )
    parser.add_argument("--peak", nargs=2, metavar=("NAME", "M"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.peak:  # (peak_memory's subprocess)
        torch.set_num_threads(1)
        print(_peak_here(args.peak[0], int(args.peak[1])))
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = args.sizes or ([2, 8, 32] if args.quick else [2, 8, 32, 128, 512, 1024, 2048])
    names = args.only or list(gw.WEIGHTINGS)
    unknown = sorted(set(names) - set(gw.WEIGHTINGS))
    if unknown:
        parser.error(f"unknown weighting(s) {unknown}; choose from {sorted(gw.WEIGHTINGS)}")
    with host.disabled() if args.no_host else contextlib.nullcontext():
        table(args, sizes, names)


def table(args: argparse.Namespace, sizes: list[int], names: list[str]) -> None:
    """Time every weighting of ``names`` at every size of ``sizes`` and print the table."""
    if args.host_ratio:
        peer = "itself without host paths"
    else:
        peer = f"torchjd {version('torchjd')}" if tjd is not None else "torchjd not installed"
        peer += ", no host paths" if args.no_host else ""
        if tjd is not None and max(sizes) > args.peer_max_m:
            peer += f" (timed up to m = {args.peer_max_m})"
    print(f"# gramweight {gw.__version__} vs {peer}; torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"python {platform.python_version()}")
    side = "no host" if args.host_ratio else "torchjd"
    rows = []
    for m in sizes:
        G = gramian(m)
        for name in names:
            if not supports(name, m):
                continue
            peer = None
            context: Callable[[], AbstractContextManager[Any]] = contextlib.nullcontext
            skipped = False
            if args.host_ratio:
                peer = lambda step, c=gramweight_call(name, m): c(G, step)  # noqa: E731
                context = host.disabled
            elif name in TORCHJD and m <= args.peer_max_m:
                peer_fn = TORCHJD[name](m)
                peer = lambda step, f=peer_fn: f(G)  # noqa: E731
            elif name in TORCHJD:
                skipped = True
            ours, theirs = paired_times(
                lambda step, c=gramweight_call(name, m): c(G, step), peer, args.budget, context
            )
            ratio = f"{theirs / ours:.{2 if args.host_ratio else 1}f}x" if theirs else "—"
            row = [name, m, fmt(ours), "not timed" if skipped else fmt(theirs), ratio]
            if args.memory:
                row.append(fmt_bytes(peak_memory(name, m)))
            rows.append(tuple(row))
            print(f"  {name:>12} m={m:<4} gramweight {row[2]:>10}  {side:>9} "
                  f"{row[3]:>10}  ratio {ratio}" + (f"  memory {row[5]}" if args.memory else ""),
                  file=sys.stderr, flush=True)

    header = ("weighting", "m", "gramweight", side, "ratio") + (
        ("peak memory",) if args.memory else ()
    )
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in rows:
            print("| " + " | ".join(str(x) for x in r) + " |")
    else:
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
        for r in [header, *rows]:
            print("  ".join(str(x).rjust(w) for x, w in zip(r, widths)))


if __name__ == "__main__":
    main()
