"""Mean weighting."""

from __future__ import annotations

from torch import Tensor

from .._checks import check_gramian


def mean(G: Tensor, /) -> Tensor:
    r"""Average of the gradients: $w_i = 1/m$.

    The update $w^\top J$ is the gradient of the mean of the losses. The weights do not
    depend on the values of ``G``, only on its size, so the method is trivially
    permutation-equivariant and scale-invariant; it is not non-conflicting.

    Args:
        G: Gramian of shape (m, m), or a stack (..., m, m) of Gramians.

    Returns:
        Weights of shape (m,) (or (..., m)) with ``G``'s dtype and device.

    Examples:
        >>> import torch, gramweight as gw
        >>> J = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])
        >>> w = gw.mean(J @ J.T)
        >>> w
        tensor([0.5000, 0.5000])
        >>> w @ J
        tensor([1., 1., 1.])
    """
    G = check_gramian(G, batched=True)
    return G.new_full(G.shape[:-1], 1.0 / G.shape[-1])
