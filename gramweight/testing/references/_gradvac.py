"""Jacobian-space references of Gradient Vaccine (Wang et al. 2021, Algorithm 2), literally."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ...weightings._gradvac import GradVacState
from ...weightings._orders import visiting_orders
from ._framework import register_reference


def _vaccinate(J: Tensor, targets: Tensor, orders: list[list[int]], beta: float, eps: float):
    """One block: returns ``sum_i g_i^PC`` and the new targets (a modified copy)."""
    m = J.shape[0]
    targets = targets.clone()
    update = torch.zeros_like(J[0])
    for i in range(m):
        g_pc = J[i].clone()
        for j in orders[i]:
            g_j = J[j]
            norm_i = torch.linalg.vector_norm(g_pc)
            norm_j = torch.linalg.vector_norm(g_j)
            phi = torch.dot(g_pc, g_j) / (norm_i * norm_j + eps)
            phi_hat = targets[i, j].clone()
            if phi < phi_hat:
                sqrt_1_phi2 = (1 - phi**2).clamp(min=0).sqrt()
                sqrt_1_hat2 = (1 - phi_hat**2).clamp(min=0).sqrt()
                coefficient = norm_i * (phi_hat * sqrt_1_phi2 - phi * sqrt_1_hat2)
                g_pc = g_pc + coefficient / (norm_j * sqrt_1_hat2 + eps) * g_j
            targets[i, j] = (1 - beta) * phi_hat + beta * phi
        update = update + g_pc
    return update, targets


@register_reference("gradvac")
def gradvac(
    J: Tensor, state: GradVacState, *, beta: float = 0.5, eps: float = 1e-8, key: int
) -> tuple[Tensor, GradVacState]:
    """``sum_i g_i^PC`` of GradVac on the whole Jacobian, and the new state."""
    orders = visiting_orders(J.shape[0], key=key).tolist()
    targets = state.targets.to(dtype=J.dtype, device=J.device)
    update, targets = _vaccinate(J, targets, orders, beta, eps)
    return update, GradVacState(targets)


def gradvac_blocks(
    J: Tensor,
    state: GradVacState,
    *,
    sizes: Sequence[int],
    beta: float = 0.5,
    eps: float = 1e-8,
    key: int,
) -> tuple[Tensor, GradVacState]:
    """GradVac per parameter block: the columns of ``J`` split into blocks of ``sizes``.

    Each block is vaccinated on its own, with its own targets ``state.targets[k]`` and the
    visiting orders shared by all blocks; the update is the concatenation of the blocks'.
    """
    orders = visiting_orders(J.shape[0], key=key).tolist()
    targets = state.targets.to(dtype=J.dtype, device=J.device)
    updates, new_targets = [], []
    for k, J_k in enumerate(torch.split(J, list(sizes), dim=1)):
        update_k, targets_k = _vaccinate(J_k, targets[k], orders, beta, eps)
        updates.append(update_k)
        new_targets.append(targets_k)
    return torch.cat(updates), GradVacState(torch.stack(new_targets))
