"""One Adam step on a small vector of learned weighting parameters (GradNorm's logits, IMTL's
log scales), written out so that it lives in the method's state."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from .._checks import check_number, message

__all__ = ["adam_step", "check_adam"]


def check_adam(lr: float, betas: Sequence[float], eps: float) -> tuple[float, float]:
    """Validate Adam's options; returns ``betas`` as two floats."""
    check_number(lr, "lr", low=0.0)
    if not isinstance(betas, Sequence) or len(betas) != 2:
        raise TypeError(message("betas", "a pair of numbers", repr(betas)))
    b1 = check_number(betas[0], "betas[0]", low=0.0, high=1.0, high_open=True)
    b2 = check_number(betas[1], "betas[1]", low=0.0, high=1.0, high_open=True)
    check_number(eps, "eps", low=0.0, low_open=True)
    return float(b1), float(b2)


def adam_step(
    x: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: int,
    *,
    lr: float,
    betas: tuple[float, float],
    eps: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Adam (Kingma and Ba, ICLR 2015, Algorithm 1) at its ``step``-th step (from 1):
    ``(x, exp_avg, exp_avg_sq)`` after it. Nothing is modified in place."""
    b1, b2 = betas
    exp_avg = b1 * exp_avg + (1.0 - b1) * grad
    exp_avg_sq = b2 * exp_avg_sq + (1.0 - b2) * grad * grad
    m_hat = exp_avg / (1.0 - b1**step)
    v_hat = exp_avg_sq / (1.0 - b2**step)
    return x - lr * m_hat / (v_hat.sqrt() + eps), exp_avg, exp_avg_sq
