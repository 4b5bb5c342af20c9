"""Gradient Vaccine (GradVac), in coefficient space."""

from __future__ import annotations

import math

from typing import NamedTuple

import torch
from torch import Tensor

from .._checks import check_key, check_number, check_state
from .._host import use_host
from ..solvers import work_dtype
from ._orders import visiting_orders
from ._surgery import as_blocks, gradvac_weights

__all__ = ["GradVacState", "gradvac", "gradvac_init"]


class GradVacState(NamedTuple):
    r"""State of [`gradvac`][gramweight.gradvac].

    Attributes:
        targets: EMA targets $\hat\phi_{ij}$ of the cosine between the (modified)
            gradient of task ``i`` and the gradient of task ``j``, shape (m, m), or (K, m, m)
            with one matrix per block. The diagonal is unused.
    """

    targets: Tensor


def gradvac_init(
    m: int,
    blocks: int | None = None,
    *,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
) -> GradVacState:
    """Fresh state of [`gradvac`][gramweight.gradvac]: all cosine targets at 0.

    Args:
        m: Number of tasks.
        blocks: ``None`` for one Gramian (m, m); ``K`` for a stack of K block Gramians
            (K, m, m), one per parameter group.
        dtype: dtype of the targets (default: ``torch.get_default_dtype()``). The state
            returned by [`gradvac`][gramweight.gradvac] has the Gramian's dtype and device.
        device: device of the targets (default: CPU).

    Examples:
        >>> import gramweight as gw
        >>> gw.gradvac_init(2).targets
        tensor([[0., 0.],
                [0., 0.]])
        >>> gw.gradvac_init(2, blocks=3).targets.shape
        torch.Size([3, 2, 2])
    """
    check_number(m, "m", low=1, integer=True)
    shape: tuple[int, ...] = (m, m)
    if blocks is not None:
        check_number(blocks, "blocks", low=1, integer=True)
        shape = (blocks, m, m)
    return GradVacState(torch.zeros(shape, dtype=dtype, device=device))


def gradvac(
    G: Tensor, state: GradVacState, /, *, beta: float = 0.5, eps: float = 1e-8, key: int
) -> tuple[Tensor, GradVacState]:
    r"""Gradient Vaccine (Wang et al., ICLR 2021, https://arxiv.org/abs/2010.05874).

    Each task gradient $g_i$ visits the other tasks in a random order. With
    $\phi_{ij}$ the cosine between the current $g_i^{PC}$ and $g_j$, and
    $\hat\phi_{ij}$ its EMA target from the state, when $\phi_{ij} < \hat\phi_{ij}$:

    $$
    g_i^{PC} \leftarrow g_i^{PC} + \frac{\|g_i^{PC}\| \left(\hat\phi_{ij}
    \sqrt{1 - \phi_{ij}^2} - \phi_{ij} \sqrt{1 - \hat\phi_{ij}^2}\right)}
    {\|g_j\| \sqrt{1 - \hat\phi_{ij}^2} + \epsilon}\, g_j,
    $$

    and in every case $\hat\phi_{ij} \leftarrow (1 - \beta)\hat\phi_{ij} + \beta\phi_{ij}$
    with the cosine measured before the correction. The cosine is
    $\phi_{ij} = g_i^{PC} \cdot g_j / (\|g_i^{PC}\| \|g_j\| + \epsilon)$. The update is
    $\sum_i g_i^{PC}$.

    In coefficient space ($g_i^{PC} = C_i J$): $g_i^{PC} \cdot g_j = (C G)_{ij}$,
    $\|g_i^{PC}\|^2 = (C G C^\top)_{ii}$, $\|g_j\|^2 = G_{jj}$; a correction by
    $a\, g_j$ adds $a$ to $C_{ij}$, $a\, G_j$ to $(CG)_i$ and
    $a (2 (CG)_{ij} + a G_{jj})$ to the squared norm. All ``m`` rows step together
    (``m - 1`` vectorised steps of O(m²) work). With all targets at 0 the method is PCGrad
    (up to ``eps``).

    Blocks: for a stack (K, m, m) of block Gramians (one per parameter group: the whole model,
    each layer or each tensor; the grouping modes of the paper and of LibMTL), each block is
    vaccinated on its own with its own targets, giving weights (K, m): the update is
    $\sum_k W_k J_k$ with $J_k$ the columns of block ``k``. One visiting order per
    task is shared by all blocks (LibMTL's convention). Build the state with
    ``gradvac_init(m, blocks=K)``.

    The visiting orders are [`visiting_orders`][gramweight.visiting_orders] ``(m, key=key)``.

    Precision: a Gramian resolves the gradients only to about sqrt(machine eps) of their norms.
    A correction towards an exactly opposite or collinear gradient (opposite rows, rank-1
    blocks) cancels the row to a residual whose squared norm is below the round-off of its
    computation, $(m\,\epsilon + \epsilon_G) N^2$ with
    $N = \sum_k c_k \|g_k\|$ ($\epsilon$ the machine epsilon of the working
    dtype, $\epsilon_G$ that of ``G``'s): such a row is zero to the precision of ``G``
    and is treated as zero (cosine 0 with every later task, no further correction), and every
    cosine is clamped to [-1, 1]. The vector-space algorithm measures that residual's cosines
    instead, which ``G`` does not determine: the targets of such a row, and later updates, can
    differ from it, each call from the same state agreeing (see the documentation page
    "Gradient surgery and stateful methods", Precision).

    Properties: not scale-invariant (``eps`` is absolute); neither non-conflicting nor
    permutation-equivariant in general.

    Deviations from TorchJD and LibMTL: no hidden state and no silent reset (a state built for
    another m or K is an error); no global random state (a required ``key``); a correction
    towards a zero gradient $g_j$ (which cannot change the update) is skipped instead of
    receiving an unbounded coefficient, and so is one whose denominator vanishes (only possible
    with ``eps = 0``); a row cancelled below the round-off of ``G`` is taken as zero (above).
    A state holding a NaN or an infinity is refused.

    Args:
        G: Gramian (m, m), or a stack (K, m, m) of block Gramians.
        state: From [`gradvac_init`][gramweight.gradvac_init] (or a previous call), matching G's
            shape.
        beta: EMA rate of the targets, in [0, 1].
        eps: Non-negative constant added to both denominators.
        key: Seed of the visiting orders (required, an ``int`` in [0, 2**63 - 1]; every key in
            that range gives its own draw).

    Returns:
        ``(w, new_state)``: weights (m,) (or (K, m)) and the new state, both with ``G``'s dtype
        and device, not differentiable (``G`` is detached).

    Examples:
        >>> import torch, gramweight as gw
        >>> G = torch.tensor([[18.0, -22.0], [-22.0, 38.0]])
        >>> state = gw.gradvac_init(2)
        >>> w, state = gw.gradvac(G, state, key=0)
        >>> w
        tensor([2.2222, 1.5789])
        >>> w, state = gw.gradvac(G, state, key=1)
        >>> w
        tensor([1.8580, 1.4064])
        >>> state.targets
        tensor([[ 0.0000, -0.6309],
                [-0.6309,  0.0000]])
    """
    G = as_blocks(G).detach()  # a sequence of hard decisions: not differentiated through
    check_state(state, GradVacState, targets=tuple(G.shape))
    check_number(beta, "beta", low=0.0, high=1.0)
    check_number(eps, "eps", low=0.0)
    key = check_key(key)
    # two tasks: a few dozen float operations against the loop's forty-odd tensor operations
    if G.shape == (2, 2) and use_host(G, 60, 40):
        w, targets = _gradvac_host(G, state.targets, beta, eps)
        return w, GradVacState(targets)
    dtype = work_dtype(G.dtype)
    orders = visiting_orders(G.shape[-1], key=key, device=G.device)
    targets = state.targets.to(dtype=dtype, device=G.device)
    w, targets = gradvac_weights(
        G.to(dtype), targets, orders, beta, eps, roundoff=torch.finfo(G.dtype).eps
    )
    return w.to(G.dtype), GradVacState(targets.to(G.dtype))


def _gradvac_host(
    G: Tensor, targets: Tensor, beta: float, eps: float
) -> tuple[Tensor, Tensor]:
    """The host twin of [`gradvac`][gramweight.gradvac] for two tasks: each gradient visits the
    other one whatever the key, so there is no draw and one correction per row (the steps of
    `gradvac_weights`, for the common two-task case)."""
    (g00, g01), (_, g11) = G.tolist()
    hats = targets.tolist()
    norms = (math.sqrt(max(g00, 0.0)), math.sqrt(max(g11, 0.0)))
    w = [1.0, 1.0]
    new = [list(row) for row in hats]
    for i, j in ((0, 1), (1, 0)):
        ni, nj, hat = norms[i], norms[j], hats[i][j]
        den = ni * nj
        if eps > 0:
            phi = g01 / (den + eps)
        else:
            phi = g01 / den if den > 0 else 0.0
        phi = min(max(phi, -1.0), 1.0)  # a cosine from G, one up to round-off
        sh = math.sqrt(max(1.0 - hat * hat, 0.0))
        den_a = nj * sh + eps
        # a correction towards a zero g_j, or with a vanishing denominator, is skipped
        inv_den_a = 1.0 / den_a if den_a > 0 and nj > 0 else 0.0
        a = max(hat * math.sqrt(max(1.0 - phi * phi, 0.0)) - phi * sh, 0.0) * ni * inv_den_a
        w[j] += a
        new[i][j] = min(max((1.0 - beta) * hat + beta * phi, -1.0), 1.0)
    return (
        torch.tensor(w, dtype=G.dtype, device=G.device),
        torch.tensor(new, dtype=G.dtype, device=G.device),
    )
