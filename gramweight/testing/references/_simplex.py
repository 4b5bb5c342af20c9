"""A plain, loop-based Euclidean projection onto the simplex, for the references only."""

from __future__ import annotations

import torch
from torch import Tensor


def project_simplex(v: Tensor) -> Tensor:
    """argmin over the simplex of ``||x - v||``, by Michelot's algorithm (1986).

    Repeatedly shift the active entries to sum to 1 and drop those that become negative,
    independently of the sort-based projection used by the library. The entries are first
    shifted by their maximum (the projection commutes with adding a constant to all of them),
    so that the 1 of the constraint is not lost next to huge entries.
    """
    active = list(range(v.shape[0]))
    top = max(float(x) for x in v)
    values = [float(x) - top for x in v]
    while True:
        shift = (sum(values[i] for i in active) - 1.0) / len(active)
        kept = [i for i in active if values[i] - shift > 0]
        if len(kept) == len(active):
            break
        active = kept
    out = torch.zeros_like(v)
    for i in active:
        out[i] = values[i] - shift
    return out
