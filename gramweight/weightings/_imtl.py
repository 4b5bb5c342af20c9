"""IMTL: impartial multi-task learning, the hybrid of learned loss scales and IMTL-G."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from .._checks import check_gramian, check_number, check_state, check_vector
from ..solvers import work_dtype
from ._adam import adam_step, check_adam
from ._imtl_g import imtl_g

__all__ = ["IMTLState", "imtl", "imtl_init"]


class IMTLState(NamedTuple):
    """State of [`imtl`][gramweight.imtl].

    Attributes:
        step: Number of calls so far (0-dim ``int64``): the number of Adam steps taken.
        log_scales: The learned log loss scales $s$ (shape (m,)), zero at first.
        exp_avg: Adam's first moment of their gradient (shape (m,)).
        exp_avg_sq: Adam's second moment of their gradient (shape (m,)).
    """

    step: Tensor
    log_scales: Tensor
    exp_avg: Tensor
    exp_avg_sq: Tensor


def imtl_init(
    m: int, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> IMTLState:
    """Fresh state of [`imtl`][gramweight.imtl]: log scales 0 (every scale 1), Adam's moments 0.

    Examples:
        >>> import gramweight as gw
        >>> gw.imtl_init(2)
        IMTLState(step=tensor(0), log_scales=tensor([0., 0.]), exp_avg=tensor([0., 0.]), exp_avg_sq=tensor([0., 0.]))
    """
    check_number(m, "m", low=1, integer=True)
    zeros = torch.zeros(m, dtype=dtype, device=device)
    return IMTLState(torch.zeros((), dtype=torch.int64, device=device), zeros, zeros, zeros)


def imtl(
    G: Tensor,
    state: IMTLState,
    /,
    *,
    losses: Sequence[float] | Tensor,
    lr: float = 1e-3,
    betas: Sequence[float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> tuple[Tensor, IMTLState]:
    r"""IMTL, the hybrid (Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021,
    https://openreview.net/forum?id=IMPnRXEWpvr).

    IMTL-L learns a log scale $s_i$ per task and trains on the scaled losses
    $e^{s_i} L_i - s_i$; IMTL-G then balances the gradients of the scaled losses,
    $e^{s_i} g_i$, whose Gramian is $D G D$ with $D =
    \operatorname{diag}(e^{s})$. With $\alpha$ = [`imtl_g`][gramweight.imtl_g] of
    $D G D$ (its weights sum to 1), the update on the shared parameters is
    $\sum_i \alpha_i e^{s_i} g_i$:

    $$
    w = \alpha \odot e^{s}, \qquad \alpha = \mathrm{imtl\_g}(D G D).
    $$

    The weights use this call's scales; then one Adam step (lr, betas, eps as
    ``torch.optim.Adam``'s) moves them along the gradient of $\sum_i (e^{s_i} L_i -
    s_i)$, $\partial / \partial s_i = e^{s_i} L_i - 1$ (zero at $s_i = -\log
    L_i$, where the scaled loss is 1). The task-specific parameters, outside ``G``, get the
    gradients of the scaled losses $e^{s_i} L_i$ as usual.

    Args:
        G: Gramian of shape (m, m) of the shared parameters.
        state: From [`imtl_init`][gramweight.imtl_init] or the previous call (never modified).
        losses: The m loss values $L_i$ at this step (a sequence or a tensor), positive.
        lr: Adam's learning rate for the log scales (``>= 0``; 0 keeps them fixed).
        betas: Adam's decays of the moments, each in [0, 1).
        eps: Adam's term added to the root of the second moment (``> 0``).

    Returns:
        ``(w, new_state)``: weights of shape (m,) and the state after the scales' step, both
        with ``G``'s dtype and device.

    Properties:
        Pure (state in, new state out), scale-invariant (as IMTL-G), permutation-equivariant
        when the losses and the state are permuted with ``G``. Not non-conflicting.

    Deviations:
        The paper and LibMTL's ``IMTL`` train the scales with the model's optimiser; here they
        take one explicit Adam step per call, kept in the state. IMTL-G is
        [`imtl_g`][gramweight.imtl_g] (its deviations apply). TorchJD has IMTL-G only.

    Raises:
        TypeError, ValueError: a state of another kind or built for another m; ``losses`` of
            the wrong length or not positive; an option out of range.

    Examples:
        >>> import torch, gramweight as gw
        >>> G = torch.tensor([[18.0, -22.0], [-22.0, 38.0]], dtype=torch.float64)
        >>> w, state = gw.imtl(G, gw.imtl_init(2), losses=[0.5, 2.0], lr=0.1)
        >>> w                      # the first call: every scale 1, IMTL-G's weights
        tensor([0.5923, 0.4077], dtype=torch.float64)
        >>> state.log_scales       # one Adam step: up where L < 1, down where L > 1
        tensor([ 0.1000, -0.1000], dtype=torch.float64)
    """
    G = check_gramian(G).detach()
    m = G.shape[-1]
    check_state(state, IMTLState, step=(), log_scales=(m,), exp_avg=(m,), exp_avg_sq=(m,))
    betas_ = check_adam(lr, betas, eps)
    G64 = G.to(torch.float64)
    L = check_vector(losses, "losses", length=m, positive=True, like=G64)
    s, avg, avg_sq = (
        x.to(dtype=torch.float64, device=G.device)
        for x in (state.log_scales, state.exp_avg, state.exp_avg_sq)
    )
    scales = s.exp()
    # IMTL-G on D G D in the work dtype of G (float64, or float32 for float32 and the half
    # precisions): its rank cut-off then follows the input's precision, not float64's, and a
    # half input is not rounded back to half after the rescaling; IMTL-G is scale-invariant,
    # so D G D / max(D)² (no entry larger than G's) will do
    unit = scales / scales.amax()
    scaled = (unit.unsqueeze(1) * G64 * unit).to(work_dtype(G.dtype))
    alpha = imtl_g(scaled).to(torch.float64)
    w = alpha * scales
    step = state.step.to(G.device) + 1
    s, avg, avg_sq = adam_step(
        s, scales * L - 1.0, avg, avg_sq, int(step), lr=lr, betas=betas_, eps=eps
    )
    new_state = IMTLState(step, s.to(G.dtype), avg.to(G.dtype), avg_sq.to(G.dtype))
    return w.to(G.dtype), new_state
