"""ConFIG: conflict-free inverse gradients."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._checks import check_gramian, check_vector
from .._solvers import psd_eigh, spectral_rtol, work_dtype


def config(G: Tensor, /, *, pref: Sequence[float] | Tensor | None = None) -> Tensor:
    r"""ConFIG (Liu et al., "ConFIG: Towards Conflict-free Training of Physics Informed Neural
    Networks", ICLR 2025, https://arxiv.org/abs/2408.11104).

    The paper takes the direction :math:`x = U^{+}\,\text{pref}` for the unit gradients
    :math:`U = D^{+} J` (so that :math:`u_i^\top x = \text{pref}_i`, equal cosines for the
    default), and gives it the length :math:`\sum_i g_i^\top \hat x`. In closed form on the
    Gramian, with :math:`D = \operatorname{diag}(\sqrt{G_{ii}})`:

    .. math::  v = D^{+} (D^{+} G D^{+})^{+}\,\text{pref}, \qquad
               w = \frac{\mathbf 1^\top G v}{v^\top G v}\, v.

    The pseudo-inverse drops the eigenvalues of the cosine matrix :math:`D^{+} G D^{+}` below
    ``1000 · m · eps`` times the largest (eps of ``G``'s dtype): that is the rank cut-off. If
    ``pref`` has no component (beyond a relative ``sqrt(1000 · m · eps)``, the singular-value
    cut-off) in the span of the cosine matrix,
    e.g. two exactly opposite gradients, or all gradients are zero, there is no direction and
    ``w = 0``.

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
    G = check_gramian(G).detach()
    m = G.shape[-1]
    Gw = G.to(work_dtype(G.dtype))
    if pref is None:
        p = torch.ones(m, dtype=Gw.dtype, device=G.device)
    else:
        p = check_vector(pref, "pref", length=m, like=G).to(Gw.dtype)
    d = Gw.diagonal().sqrt()
    dinv = torch.where(d > 0, 1.0 / torch.where(d > 0, d, 1.0), 0.0)
    C = dinv.unsqueeze(1) * Gw * dinv.unsqueeze(0)
    rtol = spectral_rtol(G, G.dtype)
    lam, V = psd_eigh(C, rtol)
    y = V.T @ p
    v = dinv * (V @ (y / lam))
    Gv = Gw @ v
    vGv = v @ Gv
    # pref orthogonal to the span of the cosine matrix (to round-off): no direction at all
    ok = (vGv > 0) & (y.norm() > rtol**0.5 * p.norm())
    w = torch.where(ok, Gv.sum() / torch.where(ok, vGv, 1.0), 0.0) * v
    return w.to(G.dtype)
