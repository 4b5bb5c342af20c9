"""Jacobian-space reference of MoDo (Chen et al. 2024, Algorithm 1), written literally."""

from __future__ import annotations

from torch import Tensor

from ...weightings._modo import MoDoState
from ._framework import register_reference
from ._simplex import project_simplex


@register_reference("modo")
def modo(
    J: Tensor,
    state: MoDoState,
    *,
    gamma: float = 0.1,
    rho: float = 0.1,
    J2: Tensor | None = None,
) -> tuple[Tensor, MoDoState]:
    """``lambda_{t+1} @ J`` with ``lambda_{t+1} = Proj(lambda_t - gamma (J1 J2^T + rho) lambda_t)``.

    ``J`` is the Jacobian of the first batch (and the one the update is taken along), ``J2``
    that of the second batch (default: ``J`` again).
    """
    J2 = J if J2 is None else J2
    lam = state.weights.to(J)
    direction = J2.T @ lam  # nabla F(x; z2) lambda, a vector in parameter space
    grad = J @ direction + rho * lam
    lam = project_simplex(lam - gamma * grad)
    return lam @ J, MoDoState(lam)
