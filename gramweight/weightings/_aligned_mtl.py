"""Aligned-MTL: aligning the gradients' principal components."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from .._checks import check_gramian_scale, check_vector, message
from ..solvers import eigen_dtype, psd_spectrum, spectral_input, spectral_rtol

_SCALES = ("min", "median", "rmse")


def aligned_mtl(
    G: Tensor,
    /,
    *,
    pref: Sequence[float] | Tensor | None = None,
    scale: Literal["min", "median", "rmse"] = "min",
) -> Tensor:
    r"""Aligned-MTL (Senushkin et al., "Independent Component Alignment for Multi-Task
    Learning", CVPR 2023, https://arxiv.org/abs/2305.19000).

    The gradients are replaced by an orthogonal system with equal norms that spans the same
    space (the condition number of the linear system becomes 1). With the eigendecomposition
    $G = V \Lambda V^\top$ restricted to its r non-negligible eigenvalues,

    $$
    B = \sqrt{\sigma}\, V \Lambda^{-1/2} V^\top, \qquad w = B\, \text{pref},
    $$

    where $\sigma$ is the smallest kept eigenvalue (``"min"``), their median
    (``"median"``) or their mean (``"rmse"``, as TorchJD names it). Eigenvalues below
    ``4 · eps + 10 · sqrt(m) · eps_w`` times the largest, the round-off of an exactly singular
    Gramian, are dropped (eps of ``G``'s dtype, eps_w of the dtype it is decomposed in: float32
    for the half dtypes, float64 otherwise); for ``G = 0``, ``B = I``.

    Args:
        G: Gramian of shape (m, m).
        pref: Weights of the aligned gradients (m finite numbers); default ``1/m`` each.
        scale: Norm given to the aligned gradients, see above.

    Returns:
        Weights of shape (m,), with ``G``'s dtype and device.

    Properties:
        Permutation-equivariant (for a permutation-invariant ``pref``), scale-invariant.

    Deviations:
        TorchJD's ``AlignedMTLWeighting`` decomposes ``G`` in its own dtype and drops
        eigenvalues below ``m · eps · λ_max``; here a float32 ``G`` is decomposed in float64
        and the cut-off is the one above.
        When the gradient norms span more than a factor 100, the eigenpairs come from the
        equilibrated Gramian and an SVD of the factor it gives (slower, but the small
        eigenvalues keep their relative accuracy).
        The median of an even number of eigenvalues is the lower middle one, as in
        ``torch.median``.

    Examples:
        >>> import torch, gramweight as gw
        >>> G = torch.tensor([[18.0, -22.0], [-22.0, 38.0]], dtype=torch.float64)
        >>> gw.aligned_mtl(G)
        tensor([0.5591, 0.4083], dtype=torch.float64)
    """
    G, top, _ = check_gramian_scale(G)
    if scale not in _SCALES:
        raise ValueError(message("scale", f"one of {_SCALES}", repr(scale)))
    m = G.shape[-1]
    wd = eigen_dtype(G.dtype)
    p = None if pref is None else check_vector(pref, "pref", length=m, like=G).to(wd)
    if top == 0.0:  # B = I
        if p is None:
            return torch.full((m,), 1.0 / m, dtype=G.dtype, device=G.device)
        return p.to(G.dtype)
    Gw = spectral_input(G, top)
    lam, V = psd_spectrum(Gw, spectral_rtol(m, G.dtype), graded=True)
    kept = [x for x in lam if x]  # ascending
    if scale == "min":
        sigma = kept[0]
    elif scale == "median":
        sigma = kept[(len(kept) - 1) // 2]  # the lower middle one
    else:
        sigma = math.fsum(kept) / len(kept)
    # w = V diag(sqrt(sigma / lam)) Vᵀ pref on the kept eigenpairs, as matrix-vector products
    # (the default pref's 1/m goes into the coefficients)
    f = 1.0 / m if p is None else 1.0
    coef = [f * math.sqrt(sigma / x) if x else 0.0 for x in lam]
    q = (V.sum(dim=0) if p is None else p @ V).tolist()
    w = V @ torch.as_tensor(list(map(operator.mul, coef, q)), dtype=wd, device=G.device)
    return w if w.dtype == G.dtype else w.to(G.dtype)
