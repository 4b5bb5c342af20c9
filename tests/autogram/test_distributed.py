"""Data-parallel engine over torch.distributed (gloo, loopback): the cases run in 3 processes.

The cases are in ``_distributed_cases.py`` (a script: spawned processes import it by path);
this test runs it in a subprocess with a hard timeout, so that nothing can hang the suite.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

import gramweight as gw

CASES = Path(__file__).with_name("_distributed_cases.py")


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                    reason="torch.distributed with gloo is not available")
def test_global_gramian_grad_and_steps_match_the_concatenated_batch():
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(CASES.parents[2]), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(CASES)], capture_output=True, text=True,
                          timeout=240, env=env)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-8000:]
    assert "all distributed cases passed" in proc.stdout


def test_process_group_and_scope_are_checked():
    lin = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r'^`scope` must be "global" or "local"'):
        gw.autogram.Engine(lin, batch_dim=0, process_group="world", scope="all")
    with pytest.raises(ValueError, match=r'^`scope` must be "global" when process_group'):
        gw.autogram.Engine(lin, batch_dim=0, scope="local")
    with pytest.raises(RuntimeError, match=r"^`process_group` must be given once"):
        gw.autogram.Engine(lin, batch_dim=0, process_group="world")
