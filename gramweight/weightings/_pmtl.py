"""Pareto MTL: MGDA on the losses and the active preference constraints of one subproblem."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from .._checks import check_gramian, check_number, check_vector, format_shape, message
from ..solvers import min_norm_simplex

_PHASES = ("main", "init")
# unit preference vectors closer than this are parallel
_PARALLEL = 1e-9


def pmtl(
    G: Tensor,
    /,
    *,
    losses: Sequence[float] | Tensor,
    preferences: Sequence[Sequence[float]] | Tensor,
    index: int,
    phase: Literal["main", "init"] = "main",
    eps: float = 0.0,
    max_iters: int = 250,
) -> Tensor:
    r"""Pareto MTL (Lin et al., "Pareto Multi-Task Learning", NeurIPS 2019,
    https://arxiv.org/abs/1912.12854).

    Subproblem $k$ of $K$ preference vectors $u_1, \dots, u_K$ (rows of
    ``preferences``, normalised to unit length) keeps the losses in the cone of $u_k$:
    $\mathcal G_j = (u_j - u_k)^\top \hat\ell \le 0$ for $j \ne k$, with
    $\hat\ell = \ell / \|\ell\|$. A constraint is active when
    $\mathcal G_j > -\varepsilon$. Its gradient is $(u_j - u_k)^\top J$, so the
    gradients of the losses and of the active constraints are the rows of $C J$ with
    $C = [I;\ (u_j - u_k)^\top_{j\ \text{active}}]$, whose Gramian is $C G C^\top$.
    The paper's direction is the min-norm point of their convex hull (the dual of its QP):

    $$
    \lambda = \arg\min_{\lambda \in \Delta} \lambda^\top C G C^\top \lambda,
    \qquad w = C^\top \lambda,
    $$

    so that $w^\top J = \lambda^\top C J$: the adaptive weights
    $w_i = \lambda_i + \sum_j \beta_j (u_{j,i} - u_{k,i})$ of the paper's Section 3.4.

    ``phase="init"`` is the paper's first stage, which finds a feasible start: the min-norm
    point of the gradients of the violated constraints only ($\mathcal G_j > 0$),
    $C = [(u_j - u_k)^\top_{j\ \text{violated}}]$; once none is violated, the weights are
    exactly zero, the signal to switch to ``phase="main"``. A preference vector parallel to
    $u_k$ (unit vectors within 1e-9) gives the constant constraint $0 \le 0$ and is
    left out.

    Args:
        G: Gramian of shape (m, m).
        losses: The m loss values, positive, shape (m,).
        preferences: The K preference vectors, shape (K, m), each non-zero (any length: they
            are normalised).
        index: $k$, the row of ``preferences`` of this subproblem, in [0, K).
        phase: ``"main"`` (the constrained MGDA step) or ``"init"`` (the feasibility step).
        eps: $\varepsilon \ge 0$: constraints within ``eps`` of the boundary count as
            active in the main phase (the paper's $I_\varepsilon$, with a strict
            inequality so that ``eps=0`` keeps only the violated ones, as the official code).
        max_iters: Maximum number of active-set steps of the min-norm solver.

    Returns:
        The weights $w = C^\top\lambda$, shape (m,), with ``G``'s dtype and device;
        entries may be negative (a constraint's gradient subtracts the preferred loss's).

    Properties:
        Scale-invariant ($\lambda$ minimises a multiple of the same quadratic). Not
        permutation-equivariant for fixed ``losses`` and ``preferences``, and not
        non-conflicting (an active constraint trades losses against each other on purpose;
        with none active it is MGDA, which is).

    Deviations:
        The official code rescales the weights in its training loop (to
        $\sum_i |w_i| = m$); here $w = C^\top\lambda$ as the dual gives it, and the
        min-norm problem is solved exactly (the official code runs MGDA's Frank–Wolfe
        solver).

    Raises:
        ValueError: ``losses`` of the wrong length or not positive; ``preferences`` not of
            shape (K, m), not finite or with a zero row; ``index`` outside [0, K); unknown
            ``phase``; ``eps < 0``; ``max_iters < 1``.
        TypeError: ``preferences`` not a tensor or a sequence of sequences of numbers;
            ``index`` not an int.

    Examples:
        >>> import torch, gramweight as gw
        >>> J = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
        >>> U = [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
        >>> gw.pmtl(J @ J.T, losses=[1.0, 1.0], preferences=U, index=1)  # inside its cone
        tensor([0.5000, 0.5000], dtype=torch.float64)
        >>> gw.pmtl(J @ J.T, losses=[1.0, 3.0], preferences=U, index=1)  # u_3's violated
        tensor([0.0286, 0.1667], dtype=torch.float64)
        >>> gw.pmtl(J @ J.T, losses=[1.0, 3.0], preferences=U, index=1, phase="init")
        tensor([-0.7071,  0.2929], dtype=torch.float64)
    """
    G = check_gramian(G).detach()
    m = G.shape[-1]
    G64 = G.to(torch.float64)
    loss = check_vector(losses, "losses", length=m, positive=True, like=G64)
    U = _check_preferences(preferences, m, G64)
    check_number(index, "index", low=0, high=U.shape[0] - 1, integer=True)
    if phase not in _PHASES:
        raise ValueError(message("phase", f"one of {_PHASES}", repr(phase)))
    check_number(eps, "eps", low=0.0)
    check_number(max_iters, "max_iters", low=1, integer=True)
    U = U / U.norm(dim=1, keepdim=True)
    D = U - U[index]
    constraint = D @ (loss / loss.norm())
    # a zero row (u_j parallel to u_k, or j = k) is the constraint 0 <= 0: nothing to keep;
    # parallel unit vectors differ by round-off, far below the 1e-9 of distinct directions
    kept = D.norm(dim=1) > _PARALLEL
    if phase == "main":
        C = torch.cat(
            [torch.eye(m, dtype=torch.float64, device=G.device), D[kept & (constraint > -eps)]]
        )
    else:
        C = D[kept & (constraint > 0)]
        if C.shape[0] == 0:
            return G.new_zeros(m)
    lam = min_norm_simplex(C @ G64 @ C.T, max_iters=max_iters)
    return (C.T @ lam).to(G.dtype)


def _check_preferences(preferences: object, m: int, like: Tensor) -> Tensor:
    if isinstance(preferences, Tensor):
        if not (
            preferences.dtype.is_floating_point or preferences.dtype in (torch.int32, torch.int64)
        ):
            raise TypeError(message("preferences", "a real tensor", f"dtype {preferences.dtype}"))
        U = preferences.detach().to(dtype=like.dtype, device=like.device)
    elif isinstance(preferences, Sequence) and not isinstance(preferences, str):
        rows = list(preferences)
        if not all(
            isinstance(row, Sequence)
            and not isinstance(row, str)
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in row)
            for row in rows
        ):
            raise TypeError(
                message(
                    "preferences", "a tensor or a sequence of rows of numbers", repr(preferences)
                )
            )
        if len({len(row) for row in rows}) > 1:
            raise ValueError(
                message("preferences", f"of shape (K, {m})", "rows of unequal lengths")
            )
        U = torch.tensor(rows, dtype=like.dtype, device=like.device)
    else:
        raise TypeError(
            message(
                "preferences",
                "a tensor or a sequence of rows of numbers",
                type(preferences).__name__,
            )
        )
    if U.dim() != 2 or U.shape[0] == 0 or U.shape[1] != m:
        raise ValueError(
            message(
                "preferences", f"of shape (K, {m}) with K >= 1", f"shape {format_shape(U.shape)}"
            )
        )
    if not bool(torch.isfinite(U).all()):
        raise ValueError(message("preferences", "finite (no NaN or Inf)", "a non-finite entry"))
    if not bool((U.abs().amax(dim=1) > 0).all()):
        raise ValueError(message("preferences", "non-zero in every row", "a zero row"))
    return U
