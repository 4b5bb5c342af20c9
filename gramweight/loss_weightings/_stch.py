"""STCH: the gradient of the smooth Tchebycheff scalarisation, as weights on the losses."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._checks import check_number, check_vector
from ._common import check_losses


def stch(
    losses: Sequence[float] | Tensor,
    /,
    *,
    preference: Sequence[float] | Tensor | None = None,
    ideal: Sequence[float] | Tensor | None = None,
    mu: float = 1.0,
) -> Tensor:
    r"""Smooth Tchebycheff scalarisation (Lin et al., "Smooth Tchebycheff Scalarization for
    Multi-Objective Optimization", ICML 2024, https://arxiv.org/abs/2402.19078).

    The scalarisation $g_\mu(\ell) = \mu \log \sum_i \exp(\lambda_i (\ell_i - z_i)/\mu)$
    (a smooth maximum of the weighted gaps to the ideal point $z$) moves along
    $\sum_i D_i \nabla\ell_i$ with

    $$
    D_i = \lambda_i\, \operatorname{softmax}\big(\lambda \odot (\ell - z)/\mu\big)_i.
    $$

    Args:
        losses: The m loss values, shape (m,) (any sign).
        preference: $\lambda$, positive, shape (m,); default uniform $1/m$.
        ideal: The ideal point $z$, shape (m,); default 0.
        mu: The smoothing $\mu > 0$; as $\mu \to 0$ the weights go to the
            (classic, non-smooth) Tchebycheff subgradient on the largest weighted gap. The
            paper tunes it per problem.

    Returns:
        The weights $D$ on the losses, shape (m,), positive, summing to at most
        $\max_i \lambda_i$.

    Raises:
        ValueError: a vector of the wrong length or not finite; ``preference`` not positive;
            ``mu <= 0``.

    Examples:
        >>> import torch, gramweight as gw
        >>> gw.loss_weightings.stch(torch.tensor([1.0, 2.0]), mu=0.5)
        tensor([0.1345, 0.3655])
    """
    loss, dtype, device = check_losses(losses, positive=False)
    m = loss.shape[0]
    lam = (
        loss.new_full((m,), 1.0 / m)
        if preference is None
        else check_vector(preference, "preference", length=m, positive=True, like=loss)
    )
    z = loss.new_zeros(m) if ideal is None else check_vector(ideal, "ideal", length=m, like=loss)
    check_number(mu, "mu", low=0.0, low_open=True)
    return (lam * torch.softmax(lam * (loss - z) / mu, dim=0)).to(dtype=dtype, device=device)
