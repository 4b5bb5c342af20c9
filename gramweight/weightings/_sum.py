"""Sum weighting."""

from __future__ import annotations

from torch import Tensor

from .._checks import check_gramian


def sum(G: Tensor, /) -> Tensor:  # noqa: A001 - the method's name; this file uses no builtin sum
    r"""Sum of the gradients: $w_i = 1$.

    The update is the gradient of the sum of the losses, ``m`` times the [`mean`][gramweight.mean]
    update. TorchJD's ``Sum`` and LibMTL's ``EW`` (equal weighting) are this method.

    Args:
        G: Gramian of shape (m, m), or a stack (..., m, m) of Gramians.

    Returns:
        Weights of shape (m,) (or (..., m)) with ``G``'s dtype and device.

    Examples:
        >>> import torch, gramweight as gw
        >>> J = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
        >>> gw.sum(J @ J.T) @ J
        tensor([2., 2., 2.])
    """
    G = check_gramian(G, batched=True)
    return G.new_ones(G.shape[:-1])
