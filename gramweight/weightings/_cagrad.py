"""CAGrad: conflict-averse gradient descent."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .._checks import check_gramian, check_number
from ..solvers import cagrad_simplex


def cagrad(G: Tensor, /, *, c: float = 0.5, norm_eps: float = 1e-4) -> Tensor:
    r"""CAGrad (Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning",
    NeurIPS 2021, https://arxiv.org/abs/2110.14048).

    The update $d = g_0 + \frac{\sqrt\phi}{\|g_w\|} g_w$ maximises the worst local
    improvement within a ball of radius $\sqrt\phi = c\,\|g_0\|$ around the mean
    gradient $g_0 = J^\top \mathbf 1 / m$, where $g_w = J^\top w$ and

    $$
    w = \arg\min_{w \ge 0,\ \mathbf 1^\top w = 1}
    w^\top \hat G \mathbf 1/m + \sqrt\phi\, \sqrt{w^\top \hat G w},
    \qquad \hat G = G / \operatorname{tr}(G),
    $$

    so the weights are $\mathbf 1/m + \frac{\sqrt\phi}{\|g_w\|} w$. The problem is solved
    exactly: its optimality conditions are those of the simplex QP
    $\min \tfrac12 w^\top \hat G w + \rho\, w^\top \hat G \mathbf 1/m$ at the
    $\rho$ where $\sqrt\phi\,\rho = \|g_{w(\rho)}\|$, found by solving that scalar
    equation exactly on each active set (``gramweight.solvers.cagrad_simplex``).

    As in TorchJD, a Gramian of trace below ``norm_eps`` counts as zero, and if
    $\|g_w\| < \text{norm\_eps}$ (on the trace-normalised scale; also whenever it is
    below ``1e-10``, zero up to round-off) the point is taken as Pareto-stationary and
    ``w = 0``.

    Args:
        G: Gramian of shape (m, m).
        c: Radius of the ball, relative to $\|g_0\|$ (``>= 0``; 0 gives the mean).
        norm_eps: See above (``>= 0``).

    Returns:
        Weights of shape (m,), with ``G``'s dtype and device.

    Properties:
        Permutation-equivariant, scale-invariant (for ``tr(G) >= norm_eps``), non-conflicting
        for ``c >= 1``.

    Deviations:
        The original code and TorchJD's ``CAGradWeighting`` solve the same problem with an
        iterative solver (scipy SLSQP, cvxpy/Clarabel); the original code also divides the
        update by ``1 + c²`` (its ``rescale=1``), which is not done here (as in TorchJD).

    Raises:
        ValueError: ``c < 0`` or ``norm_eps < 0``.

    Examples:
        >>> import torch, gramweight as gw
        >>> G = torch.tensor([[18.0, -22.0], [-22.0, 38.0]], dtype=torch.float64)
        >>> gw.cagrad(G, c=0.5)
        tensor([0.7041, 0.5000], dtype=torch.float64)
    """
    G = check_gramian(G).detach()
    check_number(c, "c", low=0.0)
    check_number(norm_eps, "norm_eps", low=0.0)
    m = G.shape[-1]
    G64 = G.to(torch.float64)
    mean = torch.full((m,), 1.0 / m, dtype=torch.float64, device=G.device)
    trace = float(G64.diagonal().sum())
    if trace < norm_eps or not trace > 0:
        return torch.zeros(m, dtype=G.dtype, device=G.device)
    Gn = G64 / trace
    b = Gn @ mean
    sqrt_phi = c * math.sqrt(max(float(b.sum()) / m, 0.0))  # c ‖g_0‖, ‖g_0‖² = bᵀ1 / m
    if sqrt_phi == 0.0:
        return mean.to(G.dtype)
    w = cagrad_simplex(Gn, b, sqrt_phi)
    gw_norm = float((w @ Gn @ w).clamp_min(0).sqrt())
    # below 1e-10 (the trace-normalised scale is O(1)) g_w is zero up to the solver's accuracy
    if gw_norm <= 1e-10 or gw_norm < norm_eps:
        return torch.zeros(m, dtype=G.dtype, device=G.device)
    return (mean + (sqrt_phi / gw_norm) * w).to(G.dtype)
