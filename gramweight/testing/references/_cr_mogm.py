"""Jacobian-space reference of CR-MOGM (Zhou et al. 2022): smoothed weights times J."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor

from ...weightings._cr_mogm import CRMOGMState
from ._framework import register_reference


@register_reference("cr_mogm")
def cr_mogm(
    J: Tensor, state: CRMOGMState, *, inner: Callable[..., Any], alpha: float = 0.9
) -> tuple[Tensor, CRMOGMState]:
    """``lambda_k @ J`` with ``lambda_k = alpha lambda_{k-1} + (1 - alpha) lambda_hat_k``.

    ``lambda_hat_k`` are the weights of ``inner`` on ``J @ J.T``; the first call returns them
    unsmoothed.
    """
    G = J @ J.T
    if state.inner is None:
        lam_hat, new_inner = inner(G), None
    else:
        lam_hat, new_inner = inner(G, state.inner)
    if int(state.step) == 0:
        lam = lam_hat
    else:
        lam = alpha * state.weights.to(lam_hat) + (1 - alpha) * lam_hat
    return lam @ J, CRMOGMState(lam, state.step + 1, new_inner)
