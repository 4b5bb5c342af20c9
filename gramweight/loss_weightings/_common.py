"""The validation every loss weighting shares: losses in, their dtype and device out."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .._checks import check_vector, message


def check_losses(
    losses: Any, *, length: int | None = None, positive: bool = True
) -> tuple[Tensor, torch.dtype, torch.device]:
    """``losses`` as a float64 vector (detached), with the dtype and device of the weights to
    return: the losses' own for a floating-point tensor, the default dtype on the CPU for a
    sequence of numbers, the default dtype on its device for an integer tensor."""
    v = check_vector(losses, "losses", length=length, positive=positive)
    if v.shape[0] == 0:
        raise ValueError(message("losses", "of length >= 1", "length 0"))
    dtype = v.dtype if v.dtype.is_floating_point else torch.get_default_dtype()
    return v.to(torch.float64), dtype, v.device
