"""When a small problem runs on Python floats: the one rule, and the switch that turns it off.

On the CPU a tensor operation costs a few microseconds of dispatch and allocation whatever its
size, a Python float operation a few dozen nanoseconds. A problem with a handful of tasks is
therefore solved faster by the float operations of its algorithm, done one by one in Python
(float64), than by the tensor operations of the same algorithm. The parts of the library that
do so keep such a *host twin* next to their tensor path, named ``<tensor path>_host``: the
Gramian check (``gramweight._checks``), the box and simplex QP, the dual-cone projection and
the balance equations of FairGrad and Nash-MTL (``gramweight.solvers``), MGDA's two-task closed form, MoDo, SDMGrad, PCD, and the two-task
closed forms of PCGrad and GradVac. Every twin asks `use_host`, so one rule decides for all of
them, and one switch sends every problem to its tensor path (to time or test those paths on
small inputs):

- ``GRAMWEIGHT_NO_HOST=1`` in the environment (read when gramweight is imported), or
- ``with gramweight._host.disabled(): ...``.

The module sits beside the checks and the weightings rather than inside
``gramweight.solvers``: the input check and four weightings consult it as much as the solvers.
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Iterator
from contextlib import contextmanager

from torch import Tensor

__all__ = ["FLOAT_OPS_PER_TENSOR_OP", "disabled", "matvec", "use_host"]

# A tensor operation on a small CPU tensor costs about 2-4 µs, a Python-level float operation
# 20 to 60 ns: a host twin pays while it does at most about a hundred float operations for each
# tensor operation of the tensor path it replaces. With the counts the twins give, the rule
# switches at or below the measured crossovers (the Gramian check at m ≈ 10, MoDo ≈ 24, SDMGrad
# ≈ 30, a QP with one row ≈ 22 to 28, with m rows ≈ 8; "Small problems on the host" in
# docs/benchmarks.md).
FLOAT_OPS_PER_TENSOR_OP = 100

_enabled = os.environ.get("GRAMWEIGHT_NO_HOST", "") in ("", "0")


def use_host(M: Tensor, float_ops: int, tensor_ops: int) -> bool:
    """Whether a problem on ``M`` runs on Python floats: the host paths are enabled, ``M`` is on
    the CPU, and the host twin's ``float_ops`` Python float operations (the leading terms of a
    count) cost less than the ``tensor_ops`` tensor operations of its tensor path."""
    # (is_cpu: reading M.device builds a device object, a microsecond)
    return _enabled and M.is_cpu and float_ops <= FLOAT_OPS_PER_TENSOR_OP * tensor_ops


@contextmanager
def disabled() -> Iterator[None]:
    """Send every problem to its tensor path inside the block (a module flag: not
    thread-safe)."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def matvec(rows: list[list[float]], x: list[float]) -> list[float]:
    """``M @ x`` for ``M`` given by its rows."""
    return [math.fsum(map(operator.mul, row, x)) for row in rows]
