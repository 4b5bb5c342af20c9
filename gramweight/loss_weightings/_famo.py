"""FAMO: softmax task logits, updated from how fast each loss fell since the last call."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .._checks import check_number, check_state, check_vector, message
from ._common import check_losses


class FAMOState(NamedTuple):
    r"""State of [`famo`][gramweight.loss_weightings.famo]: the task logits $\xi$ (m,), the losses
    of the previous call (m,), and the call counter."""

    logits: Tensor
    prev_losses: Tensor
    step: Tensor


def famo_init(
    m: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> FAMOState:
    r"""A fresh state: $\xi = 0$ (uniform task weights), no previous losses.

    Examples:
        >>> import gramweight as gw
        >>> gw.loss_weightings.famo_init(2)
        FAMOState(logits=tensor([0., 0.]), prev_losses=tensor([1., 1.]), step=tensor(0))
    """
    check_number(m, "m", low=1, integer=True)
    dtype = torch.get_default_dtype() if dtype is None else dtype
    return FAMOState(
        torch.zeros(m, dtype=dtype, device=device),
        torch.ones(m, dtype=dtype, device=device),
        torch.zeros((), dtype=torch.long, device=device),
    )


def famo(
    losses: Sequence[float] | Tensor,
    state: FAMOState,
    /,
    *,
    lr: float = 0.025,
    gamma: float = 0.001,
    min_losses: Sequence[float] | Tensor | None = None,
) -> tuple[Tensor, FAMOState]:
    r"""FAMO (Liu et al., "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023,
    https://arxiv.org/abs/2306.03792).

    FAMO descends $\sum_i z_i \log(\ell_i - \ell_i^*)$ with
    $z = \operatorname{softmax}(\xi)$, the logits $\xi$ learned so that the
    log-losses fall at balanced rates. As weights on the raw losses, divided by
    $\sum_j z_j / (\ell_j - \ell_j^*)$ as in the official code (so that
    $\sum_i D_i = 1$),

    $$
    D_i = \frac{z_i / (\ell_i - \ell_i^*)}{\sum_j z_j / (\ell_j - \ell_j^*)}.
    $$

    The logits follow the paper's Algorithm 1: with the decrease of the log-losses since the
    previous call, $\delta = \log(\ell^{\text{prev}} - \ell^*) - \log(\ell - \ell^*)$,
    one step $\xi \leftarrow \xi - \text{lr}\,\big(J_z^\top \delta + \gamma\, \xi\big)$
    with $J_z^\top \delta = z \odot (\delta - z^\top\delta)$ (the softmax's Jacobian),
    which moves weight towards the tasks whose losses fell the least. Each call first takes
    that step (from the second call on), then returns $D$ at the new $\xi$ and the
    current losses, and records them.

    Deviations:
        The official code measures $\delta$ on the same batch, re-evaluated after the
        parameter step, and steps $\xi$ with Adam (``weight_decay=gamma``); here
        $\delta$ comes from consecutive calls (the next batch's losses stand in for the
        re-evaluation; pass the re-evaluated losses to reproduce it) and the step is the
        paper's plain one.

    Args:
        losses: The m loss values, shape (m,), each above its ``min_losses``.
        state: From [`famo_init`][gramweight.loss_weightings.famo_init] (or the previous call).
        lr: The logits' step size $\beta \ge 0$ (the paper's 0.025).
        gamma: The logits' decay $\gamma \ge 0$ (the paper's 0.001).
        min_losses: $\ell^*$, a lower bound of each loss, shape (m,); default 0.

    Returns:
        ``(D, new_state)``: the weights (m,) with the losses' dtype and device, and the
        state with the stepped logits and these losses.

    Raises:
        ValueError: ``losses`` empty, not finite or not above ``min_losses``; ``lr`` or
            ``gamma`` negative; a state for another m.
        TypeError: ``state`` not a [`FAMOState`][gramweight.loss_weightings.FAMOState].

    Examples:
        >>> import torch, gramweight as gw
        >>> state = gw.loss_weightings.famo_init(2)
        >>> D, state = gw.loss_weightings.famo(torch.tensor([1.0, 4.0]), state)
        >>> D
        tensor([0.8000, 0.2000])
        >>> D, state = gw.loss_weightings.famo(torch.tensor([0.5, 4.0]), state)
        >>> state.logits  # loss 1 fell, loss 2 did not: weight moves to task 2
        tensor([-0.0043,  0.0043])
    """
    loss, dtype, device = check_losses(losses, positive=False)
    m = loss.shape[0]
    check_state(state, FAMOState, logits=(m,), prev_losses=(m,), step=())
    check_number(lr, "lr", low=0.0)
    check_number(gamma, "gamma", low=0.0)
    floor = (
        loss.new_zeros(m)
        if min_losses is None
        else check_vector(min_losses, "min_losses", length=m, like=loss)
    )
    gap = loss - floor
    if not bool((gap > 0).all()):
        raise ValueError(
            message("losses", "above min_losses (default 0)", f"a gap of {float(gap.min()):.6g}")
        )
    target = state.logits.device
    xi = state.logits.detach().to(torch.float64)
    gap = gap.to(target)
    prev_gap = state.prev_losses.detach().to(torch.float64) - floor.to(target)
    z = torch.softmax(xi, dim=0)
    delta = torch.log(prev_gap.clamp_min(torch.finfo(torch.float64).tiny)) - torch.log(gap)
    stepped = xi - lr * (z * (delta - z @ delta) + gamma * xi)
    xi = torch.where(state.step > 0, stepped, xi)
    z = torch.softmax(xi, dim=0)
    D = (z / gap) / (z / gap).sum()
    new_state = FAMOState(
        xi.to(state.logits.dtype),
        loss.to(device=target, dtype=state.prev_losses.dtype),
        state.step + 1,
    )
    return D.to(dtype=dtype, device=device), new_state
