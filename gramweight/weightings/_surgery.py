"""Vectorised coefficient-space loops shared by PCGrad and GradVac.

Both methods modify each task gradient ``g_i`` by adding multiples of the other (original)
gradients ``g_j``, visiting them in a per-task random order. The modified gradient of row ``i``
is kept as coefficients over the original gradients, and only two things are ever needed of
it: its dot products with the original gradients, ``CG[i] = (C @ G)[i]``, and its squared
norm. Adding ``a * g_j`` to row ``i`` updates them as:

```text
CG[i] += a * G[j]            ||g_i||^2 += a * (2 * CG[i, j] + a * G[j, j])
```

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
    """Column sums of PCGrad's coefficient matrix for the Gramian(s) ``G`` (..., m, m).

    Row ``i`` of ``orders`` lists the tasks that row ``i`` visits, in order: the ``m - 1``
    others (the paper's order) or all ``m`` tasks (``include_self``, the original code's).
    """
    m = G.shape[-1]
    w = torch.ones(G.shape[:-1], dtype=G.dtype, device=G.device)
    if orders.shape[-1] == 0:  # one task, visiting no other
        return w
    visits = orders.T.contiguous()  # visits[s, i]: task visited by row i at step s
    n_steps = visits.shape[0]
    flat = _flat_visits(visits)
    sq = G.diagonal(dim1=-2, dim2=-1)[..., visits]  # ||g_j||^2 of each visit, (..., steps, m)
    # A zero gradient has nothing to project onto: its step is skipped.
    neg_inv_sq = _reciprocal_or_zero(sq).neg_()
    CG = G.clone(memory_format=torch.contiguous_format)  # (G may be a strided view)
    CG_flat = CG.view(*G.shape[:-2], m * m)
    rows_of_j = torch.empty_like(CG)
    steps = zip(flat.unbind(0), visits.unbind(0), neg_inv_sq.movedim(-2, 0).unbind(0))
    for s, (flat_s, j, neg_inv) in enumerate(steps):
        dot = CG_flat.index_select(-1, flat_s)
        # Only conflicts (negative dot products) are projected away.
        a = dot.clamp_(max=0.0).mul_(neg_inv)
        w.index_add_(-1, j, a)
        if s < n_steps - 1:
            torch.index_select(G, -2, j, out=rows_of_j)
            CG.addcmul_(rows_of_j, a.unsqueeze(-1))
    return w


def gradvac_weights(
    G: Tensor,
    targets: Tensor,
    orders: Tensor,
    beta: float,
    eps: float,
    *,
    roundoff: float | None = None,
) -> tuple[Tensor, Tensor]:
    """GradVac's weights and new cosine targets for the Gramian(s) ``G`` (..., m, m).

    ``roundoff`` is the relative precision of ``G``'s entries: the machine epsilon of the dtype
    they were rounded to (default: ``G``'s; pass the input's when ``G`` was converted to a
    working dtype).

    A corrected gradient whose squared norm is within the round-off of its computation is
    treated as zero, as the vector-space algorithm would find it: cosine 0 with every later
    task, no further correction. Why and where the line is drawn: the comment in the loop.
    """
    m = G.shape[-1]
    batch = G.shape[:-2]
    if m == 1:
        return torch.ones(G.shape[:-1], dtype=G.dtype, device=G.device), targets.clone()
    roundoff = torch.finfo(G.dtype).eps if roundoff is None else roundoff
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
    lives = torch.empty(hat.shape, dtype=torch.bool, device=G.device)

    CG = G.clone(memory_format=torch.contiguous_format)  # (G may be a strided view)
    CG_flat = CG.view(*batch, m * m)
    rows_of_j = torch.empty_like(CG)
    sq_i = diag.clone()
    # Row i is c J with c = e_i + (the corrections a >= 0 added so far), and its squared norm
    # c^T G c is accumulated step by step as ||g||^2 + 2 a (g . g_j + a ||g_j||^2 / 2). Let
    # N = sum_k c_k ||g_k|| >= ||c J|| (kept in `bound`); |G_kl| <= ||g_k|| ||g_l|| bounds every
    # rounded term by N^2. A step from N to N' rounds the new squared norm (<= N'^2) and terms
    # of total size <= N'^2 - N^2 (the product, and g . g_j, itself accumulated over the
    # <= m - 1 steps so far); with u = eps / 2 the unit round-off, the error after all steps
    # telescopes to <= 2 m u N^2 = m eps N^2, and the entries of G, rounded to their own dtype,
    # add eps_G N^2 at most. A computed squared norm below (m eps + eps_G) N^2 is therefore
    # not determined by G: the row has cancelled to noise (a correction towards an opposite or
    # collinear gradient), and cosines computed from that noise can leave [-1, 1] by any
    # amount (|112| was seen) and blow up later calls through the targets. Such a row is zero
    # to the precision of G and is treated as zero: cosine 0 with every later task, no further
    # correction (its remainder, of norm below sqrt(m eps) N, stays in w).
    tol_factor = m * torch.finfo(G.dtype).eps + roundoff
    bound = diag.clamp(min=0.0).sqrt()  # N of each row (c = e_i at first)
    w = torch.ones(G.shape[:-1], dtype=G.dtype, device=G.device)
    ones = torch.ones_like(w)
    eps_t = torch.full_like(w, eps)
    # Per-step views, taken once (indexing inside the loop costs as much as a small kernel).
    steps = zip(
        flat.unbind(0), visits.unbind(0), norm_j.unbind(0), (sq_j / 2).unbind(0),
        hat.unbind(0), sqrt_1_hat2.unbind(0), inv_den_a.unbind(0), phis.unbind(0),
        lives.unbind(0),
    )
    for s, (flat_s, j, nj, half_sq_j, h, sh, inv_den, phi, live) in enumerate(steps):
        dot = CG_flat.index_select(-1, flat_s)
        # (before the first correction sq_i = N^2: every non-zero row is live)
        if s == 0:
            torch.gt(sq_i, 0.0, out=live)
        else:
            torch.gt(torch.addcmul(sq_i, bound, bound, value=-tol_factor), 0.0, out=live)
        ni = torch.where(live, sq_i, 0.0).sqrt_()
        # (a row taken as zero has ni = 0, so no correction whatever its phi; its measured
        # cosines, kept for the targets, are set to 0 after the loop)
        if eps > 0:
            torch.div(dot, torch.addcmul(eps_t, ni, nj), out=phi)
        else:
            den = ni * nj
            phi.copy_(torch.where(den > 0, dot / torch.where(den > 0, den, 1.0), 0.0))
        # A cosine from G is one up to round-off: it may leave [-1, 1] by a few ulps.
        phi.clamp_(min=-1.0, max=1.0)
        sqrt_1_phi2 = torch.addcmul(ones, phi, phi, value=-1.0).clamp_(min=0.0).sqrt_()
        # With phi = cos(x), target = cos(y): target sqrt(1 - phi^2) - phi sqrt(1 - target^2)
        # = sin(x - y), positive exactly when phi < target: the relu is the paper's test.
        a = torch.addcmul(h * sqrt_1_phi2, phi, sh, value=-1.0).clamp_(min=0.0)
        a = a.mul_(ni).mul_(inv_den)
        w.index_add_(-1, j, a)
        if s < m - 2:
            # ||g + a g_j||^2 = ||g||^2 + 2 a (g . g_j + a ||g_j||^2 / 2)
            sq_i = torch.addcmul(sq_i, a, torch.addcmul(dot, a, half_sq_j), value=2.0)
            bound = torch.addcmul(bound, a, nj)
            torch.index_select(G, -2, j, out=rows_of_j)
            CG.addcmul_(rows_of_j, a.unsqueeze(-1))
    new_flat = targets.reshape(*batch, m * m).clone()
    phis.mul_(lives)
    new_flat[..., flat] = ((1.0 - beta) * hat + beta * phis).movedim(0, -2).clamp_(-1.0, 1.0)
    return w, new_flat.view(targets.shape)
