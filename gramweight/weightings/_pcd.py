"""PCD: priority-constrained descent (one primary objective, the others constrained)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

import math
import operator

from .._checks import check_gramian, check_number, check_state, check_vector, message
from .._host import use_host
from ..solvers import min_norm_simplex, nonneg_qp
from ..solvers._box_qp import PDAS_ITERS, nonneg_qp_host

__all__ = ["PCDState", "pcd", "pcd_init"]


class PCDState(NamedTuple):
    """State of [`pcd`][gramweight.pcd].

    Attributes:
        step: Number of calls so far (0-dim ``int64``), for the bias correction.
        sq_norms: The exponential moving average $v$ of the squared gradient norms
            $G_{ii}$ (shape (m,)), before the bias correction. Unused while ``step`` is 0.
    """

    step: Tensor
    sq_norms: Tensor


def pcd_init(
    m: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> PCDState:
    """Fresh state of [`pcd`][gramweight.pcd] (no call yet: the average is zero).

    Args:
        m: Number of objectives (the primary one and ``m - 1`` secondary ones).
        dtype: dtype of the average (default: ``torch.get_default_dtype()``). The state
            returned by [`pcd`][gramweight.pcd] has the Gramian's dtype and device.
        device: device of the state (default: CPU).

    Examples:
        >>> import gramweight as gw
        >>> gw.pcd_init(3)
        PCDState(step=tensor(0), sq_norms=tensor([0., 0., 0.]))
    """
    check_number(m, "m", low=1, integer=True)
    return PCDState(
        step=torch.zeros((), dtype=torch.int64, device=device),
        sq_norms=torch.zeros(m, dtype=dtype, device=device),
    )


def pcd(
    G: Tensor,
    state: PCDState,
    /,
    *,
    tau: float | Sequence[float] | Tensor = 0.02,
    beta: float = 0.999,
    eps: float = 1e-8,
) -> tuple[Tensor, PCDState]:
    r"""PCD (Varam and AlHajri, "Not All Objectives Are Born Equal: Priority-Constrained
    Descent for Hierarchical Multi-Objective Optimization", TMLR 2026,
    https://arxiv.org/abs/2606.29521).

    Objective 0 (row and column 0 of ``G``) is the primary one. PCD follows its gradient as
    closely as possible while every secondary objective ``j`` gets at least the fraction
    $\tau_j$ of the first-order progress of a step along its own normalised gradient:

    $$
    \tilde d = \arg\min_d \tfrac12 \|d - \tilde g_0\|^2 \quad\text{s.t.}\quad
    \tilde g_j^\top d \ge \tau_j \|\tilde g_j\|^2 \quad (j = 1, \dots, m - 1),
    $$

    with $\tilde g_i = s_i g_i$, $s_i = 1 / \sqrt{\hat v_i + \epsilon}$ and
    $\hat v_i = v_i / (1 - \beta^t)$ the bias-corrected moving average of
    $\|g_i\|^2 = G_{ii}$ at call ``t`` ($v_i \leftarrow \beta v_i + (1 - \beta)
    G_{ii}$, this call's norms included). With $\tilde G = S G S$ ($S =
    \operatorname{diag}(s)$), the constrained block $A = \tilde G_{1:,1:}$, the
    multipliers $\lambda$ solve the dual box QP

    $$
    \min_{\lambda \ge 0} \tfrac12 \lambda^\top A \lambda
    + \lambda^\top (\tilde G_{1:,0} - \tau \odot \operatorname{diag} A)
    $$

    (``gramweight.solvers.nonneg_qp``), $\tilde d = \tilde g_0 + \sum_j \lambda_j
    \tilde g_j$, and the update is $\tilde d$ rescaled to the norm $\sqrt{G_{00}}$
    of the primary gradient:

    $$
    w = \frac{\sqrt{G_{00}}}{\|\tilde d\|}\, S \begin{pmatrix} 1 \\ \lambda
    \end{pmatrix}, \qquad \|\tilde d\|^2 = u^\top \tilde G u,\ u = (1, \lambda).
    $$

    Special cases (as TorchJD's): if the constraints cannot all hold (zero is in the convex
    hull of the non-zero normalised secondary gradients while $\tau > 0$; it needs
    ``m >= 3``), they are dropped and ``w = e_0`` (the update is $g_0$); if
    $\tilde d = 0$ up to the round-off of ``G`` (or $g_0 = 0$), ``w = 0``.

    Args:
        G: Gramian of shape (m, m), row and column 0 for the primary objective.
        state: From [`pcd_init`][gramweight.pcd_init] or the previous call (never modified).
        tau: The fraction $\tau \in [0, 1]$ guaranteed to each secondary objective: one
            number for all of them, or ``m - 1`` numbers, then all positive or all zero.
        beta: Decay $\beta \in [0, 1)$ of the moving average.
        eps: $\epsilon \ge 0$, added to the average before the inverse square root.

    Returns:
        ``(w, new_state)``: weights of shape (m,) and the state for the next call, both with
        ``G``'s dtype and device.

    Properties:
        Pure (state in, new state out). Not permutation-equivariant (objective 0 is the
        primary one), not non-conflicting (the primary objective may lose progress). Scaling a
        secondary row and column of ``G`` at every call leaves the update unchanged up to
        $\epsilon$; with $\epsilon$ absolute, not scale-invariant on tiny
        Gramians.

    Deviations:
        TorchJD's ``PCDWeighting`` (0.18) gives the same weights (its dual active-set solver
        and this box QP solve the same problem exactly); it keeps the average in a module
        buffer that resets itself when ``m`` changes, and returns NaN on a non-finite input,
        where this function raises. A vector ``tau`` mixing zero and positive entries is
        refused here (its infeasibility test would need a mixed simplex-and-box problem).

    Raises:
        TypeError, ValueError: a state of another kind or built for another m; ``tau``,
            ``beta`` or ``eps`` out of range.

    Examples:
        >>> import torch, gramweight as gw
        >>> G = torch.tensor([[18.0, -22.0], [-22.0, 38.0]], dtype=torch.float64)
        >>> w, state = gw.pcd(G, gw.pcd_init(2), tau=0.5)
        >>> w
        tensor([1.3578, 1.2534], dtype=torch.float64)
        >>> state
        PCDState(step=tensor(1), sq_norms=tensor([0.0180, 0.0380], dtype=torch.float64))
    """
    G = check_gramian(G).detach()
    m = G.shape[-1]
    check_state(state, PCDState, step=(), sq_norms=(m,))
    check_number(beta, "beta", low=0.0, high=1.0, high_open=True)
    check_number(eps, "eps", low=0.0)
    G64 = G.to(torch.float64)
    taus = _check_tau(tau, m, G64)
    # the host twin: the moving average, the scaled Gramian and two small QPs on the floats
    # (about 20 m² operations), against about 60 tensor operations
    if use_host(G, 20 * m * m, 60):
        result = _pcd_host(G, state, taus.tolist(), beta, eps)
        if result is not None:
            return result
    step = state.step.to(G.device) + 1
    avg = beta * state.sq_norms.to(dtype=torch.float64, device=G.device)
    avg = avg + (1.0 - beta) * G64.diagonal()
    corrected = avg / (1.0 - beta ** int(step))
    new_state = PCDState(step=step, sq_norms=avg.to(G.dtype))
    s = torch.where(corrected + eps > 0, (corrected + eps).rsqrt(), 0.0)
    Gt = s.unsqueeze(1) * G64 * s
    u = torch.zeros(m, dtype=torch.float64, device=G.device)
    u[0] = 1.0
    if m > 1:
        A = Gt[1:, 1:]
        if _feasible(A, taus, G.dtype):
            c = Gt[1:, 0] - taus * A.diagonal()
            u[1:] = nonneg_qp(A, c.unsqueeze(0))[0]
        else:
            return _unit(m, G), new_state
    sq = u @ Gt @ u
    # the round-off of ‖d̃‖² = uᵀG̃u is that of G's entries times (Σ |u_i| ‖g̃_i‖)²
    size = (u.abs() @ Gt.diagonal().sqrt()) ** 2
    factor = torch.where(
        sq > _roundoff(m, G.dtype) * size,
        G64[0, 0].sqrt() / sq.clamp_min(torch.finfo(torch.float64).tiny).sqrt(),
        0.0,
    )
    w = factor * s * u
    return w.to(G.dtype), new_state


def _roundoff(m: int, dtype: torch.dtype) -> float:
    """The relative round-off of a quadratic form of ``G``: ``100 m eps`` of its dtype (a product
    ``J Jᵀ`` accumulates it), capped at 1 % (a half-precision Gramian carries 2 to 3 digits,
    rounded once)."""
    return min(1e2 * m * torch.finfo(dtype).eps, 1e-2)


def _unit(m: int, G: Tensor) -> Tensor:
    w = torch.zeros(m, dtype=G.dtype, device=G.device)
    w[0] = 1.0
    return w


def _check_tau(tau: float | Sequence[float] | Tensor, m: int, like: Tensor) -> Tensor:
    if isinstance(tau, (int, float)) and not isinstance(tau, bool):
        check_number(tau, "tau", low=0.0, high=1.0)
        return torch.full((m - 1,), float(tau), dtype=like.dtype, device=like.device)
    taus = check_vector(tau, "tau", length=m - 1, non_negative=True, like=like)
    values = taus.tolist()
    if any(t > 1.0 for t in values):
        raise ValueError(message("tau", "in [0, 1]", f"maximum {max(values):.6g}"))
    if any(t == 0.0 for t in values) and any(t > 0.0 for t in values):
        raise ValueError(message("tau", "all positive or all zero", repr(values)))
    return taus


def _feasible(A: Tensor, taus: Tensor, dtype: torch.dtype) -> bool:
    """Whether some ``d`` has ``g̃_jᵀd >= τ_j ‖g̃_j‖²`` for every secondary ``j``.

    With ``τ = 0``, ``d = 0`` does. With ``τ > 0``, by Farkas' lemma there is none exactly when
    a convex combination of the non-zero ``g̃_j`` is zero: MGDA's min-norm point of their hull
    is zero, up to the round-off of the Gramian.
    """
    if not bool((taus > 0).any()):
        return True
    diag = A.diagonal()
    top = float(diag.max())
    if top == 0.0:
        return True  # every secondary gradient is zero: the constraints are 0 >= 0
    keep = (diag > _roundoff(1, dtype) * top).nonzero().squeeze(1)
    if keep.numel() == 1:
        return True  # one constraint: d = τ g̃_j satisfies it
    B = A[keep][:, keep] / top
    lam = min_norm_simplex(B)
    return bool(lam @ B @ lam > _roundoff(B.shape[0], dtype))


def _pcd_host(
    G: Tensor, state: PCDState, taus: list[float], beta: float, eps: float
) -> tuple[Tensor, PCDState] | None:
    """The host twin of [`pcd`][gramweight.pcd] (the same steps on Python floats, float64). None
    when a QP needs the batched solver's fallback: the caller then runs the tensor path."""
    m = G.shape[-1]
    rows = G.tolist()
    step = int(state.step) + 1
    avg = [beta * v + (1.0 - beta) * rows[i][i] for i, v in enumerate(state.sq_norms.tolist())]
    bias = 1.0 - beta**step
    s = [1.0 / math.sqrt(a / bias + eps) if a / bias + eps > 0 else 0.0 for a in avg]
    Gt = [[si * g * sj for g, sj in zip(row, s)] for row, si in zip(rows, s)]
    new_state = PCDState(
        step=state.step + 1, sq_norms=torch.tensor(avg, dtype=torch.float64).to(G.dtype)
    )
    u = [1.0] + [0.0] * (m - 1)
    if m > 1:
        A = [row[1:] for row in Gt[1:]]
        feasible = _feasible_host(A, taus, G.dtype)
        if feasible is None:
            return None
        if not feasible:
            return _unit(m, G), new_state
        c = [Gt[j + 1][0] - t * A[j][j] for j, t in enumerate(taus)]
        X = nonneg_qp_host(A, [c], simplex=False, rtol=0.0, iters=PDAS_ITERS, definite=False)
        if X is None:
            return None
        u[1:] = X[0]
    sq = math.fsum(ui * math.fsum(map(operator.mul, row, u)) for ui, row in zip(u, Gt))
    size = math.fsum(abs(ui) * math.sqrt(max(Gt[i][i], 0.0)) for i, ui in enumerate(u)) ** 2
    factor = math.sqrt(max(rows[0][0], 0.0) / sq) if sq > _roundoff(m, G.dtype) * size else 0.0
    w = [factor * si * ui for si, ui in zip(s, u)]
    return torch.tensor(w, dtype=torch.float64).to(G.dtype), new_state


def _feasible_host(A: list[list[float]], taus: list[float], dtype: torch.dtype) -> bool | None:
    """The host twin of `_feasible` (None: its min-norm QP needs the batched solver)."""
    if not any(t > 0 for t in taus):
        return True
    top = max(A[j][j] for j in range(len(A)))
    if top == 0.0:
        return True
    keep = [j for j in range(len(A)) if A[j][j] > _roundoff(1, dtype) * top]
    if len(keep) == 1:
        return True
    B = [[A[i][j] / top for j in keep] for i in keep]
    X = nonneg_qp_host(
        B, [[0.0] * len(keep)], simplex=True, rtol=0.0, iters=PDAS_ITERS, definite=False
    )
    if X is None:
        return None
    lam = X[0]
    value = math.fsum(li * math.fsum(map(operator.mul, row, lam)) for li, row in zip(lam, B))
    return value > _roundoff(len(keep), dtype)
