"""FairGrad: alpha-fair gradient weighting."""

from __future__ import annotations

import torch
from torch import Tensor

from .._checks import check_gramian, check_number
from ..solvers import balance_eps, power_balance


def fairgrad(G: Tensor, /, *, alpha: float = 1.0) -> Tensor:
    r"""FairGrad (Ban & Ji, "Fair Resource Allocation in Multi-Task Learning", ICML 2024,
    https://arxiv.org/abs/2402.15638).

    The update maximises the $\alpha$-fair utility of the tasks' improvements; its
    weights are the positive solution of

    $$
    G w = w^{-1/\alpha}\quad(\text{element-wise}),
    $$

    found by a damped Newton method on the strictly convex potential
    $\tfrac12 w^\top G w - \sum_i \varphi(w_i)$, $\varphi' = w^{-1/\alpha}$
    (``gramweight.solvers.power_balance``), in float64 for every input dtype, so a float32 or
    lower-precision input gets the float64 answer rounded. ``alpha = 0`` is linear
    scalarisation: ``w = 1/m``.

    The solution exists exactly when no non-negative combination of the gradients vanishes.
    Where it does, it is returned to round-off, whatever the tasks' scales (each task's
    equation is scaled by its own $G_{ii}$). Where it does not (a zero gradient, or
    gradients that cancel, such as two opposite ones), the weights would be infinite; instead
    a term $\varepsilon G_{ii}$ is added to each diagonal ($\varepsilon$ the unit
    round-off of ``G``'s dtype; $\varepsilon \max_j G_{jj}$ for a zero gradient), which
    makes the cancelling tasks' weights large (about $\varepsilon^{-\alpha/(1+\alpha)}$
    times $G_{ii}^{-\alpha/(1+\alpha)}$) but finite, and their contribution to the update
    cancel; the update is then that of the other tasks. The term falls to
    $\varepsilon^2/\lambda$ where $\lambda$, the smallest eigenvalue of
    $D G D$ ($D = \operatorname{diag}(G)^{-1/2}$), exceeds $\varepsilon$, so
    it does not show on well-conditioned Gramians; on nearly singular ones the answer is exact
    for a $G$ within $\varepsilon$ of the input (the rule is stated in
    ``gramweight.solvers._balance``). Weights beyond the dtype's range (a zero or tiny gradient
    in float16) are clamped to its largest finite value.

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
        ``1/m`` for a fixed number of evaluations (residuals about 1e-7); this solves the same
        equation to round-off. Where it has no solution, the peers return whatever their
        iterations reach; here, the finite answer above.

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
    return w.clamp(max=torch.finfo(G.dtype).max).to(G.dtype)
