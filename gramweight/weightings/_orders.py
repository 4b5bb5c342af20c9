"""Random visiting orders shared by the gradient-surgery weightings and their references."""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_key, check_number, message

__all__ = ["visiting_orders"]


def visiting_orders(
    m: int,
    *,
    key: int,
    include_self: bool = False,
    device: torch.device | str | None = None,
) -> Tensor:
    r"""The order in which each task visits the other tasks (PCGrad, GradVac).

    Row ``i`` of the result lists the ``m - 1`` tasks other than ``i``, in the order in which
    the gradient of task ``i`` is compared with (and corrected towards) them. With
    ``include_self=True``, row ``i`` lists all ``m`` tasks, ``i`` included (the order of
    [`pcgrad`][gramweight.pcgrad] ``(..., include_self=True)``: the original PCGrad code and
    LibMTL's).

    The draw is exactly:

    ```python
    generator = torch.Generator().manual_seed(key)
    for i in range(m):                                   # on the CPU, task by task
        p = torch.randperm(m - 1, generator=generator)   # a permutation of 0 .. m-2
        orders[i] = p + (p >= i)                         # skip task i itself
    ```

    (with ``include_self=True``: ``orders[i] = torch.randperm(m, generator=generator)``), so
    each row is an independent uniformly random permutation, the same ``key`` gives the same
    orders on every device, and no global random state is read or changed. Any
    implementation (for instance a Jacobian-space reference) that calls this function visits
    the tasks in the same order as [`pcgrad`][gramweight.pcgrad] and [`gradvac`][gramweight.gradvac]
    called with the same ``key``.

    Args:
        m: Number of tasks (at least 1).
        key: Seed of the draw (required, an ``int`` in [0, 2**63 - 1]; every key in that range
            gives its own draw, see ``gramweight._checks.check_key``).
        include_self: Whether each task also visits itself.
        device: Where to put the result (the draw itself always happens on the CPU).

    Returns:
        An ``int64`` tensor of shape (m, m - 1), or (m, m) with ``include_self``.

    Raises:
        TypeError, ValueError: ``m`` not an int >= 1, ``key`` not an int in [0, 2**63 - 1].

    Examples:
        >>> import gramweight as gw
        >>> gw.visiting_orders(3, key=0)
        tensor([[1, 2],
                [2, 0],
                [1, 0]])
        >>> gw.visiting_orders(3, key=0, include_self=True)
        tensor([[2, 0, 1],
                [2, 1, 0],
                [1, 2, 0]])
    """
    check_number(m, "m", low=1, integer=True)
    key = check_key(key)
    if not isinstance(include_self, bool):
        raise TypeError(message("include_self", "a bool", type(include_self).__name__))
    generator = torch.Generator().manual_seed(key)
    if include_self:
        perms = torch.stack([torch.randperm(m, generator=generator) for _ in range(m)])
        return _place(perms, device)
    perms = torch.stack([torch.randperm(m - 1, generator=generator) for _ in range(m)])
    return _place(perms + (perms >= torch.arange(m).unsqueeze(1)), device)


def _place(orders: Tensor, device: torch.device | str | None) -> Tensor:
    return orders.to(device) if device is not None else orders
