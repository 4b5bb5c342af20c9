"""Working precision: ``float64`` stays ``float64``, every other float dtype computes in
``float32``; eigendecompositions run in ``float64`` for ``float32`` inputs too.

The closed forms and the coefficient-space loops (PCGrad, GradVac, Krum, MoDo, SDMGrad) use
`work_dtype`, the spectral methods `eigen_dtype`; most of them solve nothing, hence
a module of its own.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["eigen_dtype", "to_work_dtype", "work_dtype"]


def work_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the closed-form weightings compute in: float64 stays float64, anything else
    runs in float32 (its eigen-decompositions are several times faster, and the input carries no
    more precision anyway)."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def to_work_dtype(M: Tensor) -> Tensor:
    """``M`` in `work_dtype` (``M`` itself, with no operation, when it already is)."""
    wd = work_dtype(M.dtype)
    return M if M.dtype == wd else M.to(wd)


def eigen_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the spectral closed forms decompose in: float32 for the half precisions
    (``torch.linalg.eigh`` has no half kernels), float64 for everything else.

    An eigensolver's own round-off is about ``sqrt(m) · eps · λ_max`` of the dtype it runs in,
    and the spectrum cut-off sits at a few ``eps · λ_max`` of the input's dtype: the working
    precision must be finer than the input's. float32 is (its eps is 2¹³ and 2¹⁶ times below
    float16's and bfloat16's); for a float32 input only float64 is, and the eigenvalues that
    float32 could not tell from 0 are then kept to their own accuracy.
    """
    return torch.float32 if dtype in (torch.float16, torch.bfloat16) else torch.float64
