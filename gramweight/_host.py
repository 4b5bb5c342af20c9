"""Small vector operations on Python floats, for tiny problems on the CPU.

A problem with a handful of tasks costs less as a few hundred float operations in Python than
as a few dozen tensor operations (each a dispatch of one to three microseconds). The functions
here mirror their tensor counterparts step for step, in float64.
"""

from __future__ import annotations

import math
import operator
from itertools import accumulate

import torch

__all__ = ["HOST_NUMEL", "matvec", "on_host", "project_simplex_list"]

# Up to this many matrix entries (8 x 8), a CPU problem runs on Python floats.
HOST_NUMEL = 64


def on_host(M: torch.Tensor) -> bool:
    """Whether ``M`` is small enough, and on the CPU, to be worked on as Python floats."""
    return M.numel() <= HOST_NUMEL and M.device.type == "cpu"


def matvec(rows: list[list[float]], x: list[float]) -> list[float]:
    """``M @ x`` for ``M`` given by its rows."""
    return [math.fsum(map(operator.mul, row, x)) for row in rows]


def project_simplex_list(v: list[float]) -> list[float]:
    """:func:`gramweight._solvers.project_simplex` (with its shift by the maximum) of one
    vector of Python floats: ``max(v - theta, 0)`` with
    ``theta = max_k (sum of the k largest - 1) / k``."""
    top = max(v)
    u = sorted((x - top for x in v), reverse=True)
    theta = max((s - 1.0) / k for k, s in enumerate(accumulate(u), start=1))
    return [max(x - top - theta, 0.0) for x in v]
