"""CR-MOGM: an exponential moving average of any weighting's weights."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from .._checks import all_finite, check_number, check_state, message

__all__ = ["CRMOGMState", "cr_mogm", "cr_mogm_init"]


class CRMOGMState(NamedTuple):
    r"""State of [`cr_mogm`][gramweight.cr_mogm].

    Attributes:
        weights: The previous smoothed weights $\lambda_{k-1}$, shape (m,) (or (K, m)
            for an inner weighting of K block Gramians).
        step: Number of calls so far (0-dim ``int64``); at 0, ``weights`` is unused.
        inner: State of a stateful inner weighting, or ``None`` for a stateless one.
    """

    weights: Tensor
    step: Tensor
    inner: Any = None


def cr_mogm_init(
    m: int,
    inner_state: Any = None,
    *,
    blocks: int | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> CRMOGMState:
    """Fresh state of [`cr_mogm`][gramweight.cr_mogm].

    Args:
        m: Number of tasks.
        inner_state: ``None`` for a stateless inner weighting; for a stateful one, its fresh
            state (for instance ``gw.gradvac_init(m)``), which then lives inside this state.
        blocks: ``K`` when ``inner`` returns weights (K, m) for a stack of K block Gramians
            (for instance [`gradvac`][gramweight.gradvac] on blocks); ``None`` for weights (m,).
        dtype: dtype of the stored weights (default: ``torch.get_default_dtype()``).
        device: device of the stored weights (default: CPU).

    Examples:
        >>> import gramweight as gw
        >>> gw.cr_mogm_init(2)
        CRMOGMState(weights=tensor([0., 0.]), step=tensor(0), inner=None)
    """
    check_number(m, "m", low=1, integer=True)
    shape: tuple[int, ...] = (m,)
    if blocks is not None:
        check_number(blocks, "blocks", low=1, integer=True)
        shape = (blocks, m)
    weights = torch.zeros(shape, dtype=dtype, device=device)
    step = torch.zeros((), dtype=torch.int64, device=device)
    return CRMOGMState(weights, step, inner_state)


def cr_mogm(
    G: Tensor, state: CRMOGMState, /, *, inner: Callable[..., Any], alpha: float = 0.9
) -> tuple[Tensor, CRMOGMState]:
    r"""CR-MOGM weight smoothing (Zhou et al., NeurIPS 2022).

    Paper:
    https://proceedings.neurips.cc/paper_files/paper/2022/file/f91bd64a3620aad8e70a27ad9cb3ca57-Paper-Conference.pdf

    "On the convergence of stochastic multi-objective gradient manipulation and beyond": the
    weights $\hat\lambda_k$ of any inner weighting (MGDA, PCGrad, UPGrad, ...) are
    smoothed across steps,

    $$
    \lambda_k = \alpha \lambda_{k-1} + (1 - \alpha) \hat\lambda_k,
    \qquad \lambda_1 = \hat\lambda_1 ,
    $$

    which makes the stochastic gradient manipulation converge. The update is
    $\lambda_k^\top J$. The paper's schedule ($\alpha_k$ rising towards 1 as the
    learning rate decays) is obtained by passing a different ``alpha`` at each call.

    ``inner`` is called as ``inner(G)`` when ``state.inner`` is ``None`` and as
    ``inner(G, state.inner)`` (returning ``(weights, new_inner_state)``) otherwise. Bind
    options with `functools.partial` or a lambda, e.g.
    ``inner=functools.partial(gw.pcgrad, key=step)``.

    Properties: inherits scale invariance and permutation equivariance from ``inner``; a
    convex combination of non-conflicting weights is not non-conflicting for the next ``G``
    in general.

    Deviations from TorchJD: the first output is always $\hat\lambda_1$ (no
    ``initial_weights``); changing ``m`` is an error, never a silent reset.

    Args:
        G: Gramian (m, m) (or whatever ``inner`` accepts).
        state: From [`cr_mogm_init`][gramweight.cr_mogm_init] or a previous call.
        inner: The weighting whose weights are smoothed.
        alpha: Weight of the past, in [0, 1] (0: no smoothing; 1: frozen after the first call).

    Returns:
        ``(w, new_state)``: the smoothed weights, with the inner weights' dtype and device.

    Raises:
        TypeError, ValueError: a state of another kind, built for another m or K, or holding
            a NaN or an infinity; ``inner`` not callable, or returning something other than a
            tensor of weights or weights with a NaN or an infinity.

    Examples:
        >>> import functools, torch, gramweight as gw
        >>> G1 = torch.tensor([[18.0, -22.0], [-22.0, 38.0]])
        >>> G2 = torch.eye(2)
        >>> state = gw.cr_mogm_init(2)
        >>> w, state = gw.cr_mogm(G1, state, inner=functools.partial(gw.pcgrad, key=0))
        >>> w
        tensor([2.2222, 1.5789])
        >>> w, state = gw.cr_mogm(G2, state, inner=functools.partial(gw.pcgrad, key=1))
        >>> w
        tensor([2.1000, 1.5211])
    """
    check_state(state, CRMOGMState)
    if not callable(inner):
        raise TypeError(message("inner", "a weighting (a callable)", type(inner).__name__))
    check_number(alpha, "alpha", low=0.0, high=1.0)
    if state.inner is None:
        lam_hat = inner(G)
        new_inner = None
    else:
        lam_hat, new_inner = inner(G, state.inner)
    if not isinstance(lam_hat, Tensor):
        raise TypeError(message("inner(G)", "a tensor of weights", type(lam_hat).__name__))
    check_state(state, CRMOGMState, finite=False, weights=tuple(lam_hat.shape), step=())
    if not all_finite(lam_hat):
        raise ValueError(
            message("inner(G)", "finite weights (no NaN or Inf)", "a non-finite entry")
        )
    previous = state.weights.to(dtype=lam_hat.dtype, device=lam_hat.device)
    step = state.step.to(device=lam_hat.device)
    smoothed = torch.where(step > 0, alpha * previous + (1.0 - alpha) * lam_hat, lam_hat)
    # The state must not keep an autograd graph alive from one step to the next.
    return smoothed, CRMOGMState(smoothed.detach(), step + 1, new_inner)
