"""SDMGrad: stochastic direction-oriented multi-objective gradient descent."""

from __future__ import annotations

import math

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .._checks import check_matrix, check_number, check_state, check_vector
from .._host import matvec, use_host
from ..solvers import project_simplex, project_simplex_host

__all__ = ["SDMGradState", "sdmgrad", "sdmgrad_init"]


class SDMGradState(NamedTuple):
    """State of [`sdmgrad`][gramweight.sdmgrad].

    Attributes:
        weights: The inner solver's weights $w$ on the simplex, shape (m,), warm start of
            the next call.
    """

    weights: Tensor


def sdmgrad_init(
    m: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> SDMGradState:
    """Fresh state of [`sdmgrad`][gramweight.sdmgrad]: uniform weights 1/m.

    Examples:
        >>> import gramweight as gw
        >>> gw.sdmgrad_init(2)
        SDMGradState(weights=tensor([0.5000, 0.5000]))
    """
    check_number(m, "m", low=1, integer=True)
    return SDMGradState(torch.full((m,), 1.0 / m, dtype=dtype, device=device))


def sdmgrad(
    M: Tensor,
    state: SDMGradState,
    /,
    *,
    lr: float = 10.0,
    momentum: float = 0.5,
    n_iters: int = 20,
    lambda_: float = 0.3,
    pref: Sequence[float] | Tensor | None = None,
) -> tuple[Tensor, SDMGradState]:
    r"""SDMGrad (Xiao, Ban and Ji, NeurIPS 2023, https://arxiv.org/abs/2305.18409).

    "Direction-oriented multi-objective learning": the weights solve, by projected stochastic
    gradient descent warm-started from the state,

    $$
    \min_{w \in \Delta} \tfrac12 \|J^\top (w + \lambda \tilde w)\|^2, \qquad
    w \leftarrow \Pi_\Delta\!\left(w - \eta\, v\right),\quad
    v \leftarrow \mu v + \hat M (w + \lambda \tilde w),
    $$

    with $\hat M = M / (s^2 + 10^{-8})$, $M = J_1 J_2^\top$ the cross matrix of two
    independent batches, $s$ the mean of $\sqrt{\max(M_{ii}, 0)}$ (the gradient
    scale normalisation of the official code and LibMTL), ``n_iters`` steps, $v$ starting
    at 0 each call. The result is $(w + \lambda \tilde w) / (1 + \lambda)$, which pulls
    the update towards the preference direction $\tilde w^\top J$ (the mean gradient by
    default). The update is that vector of weights times $J_3$ (a third batch).

    Properties: scale-invariant for Gramians well above $10^{-8}$ (the normalisation);
    permutation-equivariant when ``pref`` is permuted along.

    Deviations from TorchJD: a state built for another m is an error, never a silent reset.

    Args:
        M: Cross matrix $J_1 J_2^\top$ (m, m) (a Gramian also works).
        state: From [`sdmgrad_init`][gramweight.sdmgrad_init] or a previous call.
        lr: Step size $\eta$ of the inner solver (> 0).
        momentum: Momentum $\mu$ of the inner solver, in [0, 1).
        n_iters: Number of inner steps (>= 1).
        lambda_: Pull $\lambda$ towards the preference direction (>= 0).
        pref: Preference weights $\tilde w$ (m non-negative numbers); default 1/m each.

    Returns:
        ``(w, new_state)``: the weights (with ``M``'s dtype and device) and the new state, not
        differentiable (``M`` is detached).

    Examples:
        >>> import torch, gramweight as gw
        >>> M = torch.tensor([[18.0, -22.0], [-22.0, 38.0]])
        >>> w, state = gw.sdmgrad(M, gw.sdmgrad_init(2))
        >>> w
        tensor([0.1154, 0.8846])
    """
    M = check_matrix(M, "M").detach()  # the state must not keep an autograd graph alive
    m = M.shape[-1]
    check_state(state, SDMGradState, weights=(m,))
    check_number(lr, "lr", low=0.0, low_open=True)
    check_number(momentum, "momentum", low=0.0, high=1.0, high_open=True)
    check_number(n_iters, "n_iters", low=1, integer=True)
    check_number(lambda_, "lambda_", low=0.0)
    if pref is None:
        w_tilde = torch.full((m,), 1.0 / m, dtype=torch.float64, device=M.device)
    else:
        w_tilde = check_vector(pref, "pref", length=m, non_negative=True).to(
            dtype=torch.float64, device=M.device
        )
    # the host twin: per step a product and a projection on the floats (about 2m² + 15m
    # operations), against about 16 tensor operations
    if use_host(M, 2 * m * m + 15 * m, 16):
        return _sdmgrad_host(M, state, w_tilde.tolist(), lr, momentum, n_iters, lambda_)
    # Everything in float64: the projected steps switch faces, and float32 products moved a
    # switch enough to leave the weights 0.3 % off float64's on a well-conditioned 6 x 6 input
    # (tests/property/test_precision.py with GRAMWEIGHT_NO_HOST=1)
    Mw = M.to(torch.float64)
    scale = Mw.diagonal().clamp(min=0.0).sqrt().mean()
    inv_scale2 = 1.0 / (scale * scale + 1e-8)
    w = state.weights.to(dtype=torch.float64, device=M.device)
    velocity = torch.zeros_like(w)
    # M̂ (w + λ w̃) = M̂ w + λ M̂ w̃, the second term fixed over the iterations
    pull = (Mw @ w_tilde).mul_(lambda_ * inv_scale2)
    for _ in range(n_iters):
        grad = (Mw @ w).mul_(inv_scale2).add_(pull)
        velocity = grad.add_(velocity, alpha=momentum)
        w = project_simplex(w - lr * velocity)
    out = ((w + lambda_ * w_tilde) / (1.0 + lambda_)).to(M.dtype)
    return out, SDMGradState(w.to(M.dtype))


def _sdmgrad_host(
    M: Tensor,
    state: SDMGradState,
    w_tilde: list[float],
    lr: float,
    momentum: float,
    n_iters: int,
    lambda_: float,
) -> tuple[Tensor, SDMGradState]:
    """The host twin of [`sdmgrad`][gramweight.sdmgrad] (the same steps on Python floats,
    float64)."""
    rows = M.tolist()
    m = len(rows)
    scale = math.fsum(math.sqrt(max(rows[i][i], 0.0)) for i in range(m)) / m
    inv_scale2 = 1.0 / (scale * scale + 1e-8)
    w = state.weights.tolist()
    velocity = [0.0] * m
    for _ in range(n_iters):
        grad = matvec(rows, [x + lambda_ * t for x, t in zip(w, w_tilde)])
        velocity = [momentum * v + g * inv_scale2 for v, g in zip(velocity, grad)]
        w = project_simplex_host([x - lr * v for x, v in zip(w, velocity)])
    out = [(x + lambda_ * t) / (1.0 + lambda_) for x, t in zip(w, w_tilde)]
    return torch.tensor(out, dtype=M.dtype), SDMGradState(torch.tensor(w, dtype=M.dtype))
