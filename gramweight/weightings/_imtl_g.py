"""IMTL-G: impartial multi-task learning, gradient part."""

from __future__ import annotations

import math
import operator

import torch
from torch import Tensor

from .._checks import check_gramian_scale
from ..solvers import psd_spectrum, spectral_input, spectral_rtol


def imtl_g(G: Tensor, /) -> Tensor:
    r"""IMTL-G (Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021,
    https://openreview.net/forum?id=IMPnRXEWpvr).

    The update $g = J^\top w$ with $\mathbf 1^\top w = 1$ whose projections onto
    the unit gradients $u_i = g_i / \|g_i\|$ are all equal: $(G w)_i / \|g_i\|$ is
    constant, so

    $$
    w \propto G^{+} d, \quad d_i = \sqrt{G_{ii}}, \quad \mathbf 1^\top w = 1.
    $$

    The paper's closed form (with the differences $u_1 - u_i$) gives the same weights
    when $G$ is invertible. The pseudo-inverse drops the eigenvalues below
    ``4 · eps + 10 · sqrt(m) · eps_w`` times the largest, the round-off of an exactly singular
    Gramian (eps of ``G``'s dtype, eps_w of the dtype it is decomposed in: float32 for the half
    dtypes, float64 otherwise). If the unnormalised weights sum to (relatively) zero, there is
    no such update and ``w = 0``.

    Args:
        G: Gramian of shape (m, m).

    Returns:
        Weights of shape (m,), with ``G``'s dtype and device.

    Properties:
        Permutation-equivariant, scale-invariant. Not non-conflicting in general.

    Deviations:
        TorchJD's ``IMTLGWeighting`` uses ``torch.linalg.pinv`` with its default cut-off and
        returns zeros when the sum is below an absolute ``1e-12``; here both tests are relative,
        so the weights do not depend on the scale of ``G``.

    Examples:
        >>> import torch, gramweight as gw
        >>> G = torch.tensor([[18.0, -22.0], [-22.0, 38.0]], dtype=torch.float64)
        >>> gw.imtl_g(G)
        tensor([0.5923, 0.4077], dtype=torch.float64)
    """
    G, top, _ = check_gramian_scale(G)
    m = G.shape[-1]
    if top == 0.0:
        return torch.zeros(m, dtype=G.dtype, device=G.device)
    Gw = spectral_input(G, top)
    lam, V = psd_spectrum(Gw, spectral_rtol(m, G.dtype))
    # v = V Λ⁺ Vᵀ d and its sum 1ᵀv = (Vᵀ1)ᵀ Λ⁺ Vᵀ d: the coefficients Λ⁺ Vᵀ d, normalised,
    # are formed on the host, then one product gives w
    u = (Gw.diagonal().sqrt() @ V).tolist()
    coef = [uk / x if x else 0.0 for uk, x in zip(u, lam)]
    total = math.fsum(map(operator.mul, V.sum(dim=0).tolist(), coef))
    if abs(total) <= 1e-12 * math.fsum(map(abs, coef)):
        return torch.zeros(m, dtype=G.dtype, device=G.device)
    w = V @ torch.as_tensor([c / total for c in coef], dtype=Gw.dtype, device=G.device)
    return w if w.dtype == G.dtype else w.to(G.dtype)
