"""Nash-MTL: the Nash bargaining solution of the tasks."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .._checks import check_gramian, check_number, check_state
from ..solvers import balance_eps, power_balance


class NashMTLState(NamedTuple):
    """State of [`nash_mtl`][gramweight.nash_mtl].

    Attributes:
        step: Number of calls so far (0-dim ``int64``); the weights are solved again when it is
            a multiple of ``update_every``.
        weights: The last solution of ``(G w) ⊙ w = 1`` (shape (m,)), before norm clipping: the
            starting point of the next solve and the weights reused between solves. Unused
            while ``step`` is 0.
    """

    step: Tensor
    weights: Tensor


def nash_mtl_init(
    m: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> NashMTLState:
    """Fresh state of [`nash_mtl`][gramweight.nash_mtl] (weights all ones, as in the original code;
    the first call solves from scratch and replaces them).

    Args:
        m: Number of tasks.
        dtype: dtype of the weights (default: ``torch.get_default_dtype()``). The state
            returned by [`nash_mtl`][gramweight.nash_mtl] has the Gramian's dtype and device.
        device: device of the state (default: CPU).

    Examples:
        >>> import gramweight as gw
        >>> gw.nash_mtl_init(2)
        NashMTLState(step=tensor(0), weights=tensor([1., 1.]))
    """
    check_number(m, "m", low=1, integer=True)
    return NashMTLState(
        step=torch.zeros((), dtype=torch.int64, device=device),
        weights=torch.ones(m, dtype=dtype, device=device),
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

    $$
    (G w) \odot w = \mathbf 1, \qquad w > 0
    $$

    (each task's improvement $g_i^\top J^\top w$ equals $1 / w_i$), solved by
    the damped Newton method of ``gramweight.solvers.power_balance`` (it is FairGrad's
    equation with ``alpha = 1``; see [`fairgrad`][gramweight.fairgrad] for where it has a solution
    and what is returned where it has none), warm-started from the previous solution, in
    float64 for every input dtype. Where no solution exists (a zero gradient, or gradients
    that cancel), the cancelling tasks' weights are about $\varepsilon^{-1/2}
    G_{ii}^{-1/2}$ ($\varepsilon$ the unit round-off of ``G``'s dtype) and their update
    cancels; reaching them takes about $\log_2 \varepsilon^{-1/2}$ Newton steps (26 in
    float64), so with fewer ``n_iters`` the weights are smaller and the update not fully
    cancelled. The weights are
    recomputed every ``update_every`` calls and reused in between. The update norm
    $\sqrt{w^\top G w}$ is then clipped to ``max_norm`` (0 disables clipping).

    Args:
        G: Gramian of shape (m, m).
        state: From [`nash_mtl_init`][gramweight.nash_mtl_init] or the previous call (never
            modified).
        max_norm: Maximum norm of the update (``>= 0``; 0: no clipping).
        update_every: Solve every this many calls (an int >= 1).
        n_iters: Maximum number of Newton steps per solve (an int >= 1).

    Returns:
        ``(w, new_state)``: weights of shape (m,) and the state for the next call, both with
        ``G``'s dtype and device.

    Properties:
        Pure (state in, new state out), permutation-equivariant from a fresh state. Not
        scale-invariant: without clipping, ``w(sG) = w(G) / sqrt(s)``, and the update
        ``J^\top w`` is the same for every scale (then clipped).

    Deviations:
        The original code and TorchJD's ``NashMTL`` normalise ``G`` by its Frobenius norm and
        run ``n_iters`` sequential convex programs (cvxpy/ECOS) that approach the solution;
        here the equation is solved to round-off (each task's equation at its own scale, so a
        small gradient is never treated as a zero one), with the relative diagonal term of
        [`fairgrad`][gramweight.fairgrad] only where the Gramian is (nearly) singular.

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
            G64, alpha=1.0, n_iters=n_iters, init=init, eps=balance_eps(G.dtype)
        )
    else:
        solved = prev
    w = solved
    if max_norm > 0:
        norm = (w @ G64 @ w).clamp_min(0).sqrt()
        w = torch.where(norm > max_norm, w * (max_norm / torch.where(norm > 0, norm, 1.0)), w)
    # G's dtype and device, as every stateful method's new state (the solver converts its warm
    # start to float64 anyway); weights beyond the dtype's range (a zero or tiny gradient in
    # float16) clamped to its largest finite value
    top = torch.finfo(G.dtype).max
    new_state = NashMTLState(
        step=state.step.to(G.device) + 1, weights=solved.clamp(max=top).to(G.dtype)
    )
    return w.clamp(max=top).to(G.dtype), new_state
