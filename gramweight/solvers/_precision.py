"""Working precision: ``float64`` stays ``float64``, every other float dtype computes in
``float32``.

The closed forms and the coefficient-space loops (PCGrad, GradVac, Krum, MoDo, SDMGrad, the
spectral methods) use it; most of them solve nothing, hence a module of its own.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["to_work_dtype", "work_dtype"]


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the closed-form weightings compute in: float64 stays float64, anything else
    runs in float32 (its eigen-decompositions are several times faster, and the input carries no
    more precision anyway)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def to_work_dtype(M: Tensor) -> Tensor:
    """``M`` in :func:`work_dtype` (``M`` itself, with no operation, when it already is)."""
    wd = work_dtype(M.dtype)
    return M if M.dtype == wd else M.to(wd)
