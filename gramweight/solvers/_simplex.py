"""Euclidean projection onto the simplex: ``argmin ‖x - v‖²`` over ``x >= 0, Σx = 1``, for
every row ``v`` (MoDo's and SDMGrad's projected steps, the guess of the simplex QPs' free
sets).
"""

from __future__ import annotations

from itertools import accumulate

import torch
from torch import Tensor

__all__ = ["project_simplex", "project_simplex_host"]


def project_simplex(v: Tensor, *, shift: bool = True) -> Tensor:
    r"""Project each row of ``v`` (..., m) onto $\{x \ge 0, \sum_i x_i = 1\}$.

    The sort-based algorithm (Held et al. 1974; Duchi et al., ICML 2008): the projection is
    $\max(v - \theta, 0)$, and with $u$ the entries sorted in decreasing order,
    $\theta = \max_k (\sum_{l \le k} u_l - 1) / k$. (The usual statement takes that
    ratio at the largest ``k`` with $u_k > (\sum_{l \le k} u_l - 1) / k$; the ratio
    increases in ``k`` exactly while that condition holds, so it is the same number, found
    with fewer operations.) Exact, O(m log m), no iteration and no host synchronisation;
    batched over leading dimensions.

    The projection commutes with adding a constant to every entry, so the entries are first
    shifted by their maximum: the largest becomes 0, and a 1 is never lost next to entries of
    magnitude 1e16 (the update of MoDo and SDMGrad on a Gramian scaled by 1e15). Callers whose
    entries are already of order 1 (the solver's equilibrated guesses) pass ``shift=False``.
    """
    if shift:
        v = v - v.amax(dim=-1, keepdim=True)
    u = torch.sort(v, dim=-1, descending=True).values
    k = torch.arange(1, v.shape[-1] + 1, dtype=v.dtype, device=v.device)
    theta = (u.cumsum(dim=-1).sub_(1.0) / k).amax(dim=-1, keepdim=True)
    return (v - theta).clamp_(min=0.0)


def project_simplex_host(v: list[float]) -> list[float]:
    """`project_simplex` (with its shift by the maximum) of one vector of Python floats:
    ``max(v - theta, 0)`` with ``theta = max_k (sum of the k largest - 1) / k``."""
    top = max(v)
    u = sorted((x - top for x in v), reverse=True)
    theta = max((s - 1.0) / k for k, s in enumerate(accumulate(u), start=1))
    return [max(x - top - theta, 0.0) for x in v]
