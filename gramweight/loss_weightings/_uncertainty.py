"""Uncertainty weighting: learned log-variances, with their explicit gradient step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .._checks import check_number, check_state
from ._common import check_losses


class UncertaintyState(NamedTuple):
    """State of [`uncertainty`][gramweight.loss_weightings.uncertainty]: the log-variances $s$ (m,)
    and the call counter."""

    log_var: Tensor
    step: Tensor


def uncertainty_init(
    m: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> UncertaintyState:
    """A fresh state: $s = 0$ (every weight 1).

    Examples:
        >>> import gramweight as gw
        >>> gw.loss_weightings.uncertainty_init(2)
        UncertaintyState(log_var=tensor([0., 0.]), step=tensor(0))
    """
    check_number(m, "m", low=1, integer=True)
    dtype = torch.get_default_dtype() if dtype is None else dtype
    return UncertaintyState(
        torch.zeros(m, dtype=dtype, device=device), torch.zeros((), dtype=torch.long, device=device)
    )


def uncertainty(
    losses: Sequence[float] | Tensor, state: UncertaintyState, /, *, lr: float = 0.01
) -> tuple[Tensor, UncertaintyState]:
    r"""Uncertainty weighting (Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty
    to Weigh Losses for Scene Geometry and Semantics", CVPR 2018,
    https://arxiv.org/abs/1705.07115).

    Each task has a learned log-variance $s_i$, and the total loss is
    $\sum_i e^{-s_i} \ell_i + s_i$, so that the weights on the losses are

    $$
    D_i = e^{-s_i},
    $$

    and $s$ takes one explicit gradient step on that total,
    $s \leftarrow s - \text{lr}\,(1 - e^{-s} \odot \ell)$ (its fixed point is
    $s = \log \ell$, $D = 1/\ell$). The weights returned are those of the current
    $s$, before the step, the point at which the network's gradient is taken too.

    Deviations:
        The paper's regression likelihood has $\tfrac12$ on both terms (a factor the
        learning rate absorbs: the fixed point is the same); the total without it is the
        common form of the implementations (LibMTL's, with $\tfrac12$, gives weights
        $\tfrac12 e^{-s}$). The paper learns $s$ with the network's optimiser;
        here the step is plain gradient descent, explicit in the state (to use another
        optimiser, keep $s$ yourself and take ``exp(-s)`` as the weights).

    Args:
        losses: The m loss values, shape (m,) (any sign).
        state: From [`uncertainty_init`][gramweight.loss_weightings.uncertainty_init] (or the
            previous call).
        lr: The step size of $s$, >= 0 (0 keeps $s$).

    Returns:
        ``(D, new_state)``: the weights (m,) with the losses' dtype and device, and the
        state after the step.

    Raises:
        ValueError: ``losses`` empty or not finite; ``lr < 0``; a state for another m.
        TypeError: ``state`` not an
            [`UncertaintyState`][gramweight.loss_weightings.UncertaintyState].

    Examples:
        >>> import torch, gramweight as gw
        >>> state = gw.loss_weightings.uncertainty_init(2)
        >>> D, state = gw.loss_weightings.uncertainty(torch.tensor([0.5, 2.0]), state, lr=0.1)
        >>> D, state.log_var
        (tensor([1., 1.]), tensor([-0.0500,  0.1000]))
    """
    loss, dtype, device = check_losses(losses, positive=False)
    m = loss.shape[0]
    check_state(state, UncertaintyState, log_var=(m,), step=())
    check_number(lr, "lr", low=0.0)
    s = state.log_var.detach().to(torch.float64)
    D = torch.exp(-s)
    s_new = s - lr * (1.0 - D * loss.to(s.device))
    new_state = UncertaintyState(s_new.to(state.log_var.dtype), state.step + 1)
    return D.to(dtype=dtype, device=device), new_state
