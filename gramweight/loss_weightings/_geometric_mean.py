"""GLS: the gradient of the geometric mean of the losses, as weights on the losses."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ._common import check_losses


def geometric_mean(losses: Sequence[float] | Tensor, /) -> Tensor:
    r"""Geometric loss strategy (Chennupati et al., "MultiNet++: Multi-Stream Feature
    Aggregation and Geometric Loss Strategy for Multi-Task Learning", CVPR Workshops 2019,
    https://arxiv.org/abs/1904.08492).

    Minimising $L = (\prod_i \ell_i)^{1/m}$ moves along
    $\nabla L = \sum_i D_i \nabla \ell_i$ with

    $$
    D_i = \frac{(\prod_j \ell_j)^{1/m}}{m\, \ell_i},
    $$

    computed as $\exp(\overline{\log \ell} - \log \ell_i) / m$ (no overflow of the
    product).

    Args:
        losses: The m loss values, positive, shape (m,).

    Returns:
        The weights $D$ on the losses, shape (m,), positive.

    Raises:
        ValueError: ``losses`` empty, not finite or not positive.

    Examples:
        >>> import torch, gramweight as gw
        >>> gw.loss_weightings.geometric_mean(torch.tensor([1.0, 4.0]))
        tensor([1.0000, 0.2500])
    """
    loss, dtype, device = check_losses(losses)
    log = torch.log(loss)
    return (torch.exp(log.mean() - log) / loss.shape[0]).to(dtype=dtype, device=device)
