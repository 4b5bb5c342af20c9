"""Regenerate the benchmark tables of the docs from the benchmark scripts' own output.

Every number in a benchmark table of the site comes from here: each table is a file of
``docs/tables/``, written by running one benchmark script (its ``--markdown`` table for
``weightings.py``, its printed tables for ``autogram.py``) and laid out for the page, never
typed by hand. The pages include the files with pymdownx.snippets
(``--8<-- "tables/autogram_mlp.md"``), so a table shown on two pages (autogram and
Benchmarks) is one file. Run from the repository root::

    python tests/benchmarks/write_docs_tables.py --list            # each table and its command
    python tests/benchmarks/write_docs_tables.py autogram          # one group (minutes)
    python tests/benchmarks/write_docs_tables.py                   # all of them (hours: TorchJD
                                                                   # at m = 512: minutes a call)
    python tests/benchmarks/write_docs_tables.py autogram --out /tmp/tables -- --repeat 3

Arguments after ``--`` are passed on to the benchmark script (for a quick trial run; the
committed tables use the commands ``--list`` shows). Each file starts with an HTML comment
naming the command and the date, which the page does not show; the prose around a table
(machine, load, what changed since) is the page's and must be updated by hand when a table is.
"""

from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def _long_rows(markdown: str) -> tuple[list[str], list[list[str]]]:
    """The header and rows of the first markdown table in ``markdown``."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[2:]]
    return header, rows


def _wide(markdown: str, cell) -> str:
    """weightings.py's long table (one row per weighting and m) as one row per weighting."""
    header, rows = _long_rows(markdown)
    col = {name: i for i, name in enumerate(header)}
    sizes: list[str] = []
    cells: dict[str, dict[str, str]] = defaultdict(dict)
    for row in rows:
        m = row[col["m"]]
        if m not in sizes:
            sizes.append(m)
        cells[row[col["weighting"]]][m] = cell(row, col)
    out = ["| weighting | " + " | ".join(f"m = {m}" for m in sizes) + " |"]
    out.append("| --- |" + " --- |" * len(sizes))
    for name, by_m in cells.items():
        out.append(f"| `{name}` | " + " | ".join(by_m.get(m, "—") for m in sizes) + " |")
    return "\n".join(out) + "\n"


def _versus(row, col) -> str:
    peer = row[col["torchjd"]]
    if peer in ("—", "not timed"):
        return f"{row[col['gramweight']]} ({peer})"
    return f"{row[col['gramweight']]} / {peer} (**{row[col['ratio']]}**)"


def _time_memory(row, col) -> str:
    return f"{row[col['gramweight']]}, {row[col['peak memory']]}"


def _ratio(row, col) -> str:
    return row[col["ratio"]]


def _autogram_sections(output: str) -> dict[str, str]:
    """autogram.py's output cut into one file per model: its table and its targets line."""
    output = re.split(r"^### summary \(", output, flags=re.M)[0]  # the summary: its own file
    parts = re.split(r"^### (\w+)\n", output, flags=re.M)
    return {
        f"autogram_{name}": body.strip() + "\n" for name, body in zip(parts[1::2], parts[2::2])
    }


def _model_sections(output: str) -> dict[str, str]:
    """autogram.py's run over the third-party models: one file per model, and its summary."""
    tables = {f"autogram_models_{name.removeprefix('autogram_')}": body
              for name, body in _autogram_sections(output).items()
              if name.removeprefix("autogram_") in THIRD_PARTY}
    summary = re.search(r"^### summary \(\w+\)\n(.*)", output, flags=re.M | re.S)
    tables["autogram_models_summary"] = summary.group(1).strip() + "\n"
    return tables


THIRD_PARTY = ("mlp", "cnn", "transformer", "mlp_multitask", "resnet18", "gpt2", "llama", "vit")

WEIGHTINGS = [sys.executable, str(HERE / "weightings.py")]
AUTOGRAM = [sys.executable, str(HERE / "autogram.py")]

# group -> (command, function from the script's stdout to {file stem: markdown})
GROUPS = {
    "weightings": (
        WEIGHTINGS + ["--threads", "1", "--sizes", "2", "8", "32", "128", "512", "--budget",
                      "0.5", "--markdown"],
        lambda out: {"weightings": _wide(out, _versus)},
    ),
    "weightings_large": (
        WEIGHTINGS + ["--threads", "1", "--sizes", "1024", "2048", "--memory", "--markdown"],
        lambda out: {"weightings_large": _wide(out, _time_memory)},
    ),
    "host_ratio": (
        WEIGHTINGS + ["--threads", "1", "--sizes", "2", "8", "--host-ratio", "--markdown"],
        lambda out: {"host_ratio": _wide(out, _ratio)},
    ),
    "autogram": (AUTOGRAM + ["--models", "mlp", "cnn", "transformer", "--repeat", "15"],
                 _autogram_sections),
    "autogram_models": (
        AUTOGRAM + ["--models", *THIRD_PARTY, "--steps", "gw_mean", "gw_upgrad",
                    "tjd_autogram", "--repeat", "3", "--threads", "1"],
        _model_sections,
    ),
}


def _shown(command: list[str]) -> str:
    """The command as typed from the repository root."""
    words = [Path(c).relative_to(ROOT).as_posix() if c.startswith(str(ROOT)) else c
             for c in command[1:]]
    return " ".join(["python", *words])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", help=f"tables to write (default: {list(GROUPS)})")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "tables")
    parser.add_argument("--list", action="store_true", help="show the tables and their commands")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    if args.list:
        for name, (command, _) in GROUPS.items():
            print(f"{name}: {_shown(command)}")
        return
    unknown = set(args.groups) - set(GROUPS)
    if unknown:
        parser.error(f"unknown table group(s) {sorted(unknown)}; choose from {list(GROUPS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.groups or GROUPS:
        command, layout = GROUPS[name]
        command = command + extra
        shown = _shown(command)
        print(f"== {name}: {shown}", file=sys.stderr, flush=True)
        output = subprocess.run(
            command, cwd=ROOT, check=True, stdout=subprocess.PIPE, text=True
        ).stdout
        stamp = (f"<!-- written by tests/benchmarks/write_docs_tables.py from `{shown}`, "
                 f"{datetime.date.today()}; do not edit -->\n\n")
        for stem, table in layout(output).items():
            (args.out / f"{stem}.md").write_text(stamp + table)
            print(f"   wrote {args.out / (stem + '.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
