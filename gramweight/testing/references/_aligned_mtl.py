"""Reference of Aligned-MTL: combine an orthogonal, equal-norm version of the gradients."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._framework import register_reference


@register_reference("aligned_mtl")
def aligned_mtl_reference(
    J: Tensor, /, *, pref: Sequence[float] | Tensor | None = None, scale: str = "min"
) -> Tensor:
    """With the SVD ``J = U S Vᵀ`` (singular values below ``sqrt(4 · eps + 10 · sqrt(m) · eps_w)``
    times the largest dropped), the aligned gradients are the rows of ``σ U Vᵀ``: orthogonal,
    all of norm ``σ``, the smallest kept singular value (``"min"``), the square root of the
    median (lower middle) or of the mean of the squared kept singular values. The update is
    their ``pref``-weighted sum (default ``1/m`` each)."""
    J64 = J.double().cpu()
    m = J.shape[0]
    p = (
        torch.full((m,), 1.0 / m, dtype=torch.float64)
        if pref is None
        else torch.as_tensor(pref, dtype=torch.float64).cpu()
    )
    U, S, Vh = torch.linalg.svd(J64, full_matrices=False)
    # the weighting's documented eigenvalue cut-off 4 eps + 10 sqrt(m) eps_w (eps of J's dtype,
    # eps_w of float32 for the half dtypes and of float64 otherwise), on σ² relative to σ_max²
    half = J.dtype in (torch.float16, torch.bfloat16)
    eps_w = torch.finfo(torch.float32 if half else torch.float64).eps
    rtol = (4 * torch.finfo(J.dtype).eps + 10 * m**0.5 * eps_w) ** 0.5
    keep = S > rtol * S[0] if S.numel() else S > 0
    keep = keep & (S > 0)
    if not bool(keep.any()):
        return p @ J64
    U, S, Vh = U[:, keep], S[keep], Vh[keep]
    lam = S**2
    if scale == "min":
        sigma = S[-1]
    elif scale == "median":
        sigma = lam.median().sqrt()
    else:
        sigma = lam.mean().sqrt()
    aligned = sigma * U @ Vh
    return p @ aligned
