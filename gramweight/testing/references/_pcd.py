"""Reference of PCD: the primal QP on the normalised gradients, by enumerating active sets."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ._framework import register_reference


@register_reference("pcd")
def pcd_reference(
    J: Tensor,
    state: Any,
    /,
    *,
    tau: float | Sequence[float] | Tensor = 0.02,
    beta: float = 0.999,
    eps: float = 1e-8,
) -> tuple[Tensor, Any]:
    """Varam and AlHajri (TMLR 2026), on the gradient vectors, as the paper's Appendix B.2
    enumerates working sets.

    The moving average ``v ← β v + (1 - β) ‖g_i‖²``, bias-corrected by ``1 - β^t``, gives the
    normalised gradients ``g̃_i = g_i / sqrt(v̂_i + ε)``. Every subset ``W`` of the secondary
    constraints is tried as the set of active ones: ``d = g̃_0 + Σ_{j∈W} λ_j g̃_j`` with
    ``g̃_kᵀd = τ_k ‖g̃_k‖²`` on ``W`` (least squares by ``torch.linalg.lstsq``); a subset whose
    ``λ >= 0`` and whose ``d`` satisfies every constraint is a KKT point of the strictly convex
    problem, hence its solution. With no such subset the constraints are infeasible and the
    update is ``g_0``; otherwise it is ``d`` rescaled to ``‖g_0‖`` (zero when ``d`` is zero
    to a relative ``1e-6`` of the gradients' size).
    """
    J64 = J.double().cpu()
    m = J.shape[0]
    step = state.step + 1
    avg = beta * state.sq_norms.double().cpu() + (1 - beta) * (J64 * J64).sum(dim=1)
    v_hat = avg / (1 - beta ** int(step))
    new_state = type(state)(step=step, sq_norms=avg)
    scaled = J64 / torch.sqrt(v_hat + eps).clamp_min(1e-300).unsqueeze(1)
    scaled = torch.where((v_hat + eps > 0).unsqueeze(1), scaled, 0.0)
    taus = torch.as_tensor(tau, dtype=torch.float64).expand(m - 1) if m > 1 else None
    g0, rest = scaled[0], scaled[1:]
    size = float(scaled.norm(dim=1).max()) if m > 0 else 0.0
    tol = 1e-7 * max(size, 1e-300) ** 2
    best: Tensor | None = g0 if m == 1 else None
    for r in range(m):  # subsets of size 0 .. m-1 of the secondary objectives
        if m == 1 or best is not None:
            break
        for W in itertools.combinations(range(m - 1), r):
            idx = list(W)
            if idx:
                GW = rest[idx]
                rhs = taus[idx] * (GW * GW).sum(dim=1) - GW @ g0
                lam = torch.linalg.lstsq(GW @ GW.T, rhs.unsqueeze(1), driver="gelsd")
                lam = lam.solution.squeeze(1)
                d = g0 + GW.T @ lam
                if float(lam.min()) < -1e-7 * max(1.0, float(lam.abs().max())):
                    continue
            else:
                d = g0
            slack = rest @ d - taus * (rest * rest).sum(dim=1)
            if float(slack.min()) >= -tol:
                best = d
                break
    if best is None:
        return J64[0].clone(), new_state
    norm = float(best.norm())
    if norm <= 1e-6 * max(size, 1e-300) or float(J64[0].norm()) == 0.0:
        return torch.zeros(J.shape[1], dtype=torch.float64), new_state
    return best * (float(J64[0].norm()) / norm), new_state
