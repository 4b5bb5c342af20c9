"""One step of ``torch.optim.Adam`` from a given step count and moments, for the references of
the methods that learn their weighting parameters (GradNorm, IMTL)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def torch_adam_step(
    x: Tensor,
    objective: Callable[[Tensor], Tensor],
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: int,
    *,
    lr: float,
    betas: Sequence[float],
    eps: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """``x`` after one ``torch.optim.Adam`` step on ``objective(x)`` (its gradient by autograd),
    the optimiser resumed at ``step`` previous steps with the given moments; returns the new
    ``(x, exp_avg, exp_avg_sq)``."""
    param = torch.nn.Parameter(x.detach().clone().double())
    opt = torch.optim.Adam([param], lr=lr, betas=tuple(betas), eps=eps)
    if step > 0:
        opt.state[param] = {
            "step": torch.tensor(float(step)),
            "exp_avg": exp_avg.detach().clone().double(),
            "exp_avg_sq": exp_avg_sq.detach().clone().double(),
        }
    opt.zero_grad()
    objective(param).backward()
    opt.step()
    state = opt.state[param]
    return param.detach(), state["exp_avg"].detach(), state["exp_avg_sq"].detach()
