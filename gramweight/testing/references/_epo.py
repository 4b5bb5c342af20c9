"""Reference of EPO search: the paper's LP on the gradients' inner products, by enumeration."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ._framework import register_reference


@register_reference("epo")
def epo_reference(
    J: Tensor,
    /,
    *,
    losses: Sequence[float] | Tensor,
    preference: Sequence[float] | Tensor,
    eps: float = 1e-4,
) -> Tensor:
    """EPO's direction ``βᵀJ``, ``β`` the solution of the paper's LP on ``C = [g_i · g_j]``.

    Relative losses ``r ⊙ ℓ / rᵀℓ``, non-uniformity ``μ`` (their KL divergence from the
    uniform), adjustment ``a = r ⊙ (log(m ℓ̂) - μ)``; balance mode when ``μ > eps``, descent otherwise
    (the sets ``J`` and ``J*`` as in the paper, with exact signs). The LP is solved by
    enumerating the vertices of its polytope in ``(β, t)``, ``t`` the violation of each
    constraint: least total violation first (zero when feasible), then the best objective.
    Exponential in ``m``: for a handful of tasks.
    """
    J = J.double().cpu()
    m = J.shape[0]
    C = torch.tensor([[float(gi @ gj) for gj in J] for gi in J], dtype=torch.float64)
    loss = [float(x) for x in losses]
    r = [float(x) for x in preference]
    rl = [ri * li for ri, li in zip(r, loss)]
    rel = [x / sum(rl) for x in rl]
    mu = sum(p * math.log(m * p) for p in rel)
    a = torch.tensor([ri * (math.log(m * p) - mu) for ri, p in zip(r, rel)], dtype=torch.float64)
    Ca = C @ a
    if mu > eps:
        objective = Ca
        rising = [j for j in range(m) if Ca[j] > 0]
        worst = [j for j in range(m) if rl[j] == max(rl)]
        if rising:
            rows = [j for j in range(m) if j not in rising or j in worst]
            rhs = [0.0 if j in worst else float(Ca[j]) for j in rows]
        else:
            rows, rhs = list(range(m)), [0.0] * m
    else:
        objective = C.sum(dim=1)
        rows, rhs = list(range(m)), [0.0] * m
    beta = _elastic_lp(objective, C[rows].clone(), torch.tensor(rhs, dtype=torch.float64))
    return beta @ J


def _elastic_lp(c: Tensor, A: Tensor, b: Tensor) -> Tensor:
    """``β`` on the simplex: least ``Σ_j max(0, b_j - A_j β) / s_j`` (``s_j`` the largest
    entry of row ``j`` and ``b_j``), then greatest ``cᵀβ``, over the vertices."""
    m, k = c.shape[0], A.shape[0]
    # each row at a largest entry of 1 (the same inequality; the violations count per row)
    for j in range(k):
        top = max([abs(float(x)) for x in A[j]] + [abs(float(b[j]))])
        if top > 0:
            A[j], b[j] = A[j] / top, b[j] / top
    # inequalities on z = (β, t): β >= 0, t >= 0, Aβ + t >= b; and Σβ = 1
    M = torch.cat(
        [
            torch.cat([torch.eye(m), torch.zeros(m, k)], 1),
            torch.cat([torch.zeros(k, m), torch.eye(k)], 1),
            torch.cat([A, torch.eye(k)], 1),
        ]
    ).double()
    rhs = torch.cat([torch.zeros(m + k, dtype=torch.float64), b])
    eq = torch.cat([torch.ones(m), torch.zeros(k)]).double()
    vertices = []
    for S in itertools.combinations(range(M.shape[0]), m + k - 1):
        system = torch.cat([eq.unsqueeze(0), M[list(S)]])
        if abs(float(torch.linalg.det(system))) < 1e-12:
            continue
        z = torch.linalg.solve(
            system, torch.cat([torch.ones(1, dtype=torch.float64), rhs[list(S)]])
        )
        if bool((M @ z >= rhs - 1e-10).all()):
            vertices.append((float(z[m:].sum()), float(c @ z[:m]), z[:m]))
    least = min(v for v, _, _ in vertices)
    best = max(o for v, o, _ in vertices if v <= least + 1e-9)
    # ties relative to the objective's own scale (dot products of gradients of any size)
    scale = max(abs(o) for _, o, _ in vertices) or 1.0
    return next(z for v, o, z in vertices if v <= least + 1e-9 and o >= best - 1e-9 * scale)
