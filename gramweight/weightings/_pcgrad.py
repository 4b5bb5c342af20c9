"""PCGrad (projecting conflicting gradients), in coefficient space."""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_key, message
from .._host import use_host
from ..solvers import work_dtype
from ._orders import visiting_orders
from ._surgery import as_blocks, pcgrad_weights


def pcgrad(G: Tensor, /, *, key: int, include_self: bool = False) -> Tensor:
    r"""PCGrad (Yu et al., NeurIPS 2020, https://arxiv.org/abs/2001.06782).

    Algorithm 1 of the paper: each task gradient $g_i$ visits the other tasks in a random
    order and, whenever its current version conflicts with $g_j$
    ($g_i^{PC} \cdot g_j < 0$), projects the conflict away,
    $g_i^{PC} \leftarrow g_i^{PC} - \frac{g_i^{PC} \cdot g_j}{\|g_j\|^2} g_j$. The update
    is $\sum_i g_i^{PC}$.

    With ``include_self=True``, $g_i^{PC}$ visits all ``m`` tasks in a random order, its
    own $g_i$ included, as the original PCGrad code and LibMTL do (they shuffle the whole
    list of gradients): once projections have turned $g_i^{PC}$ against $g_i$
    (possible from m = 3 on), it is projected onto the normal plane of $g_i$ as well.
    The default (``False``) is the paper's Algorithm 1 ($j \ne i$), as in TorchJD. With
    two tasks both give the same weights.

    In coefficient space $g_i^{PC} = C_i J$, so $g_i^{PC} \cdot g_j = (C G)_{ij}$
    and a projection is $C_{ij} \mathrel{+}= -(C G)_{ij} / G_{jj}$; the weights are the
    column sums $w = \mathbf 1^\top C$. All ``m`` rows take their ``s``-th step together
    (``m - 1`` vectorised steps of O(m²) work, ``m`` with ``include_self``; no host
    synchronisation).

    The visiting orders are [`visiting_orders`][gramweight.visiting_orders]
    ``(m, key=key, include_self=include_self)``: drawn on the CPU from
    ``torch.Generator().manual_seed(key)``, so a key gives the same weights on every device.
    Pass a new key each step (for instance the step number).

    A stack of block Gramians (K, m, m) (one per parameter group) gives weights (K, m), with
    one visiting order per task shared by all blocks.

    Properties: scale-invariant ($w(cG) = w(G)$ for $c > 0$); permutation-equivariant
    in distribution only (the orders depend on the task indices); not non-conflicting in
    general for m > 2.

    Deviations from TorchJD and LibMTL: no global random state (a required ``key`` instead of
    ``torch.randperm`` or ``random.shuffle``); a zero gradient $g_j$ is skipped (nothing to
    project onto) instead of dividing by $\|g_j\|^2 = 0$. LibMTL's order is
    ``include_self=True``, TorchJD's the default. float16/bfloat16 Gramians are computed in
    float32.

    Args:
        G: Gramian (m, m), or a stack (K, m, m) of block Gramians.
        key: Seed of the visiting orders (required, an ``int`` in [0, 2**63 - 1]).
        include_self: Whether each $g_i^{PC}$ also visits its own $g_i$ (the
            original code's and LibMTL's order) rather than the other tasks only (the paper's).

    Returns:
        Weights (m,) (or (K, m)) with ``G``'s dtype and device, not differentiable (``G`` is
        detached).

    Examples:
        >>> import torch, gramweight as gw
        >>> G = torch.tensor([[18.0, -22.0], [-22.0, 38.0]])
        >>> gw.pcgrad(G, key=0)
        tensor([2.2222, 1.5789])
        >>> J = torch.tensor([[4.0, 3.0], [-2.0, -4.0], [-2.0, 0.0]])
        >>> gw.visiting_orders(3, key=1, include_self=True)[0]  # g_0 visits g_1, g_2, g_0
        tensor([1, 2, 0])
        >>> gw.pcgrad(J @ J.T, key=1, include_self=True)  # g_0^PC = (0, -1) conflicts with g_0
        tensor([2.2400, 2.0000, 2.6000])
    """
    G = as_blocks(G).detach()  # a sequence of hard decisions: not differentiated through
    key = check_key(key)
    if not isinstance(include_self, bool):
        raise TypeError(message("include_self", "a bool", type(include_self).__name__))
    # two tasks: a dozen float operations against the loop's twenty-odd tensor operations
    # (g_i^PC never conflicts with g_i after its one projection, so include_self changes nothing)
    if G.shape == (2, 2) and use_host(G, 12, 20):
        return _pcgrad_host(G)
    orders = visiting_orders(G.shape[-1], key=key, include_self=include_self, device=G.device)
    w = pcgrad_weights(G.to(work_dtype(G.dtype)), orders)
    return w.to(G.dtype)


def _pcgrad_host(G: Tensor) -> Tensor:
    """The host twin of [`pcgrad`][gramweight.pcgrad] for two tasks: each gradient visits the other
    one whatever the key, so there is no draw, and the two projections are closed forms (the
    common case, where the fixed cost of the vectorised loop would dominate)."""
    (g00, g01), (_, g11) = G.tolist()
    # g_0 loses its component along g_1 when they conflict (a zero g_1 has none): w_1 grows
    a0 = -g01 / g11 if g01 < 0.0 and g11 > 0.0 else 0.0
    a1 = -g01 / g00 if g01 < 0.0 and g00 > 0.0 else 0.0
    return torch.tensor([1.0 + a1, 1.0 + a0], dtype=G.dtype, device=G.device)
