"""DWA: weights from the rate at which each loss fell over the last two epochs."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .._checks import check_number, check_state
from ._common import check_losses


class DWAState(NamedTuple):
    """State of [`dwa`][gramweight.loss_weightings.dwa]: the last two epochs' losses (2, m), newest
    first, and the number of epochs recorded."""

    history: Tensor
    step: Tensor


def dwa_init(
    m: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> DWAState:
    """A fresh state: no epoch recorded.

    Examples:
        >>> import gramweight as gw
        >>> gw.loss_weightings.dwa_init(2)
        DWAState(history=tensor([[1., 1.],
                [1., 1.]]), step=tensor(0))
    """
    check_number(m, "m", low=1, integer=True)
    dtype = torch.get_default_dtype() if dtype is None else dtype
    return DWAState(
        torch.ones(2, m, dtype=dtype, device=device),
        torch.zeros((), dtype=torch.long, device=device),
    )


def dwa(
    losses: Sequence[float] | Tensor, state: DWAState, /, *, temperature: float = 2.0
) -> tuple[Tensor, DWAState]:
    r"""Dynamic Weight Average (Liu, Johns & Davison, "End-to-End Multi-Task Learning with
    Attention", CVPR 2019, https://arxiv.org/abs/1803.10704).

    Called once per epoch with that epoch's (average) losses, it returns the weights of the
    next epoch:

    $$
    D_i(t) = m\, \operatorname{softmax}\big(r(t-1) / T\big)_i, \qquad
    r_i(t-1) = \ell_i(t-1) / \ell_i(t-2),
    $$

    from the two newest epochs recorded; with fewer than two recorded, $D = 1$ (the
    paper's first two epochs). Use $D = 1$ for the first epoch, before any call.

    Args:
        losses: The m losses of the epoch just finished, positive, shape (m,).
        state: From [`dwa_init`][gramweight.loss_weightings.dwa_init] (or the previous call).
        temperature: $T > 0$ (the paper's 2).

    Returns:
        ``(D, new_state)``: the weights of the next epoch (m,), summing to m, with the losses'
        dtype and device, and the state with this epoch recorded.

    Raises:
        ValueError: ``losses`` empty, not finite or not positive; ``temperature <= 0``; a
            state for another m.
        TypeError: ``state`` not a [`DWAState`][gramweight.loss_weightings.DWAState].

    Examples:
        >>> import torch, gramweight as gw
        >>> state = gw.loss_weightings.dwa_init(2)
        >>> D, state = gw.loss_weightings.dwa(torch.tensor([1.0, 1.0]), state)
        >>> D, state = gw.loss_weightings.dwa(torch.tensor([0.5, 1.0]), state)  # task 1 fell
        >>> D
        tensor([0.8756, 1.1244])
    """
    loss, dtype, device = check_losses(losses)
    m = loss.shape[0]
    check_state(state, DWAState, history=(2, m), step=())
    check_number(temperature, "temperature", low=0.0, low_open=True)
    history = torch.stack([loss.to(state.history.device), state.history[0].detach().double()])
    step = state.step + 1
    ratio = history[0] / history[1]
    D = torch.where(
        step >= 2, m * torch.softmax(ratio / temperature, dim=0), torch.ones_like(ratio)
    )
    return D.to(dtype=dtype, device=device), DWAState(history.to(state.history.dtype), step)
