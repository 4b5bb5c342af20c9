"""DualProj: projection of the weighted mean onto the dual cone."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from .._checks import check_gramian, check_number
from ..solvers import dual_cone_weights
from ._upgrad import _pref


def dualproj(
    G: Tensor,
    /,
    *,
    pref: Sequence[float] | Tensor | None = None,
    norm_eps: float = 1e-4,
    reg_eps: float = 1e-4,
) -> Tensor:
    r"""DualProj (Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization",
    https://arxiv.org/abs/2406.16232; the projection of A-GEM, Chaudhry et al. 2019, extended
    to m constraints).

    The combination $J^\top \text{pref}$ is projected onto the dual cone
    $\{x : Jx \ge 0\}$. In Gramian form (Prop. 1 of the paper):

    $$
    w = \arg\min_{v \ge \text{pref}} v^\top \hat G v, \qquad
    \hat G = G / \operatorname{tr}(G) + \text{reg\_eps}\, I.
    $$

    Args:
        G: Gramian of shape (m, m).
        pref: The combination to project (m finite numbers); default ``1/m`` each.
        norm_eps: If ``tr(G) < norm_eps`` the gradients are treated as zero and ``w = pref``.
        reg_eps: Added to the diagonal of the trace-normalised Gramian (as TorchJD does). Set it
            to 0 for the exact projection.

    Returns:
        Weights of shape (m,), with ``G``'s dtype and device.

    Properties:
        Permutation-equivariant. Scale-invariant for ``tr(G) >= norm_eps``. Non-conflicting
        exactly when ``reg_eps = 0`` (with ``reg_eps > 0``, up to about
        ``reg_eps · tr(G) · ‖w‖₁``; see [`upgrad`][gramweight.upgrad]).

    Deviations:
        Same problem and defaults as TorchJD's ``DualProjWeighting`` (quadprog on the CPU).

    Examples:
        >>> import torch, gramweight as gw
        >>> G = torch.tensor([[18.0, -22.0], [-22.0, 38.0]], dtype=torch.float64)
        >>> gw.dualproj(G)
        tensor([0.6109, 0.5000], dtype=torch.float64)
    """
    G = check_gramian(G).detach()
    check_number(norm_eps, "norm_eps", low=0.0)
    check_number(reg_eps, "reg_eps", low=0.0)
    p = _pref(pref, G)
    V = dual_cone_weights(G, p.unsqueeze(0), norm_eps=norm_eps, reg_eps=reg_eps)
    return V[0].to(G.dtype)
