"""Constant weighting."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from .._checks import check_gramian, check_vector


def constant(G: Tensor, /, *, weights: Sequence[float] | Tensor) -> Tensor:
    r"""Fixed, user-chosen weights: $w = \text{weights}$.

    The classic hand-tuned linear scalarisation. ``G`` is only used for its size, dtype and
    device.

    Args:
        G: Gramian of shape (m, m), or a stack (..., m, m) of Gramians.
        weights: ``m`` finite numbers (a sequence or a 1-D tensor). They are broadcast over
            the leading dimensions of a stack of Gramians.

    Returns:
        ``weights`` as a tensor of shape (m,) (or (..., m)) with ``G``'s dtype and device.

    Raises:
        ValueError: ``weights`` is not 1-D, not of length m, or not finite.

    Examples:
        >>> import torch, gramweight as gw
        >>> G = torch.tensor([[18.0, -22.0], [-22.0, 38.0]])
        >>> gw.constant(G, weights=[0.25, 2.0])
        tensor([0.2500, 2.0000])
    """
    G = check_gramian(G, batched=True)
    w = check_vector(weights, "weights", length=G.shape[-1], like=G)
    return w.expand(G.shape[:-1]).clone()
