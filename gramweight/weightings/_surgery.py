"""Vectorised coefficient-space loops shared by PCGrad and GradVac.

Both methods modify each task gradient ``g_i`` by adding multiples of the other (original)
gradients ``g_j``, visiting them in a per-task random order. The modified gradient of row ``i``
is kept as coefficients over the original gradients, and only two things are ever needed of
it: its dot products with the original gradients, ``CG[i] = (C @ G)[i]``, and its squared
norm. Adding ``a * g_j`` to row ``i`` updates them as::

    CG[i] += a * G[j]            ||g_i||^2 += a * (2 * CG[i, j] + a * G[j, j])

The rows never interact, so the ``m`` rows take their ``s``-th step together: ``m - 1``
vectorised steps of O(m^2) work. Since every update is returned as ``w = C.sum(rows)``, the
coefficient matrix itself is never stored, only its column sums.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_gramian, format_shape, message

__all__ = ["as_blocks", "pcgrad_weights", "gradvac_weights"]


def as_blocks(G: Tensor) -> Tensor:
    """Validate a Gramian (m, m) or a stack of block Gramians (K, m, m)."""
    G = check_gramian(G, batched=True)
    if G.dim() > 3:
        raise ValueError(
            message(
                "G", "a Gramian (m, m) or a stack of block Gramians (K, m, m)",
                f"shape {format_shape(G.shape)}",
            )
        )
    return G


def _flat_visits(visits: Tensor) -> Tensor:
    """Flat index ``i * m + visits[s, i]`` of each visited entry, laid out as (m - 1, m)."""
    m = visits.shape[1]
    return visits + torch.arange(0, m * m, m, device=visits.device)


def _reciprocal_or_zero(x: Tensor) -> Tensor:
    """``1 / x``, and 0 where ``x`` is 0 (``x >= 0``)."""
    return x.reciprocal().nan_to_num_(posinf=0.0)


def pcgrad_weights(G: Tensor, orders: Tensor) -> Tensor:
    """Column sums of PCGrad's coefficient matrix for the Gramian(s) ``G`` (..., m, m)."""
    m = G.shape[-1]
    w = torch.ones(G.shape[:-1], dtype=G.dtype, device=G.device)
    if m == 1:
        return w
    visits = orders.T.contiguous()  # visits[s, i]: task visited by row i at step s
    flat = _flat_visits(visits)
    sq = G.diagonal(dim1=-2, dim2=-1)[..., visits]  # ||g_j||^2 of each visit, (..., m - 1, m)
    # A zero gradient has nothing to project onto: its step is skipped.
    neg_inv_sq = _reciprocal_or_zero(sq).neg_()
    CG = G.clone()
    CG_flat = CG.view(*G.shape[:-2], m * m)
    rows_of_j = torch.empty_like(G)
    steps = zip(flat.unbind(0), visits.unbind(0), neg_inv_sq.movedim(-2, 0).unbind(0))
    for s, (flat_s, j, neg_inv) in enumerate(steps):
        dot = CG_flat.index_select(-1, flat_s)
        # Only conflicts (negative dot products) are projected away.
        a = dot.clamp_(max=0.0).mul_(neg_inv)
        w.index_add_(-1, j, a)
        if s < m - 2:
            torch.index_select(G, -2, j, out=rows_of_j)
            CG.addcmul_(rows_of_j, a.unsqueeze(-1))
    return w


def gradvac_weights(
    G: Tensor, targets: Tensor, orders: Tensor, beta: float, eps: float
) -> tuple[Tensor, Tensor]:
    """GradVac's weights and new cosine targets for the Gramian(s) ``G`` (..., m, m)."""
    m = G.shape[-1]
    batch = G.shape[:-2]
    if m == 1:
        return torch.ones(G.shape[:-1], dtype=G.dtype, device=G.device), targets.clone()
    visits = orders.T.contiguous()
    flat = _flat_visits(visits)
    diag = G.diagonal(dim1=-2, dim2=-1)
    # Everything that depends on the visit only is computed up front, step-major: (m - 1, ..., m).
    sq_j = diag[..., visits].movedim(-2, 0).contiguous()
    norm_j = sq_j.sqrt()
    hat = targets.reshape(*batch, m * m)[..., flat].movedim(-2, 0).contiguous()
    sqrt_1_hat2 = (1.0 - hat * hat).clamp(min=0.0).sqrt()
    den_a = norm_j * sqrt_1_hat2 + eps
    # A correction towards a zero g_j cannot change the update, and one with a vanishing
    # denominator (a target of +-1 with eps = 0) has no finite value: both are skipped.
    inv_den_a = _reciprocal_or_zero(den_a) * (norm_j > 0)
    phis = torch.empty_like(hat)

    CG = G.clone()
    CG_flat = CG.view(*batch, m * m)
    rows_of_j = torch.empty_like(G)
    sq_i = diag.clone()
    w = torch.ones(G.shape[:-1], dtype=G.dtype, device=G.device)
    ones = torch.ones_like(w)
    eps_t = torch.full_like(w, eps)
    # Per-step views, taken once (indexing inside the loop costs as much as a small kernel).
    steps = zip(
        flat.unbind(0), visits.unbind(0), norm_j.unbind(0), (sq_j / 2).unbind(0),
        hat.unbind(0), sqrt_1_hat2.unbind(0), inv_den_a.unbind(0), phis.unbind(0),
    )
    for s, (flat_s, j, nj, half_sq_j, h, sh, inv_den, phi) in enumerate(steps):
        dot = CG_flat.index_select(-1, flat_s)
        ni = sq_i.clamp(min=0.0).sqrt_()
        if eps > 0:
            torch.div(dot, torch.addcmul(eps_t, ni, nj), out=phi)
        else:
            den = ni * nj
            phi.copy_(torch.where(den > 0, dot / torch.where(den > 0, den, 1.0), 0.0))
        sqrt_1_phi2 = torch.addcmul(ones, phi, phi, value=-1.0).clamp_(min=0.0).sqrt_()
        # With phi = cos(x), target = cos(y): target sqrt(1 - phi^2) - phi sqrt(1 - target^2)
        # = sin(x - y), positive exactly when phi < target: the relu is the paper's test.
        a = torch.addcmul(h * sqrt_1_phi2, phi, sh, value=-1.0).clamp_(min=0.0)
        a = a.mul_(ni).mul_(inv_den)
        w.index_add_(-1, j, a)
        if s < m - 2:
            # ||g + a g_j||^2 = ||g||^2 + 2 a (g . g_j + a ||g_j||^2 / 2)
            sq_i = torch.addcmul(sq_i, a, torch.addcmul(dot, a, half_sq_j), value=2.0)
            torch.index_select(G, -2, j, out=rows_of_j)
            CG.addcmul_(rows_of_j, a.unsqueeze(-1))
    new_flat = targets.reshape(*batch, m * m).clone()
    new_flat[..., flat] = ((1.0 - beta) * hat + beta * phis).movedim(0, -2)
    return w, new_flat.view(targets.shape)
