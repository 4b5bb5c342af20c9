"""GradNorm: task weights learned so that the gradient norms train at balanced rates."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .._checks import check_gramian, check_number, check_state, check_vector
from ._adam import adam_step, check_adam

__all__ = ["GradNormState", "gradnorm", "gradnorm_init"]


class GradNormState(NamedTuple):
    r"""State of [`gradnorm`][gramweight.gradnorm].

    Attributes:
        step: Number of calls so far (0-dim ``int64``): the number of Adam steps taken.
        logits: The learned logits $z$ of the task weights $m\,\mathrm{softmax}(z)$
            (shape (m,)), zero at first (every weight 1).
        exp_avg: Adam's first moment of their gradient (shape (m,)).
        exp_avg_sq: Adam's second moment of their gradient (shape (m,)).
        initial_losses: The losses $L_i(0)$ of the first call (shape (m,)); unused while
            ``step`` is 0.
    """

    step: Tensor
    logits: Tensor
    exp_avg: Tensor
    exp_avg_sq: Tensor
    initial_losses: Tensor


def gradnorm_init(
    m: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> GradNormState:
    """Fresh state of [`gradnorm`][gramweight.gradnorm]: logits 0, Adam's moments 0, no initial
    losses yet (the first call records them).

    Examples:
        >>> import gramweight as gw
        >>> gw.gradnorm_init(2).logits
        tensor([0., 0.])
    """
    check_number(m, "m", low=1, integer=True)
    zeros = torch.zeros(m, dtype=dtype, device=device)
    step = torch.zeros((), dtype=torch.int64, device=device)
    return GradNormState(step, zeros, zeros, zeros, zeros)


def gradnorm(
    G: Tensor,
    state: GradNormState,
    /,
    *,
    losses: Sequence[float] | Tensor,
    alpha: float = 1.5,
    lr: float = 1e-3,
    betas: Sequence[float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[Tensor, GradNormState]:
    r"""GradNorm (Chen, Badrinarayanan, Lee and Rabinovich, "GradNorm: Gradient Normalization
    for Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018,
    https://arxiv.org/abs/1711.02257).

    The task weights $w = m\,\mathrm{softmax}(z)$ (they sum to ``m``) are learned so that
    the norms $G_W^{(i)} = w_i \|\nabla_W L_i\|$ of the weighted gradients on ``W``,
    the last shared layer, train at rates balanced by the loss ratios: with
    $\tilde L_i = L_i / L_i(0)$, $r_i = \tilde L_i / \operatorname{mean}_j
    \tilde L_j$ and $\bar G_W = \operatorname{mean}_i G_W^{(i)}$,

    $$
    L_\mathrm{grad}(z) = \sum_i \bigl| w_i n_i - \bar G_W\, r_i^\alpha \bigr|,
    \qquad n_i = \sqrt{G_{ii}},
    $$

    the targets $\bar G_W r_i^\alpha$ held constant (as the paper says). Its gradient
    (with $\operatorname{sign} 0 = 0$, for a norm on its target to ``10 m eps`` of the
    largest $w_i n_i$, eps of ``G``'s dtype) is

    $$
    \frac{\partial L_\mathrm{grad}}{\partial z_k} = w_k \Bigl(\sigma_k n_k
    - \frac1m \sum_i \sigma_i n_i w_i\Bigr), \qquad
    \sigma_i = \operatorname{sign}(w_i n_i - \bar G_W r_i^\alpha).
    $$

    The weights returned are this call's $w$; then one Adam step (lr, betas, eps as
    ``torch.optim.Adam``'s) moves the logits along that gradient. The first call records the
    losses as $L_i(0)$ (so its ratios are all 1).

    ``G`` is the Gramian of ``W``'s parameters only (the norms $n_i$ are read off its
    diagonal): with the engine, one block of ``engine.gramian(losses, per="module")``, whose
    blocks follow ``engine.blocks``; the update of all shared parameters is ``w @ J`` (pass
    ``w`` to ``engine.backward``).

    Args:
        G: Gramian (m, m) of the last shared layer's parameters.
        state: From [`gradnorm_init`][gramweight.gradnorm_init] or the previous call (never
            modified).
        losses: The m loss values $L_i$ at this step (a sequence or a tensor), positive.
        alpha: The asymmetry $\alpha \ge 0$ (0 pulls every norm to the mean).
        lr: Adam's learning rate for the logits (``>= 0``; 0 keeps them fixed).
        betas: Adam's decays of the moments, each in [0, 1).
        eps: Adam's term added to the root of the second moment (``> 0``).

    Returns:
        ``(w, new_state)``: weights of shape (m,) and the state after the logits' step, both
        with ``G``'s dtype and device.

    Properties:
        Pure (state in, new state out); permutation-equivariant when the losses and the state
        are permuted with ``G``. Not non-conflicting; not scale-invariant beyond Adam's ``eps``
        (Adam's step does not depend on the scale of the gradient norms, its ``eps`` does).

    Deviations:
        The paper updates raw weights and renormalises them to sum to ``m``; LibMTL's
        ``GradNorm`` (as here) learns logits of a softmax, with the model's optimiser; here the
        logits take one explicit Adam step per call, kept in the state. TorchJD has no
        GradNorm.

    Raises:
        TypeError, ValueError: a state of another kind or built for another m; ``losses`` of
            the wrong length or not positive; an option out of range.

    Examples:
        >>> import torch, gramweight as gw
        >>> _ = torch.manual_seed(0)
        >>> trunk = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 4))
        >>> heads = torch.nn.Linear(4, 2)                    # one output per task
        >>> x, y = torch.randn(8, 3), torch.randn(8, 2)
        >>> state = gw.gradnorm_init(2)
        >>> with gw.autogram.Engine(trunk, batch_dim=None) as engine:
        ...     for step in range(3):
        ...         losses = ((heads(trunk(x)) - y) ** 2).mean(dim=0)   # m = 2 task losses
        ...         Gs = engine.gramian(losses, per="module")      # (2, 2, 2): blocks "0", "2"
        ...         last = Gs[engine.blocks.index("2")]            # the last shared layer
        ...         w, state = gw.gradnorm(last, state, losses=losses, lr=0.1)
        ...         engine.backward(w)
        >>> engine.blocks, w
        (('0', '2'), tensor([0.8027, 1.1973]))
        >>> state.step
        tensor(3)
    """
    G = check_gramian(G).detach()
    m = G.shape[-1]
    check_state(
        state, GradNormState, step=(), logits=(m,), exp_avg=(m,), exp_avg_sq=(m,),
        initial_losses=(m,),
    )
    check_number(alpha, "alpha", low=0.0)
    betas_ = check_adam(lr, betas, eps)
    G64 = G.to(torch.float64)
    L = check_vector(losses, "losses", length=m, positive=True, like=G64)
    z, avg, avg_sq, L0 = (
        x.to(dtype=torch.float64, device=G.device)
        for x in (state.logits, state.exp_avg, state.exp_avg_sq, state.initial_losses)
    )
    first = int(state.step) == 0
    if first:
        L0 = L
    w = m * torch.softmax(z, dim=0)
    n = G64.diagonal().sqrt()
    ratio = L / L0
    target = (w * n).mean() * (ratio / ratio.mean()) ** alpha
    gap = w * n - target
    # a norm on its target to the precision of G (all norms equal at the first call) is
    # on target: |.| has no slope there, and round-off must not pick one
    on_target = gap.abs() <= 10 * m * torch.finfo(G.dtype).eps * (w * n).amax()
    sign = torch.where(on_target, 0.0, torch.sign(gap))
    grad = w * (sign * n - (sign * n * w).sum() / m)
    step = state.step.to(G.device) + 1
    z, avg, avg_sq = adam_step(z, grad, avg, avg_sq, int(step), lr=lr, betas=betas_, eps=eps)
    new_state = GradNormState(
        step, z.to(G.dtype), avg.to(G.dtype), avg_sq.to(G.dtype), L0.to(G.dtype)
    )
    return w.to(G.dtype), new_state
