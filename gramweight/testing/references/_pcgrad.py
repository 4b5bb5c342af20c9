"""Jacobian-space references of PCGrad, written literally: the paper's Algorithm 1, and the
order of the original code (and LibMTL), in which each gradient also visits itself."""

from __future__ import annotations

import torch
from torch import Tensor

from ...weightings._orders import visiting_orders
from ._framework import register_reference


@register_reference("pcgrad")
def pcgrad(J: Tensor, *, key: int, include_self: bool = False) -> Tensor:
    """``sum_i g_i^PC``, each ``g_i`` projected off the gradients it conflicts with, one by one.

    Algorithm 1 of Yu et al. (2020): ``g_i`` visits the other tasks ``j != i`` in the orders of
    [`visiting_orders`][gramweight.visiting_orders] ``(m, key=key)``. With ``include_self``, the
    variant of `pcgrad_shuffling_all_tasks`.
    """
    if include_self:
        return pcgrad_shuffling_all_tasks(J, key=key)
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


def pcgrad_shuffling_all_tasks(J: Tensor, *, key: int) -> Tensor:
    """PCGrad as the original code runs it (and LibMTL after it).

    For each task ``i``, the list of all ``m`` task gradients, ``g_i`` itself included, is
    shuffled, and ``g_i^PC`` (starting at ``g_i``) is compared with each of them in turn:
    whenever ``g_i^PC . g_j < 0`` it is replaced by its projection onto the normal plane of
    ``g_j``. ``g_i^PC . g_i`` is positive at first, but after projections off other gradients
    it can be negative, and then ``g_i^PC`` is projected off its own original gradient too. The
    shuffles are the rows of [`visiting_orders`][gramweight.visiting_orders] ``(m, key=key,
    include_self=True)``.
    """
    m = J.shape[0]
    shuffles = visiting_orders(m, key=key, include_self=True).tolist()
    update = torch.zeros_like(J[0])
    for i in range(m):
        g_pc = J[i].clone()
        for j in shuffles[i]:  # every task, i included
            dot = torch.dot(g_pc, J[j])
            if dot < 0:
                g_pc = g_pc - dot / torch.dot(J[j], J[j]) * J[j]
        update = update + g_pc
    return update
