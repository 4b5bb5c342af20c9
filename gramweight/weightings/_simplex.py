"""Euclidean projection onto the probability simplex (MoDo, SDMGrad)."""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["project_simplex"]


def project_simplex(v: Tensor) -> Tensor:
    r"""Project each row of ``v`` (..., m) onto :math:`\{x \ge 0, \sum_i x_i = 1\}`.

    The sort-based algorithm (Held et al. 1974; Duchi et al., ICML 2008): with :math:`u` the
    entries sorted in decreasing order and :math:`\rho` the largest ``k`` such that
    :math:`u_k > (\sum_{l \le k} u_l - 1) / k`, the projection is
    :math:`\max(v - \theta, 0)` with :math:`\theta = (\sum_{l \le \rho} u_l - 1) / \rho`.
    Exact, O(m log m), no iteration and no host synchronisation; batched over leading
    dimensions.

    The projection commutes with adding a constant to every entry, so the entries are first
    shifted by their maximum: the largest becomes 0, and a 1 is never lost next to entries of
    magnitude 1e16 (the update of MoDo and SDMGrad on a Gramian scaled by 1e15).
    """
    v = v - v.amax(dim=-1, keepdim=True)
    u = torch.sort(v, dim=-1, descending=True).values
    excess = u.cumsum(dim=-1) - 1.0
    k = torch.arange(1, v.shape[-1] + 1, dtype=v.dtype, device=v.device)
    # The condition holds on a prefix of the sorted entries, and always for k = 1.
    rho = (u - excess / k > 0).sum(dim=-1, keepdim=True).clamp(min=1)
    theta = excess.gather(-1, rho - 1) / rho.to(v.dtype)
    return (v - theta).clamp(min=0.0)
