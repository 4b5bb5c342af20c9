"""EPO: Exact Pareto Optimal search, descent or controlled ascent towards a preference ray."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._checks import check_gramian, check_number, check_vector
from ..solvers import simplex_lp


def epo(
    G: Tensor,
    /,
    *,
    losses: Sequence[float] | Tensor,
    preference: Sequence[float] | Tensor,
    eps: float = 1e-4,
) -> Tensor:
    r"""EPO search (Mahapatra & Rajan, "Multi-Task Learning with User Preferences: Gradient
    Descent with Controlled Ascent in Pareto Optimization", ICML 2020,
    https://arxiv.org/abs/2010.06313).

    With the losses $\ell > 0$ and the preference $r > 0$, the relative losses
    $\hat\ell = r \odot \ell / r^\top \ell$ measure how far $\ell$ is from the
    preference ray $r_1 \ell_1 = \dots = r_m \ell_m$ by the non-uniformity
    $\mu = \mathrm{KL}(\hat\ell \,\|\, \mathbf 1/m) = \sum_j \hat\ell_j \log(m \hat\ell_j)$;
    its gradient with respect to $\ell$ points along
    $a = r \odot (\log(m \hat\ell) - \mu)$. With $C = G$, the weights are the
    solution $\beta$ of the linear program

    $$
    \max_{\beta \in \Delta^m}\ \beta^\top C c \quad \text{s.t.}\quad
    (C\beta)_j \ge \rho_j,
    $$

    in one of two modes:

    - balance ($\mu > \varepsilon$): $c = a$ (move towards the ray the fastest),
      with $J = \{j : (Ca)_j > 0\}$ and $J^* = \arg\max_j r_j \ell_j$:
      $\rho_j = -\infty$ on $J \setminus J^*$ (free to rise, as the balance
      wants), $\rho_j = (Ca)_j$ off $J \cup J^*$ (rise no faster than the balance
      itself asks), $\rho_j = 0$ on $J^*$ (the worst relative loss never rises);
      when $J$ is empty, $\rho = 0$;
    - descent ($\mu \le \varepsilon$, on the ray): $c = \mathbf 1$ and
      $\rho = 0$, the steepest common descent of every loss.

    The update $\beta^\top J$ is the direction the losses descend along. The LP is
    solved by ``gramweight.solvers.simplex_lp`` (exact simplex method, in torch); where its
    constraints admit no point of the simplex, the point of least total violation (each
    constraint divided by the largest of $|C_j|$ and $|\rho_j|$) that maximises the
    objective among those.

    Args:
        G: Gramian of shape (m, m).
        losses: The m loss values, positive, shape (m,).
        preference: The preference vector $r$, positive, shape (m,) (the sought
            Pareto point has $r_j \ell_j$ equal across tasks; its scale is free).
        eps: The non-uniformity below which the losses count as on the ray (descent mode).

    Returns:
        Weights $\beta$ on the simplex, shape (m,), with ``G``'s dtype and device.

    Properties:
        Scale-invariant (every term of the LP scales with $G$). Not
        permutation-equivariant for fixed ``losses`` and ``preference`` (permute them with
        ``G``, and the weights follow). Non-conflicting in descent mode ($G\beta \ge 0$);
        in balance mode the update raises the losses of $J$ on purpose.

    Deviations:
        The official code (cvxpy and GLPK) adds, in descent mode, the constraint
        $\beta^\top C a \ge \min(0, \max_j (Ca)_j)$ by default (its "restricted" LP);
        here descent is the paper's LP, without it. A $(Ca)_j$ within round-off of zero
        ($4 m \epsilon\, (|G|\,|a|)_j$, $\epsilon$ the epsilon of ``G``'s dtype)
        counts as zero, so that $J$ does not depend on round-off.

    Raises:
        ValueError: ``losses`` or ``preference`` of the wrong length, not positive or not
            finite; ``eps`` negative.

    Examples:
        >>> import torch, gramweight as gw
        >>> J = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
        >>> G = J @ J.T
        >>> gw.epo(G, losses=[1.0, 3.0], preference=[1.0, 1.0])  # off the ray: lower loss 2
        tensor([0., 1.], dtype=torch.float64)
        >>> gw.epo(G, losses=[2.0, 2.0], preference=[1.0, 1.0])  # on the ray: descend
        tensor([0., 1.], dtype=torch.float64)
    """
    G = check_gramian(G).detach()
    m = G.shape[-1]
    G64 = G.to(torch.float64)
    loss = check_vector(losses, "losses", length=m, positive=True, like=G64)
    r = check_vector(preference, "preference", length=m, positive=True, like=G64)
    check_number(eps, "eps", low=0.0)
    rl = r * loss
    rel = rl / rl.sum()
    mu = (rel * torch.log(m * rel)).sum()
    a = r * (torch.log(m * rel) - mu)
    Ca = G64 @ a
    # (Ca)_j within round-off of zero is zero: the sets below must not depend on it
    noise = 4.0 * m * torch.finfo(G.dtype).eps * (G64.abs() @ a.abs())
    Ca = torch.where(Ca.abs() <= noise, 0.0, Ca)
    rising = Ca > 0
    worst = rl == rl.max()
    balance_rhs = torch.where(rising, -torch.inf, Ca)
    balance_rhs = torch.where(worst | ~rising.any(), 0.0, balance_rhs)
    balance = mu > eps
    objective = torch.where(balance, Ca, G64.sum(dim=1))
    rhs = torch.where(balance, balance_rhs, torch.zeros_like(Ca))
    beta = simplex_lp(objective, G64, rhs)
    return beta.to(G.dtype)
