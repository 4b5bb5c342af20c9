"""Reference of DB-MTL (β = 0): log-loss gradients, each rescaled to the largest norm."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._framework import register_reference


@register_reference("db_mtl")
def db_mtl_reference(J: Tensor, /, *, losses: Sequence[float] | Tensor) -> Tensor:
    """Lin et al. (2023), Algorithm 1 with β = 0: the gradients of ``log L_i`` are
    ``h_i = g_i / L_i``; the update is ``Σ_i (max_j ‖h_j‖) h_i / ‖h_i‖`` over the non-zero
    ``h_i``."""
    J64 = J.double().cpu()
    L = torch.as_tensor(losses, dtype=torch.float64).cpu()
    H = J64 / L.unsqueeze(1)
    norms = H.norm(dim=1)
    alpha = norms.max()
    update = torch.zeros(J.shape[1], dtype=torch.float64)
    for i in range(J.shape[0]):
        if float(norms[i]) > 0:
            update = update + alpha * H[i] / norms[i]
    return update
