"""Reference of Nash-MTL: the Nash bargaining solution, with norm clipping."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._fairgrad import power_root
from ._framework import register_reference


@register_reference("nash_mtl")
def nash_mtl_reference(
    J: Tensor,
    state: Any,
    /,
    *,
    max_norm: float = 1.0,
    update_every: int = 1,
    n_iters: int = 20,
) -> tuple[Tensor, Any]:
    """Every ``update_every`` steps, solve ``g_iᵀ(Jᵀα) = 1 / α_i`` (paper, Eq. 4); otherwise
    reuse the previous ``α``. The update ``Jᵀα`` is clipped to norm ``max_norm``."""
    J64 = J.double().cpu()
    step = int(state.step)
    if step % update_every == 0:
        alpha = power_root(J64, 1.0)
    else:
        alpha = state.weights.double().cpu()
    update = J64.T @ alpha
    norm = float(update.norm())
    if max_norm > 0 and norm > max_norm:
        update = update * (max_norm / norm)
    return update, type(state)(step=state.step + 1, weights=alpha)
