"""MoDo: multi-objective gradient with double sampling."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .._checks import check_matrix, check_number, check_state
from .._host import matvec, use_host
from ..solvers import project_simplex, project_simplex_host, to_work_dtype

__all__ = ["MoDoState", "modo", "modo_init"]


class MoDoState(NamedTuple):
    r"""State of [`modo`][gramweight.modo].

    Attributes:
        weights: The current task weights $\lambda_t$ on the simplex, shape (m,).
    """

    weights: Tensor


def modo_init(
    m: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> MoDoState:
    """Fresh state of [`modo`][gramweight.modo]: uniform weights 1/m.

    Examples:
        >>> import gramweight as gw
        >>> gw.modo_init(4)
        MoDoState(weights=tensor([0.2500, 0.2500, 0.2500, 0.2500]))
    """
    check_number(m, "m", low=1, integer=True)
    return MoDoState(torch.full((m,), 1.0 / m, dtype=dtype, device=device))


def modo(
    M: Tensor, state: MoDoState, /, *, gamma: float = 0.1, rho: float = 0.1
) -> tuple[Tensor, MoDoState]:
    r"""MoDo (Chen, Fernando, Ying and Chen, JMLR 2024,
    https://www.jmlr.org/papers/volume25/23-1287/23-1287.pdf).

    "Three-way trade-off in multi-objective learning": one projected stochastic gradient step
    on the task weights of the min-norm problem, with two independent batches so that the
    product of gradients is an unbiased estimate,

    $$
    \lambda_{t+1} = \Pi_\Delta\!\left(\lambda_t - \gamma\,(M + \rho I)\,\lambda_t\right),
    \qquad M = J_1 J_2^\top ,
    $$

    where $J_1, J_2$ are the Jacobians of the ``m`` losses on two independent batches and
    $\Pi_\Delta$ the Euclidean projection onto the simplex. The update is
    $\lambda_{t+1}^\top J_3$ (a third batch, or the mean of the two).

    ``M`` is a general square matrix (not symmetric): the off-diagonal block of the Gramian of
    the ``2m`` stacked losses of both batches (see the docs, "cross matrix"). Passing a Gramian
    ``J J^T`` of one batch runs the method but loses its convergence guarantee.

    Properties: not scale-invariant (``gamma`` and ``rho`` are absolute);
    permutation-equivariant.

    Args:
        M: Cross matrix $J_1 J_2^\top$ (m, m).
        state: From [`modo_init`][gramweight.modo_init] or a previous call.
        gamma: Step size of the weight update (> 0).
        rho: $\ell_2$ regularisation of the weights (>= 0).

    Returns:
        ``(w, new_state)``: $\lambda_{t+1}$ (with ``M``'s dtype and device) and the new
        state holding it, not differentiable (``M`` is detached).

    Examples:
        >>> import torch, gramweight as gw
        >>> M = torch.tensor([[18.0, -22.0], [-22.0, 38.0]])
        >>> w, state = gw.modo(M, gw.modo_init(2), gamma=0.01)
        >>> w
        tensor([0.5500, 0.4500])
    """
    M = check_matrix(M, "M").detach()  # the state must not keep an autograd graph alive
    m = M.shape[-1]
    check_state(state, MoDoState, weights=(m,))
    check_number(gamma, "gamma", low=0.0, low_open=True)
    check_number(rho, "rho", low=0.0)
    # the host twin: a product and a projection on the floats (about 3m² + 10m operations),
    # against about 14 tensor operations
    if use_host(M, 3 * m * m + 10 * m, 14):
        return _modo_host(M, state, gamma, rho)
    # In M's precision (float32 or float64): one fused lam (1 - gamma rho) - gamma M lam
    Mw = to_work_dtype(M)
    lam = state.weights.to(dtype=Mw.dtype, device=M.device)
    lam = project_simplex(torch.addmv(lam, Mw, lam, beta=1.0 - gamma * rho, alpha=-gamma))
    w = lam.to(M.dtype)
    return w, MoDoState(w.clone())


def _modo_host(
    M: Tensor, state: MoDoState, gamma: float, rho: float
) -> tuple[Tensor, MoDoState]:
    """The host twin of [`modo`][gramweight.modo]'s step (the same step on Python floats,
    float64)."""
    lam = state.weights.tolist()
    M_lam = matvec(M.tolist(), lam)
    new = project_simplex_host([x - gamma * (y + rho * x) for x, y in zip(lam, M_lam)])
    return torch.tensor(new, dtype=M.dtype), MoDoState(torch.tensor(new, dtype=M.dtype))
