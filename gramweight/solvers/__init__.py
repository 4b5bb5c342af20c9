"""Torch-native solvers for the constrained problems behind the weightings, one module per
problem family.

Everything here runs on the device of its input, in float64, batched over right-hand sides,
without numpy, scipy or any external QP solver; small problems on the CPU run on Python floats
(float64 too) under the one rule of `_host`.

- `._box_qp`: ``min ½ xᵀAx + cᵀx`` over ``x >= 0`` (optionally ``Σx = 1``), per row of
  ``C`` (`nonneg_qp`), by primal-dual active-set steps, on faces solved by
  `._face`.
- `._min_norm`: MGDA's ``min wᵀGw`` over the simplex (`min_norm_simplex`).
- `._simplex`: the projection ``argmin ‖x - v‖²`` onto the simplex
  (`project_simplex`).
- `._dual_cone`: UPGrad's and DualProj's ``min vᵀĜv`` over ``v >= u``
  (`dual_cone_weights`).
- `._balance`: FairGrad's and Nash-MTL's ``G w = w^(-1/α)`` (`power_balance`;
  small CPU problems on Python floats).
- `._cagrad`: CAGrad's ``min bᵀw + κ sqrt(wᵀAw)`` over the simplex
  (`cagrad_simplex`).
- `._lp`: EPO's ``max cᵀx`` over the simplex and ``A x >= b`` (elastic when infeasible)
  (`simplex_lp`).
- `._spectral`: eigenpairs with one rank cut-off for the closed forms
  (`psd_spectrum`).
- `._precision`: the working dtypes (`work_dtype`, and `eigen_dtype` for the
  eigendecompositions).
"""

from ._balance import balance_eps, power_balance
from ._box_qp import nonneg_qp
from ._cagrad import cagrad_simplex
from ._dual_cone import dual_cone_weights
from ._lp import simplex_lp
from ._min_norm import min_norm_simplex
from ._precision import eigen_dtype, to_work_dtype, work_dtype
from ._simplex import project_simplex, project_simplex_host
from ._spectral import psd_spectrum, spectral_input, spectral_rtol

__all__ = [
    "balance_eps",
    "cagrad_simplex",
    "dual_cone_weights",
    "eigen_dtype",
    "min_norm_simplex",
    "nonneg_qp",
    "power_balance",
    "project_simplex",
    "project_simplex_host",
    "simplex_lp",
    "psd_spectrum",
    "spectral_input",
    "spectral_rtol",
    "to_work_dtype",
    "work_dtype",
]
