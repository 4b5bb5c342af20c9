"""ConFIG: conflict-free inverse gradients."""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence

import torch
from torch import Tensor

from .._checks import check_gramian_scale, check_vector
from ..solvers import eigen_dtype, psd_spectrum, spectral_input, spectral_rtol


def config(G: Tensor, /, *, pref: Sequence[float] | Tensor | None = None) -> Tensor:
    r"""ConFIG (Liu et al., "ConFIG: Towards Conflict-free Training of Physics Informed Neural
    Networks", ICLR 2025, https://arxiv.org/abs/2408.11104).

    The paper takes the direction $x = U^{+}\,\text{pref}$ for the unit gradients
    $U = D^{+} J$ (so that $u_i^\top x = \text{pref}_i$, equal cosines for the
    default), and gives it the length $\sum_i g_i^\top \hat x$. In closed form on the
    Gramian, with $D = \operatorname{diag}(\sqrt{G_{ii}})$:

    $$
    v = D^{+} (D^{+} G D^{+})^{+}\,\text{pref}, \qquad
    w = \frac{\mathbf 1^\top G v}{v^\top G v}\, v.
    $$

    The pseudo-inverse drops the eigenvalues of the cosine matrix $D^{+} G D^{+}$ below
    ``rtol = 4 · eps + 10 · sqrt(m) · eps_w`` times the largest, the round-off of an exactly
    singular Gramian (eps of ``G``'s dtype, eps_w of the dtype it is decomposed in: float32 for
    the half dtypes, float64 otherwise): that is the rank cut-off. If ``pref`` has no component
    (beyond a relative ``sqrt(rtol)``, the singular-value cut-off) in the span of the cosine
    matrix, e.g. two exactly opposite gradients, or all gradients are zero, there is no
    direction and ``w = 0``.

    Args:
        G: Gramian of shape (m, m).
        pref: Target cosines (m finite numbers); default all ones. Only its direction matters.

    Returns:
        Weights of shape (m,), with ``G``'s dtype and device.

    Properties:
        Permutation-equivariant (default ``pref``), scale-invariant. Non-conflicting when
        the unit gradients are linearly independent and ``pref > 0``.

    Deviations:
        TorchJD's ``ConFIG`` is an aggregator on ``J`` (pseudo-inverse of the unit rows with
        torch's default cut-off); this is the same update written on the Gramian.

    Examples:
        >>> import torch, gramweight as gw
        >>> J = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]], dtype=torch.float64)
        >>> gw.config(J @ J.T) @ J
        tensor([0.1588, 2.0706, 2.0706], dtype=torch.float64)
    """
    G, top, diag_min = check_gramian_scale(G)
    m = G.shape[-1]
    wd = eigen_dtype(G.dtype)
    if pref is None:
        p, p_norm = None, math.sqrt(m)
    else:
        p = check_vector(pref, "pref", length=m, like=G).to(wd)
        p_norm = float(p.norm())
    if top == 0.0:
        return torch.zeros(m, dtype=G.dtype, device=G.device)
    Gw = spectral_input(G, top)
    d = Gw.diagonal().sqrt()
    # (zero gradients get a zero row and column in D⁺)
    if diag_min > 1e-30 * top:
        dinv = d.reciprocal()
    else:
        dinv = d.masked_fill(d == 0, torch.inf).reciprocal()
    rtol = spectral_rtol(m, G.dtype)
    # the cosine matrix C = D⁺ G D⁺ = V Λ Vᵀ, and q = Vᵀ pref
    lam, V = psd_spectrum(dinv.unsqueeze(1) * Gw * dinv, rtol)
    q = (V.sum(dim=0) if p is None else p @ V).tolist()
    # v = D⁺ V z with z = Λ⁺ q. On the kept eigenpairs D v = V z, so G v = D V Λ z = D V y
    # with y = q there: vᵀGv = yᵀz and 1ᵀGv = (Vᵀd)ᵀ y, all on the host.
    z = [qk / x if x else 0.0 for qk, x in zip(q, lam)]
    y = [qk if x else 0.0 for qk, x in zip(q, lam)]
    vGv = math.fsum(map(operator.mul, y, z))
    # pref orthogonal to the span of the cosine matrix (to round-off): no direction at all
    if not (vGv > 0 and math.sqrt(math.fsum(map(operator.mul, y, y))) > rtol**0.5 * p_norm):
        return torch.zeros(m, dtype=G.dtype, device=G.device)
    factor = math.fsum(map(operator.mul, (d @ V).tolist(), y)) / vGv
    w = dinv * (V @ torch.as_tensor([factor * zk for zk in z], dtype=wd, device=G.device))
    return w if w.dtype == G.dtype else w.to(G.dtype)
