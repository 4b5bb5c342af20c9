"""Nash-MTL: the Nash bargaining solution of the tasks."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .._checks import check_gramian, check_number, check_state
from ..solvers import power_balance, power_reg


class NashMTLState(NamedTuple):
    """State of :func:`nash_mtl`: the step counter and the last solved weights."""

    step: Tensor
    """Number of calls so far, an int64 scalar."""
    weights: Tensor
    """Last solution of ``(G w) ⊙ w = 1`` (float64, shape (m,)), before norm clipping; the
    starting point of the next solve and the weights reused between updates."""


def nash_mtl_init(m: int) -> NashMTLState:
    """Initial state of :func:`nash_mtl` for ``m`` objectives (weights all ones, as in the
    original code; they are only used once a first solve has replaced them).

    Examples:
        >>> import gramweight as gw
        >>> gw.nash_mtl_init(2)
        NashMTLState(step=tensor(0), weights=tensor([1., 1.], dtype=torch.float64))
    """
    check_number(m, "m", low=1, integer=True)
    return NashMTLState(
        step=torch.tensor(0, dtype=torch.int64), weights=torch.ones(m, dtype=torch.float64)
    )


def nash_mtl(
    G: Tensor,
    state: NashMTLState,
    /,
    *,
    max_norm: float = 1.0,
    update_every: int = 1,
    n_iters: int = 20,
) -> tuple[Tensor, NashMTLState]:
    r"""Nash-MTL (Navon et al., "Multi-Task Learning as a Bargaining Game", ICML 2022,
    https://arxiv.org/abs/2202.01017).

    The Nash bargaining solution: the weights with

    .. math::  (G w) \odot w = \mathbf 1, \qquad w > 0

    (each task's improvement :math:`g_i^\top J^\top w` equals :math:`1 / w_i`), solved by
    the damped Newton method of ``gramweight.solvers.power_balance`` (it is FairGrad's
    equation with ``alpha = 1``), warm-started from the previous solution. The weights are
    recomputed every ``update_every`` calls and reused in between. The update norm
    :math:`\sqrt{w^\top G w}` is then clipped to ``max_norm`` (0 disables clipping).

    Args:
        G: Gramian of shape (m, m).
        state: From :func:`nash_mtl_init` or the previous call (never modified).
        max_norm: Maximum norm of the update (``>= 0``; 0: no clipping).
        update_every: Solve every this many calls (an int >= 1).
        n_iters: Maximum number of Newton steps per solve (an int >= 1).

    Returns:
        ``(w, new_state)``: weights of shape (m,) with ``G``'s dtype and device, and the state
        for the next call.

    Properties:
        Pure (state in, new state out), permutation-equivariant from a fresh state. Not
        scale-invariant: without clipping, ``w(sG) = w(G) / sqrt(s)``, and the update
        ``J^\top w`` is the same for every scale (then clipped).

    Deviations:
        The original code and TorchJD's ``NashMTL`` normalise ``G`` by its Frobenius norm and
        run ``n_iters`` sequential convex programs (cvxpy/ECOS) that approach the solution;
        here the equation is solved to round-off, with a relative ``1e-6`` (``1e-4`` for lower-precision inputs) added to the
        diagonal of the unit-scaled ``G`` so that zero or exactly opposite gradients give large
        finite weights.

    Raises:
        TypeError, ValueError: a state of another kind or built for another m.

    Examples:
        >>> import torch, gramweight as gw
        >>> J = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]], dtype=torch.float64)
        >>> w, state = gw.nash_mtl(J @ J.T, gw.nash_mtl_init(2))
        >>> w @ J
        tensor([0.0542, 0.7061, 0.7061], dtype=torch.float64)
        >>> state.step
        tensor(1)
    """
    G = check_gramian(G).detach()
    m = G.shape[-1]
    check_state(state, NashMTLState, step=(), weights=(m,))
    check_number(max_norm, "max_norm", low=0.0)
    check_number(update_every, "update_every", low=1, integer=True)
    check_number(n_iters, "n_iters", low=1, integer=True)
    G64 = G.to(torch.float64)
    prev = state.weights.to(dtype=torch.float64, device=G.device)
    step = int(state.step)
    if step % update_every == 0:
        init = prev if step > 0 else None
        solved = power_balance(
            G64, alpha=1.0, n_iters=n_iters, init=init, reg=power_reg(G.dtype)
        )
    else:
        solved = prev
    w = solved
    if max_norm > 0:
        norm = (w @ G64 @ w).clamp_min(0).sqrt()
        w = torch.where(norm > max_norm, w * (max_norm / torch.where(norm > 0, norm, 1.0)), w)
    new_state = NashMTLState(step=state.step + 1, weights=solved.to(state.weights.device))
    return w.to(G.dtype), new_state
