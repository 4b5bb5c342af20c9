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

from .._checks import check_gramian, message

__all__ = ["as_blocks", "pcgrad_weights", "gradvac_weights", "working_dtype"]


def working_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else is computed in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def as_blocks(G: Tensor) -> Tensor:
    """Validate a Gramian (m, m) or a stack of block Gramians (K, m, m)."""
    G = check_gramian(G, batched=True)
    if G.dim() > 3:
        shape = "(" + ", ".join(str(d) for d in G.shape) + ")"
        raise ValueError(
            message("G", "a Gramian (m, m) or a stack of block Gramians (K, m, m)", f"shape {shape}")
        )
    return G


def _flat_visits(orders: Tensor) -> Tensor:
    """Flat index ``i * m + orders[i, s]`` of each visited entry, laid out as (m - 1, m)."""
    m = orders.shape[0]
    rows = torch.arange(m, device=orders.device).unsqueeze(1)
    return (rows * m + orders).T.contiguous()


def pcgrad_weights(G: Tensor, orders: Tensor) -> Tensor:
    """Column sums of PCGrad's coefficient matrix for the Gramian(s) ``G`` (..., m, m)."""
    m = G.shape[-1]
    visits = orders.T.contiguous()  # visits[s, i]: task visited by row i at step s
    flat = _flat_visits(orders)
    sq = G.diagonal(dim1=-2, dim2=-1)[..., visits]  # ||g_j||^2 of each visit, (..., m - 1, m)
    # A zero gradient has nothing to project onto: its step is skipped.
    neg_inv_sq = torch.where(sq > 0, -1.0 / torch.where(sq > 0, sq, 1.0), 0.0)
    CG = G.clone()
    CG_flat = CG.view(*G.shape[:-2], m * m)
    rows_of_j = torch.empty_like(G)
    w = torch.ones(G.shape[:-1], dtype=G.dtype, device=G.device)
    for s in range(m - 1):
        dot = CG_flat.index_select(-1, flat[s])
        # Only conflicts (negative dot products) are projected away.
        a = dot.clamp(max=0.0) * neg_inv_sq[..., s, :]
        w.index_add_(-1, visits[s], a)
        if s < m - 2:
            torch.index_select(G, -2, visits[s], out=rows_of_j)
            CG.addcmul_(rows_of_j, a.unsqueeze(-1))
    return w


def gradvac_weights(
    G: Tensor, targets: Tensor, orders: Tensor, beta: float, eps: float
) -> tuple[Tensor, Tensor]:
    """GradVac's weights and new cosine targets for the Gramian(s) ``G`` (..., m, m)."""
    m = G.shape[-1]
    batch = G.shape[:-2]
    visits = orders.T.contiguous()
    flat = _flat_visits(orders)
    diag = G.diagonal(dim1=-2, dim2=-1)
    sq_j = diag[..., visits]  # (..., m - 1, m)
    norm_j = sq_j.sqrt()
    targets_flat = targets.reshape(*batch, m * m)
    hat = targets_flat[..., flat]  # target cosine of each visit, (..., m - 1, m)
    sqrt_1_hat2 = (1.0 - hat * hat).clamp(min=0.0).sqrt()
    phis = torch.empty_like(hat)

    CG = G.clone()
    CG_flat = CG.view(*batch, m * m)
    rows_of_j = torch.empty_like(G)
    sq_i = diag.clone()
    w = torch.ones(G.shape[:-1], dtype=G.dtype, device=G.device)
    for s in range(m - 1):
        dot = CG_flat.index_select(-1, flat[s])
        nj = norm_j[..., s, :]
        ni = sq_i.clamp(min=0.0).sqrt()
        den = ni * nj + eps
        phi = torch.where(den > 0, dot / torch.where(den > 0, den, 1.0), 0.0)
        phis[..., s, :] = phi
        h = hat[..., s, :]
        sh = sqrt_1_hat2[..., s, :]
        den_a = nj * sh + eps
        a = ni * (h * (1.0 - phi * phi).clamp(min=0.0).sqrt() - phi * sh)
        a = a / torch.where(den_a > 0, den_a, 1.0)
        # Correct only below the target; a zero g_j (or, with eps = 0, a target of +-1) leaves
        # the update unchanged, so the step is skipped rather than given an infinite weight.
        a = torch.where((phi < h) & (nj > 0) & (den_a > 0), a, 0.0)
        w.index_add_(-1, visits[s], a)
        if s < m - 2:
            sq_i = sq_i + a * (2.0 * dot + a * sq_j[..., s, :])
            torch.index_select(G, -2, visits[s], out=rows_of_j)
            CG.addcmul_(rows_of_j, a.unsqueeze(-1))
    new_flat = targets_flat.clone()
    new_flat[..., flat] = (1.0 - beta) * hat + beta * phis
    return w, new_flat.view(targets.shape)
