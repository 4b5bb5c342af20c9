"""The projection onto the dual cone of the gradients (UPGrad, DualProj): for each row ``u``
of ``U``, ``min vᵀĜv`` over ``v >= u``, whose ``Jᵀv`` is the projection of ``Jᵀu`` onto
``{x : J x >= 0}``.
"""

from __future__ import annotations

import math
import operator

import torch
from torch import Tensor

from .._host import use_host
from ._box_qp import PDAS_ITERS, nonneg_qp, nonneg_qp_host, qp_host_cost

__all__ = ["dual_cone_weights"]


def dual_cone_weights(G: Tensor, U: Tensor, *, norm_eps: float, reg_eps: float) -> Tensor:
    """Weights of the projections of the combinations ``uᵀJ`` onto the dual cone of ``J``'s rows.

    For each row ``u`` of ``U``, the projection of ``Jᵀu`` onto ``{x : J x >= 0}`` is ``Jᵀv``
    where ``v`` minimises ``vᵀ Ĝ v`` subject to ``v >= u`` (Jacobian descent paper, Prop. 1).
    ``Ĝ = G / tr(G) + reg_eps · I`` (``Ĝ = reg_eps · I`` when ``tr(G) < norm_eps``). Written as
    ``v = u + x``, this is `nonneg_qp` with ``c = Ĝ u``.

    Args:
        G: Gramian (m, m), of any float dtype (the computation runs in float64).
        U: Rows to project, (b, m), float64.

    Returns:
        ``V`` of shape (b, m), float64, with ``V >= U``.
    """
    m = G.shape[-1]
    # With reg_eps >= 1e-8 the (trace-normalised) problem has condition number <= 1e8.
    definite = reg_eps >= 1e-8
    if use_host(G, *qp_host_cost(U.shape[0], m)):
        V = _dual_cone_host(G.tolist(), U.tolist(), norm_eps, reg_eps, definite)
        if V is not None:
            return torch.tensor(V, dtype=U.dtype)
        # (the host steps cycled: nonneg_qp below tries them once more before its batched
        # steps, a rare case at sizes where that costs little)
    G = G.to(U.dtype)
    # A = Ĝ equilibrated, directly: with Gr = G + reg_eps·tr(G)·I (or reg_eps·I), A is
    # Gr_ij / sqrt(Gr_ii Gr_jj) and the scaling S = sqrt(tr) / sqrt(Gr_ii)
    trace = float(G.diagonal().sum())
    if trace > 0 and trace >= norm_eps:
        Gr = G + (reg_eps * trace) * torch.eye(m, dtype=G.dtype, device=G.device)
    else:
        Gr, trace = reg_eps * torch.eye(m, dtype=G.dtype, device=G.device), 1.0
    d = Gr.diagonal()
    if reg_eps * trace > 1e-150:
        r = d.rsqrt()  # (every d >= reg_eps · trace > 0, far from underflow)
    else:
        r = torch.where(d > 0, d.clamp_min(torch.finfo(G.dtype).tiny).rsqrt(), 1.0)
    A = r.unsqueeze(1) * Gr * r
    # c = S Ĝ u = (u / r) A / sqrt(tr)
    C = (U / r) @ A if trace == 1.0 else ((U / r) @ A) / math.sqrt(trace)
    return U + nonneg_qp(A, C, definite=definite, scaling=r * math.sqrt(trace))


def _dual_cone_host(
    G: list[list[float]], U: list[list[float]], norm_eps: float, reg_eps: float, definite: bool
) -> list[list[float]] | None:
    """The host twin of `dual_cone_weights` (None: see `nonneg_qp_host`), with the
    problem equilibrated directly as in the batched path."""
    m = len(G)
    trace = sum(G[i][i] for i in range(m))
    if trace > 0.0 and trace >= norm_eps:
        shift = reg_eps * trace
    else:
        G, shift, trace = [[0.0] * m for _ in range(m)], reg_eps, 1.0
    d = [G[i][i] + shift for i in range(m)]
    r = [1.0 / math.sqrt(di) if di > 0.0 else 1.0 for di in d]
    A = [[ri * g * rj for g, rj in zip(row, r)] for row, ri in zip(G, r)]
    for i in range(m):
        A[i][i] = d[i] * r[i] * r[i]
    root = math.sqrt(trace)
    # c = S Ĝ u = (u / r) A / sqrt(tr), with S = sqrt(tr) r
    C = [
        [sum(map(operator.mul, v, row)) / root for row in A]
        for v in ([ui / ri for ui, ri in zip(u, r)] for u in U)
    ]
    X = nonneg_qp_host(
        A, C, simplex=False, rtol=0.0, iters=PDAS_ITERS, definite=definite,
        scaling=[ri * root for ri in r],
    )
    if X is None:
        return None
    return [[ui + xi for ui, xi in zip(u, x)] for u, x in zip(U, X)]
