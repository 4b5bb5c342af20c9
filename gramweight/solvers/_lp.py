"""A small dense linear program over the simplex: ``max cᵀx`` over ``x >= 0, Σx = 1, A x >= b``,
the closest to feasible when no ``x`` satisfies every row (EPO's LP).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["simplex_lp"]

# reduced costs and pivots below these (on data scaled to a largest entry of 1) count as zero
_COST_TOL = 1e-11
_PIVOT_TOL = 1e-12


def simplex_lp(c: Tensor, A: Tensor, b: Tensor, *, max_iters: int | None = None) -> Tensor:
    r"""A solution ``x`` (m,) of the linear program on the probability simplex

    $$
    \max_x\ c^\top x \quad \text{s.t.}\quad x \ge 0,\ \mathbf 1^\top x = 1,
    \ A x \ge b,
    $$

    with ``A`` (k, m) and ``b`` (k,); a row whose ``b`` is ``-inf`` constrains nothing. When no
    point of the simplex satisfies every row, the problem is made elastic: ``x`` minimises the
    total violation $\sum_j \max(0, b_j - A_j x) / s_j$ first ($s_j$ the largest
    of $|A_j|$ and $|b_j|$: each row counts at a largest entry of 1), and maximises
    ``cᵀx`` among the minimisers. The feasible set is never empty (it contains the simplex's
    vertices) and bounded, so there is always a solution.

    A two-phase primal simplex method on the dense tableau, with Bland's rule (no cycling): the
    start is the vertex ``x = e₀`` with one elastic variable per row it violates; phase 1
    drives the violation to its least value, phase 2 pivots only on columns whose phase-1
    reduced cost is zero, which keeps that least value while ``cᵀx`` grows. One host
    synchronisation per pivot (the stopping test); computed in float64 on ``c``'s device.
    """
    device = c.device
    c64 = c.detach().to(torch.float64)
    A64 = A.detach().to(device=device, dtype=torch.float64).reshape(-1, c64.shape[0])
    b64 = b.detach().to(device=device, dtype=torch.float64).reshape(-1)
    m = c64.shape[0]
    finite = torch.isfinite(b64)
    if not bool(finite.all()):
        A64, b64 = A64[finite], b64[finite]
    k = A64.shape[0]
    # scale-free tolerances: each row (the same inequality) and the objective at a largest
    # entry of 1, whatever the spread of scales between rows
    scale = torch.cat([A64.abs(), b64.abs().unsqueeze(1)], dim=1).amax(dim=1)
    scale = torch.where(scale > 0, scale, 1.0)
    A64, b64 = A64 / scale.unsqueeze(1), b64 / scale
    c64 = c64 / c64.abs().max().clamp_min(1e-300)

    # columns: x (m), surplus s (k), elastic t (k), right-hand side; rows: Σx = 1, the k rows
    # A x - s + t = b, then the phase-1 and phase-2 objective rows (reduced costs)
    n_cols = m + 2 * k + 1
    T = torch.zeros(k + 3, n_cols, dtype=torch.float64, device=device)
    T[0, :m] = 1.0
    T[0, -1] = 1.0
    rows = torch.arange(k, device=device)
    T[1 : k + 1, :m] = A64
    T[1 + rows, m + rows] = -1.0
    T[1 + rows, m + k + rows] = 1.0
    T[1 : k + 1, -1] = b64
    # x = e₀ basic in the simplex row; then each constraint row keeps its elastic variable
    # basic when e₀ satisfies it short (rhs >= 0), its surplus when e₀ exceeds it (rhs < 0)
    T[1 : k + 1] -= T[1 : k + 1, :1] * T[0]
    flip = T[1 : k + 1, -1] < 0
    T[1 : k + 1] = torch.where(flip.unsqueeze(1), -T[1 : k + 1], T[1 : k + 1])
    basis = torch.cat(
        [torch.zeros(1, dtype=torch.long, device=device), torch.where(flip, m + rows, m + k + rows)]
    )
    n_basic = k + 1
    # objective rows: reduced costs cost - Σ cost[basis] T[row] (minimisation)
    cost1 = torch.zeros(n_cols, dtype=torch.float64, device=device)
    cost1[m + k : m + 2 * k] = 1.0
    cost2 = torch.zeros(n_cols, dtype=torch.float64, device=device)
    cost2[:m] = -c64
    for r, cost in ((k + 1, cost1), (k + 2, cost2)):
        T[r] = cost - cost[basis] @ T[:n_basic]
        T[r, -1] = -(cost[basis] @ T[:n_basic, -1])

    limit = 50 * n_cols * n_basic if max_iters is None else max_iters
    allowed = torch.ones(n_cols - 1, dtype=torch.bool, device=device)
    for phase_row in (k + 1, k + 2):
        if phase_row == k + 2:
            # phase 2 keeps the least violation: a column of positive phase-1 reduced cost
            # would raise it (the phase-1 row stays as it is under the pivots allowed below)
            allowed = T[k + 1, :-1] <= _COST_TOL
        for _ in range(limit):
            reduced = T[phase_row, :-1]
            candidates = (reduced < -_COST_TOL) & allowed
            # Bland: the entering column of least index, the leaving row of least basic index
            entering = torch.argmax(candidates.to(torch.int8))
            col = T[:n_basic, entering]
            ratios = torch.where(
                col > _PIVOT_TOL,
                T[:n_basic, -1] / torch.where(col > _PIVOT_TOL, col, 1.0),
                torch.inf,
            )
            least = ratios.min()
            tied = ratios <= least + _COST_TOL * (1.0 + least.abs())
            pivot = torch.argmin(torch.where(tied, basis, n_cols))
            go, bounded = torch.stack([candidates.any(), torch.isfinite(least)]).tolist()
            if not (go and bounded):
                break
            T[pivot] = T[pivot] / T[pivot, entering]
            factors = T[:, entering].clone()
            factors[pivot] = 0.0
            T -= factors.unsqueeze(1) * T[pivot]
            basis[pivot] = entering
    x = torch.zeros(n_cols, dtype=torch.float64, device=device)
    x[basis] = T[:n_basic, -1].clamp_min(0.0)
    x = x[:m]
    return x / x.sum()
