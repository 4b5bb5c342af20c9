"""Jacobian-space reference of SDMGrad (Xiao et al. 2023, Algorithm 1), written literally."""

from __future__ import annotations

import torch
from torch import Tensor

from ...weightings._sdmgrad import SDMGradState
from ._framework import register_reference
from ._simplex import project_simplex


@register_reference("sdmgrad")
def sdmgrad(
    J: Tensor,
    state: SDMGradState,
    *,
    lr: float = 10.0,
    momentum: float = 0.5,
    n_iters: int = 20,
    lambda_: float = 0.3,
    pref: Tensor | None = None,
    J2: Tensor | None = None,
) -> tuple[Tensor, SDMGradState]:
    """``(w + lambda_ w~) / (1 + lambda_) @ J`` after ``n_iters`` momentum steps on ``w``.

    Each step moves ``w`` along ``nabla L(xi)^T nabla L(xi') (w + lambda_ w~)``, computed as
    two matrix-vector products with the Jacobians (scaled by the official normalisation).
    """
    J2 = J if J2 is None else J2
    m = J.shape[0]
    w_tilde = torch.full((m,), 1.0 / m, dtype=J.dtype) if pref is None else torch.as_tensor(pref)
    w_tilde = w_tilde.to(J)
    diagonal = (J * J2).sum(dim=1)  # g1_i . g2_i
    scale = sum(max(float(d), 0.0) ** 0.5 for d in diagonal) / m
    w = state.weights.to(J)
    velocity = None
    for _ in range(n_iters):
        direction = J2.T @ (w + lambda_ * w_tilde)
        grad = (J @ direction) / (scale**2 + 1e-8)
        velocity = grad if velocity is None else momentum * velocity + grad
        w = project_simplex(w - lr * velocity)
    return (w + lambda_ * w_tilde) / (1 + lambda_) @ J, SDMGradState(w)
