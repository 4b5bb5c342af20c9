"""Random weighting (RLW)."""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_gramian, check_key


def random(G: Tensor, /, *, key: int) -> Tensor:
    r"""Random loss weighting (RLW, Lin et al., TMLR 2022, https://arxiv.org/abs/2111.10603).

    $w = \operatorname{softmax}(z)$ with $z \sim \mathcal N(0, I_m)$. The draws
    come from a local ``torch.Generator().manual_seed(key)`` on the CPU, in float64, and are then
    moved to ``G``'s device and dtype, so the same ``key`` gives the same weights on every
    device and no global random state is read or changed. Pass a new key each step (for
    instance the step number). For a stack (..., m, m), one independent draw per Gramian, in
    row-major order of the leading dimensions.

    Args:
        G: Gramian of shape (m, m), or a stack (..., m, m) of Gramians. Only its size, dtype
            and device are used.
        key: Seed of the draw (required, an ``int`` in [0, 2**63 - 1]; every key in that range
            gives its own draw).

    Returns:
        Positive weights summing to 1, of shape (m,) (or (..., m)).

    Examples:
        >>> import torch, gramweight as gw
        >>> G = torch.eye(3)
        >>> w = gw.random(G, key=0)
        >>> w
        tensor([0.8446, 0.1349, 0.0205])
        >>> bool(torch.equal(w, gw.random(G, key=0)))
        True
    """
    G = check_gramian(G, batched=True)
    key = check_key(key)
    generator = torch.Generator().manual_seed(key)
    z = torch.randn(G.shape[:-1], generator=generator, dtype=torch.float64)
    return torch.softmax(z, dim=-1).to(dtype=G.dtype, device=G.device)
