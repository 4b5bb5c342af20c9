"""Reference of ConFIG: equal cosines with every gradient, length from the projections."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._framework import register_reference


@register_reference("config")
def config_reference(J: Tensor, /, *, pref: Sequence[float] | Tensor | None = None) -> Tensor:
    """Unit gradients ``U`` (zero rows stay zero), direction ``x = U⁺ pref`` (default all ones;
    singular values below ``sqrt(4 · eps + 10 · sqrt(m) · eps_w)`` times the largest dropped),
    made a unit vector and given the length ``Σ_i g_iᵀ x̂``. If ``pref`` has no part in the span
    of the unit gradients (beyond that relative cut-off), there is no direction: 0."""
    J64 = J.double().cpu()
    m = J.shape[0]
    p = (
        torch.ones(m, dtype=torch.float64)
        if pref is None
        else torch.as_tensor(pref, dtype=torch.float64).cpu()
    )
    norms = J64.norm(dim=1, keepdim=True)
    units = torch.where(norms > 0, J64 / torch.where(norms > 0, norms, 1.0), 0.0)
    # the weighting's documented eigenvalue cut-off 4 eps + 10 sqrt(m) eps_w (eps of J's dtype,
    # eps_w of float32 for the half dtypes and of float64 otherwise), on σ² relative to σ_max²
    half = J.dtype in (torch.float16, torch.bfloat16)
    eps_w = torch.finfo(torch.float32 if half else torch.float64).eps
    rtol = (4 * torch.finfo(J.dtype).eps + 10 * m**0.5 * eps_w) ** 0.5
    x = torch.linalg.pinv(units, rtol=rtol) @ p
    # the fitted cosines U x: pref's part in the span of the unit gradients
    if float((units @ x).norm()) <= rtol * float(p.norm()) or float(x.norm()) == 0.0:
        return torch.zeros(J.shape[1], dtype=torch.float64)
    unit = x / x.norm()
    return (J64 @ unit).sum() * unit
