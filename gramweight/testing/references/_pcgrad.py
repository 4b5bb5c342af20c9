"""Jacobian-space reference of PCGrad (Yu et al. 2020, Algorithm 1), written literally."""

from __future__ import annotations

import torch
from torch import Tensor

from ...weightings._orders import visiting_orders
from ._framework import register_reference


@register_reference("pcgrad")
def pcgrad(J: Tensor, *, key: int) -> Tensor:
    """``sum_i g_i^PC``, each ``g_i`` projected off the gradients it conflicts with, one by one.

    Visits the tasks in the orders of :func:`gramweight.visiting_orders` ``(m, key=key)``.
    """
    m = J.shape[0]
    orders = visiting_orders(m, key=key).tolist()
    update = torch.zeros_like(J[0])
    for i in range(m):
        g_pc = J[i].clone()
        for j in orders[i]:
            g_j = J[j]
            dot = torch.dot(g_pc, g_j)
            if dot < 0:
                g_pc = g_pc - dot / torch.dot(g_j, g_j) * g_j
        update = update + g_pc
    return update
