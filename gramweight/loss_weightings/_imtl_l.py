"""IMTL-L: learned loss scales, with their explicit gradient step."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .._checks import check_number, check_state
from ._common import check_losses


class IMTLLState(NamedTuple):
    """State of [`imtl_l`][gramweight.loss_weightings.imtl_l]: the log-scales $s$ (m,) and the call
    counter."""

    log_scale: Tensor
    step: Tensor


def imtl_l_init(
    m: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> IMTLLState:
    """A fresh state: $s = 0$ (every scale 1).

    Examples:
        >>> import gramweight as gw
        >>> gw.loss_weightings.imtl_l_init(2)
        IMTLLState(log_scale=tensor([0., 0.]), step=tensor(0))
    """
    check_number(m, "m", low=1, integer=True)
    dtype = torch.get_default_dtype() if dtype is None else dtype
    return IMTLLState(
        torch.zeros(m, dtype=dtype, device=device), torch.zeros((), dtype=torch.long, device=device)
    )


def imtl_l(
    losses: Sequence[float] | Tensor, state: IMTLLState, /, *, lr: float = 0.01
) -> tuple[Tensor, IMTLLState]:
    r"""IMTL-L, the loss balance of IMTL (Liu et al., "Towards Impartial Multi-task
    Learning", ICLR 2021, https://openreview.net/forum?id=IMPnRXEWpvr).

    Each task's loss is scaled by a learned $e^{s_i}$, with the total
    $\sum_i e^{s_i} \ell_i - s_i$ (the $-s_i$ keeps the scales from collapsing),
    so that the weights on the losses are

    $$
    D_i = e^{s_i},
    $$

    and $s$ takes one explicit gradient step on that total,
    $s \leftarrow s - \text{lr}\,(e^{s} \odot \ell - 1)$ (its fixed point is
    $s = -\log \ell$: every scaled loss equal to 1). The weights returned are those of
    the current $s$, before the step.

    Deviations:
        The paper learns $s$ with the network's optimiser; here the step is plain
        gradient descent, explicit in the state. IMTL's gradient balance is ``imtl_g``
        (combine them with [`compose`][gramweight.loss_weightings.compose], as the paper's full IMTL
        does).

    Args:
        losses: The m loss values, shape (m,) (any sign).
        state: From [`imtl_l_init`][gramweight.loss_weightings.imtl_l_init] (or the previous call).
        lr: The step size of $s$, >= 0.

    Returns:
        ``(D, new_state)``: the weights (m,) with the losses' dtype and device, and the
        state after the step.

    Raises:
        ValueError: ``losses`` empty or not finite; ``lr < 0``; a state for another m.
        TypeError: ``state`` not an [`IMTLLState`][gramweight.loss_weightings.IMTLLState].

    Examples:
        >>> import torch, gramweight as gw
        >>> state = gw.loss_weightings.imtl_l_init(2)
        >>> D, state = gw.loss_weightings.imtl_l(torch.tensor([0.5, 2.0]), state, lr=0.1)
        >>> D, state.log_scale
        (tensor([1., 1.]), tensor([ 0.0500, -0.1000]))
    """
    loss, dtype, device = check_losses(losses, positive=False)
    m = loss.shape[0]
    check_state(state, IMTLLState, log_scale=(m,), step=())
    check_number(lr, "lr", low=0.0)
    s = state.log_scale.detach().to(torch.float64)
    D = torch.exp(s)
    s_new = s - lr * (D * loss.to(s.device) - 1.0)
    new_state = IMTLLState(s_new.to(state.log_scale.dtype), state.step + 1)
    return D.to(dtype=dtype, device=device), new_state
