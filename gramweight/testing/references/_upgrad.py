"""References of UPGrad and DualProj: literal projections onto the dual cone of the rows of J."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor

from ._framework import register_reference
from ._projection import project_onto_dual_cone


def _augmented(J: Tensor, norm_eps: float, reg_eps: float) -> tuple[Tensor, bool]:
    # G / tr(G) + reg_eps I is the Gramian of [J / ‖J‖_F, sqrt(reg_eps) I]: the regularised
    # problem is the exact projection for that augmented Jacobian.
    m, n = J.shape
    trace = float((J * J).sum())
    usable = trace > 0 and trace >= norm_eps
    scaled = J / math.sqrt(trace) if usable else torch.zeros_like(J)
    return torch.cat([scaled, math.sqrt(reg_eps) * torch.eye(m, dtype=J.dtype)], dim=1), usable


def _project(J: Tensor, U: Tensor, norm_eps: float, reg_eps: float) -> Tensor:
    """The updates ``Jᵀv`` whose augmented versions are the projections of ``J'ᵀu``, for each
    row ``u`` of ``U`` (or for ``U`` itself if it is a vector)."""
    n = J.shape[1]
    Ja, usable = _augmented(J, norm_eps, reg_eps)
    X = project_onto_dual_cone(U @ Ja, Ja)
    if reg_eps > 0:
        return (X[..., n:] / math.sqrt(reg_eps)) @ J  # the identity block holds v itself
    if usable:
        return X[..., :n] * math.sqrt(float((J * J).sum()))
    return U @ J  # G counts as 0: every u is already in the cone


def _pref(pref: Sequence[float] | Tensor | None, m: int) -> Tensor:
    if pref is None:
        return torch.full((m,), 1.0 / m, dtype=torch.float64)
    return torch.as_tensor(pref, dtype=torch.float64).cpu()


@register_reference("upgrad")
def upgrad_reference(
    J: Tensor,
    /,
    *,
    pref: Sequence[float] | Tensor | None = None,
    norm_eps: float = 1e-4,
    reg_eps: float = 1e-4,
) -> Tensor:
    """UPGrad: project each row ``pref_i g_i`` onto the dual cone of the rows, and sum."""
    J = J.double().cpu()
    m = J.shape[0]
    p = _pref(pref, m)
    return _project(J, torch.diag(p), norm_eps, reg_eps).sum(dim=0)


@register_reference("dualproj")
def dualproj_reference(
    J: Tensor,
    /,
    *,
    pref: Sequence[float] | Tensor | None = None,
    norm_eps: float = 1e-4,
    reg_eps: float = 1e-4,
) -> Tensor:
    """DualProj: project the ``pref``-weighted combination onto the dual cone of the rows."""
    J = J.double().cpu()
    return _project(J, _pref(pref, J.shape[0]), norm_eps, reg_eps)
