"""MGDA: the min-norm point of the convex hull of the gradients."""

from __future__ import annotations

import warnings

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from .._checks import check_gramian, check_number, check_vector, message
from ..solvers import min_norm_simplex

_NORMS = ("none", "l2", "loss", "loss+")


def mgda(
    G: Tensor,
    /,
    *,
    norm: Literal["none", "l2", "loss", "loss+"] = "none",
    losses: Sequence[float] | Tensor | None = None,
    tol: float = 1e-5,
    max_iters: int = 250,
    epsilon: float | None = None,
) -> Tensor:
    r"""MGDA (Désidéri 2012; Sener & Koltun, "Multi-Task Learning as Multi-Objective
    Optimization", NeurIPS 2018, https://arxiv.org/abs/1810.04650).

    The min-norm element of the convex hull of the (normalised) gradients:

    $$
    w = \arg\min_{w \ge 0,\ \mathbf 1^\top w = 1} w^\top \hat G w, \qquad
    \hat G = N^{-1} G N^{-1},
    $$

    with $N = I$ (``"none"``), $\operatorname{diag}(\|g_i\|)$ (``"l2"``,
    $\|g_i\| = \sqrt{G_{ii}}$), $\operatorname{diag}(L_i)$ (``"loss"``) or
    $\operatorname{diag}(L_i \|g_i\|)$ (``"loss+"``); a zero gradient keeps a zero row.
    The weights found on $\hat G$ are returned as they are, i.e. applied to the raw
    gradients, as in the original MGDA-UB code. LibMTL instead applies them to the normalised
    gradients; its weights are $N^{-1} w$ (divide by the norms yourself to get them).

    The problem is solved exactly by the active-set solver of ``gramweight.solvers`` (Alg. 2
    of the paper, Frank–Wolfe, only approaches it).

    Args:
        G: Gramian of shape (m, m).
        norm: Gradient normalisation, see above.
        losses: The m positive loss values, required by ``"loss"`` and ``"loss+"``.
        tol: Optimality tolerance: the solver stops once every
            $(\hat G w)_j \ge (1 - \text{tol})\, w^\top \hat G w$ (the defining
            property of the min-norm point, so the update never conflicts).
        max_iters: Maximum number of active-set steps.
        epsilon: Deprecated alias of ``tol`` (its name before the tolerance naming rule);
            it warns and will be removed.

    Returns:
        Weights on the simplex, shape (m,), with ``G``'s dtype and device.

    Properties:
        Non-conflicting with ``norm="none"`` ($G w \ge w^\top G w \ge 0$). With a
        norm, the normalised update $\sum_i w_i g_i / N_i$ is non-conflicting, but the
        raw one returned here need not be (two opposite gradients of different norms give
        ``w = (1/2, 1/2)``). Permutation-equivariant. Scale-invariant.

    Deviations:
        TorchJD's ``MGDAWeighting`` has no normalisation and runs Frank–Wolfe for up to
        ``max_iters`` steps, stopping when the step is below its ``epsilon``; here both options
        steer the exact solver instead.

    Raises:
        ValueError: unknown ``norm``; ``losses`` missing, of the wrong length or not positive
            for a loss norm; ``tol`` not in [0, 1); ``max_iters < 1``.

    Examples:
        >>> import torch, gramweight as gw
        >>> J = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]], dtype=torch.float64)
        >>> G = J @ J.T
        >>> gw.mgda(G)
        tensor([0.6000, 0.4000], dtype=torch.float64)
        >>> gw.mgda(G, norm="loss", losses=[0.5, 2.0]) @ J
        tensor([3.4900, 1.0000, 1.0000], dtype=torch.float64)
    """
    G = check_gramian(G).detach()
    if norm not in _NORMS:
        raise ValueError(message("norm", f"one of {_NORMS}", repr(norm)))
    if epsilon is not None:
        warnings.warn("mgda's `epsilon` is now `tol` (the library's name for a solver's "
                      "stopping tolerance); `epsilon` will be removed", DeprecationWarning,
                      stacklevel=2)
        tol = epsilon
    check_number(tol, "tol", low=0.0, high=1.0, high_open=True)
    check_number(max_iters, "max_iters", low=1, integer=True)
    m = G.shape[-1]
    G64 = G.to(torch.float64)
    scale = None
    if norm in ("loss", "loss+"):
        if losses is None:
            raise ValueError(message("losses", f"given for norm={norm!r}", "None"))
        scale = check_vector(losses, "losses", length=m, positive=True, like=G64)
    elif losses is not None:
        check_vector(losses, "losses", length=m, positive=True, like=G64)
    if norm in ("l2", "loss+"):
        norms = G64.diagonal().sqrt()
        scale = norms if scale is None else scale * norms
    if norm == "none":
        Gn = G64
    else:
        inv = torch.where(scale > 0, 1.0 / torch.where(scale > 0, scale, 1.0), 0.0)
        Gn = inv.unsqueeze(1) * G64 * inv.unsqueeze(0)
    w = min_norm_simplex(Gn, max_iters=max_iters, rtol=tol)
    return w.to(G.dtype)
