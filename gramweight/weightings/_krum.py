"""(Multi-)Krum: the gradients closest to their neighbours."""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_gramian, check_number, message
from ..solvers import to_work_dtype


def krum(G: Tensor, /, *, n_byzantine: int, n_selected: int = 1) -> Tensor:
    r"""Krum and Multi-Krum (Blanchard et al., "Machine Learning with Adversaries: Byzantine
    Tolerant Gradient Descent", NeurIPS 2017,
    https://proceedings.neurips.cc/paper/2017/hash/f4b9ec30ad9f68f89b29639786cb62ef-Abstract.html).

    The squared distances come from the Gramian,
    $\|g_i - g_j\|^2 = G_{ii} + G_{jj} - 2 G_{ij}$. Each gradient's score is the sum of
    its squared distances to its $m - f - 2$ nearest other gradients (``f =
    n_byzantine``); the ``n_selected`` gradients of lowest score get weight
    ``1 / n_selected``, the others 0. Ties are broken by the lower index; scores within the
    round-off of the distances (``32 k eps max G_ii``, ``k = m - f - 1``, ``eps`` of ``G``'s
    dtype) count as tied, so duplicated gradients tie whatever the rounding of ``J @ J.T``.

    Args:
        G: Gramian of shape (m, m), with ``m >= n_byzantine + 3``.
        n_byzantine: Number of gradients that may be adversarial (an int >= 0).
        n_selected: Number of gradients averaged (an int in [1, m]); 1 is Krum.

    Returns:
        Weights of shape (m,), with ``G``'s dtype and device.

    Properties:
        Scale-invariant. Permutation-equivariant except between gradients of equal score.

    Deviations:
        TorchJD's ``KrumWeighting`` sums distances, not squared distances as the paper does;
        the selection can differ.

    Raises:
        ValueError: ``n_byzantine < 0``, ``n_selected`` not in [1, m], or
            ``m < n_byzantine + 3``.

    Examples:
        >>> import torch, gramweight as gw
        >>> J = torch.tensor([[1.0, 1, 1], [1, 0, 1], [75, -666, 23], [1, 2, 3], [2, 0, 1]])
        >>> gw.krum(J @ J.T, n_byzantine=1, n_selected=4)
        tensor([0.2500, 0.2500, 0.0000, 0.2500, 0.2500])
    """
    G = check_gramian(G).detach()
    w_dtype = G.dtype
    m = G.shape[-1]
    check_number(n_byzantine, "n_byzantine", low=0, integer=True)
    check_number(n_selected, "n_selected", low=1, integer=True)
    if m < n_byzantine + 3:
        raise ValueError(
            message("G", f"of size m >= n_byzantine + 3 = {n_byzantine + 3}", f"m = {m}")
        )
    if n_selected > m:
        raise ValueError(message("n_selected", f"<= m = {m}", repr(n_selected)))
    G = to_work_dtype(G)
    # A Gramian computed as J @ J.T need not be exactly symmetric (G_ij and G_ji are rounded
    # apart); its symmetric part is, and then (d_i + d_j) - 2 G_ij is exactly symmetric, so a
    # pair of mutual nearest neighbours ties exactly (two groups of duplicated gradients got
    # scores an ulp apart, and the selection went by round-off instead of by the index).
    G = (G + G.mT) / 2
    # Scores closer than the round-off of the distances still differ by an ulp or so
    # (duplicated gradients get within-group distances of +-1e-15 instead of 0): they count as
    # tied, and ties go to the lower index. The bound covers the k rounded distances of a
    # score, each of (G_ii + G_jj + 2|G_ij|) <= 4 max G_ii times a few eps of G's dtype.
    k = m - n_byzantine - 1
    tie = 32.0 * k * torch.finfo(w_dtype).eps * float(G.diagonal().max().clamp(min=0))
    # A row's own entry is exactly 0, the least possible value: the sum of its k = m - f - 1
    # smallest entries is the sum of its m - f - 2 smallest distances to the others, with no
    # diagonal to mask. An unsorted selection (a partial sort) is enough for a sum.
    # Near-duplicates can get a distance of a few ulps below 0: it moves a score by round-off
    # only (within `tie`), so it is not clamped (one operation less).
    d = G.diagonal()
    dist2 = (d.unsqueeze(1) + d).sub_(G, alpha=2.0)
    nearest = dist2.topk(k, dim=1, largest=False, sorted=False).values
    return _select(nearest.sum(dim=1).tolist(), n_selected, tie, w_dtype, G.device)


def _select(
    scores: list[float], n_selected: int, tie: float, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """Weight ``1 / n_selected`` on the ``n_selected`` lowest scores, scores within ``tie`` of
    the last one selected counting as tied, ties to the lower index (on the host: cheaper
    than the tensor sort and scatter at these sizes)."""
    order = sorted(range(len(scores)), key=scores.__getitem__)
    last = scores[order[n_selected - 1]]
    chosen = [i for i in order if scores[i] < last - tie]
    tied = sorted(i for i in order if abs(scores[i] - last) <= tie)
    w = [0.0] * len(scores)
    for i in (chosen + tied)[:n_selected]:
        w[i] = 1.0 / n_selected
    return torch.tensor(w, dtype=dtype, device=device)
