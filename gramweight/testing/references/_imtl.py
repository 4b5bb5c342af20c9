"""Reference of IMTL (the hybrid): IMTL-G on the gradients of the scaled losses, the scales
stepped by ``torch.optim.Adam``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ._adam import torch_adam_step
from ._framework import register_reference
from ._imtl_g import imtl_g_reference


@register_reference("imtl")
def imtl_reference(
    J: Tensor,
    state: Any,
    /,
    *,
    losses: Sequence[float] | Tensor,
    lr: float = 1e-3,
    betas: Sequence[float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[Tensor, Any]:
    """Liu et al. (ICLR 2021), Algorithm 1: the scaled losses ``e^{s_i} L_i - s_i`` have the
    shared-parameter gradients ``e^{s_i} g_i``; IMTL-G's update of those (the Jacobian-space
    reference of ``imtl_g``) is the update. The scales take one Adam step on
    ``Σ_i (e^{s_i} L_i - s_i)``, differentiated by autograd."""
    J64 = J.double().cpu()
    L = torch.as_tensor(losses, dtype=torch.float64).cpu()
    s = state.log_scales.double().cpu()
    update = imtl_g_reference((s.exp().unsqueeze(1) * J64).to(J.dtype))

    def scaled_total(log_scales: Tensor) -> Tensor:
        return (log_scales.exp() * L - log_scales).sum()

    s_new, avg, avg_sq = torch_adam_step(
        s, scaled_total, state.exp_avg.cpu(), state.exp_avg_sq.cpu(), int(state.step),
        lr=lr, betas=betas, eps=eps,
    )
    return update, type(state)(state.step + 1, s_new, avg, avg_sq)
