"""Random visiting orders shared by the gradient-surgery weightings and their references."""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_key, check_number

__all__ = ["visiting_orders"]


def visiting_orders(m: int, *, key: int, device: torch.device | str | None = None) -> Tensor:
    r"""The order in which each task visits the other tasks (PCGrad, GradVac).

    Row ``i`` of the result lists the ``m - 1`` tasks other than ``i``, in the order in which
    the gradient of task ``i`` is compared with (and corrected towards) them.

    The draw is exactly::

        generator = torch.Generator().manual_seed(key)
        for i in range(m):                                   # on the CPU, task by task
            p = torch.randperm(m - 1, generator=generator)   # a permutation of 0 .. m-2
            orders[i] = p + (p >= i)                         # skip task i itself

    so each row is an independent uniformly random permutation of the other tasks, the same
    ``key`` gives the same orders on every device, and no global random state is read or
    changed. Any implementation (for instance a Jacobian-space reference) that calls this
    function visits the tasks in the same order as :func:`gramweight.pcgrad` and
    :func:`gramweight.gradvac` called with the same ``key``.

    Args:
        m: Number of tasks (at least 1).
        key: Seed of the draw (required, an ``int``).
        device: Where to put the result (the draw itself always happens on the CPU).

    Returns:
        An ``int64`` tensor of shape (m, m - 1).

    Examples:
        >>> import gramweight as gw
        >>> gw.visiting_orders(3, key=0)
        tensor([[1, 2],
                [2, 0],
                [1, 0]])
    """
    check_number(m, "m", low=1, integer=True)
    key = check_key(key)
    generator = torch.Generator().manual_seed(key)
    perms = torch.stack([torch.randperm(m - 1, generator=generator) for _ in range(m)])
    orders = perms + (perms >= torch.arange(m).unsqueeze(1))
    return orders.to(device) if device is not None else orders
