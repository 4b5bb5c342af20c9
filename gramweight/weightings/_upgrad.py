"""UPGrad: unconflicting projection of gradients."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._checks import check_gramian, check_number, check_vector
from ..solvers import dual_cone_weights


def _pref(pref: Sequence[float] | Tensor | None, G: Tensor) -> Tensor:
    m = G.shape[-1]
    if pref is None:
        return torch.full((m,), 1.0 / m, dtype=torch.float64, device=G.device)
    return check_vector(pref, "pref", length=m, like=G).to(torch.float64)


def upgrad(
    G: Tensor,
    /,
    *,
    pref: Sequence[float] | Tensor | None = None,
    norm_eps: float = 1e-4,
    reg_eps: float = 1e-4,
) -> Tensor:
    r"""UPGrad (Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization",
    https://arxiv.org/abs/2406.16232).

    Each gradient $g_i$ is projected onto the dual cone $\{x : Jx \ge 0\}$ of all
    the gradients, and the projections are summed with the weights ``pref``. By Prop. 1 of the
    paper, the projection of $J^\top u$ is $J^\top v$ with

    $$
    v = \arg\min_{v \ge u} v^\top \hat G v, \qquad
    \hat G = G / \operatorname{tr}(G) + \text{reg\_eps}\, I,
    $$

    so $w = \sum_i v^{(i)}$ with $u^{(i)} = \text{pref}_i e_i$. The m box-constrained
    problems are solved at once, exactly (to round-off), by the active-set solver of
    ``gramweight.solvers``.

    Args:
        G: Gramian of shape (m, m).
        pref: Weights of the projected gradients (m finite numbers); default ``1/m`` each.
        norm_eps: If ``tr(G) < norm_eps`` the gradients are treated as zero and ``w = pref``.
        reg_eps: Added to the diagonal of the trace-normalised Gramian (as TorchJD does), which
            keeps the problems strictly convex. Set it to 0 for the exact projection.

    Returns:
        Weights of shape (m,), with ``G``'s dtype and device.

    Properties:
        Permutation-equivariant. Scale-invariant for ``tr(G) >= norm_eps``. Non-conflicting
        (``G w >= 0``) exactly when ``reg_eps = 0``; with ``reg_eps > 0`` the result solves
        the problem of the augmented Jacobian ``[J/‖J‖_F, sqrt(reg_eps) I]``, so ``G w`` can be
        negative by about ``reg_eps · tr(G) · ‖w‖₁`` when the update lies on the boundary of
        the cone.

    Deviations:
        Same problem and defaults as TorchJD's ``UPGradWeighting`` (which calls quadprog on
        the CPU, one problem at a time); here the m problems are solved together, in torch, on
        ``G``'s device.

    Examples:
        >>> import torch, gramweight as gw
        >>> G = torch.tensor([[18.0, -22.0], [-22.0, 38.0]], dtype=torch.float64)
        >>> gw.upgrad(G)
        tensor([1.1109, 0.7894], dtype=torch.float64)
        >>> gw.upgrad(G, reg_eps=0.0)  # the exact projection
        tensor([1.1111, 0.7895], dtype=torch.float64)
    """
    G = check_gramian(G).detach()
    check_number(norm_eps, "norm_eps", low=0.0)
    check_number(reg_eps, "reg_eps", low=0.0)
    p = _pref(pref, G)
    V = dual_cone_weights(G, torch.diag(p), norm_eps=norm_eps, reg_eps=reg_eps)
    return V.sum(dim=0).to(G.dtype)
