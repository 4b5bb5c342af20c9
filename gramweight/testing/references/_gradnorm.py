"""Reference of GradNorm: the gradient-norm loss on the task weights, differentiated by autograd
and stepped by ``torch.optim.Adam``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ._adam import torch_adam_step
from ._framework import register_reference


@register_reference("gradnorm")
def gradnorm_reference(
    J: Tensor,
    state: Any,
    /,
    *,
    losses: Sequence[float] | Tensor,
    alpha: float = 1.5,
    lr: float = 1e-3,
    betas: Sequence[float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[Tensor, Any]:
    """Chen et al. (ICML 2018), Algorithm 1, on the rows ``g_i`` of the Jacobian ``J`` of the
    last shared layer: ``w = m softmax(z)``, ``G_W^(i) = ‖w_i g_i‖``, the loss
    ``Σ_i |G_W^(i) - mean_j G_W^(j) · r_i^α|`` with the target detached (constant), its gradient
    with respect to ``z`` by autograd, one Adam step. The update is ``Σ_i w_i g_i``."""
    J64 = J.double().cpu()
    m = J.shape[0]
    L = torch.as_tensor(losses, dtype=torch.float64).cpu()
    L0 = L if int(state.step) == 0 else state.initial_losses.double().cpu()
    z = state.logits.double().cpu()

    def weights(logits: Tensor) -> Tensor:
        return m * torch.softmax(logits, dim=0)

    def grad_loss(logits: Tensor) -> Tensor:
        norms = (weights(logits).unsqueeze(1) * J64).norm(dim=1)
        inverse_rate = (L / L0) / (L / L0).mean()
        target = (norms.mean() * inverse_rate**alpha).detach()
        return (norms - target).abs().sum()

    w = weights(z)
    z_new, avg, avg_sq = torch_adam_step(
        z, grad_loss, state.exp_avg.cpu(), state.exp_avg_sq.cpu(), int(state.step),
        lr=lr, betas=betas, eps=eps,
    )
    new_state = type(state)(state.step + 1, z_new, avg, avg_sq, L0)
    return J64.T @ w, new_state
