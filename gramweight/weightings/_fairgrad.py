"""FairGrad: alpha-fair gradient weighting."""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_gramian, check_number
from ..solvers import balance_eps, power_balance


def fairgrad(G: Tensor, /, *, alpha: float = 1.0) -> Tensor:
    r"""FairGrad (Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024,
    https://arxiv.org/abs/2402.15638).

    The update maximises the :math:`\alpha`-fair utility of the tasks' improvements; its
    weights are the positive solution of

    .. math::  G w = w^{-1/\alpha}\quad(\text{element-wise}),

    found by a damped Newton method on the strictly convex potential
    :math:`\tfrac12 w^\top G w - \sum_i \varphi(w_i)`, :math:`\varphi' = w^{-1/\alpha}`
    (``gramweight.solvers.power_balance``). ``alpha = 0`` is linear scalarisation:
    ``w = 1/m``. A relative ``1e-6`` (``1e-4`` for lower-precision inputs) is added to the diagonal of the (unit-scaled) Gramian, so a
    zero gradient, or a group of exactly opposite ones, gets a large finite weight instead of
    none (the equation has no solution there).

    Args:
        G: Gramian of shape (m, m).
        alpha: Fairness exponent, ``>= 0`` (1: proportional fairness, the Nash-MTL equation;
            larger: closer to max-min fairness).

    Returns:
        Positive weights of shape (m,), with ``G``'s dtype and device.

    Properties:
        Permutation-equivariant. Not scale-invariant: ``w(sG) = s^{-α/(1+α)} w(G)``.

    Deviations:
        The paper and TorchJD's ``FairGradWeighting`` run scipy's ``least_squares`` from
        ``1/m`` for a fixed number of evaluations; this solves the same equation to round-off.

    Raises:
        ValueError: ``alpha < 0``.

    Examples:
        >>> import torch, gramweight as gw
        >>> G = torch.tensor([[18.0, -22.0], [-22.0, 38.0]], dtype=torch.float64)
        >>> gw.fairgrad(G, alpha=1.0)
        tensor([0.5915, 0.4071], dtype=torch.float64)
    """
    G = check_gramian(G).detach()
    check_number(alpha, "alpha", low=0.0)
    m = G.shape[-1]
    if alpha == 0:
        return torch.full((m,), 1.0 / m, dtype=G.dtype, device=G.device)
    w = power_balance(G.to(torch.float64), alpha=float(alpha), eps=balance_eps(G.dtype))
    return w.to(G.dtype)
