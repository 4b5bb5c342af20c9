"""Exact Euclidean projections by enumeration of faces, for the references (small m only)."""

from __future__ import annotations

import itertools

import torch
from torch import Tensor


def project_onto_dual_cone(Y: Tensor, J: Tensor) -> Tensor:
    """The points of ``{x : J x >= 0}`` closest to each row of ``Y``, by enumerating faces.

    The projection lies on some face ``{x : J_S x = 0}`` and is the projection of ``y`` onto
    that subspace; among the feasible projections onto every such subspace, the closest to
    ``y`` is therefore the projection. Exponential in ``m``: for tests with a few rows only.
    ``Y`` may be one vector (n,) or several (k, n), projected independently.
    """
    single = Y.dim() == 1
    Y = Y.unsqueeze(0) if single else Y
    # Scaling a row by a positive factor leaves the cone unchanged: unit rows (zero rows
    # constrain nothing) keep every constraint at the same scale, however unbalanced J is.
    norms = J.norm(dim=1)
    J = J[norms > 0] / norms[norms > 0].unsqueeze(1)
    m = J.shape[0]
    tol = 1e-10 * Y.norm(dim=1).clamp_min(1e-300)
    best = torch.full_like(Y, torch.nan)
    best_dist = torch.full((Y.shape[0],), torch.inf, dtype=Y.dtype)
    for size in range(m + 1):
        for S in itertools.combinations(range(m), size):
            X = Y.clone()
            if S:
                JS = J[list(S)]
                X = Y - (JS.T @ (torch.linalg.pinv(JS.T) @ Y.T)).T  # remove the span of J_S
            feasible = (X @ J.T >= -tol.unsqueeze(1)).all(dim=1)
            dist = (X - Y).norm(dim=1)
            better = feasible & (dist < best_dist - 1e-15 * (1.0 + dist))
            best = torch.where(better.unsqueeze(1), X, best)
            best_dist = torch.where(better, dist, best_dist)
    # S = all rows gives x with J x = 0, always feasible
    return best[0] if single else best


def min_norm_in_hull(points: Tensor) -> Tensor:
    """Coefficients (on the simplex) of the point of the convex hull of the rows closest to 0.

    Enumerates the supports: on the affine hull of a support the closest point solves a least
    squares problem; the feasible candidate of least norm is the answer.
    """
    m = points.shape[0]
    best, best_norm = None, None
    for size in range(1, m + 1):
        for S in itertools.combinations(range(m), size):
            P = points[list(S)]
            base = P[0]
            D = (P[1:] - base).T  # directions of the affine hull, as columns
            if size > 1:
                c = torch.linalg.lstsq(D, -base.unsqueeze(1)).solution.squeeze(1)
                lam = torch.cat([(1.0 - c.sum()).unsqueeze(0), c])
            else:
                lam = torch.ones(1, dtype=points.dtype)
            if bool((lam >= -1e-12).all()):
                coef = torch.zeros(m, dtype=points.dtype)
                coef[list(S)] = lam.clamp_min(0) / lam.clamp_min(0).sum()
                norm = float((coef @ points).norm())
                if best_norm is None or norm < best_norm - 1e-14 * (1.0 + norm):
                    best, best_norm = coef, norm
    assert best is not None
    return best
