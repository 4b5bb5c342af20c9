"""A user's first run prints no warning (issue 15): torch's NumPy warning, deprecations, ..."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_quickstart_prints_no_warning():
    env = {**os.environ, "GRAMWEIGHT_EXAMPLE_SMALL": "1", "PYTHONWARNINGS": "default"}
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")], env=env,
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    assert "warning" not in (run.stderr + run.stdout).lower(), run.stderr
