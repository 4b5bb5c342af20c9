"""Reference of IMTL-G: the update with equal projections on every unit gradient."""

from __future__ import annotations

import torch
from torch import Tensor

from ._framework import register_reference


@register_reference("imtl_g")
def imtl_g_reference(J: Tensor, /) -> Tensor:
    """Find ``g`` in the span of the gradients with ``gᵀu_i`` equal for every unit gradient
    ``u_i = g_i / ‖g_i‖`` (zero gradients impose nothing), i.e. the minimum-norm least-squares
    ``g = J⁺ d`` with ``d_i = ‖g_i‖``, then scale it so that its coefficients ``(J⁺)ᵀ g`` on
    the gradients sum to 1. The pseudo-inverse drops singular values below
    ``sqrt(4 · eps + 10 · sqrt(m) · eps_w)`` times the largest (the square root of the
    weighting's eigenvalue cut-off)."""
    J64 = J.double().cpu()
    m = J.shape[0]
    # the weighting's documented eigenvalue cut-off 4 eps + 10 sqrt(m) eps_w (eps of J's dtype,
    # eps_w of float32 for the half dtypes and of float64 otherwise), on σ² relative to σ_max²
    half = J.dtype in (torch.float16, torch.bfloat16)
    eps_w = torch.finfo(torch.float32 if half else torch.float64).eps
    rtol = (4 * torch.finfo(J.dtype).eps + 10 * m**0.5 * eps_w) ** 0.5
    Jp = torch.linalg.pinv(J64, rtol=rtol)
    g = Jp @ J64.norm(dim=1)
    coef = torch.linalg.pinv(J64.T, rtol=rtol) @ g
    total = float(coef.sum())
    if abs(total) <= 1e-12 * float(coef.abs().sum()):
        return torch.zeros(J.shape[1], dtype=torch.float64)
    return g / total
