"""Spectral closed forms: the eigenpairs of a Gramian with one rank cut-off,
``G = V diag(λ) Vᵀ`` with ``λ_i`` kept where ``λ_i > rtol · λ_max``, for the weightings that
are functions of the spectrum (IMTL-G, Aligned-MTL, ConFIG).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._precision import eigen_dtype

__all__ = ["psd_spectrum", "spectral_input", "spectral_rtol"]


def spectral_rtol(m: int, dtype: torch.dtype) -> float:
    """Relative eigenvalue cut-off below which the spectrum of an (m, m) Gramian of ``dtype``
    is treated as zero: ``4 · eps + 10 · sqrt(m) · eps_w``, with ``eps`` of ``dtype`` and
    ``eps_w`` of the dtype the eigenpairs are computed in (`eigen_dtype`).

    The first term is the input's precision. An exactly singular Gramian rounded to ``dtype``
    (entries off by up to ``eps/2`` relative) has its zero eigenvalues moved by at most about
    ``0.35 · eps · λ_max`` (the largest measured over ranks 1 to m - 1, m from 2 to 512 in
    every float dtype and 2048 in float32), whatever m: the rounding errors add up like a
    random matrix's, not like the worst case ``eps/2 · trace(G)``. Four times ``eps`` is well
    above that and still keeps the spectrum of a Gramian with condition number up to
    ``1 / (4 eps)`` (32 in bfloat16, 256 in float16, 2·10⁶ in float32). The second term is the
    eigensolver's own round-off, measured below ``sqrt(m) · eps_w · λ_max``; it matters only
    when ``G`` is already in the working dtype (float64).

    A Gramian accumulated in a low precision over many parameters carries more error than its
    rounding (its zero eigenvalues can then sit above this cut-off), and is best formed in a
    finer dtype.
    """
    return 4.0 * torch.finfo(dtype).eps + 10.0 * m**0.5 * torch.finfo(eigen_dtype(dtype)).eps


def psd_spectrum(G: Tensor, rtol: float, *, graded: bool = False) -> tuple[list[float], Tensor]:
    """Eigenpairs of a PSD matrix in ascending order, the eigenvalues on the host.

    An eigenvalue is kept when it exceeds ``rtol · λ_max`` (so never when it is <= 0, and
    none is kept for a zero matrix); the others are returned as ``0.0``. The consumers turn
    the kept eigenvalues into the coefficients they need on the host, in one list, instead of
    a chain of small tensor operations (one synchronisation, the eigenvalues' copy).

    With ``graded``, the eigenpairs stay accurate also when the diagonal spans many orders of
    magnitude: a symmetric eigensolver loses the small eigenvalues of ``G = D C D`` to round-off
    of the large ones when ``D`` is badly scaled (one gradient 1e6 times larger than the
    others). When the diagonal spreads over more than a factor 1e4, the equilibrated ``C`` is
    decomposed instead, giving a square factor ``F = D Q Λ_C^½`` with ``F Fᵀ = G`` whose SVD
    has the eigenpairs of ``G`` to high relative accuracy.

    Returns:
        ``lam`` (a list of m floats) and ``V`` (m, m) with ``G ≈ V diag(lam) Vᵀ``.
    """
    lam = V = None
    if graded:
        d = G.diagonal().tolist()
        top = max(d)
        low = min((x for x in d if x > 0), default=0.0)
        if top > 1e4 * low:
            root = G.diagonal().clamp_min(0).sqrt()
            inv = root.masked_fill(root == 0, torch.inf).reciprocal()
            lam_c, Q = torch.linalg.eigh(inv.unsqueeze(1) * G * inv)
            U, S, _ = torch.linalg.svd(root.unsqueeze(1) * Q * lam_c.clamp_min(0).sqrt())
            lam, V = (S * S).flip(0), U.flip(1)
    if lam is None:
        lam, V = torch.linalg.eigh(G)
    values = lam.tolist()
    cut = rtol * max(values[-1], 0.0)
    return [x if x > cut else 0.0 for x in values], V


def spectral_input(G: Tensor, top: float) -> Tensor:
    """The matrix a scale-invariant closed form decomposes: ``G`` in `eigen_dtype`,
    divided by its largest entry ``top`` (> 0, from ``check_gramian_scale``) when that lies
    outside [1e-10, 1e10], so that extreme scales stay in range."""
    wd = eigen_dtype(G.dtype)
    Gw = G if G.dtype == wd else G.to(wd)
    return Gw if 1e-10 <= top <= 1e10 else Gw * (1.0 / top)
