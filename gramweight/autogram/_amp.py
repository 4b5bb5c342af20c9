"""Mixed precision: the Gramian of losses scaled by ``torch.amp.GradScaler``."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from .._checks import message

__all__ = ["unscale"]


def unscale(G: Tensor, scaler: Any) -> Tensor:
    r"""The Gramian of the unscaled losses, from that of ``scaler.scale(losses)``.

    Scaling the losses by $S$ scales every gradient by $S$, hence $G$ by $S^2$: weightings that
    are not scale-invariant (UPGrad's and DualProj's `norm_eps`, CAGrad, Nash-MTL, ...) need
    ``G / S**2``. The weights from it go to ``engine.backward(w)`` as they are: the gradients it
    writes are then $S$ times the unscaled ones, which ``scaler.step(optimizer)`` unscales as it
    does after ``scaler.scale(loss).backward()``.

    ```python
    G = gw.autogram.unscale(engine.gramian(scaler.scale(losses)), scaler)
    engine.backward(gw.upgrad(G))
    scaler.step(optimizer)
    scaler.update()
    ```

    Args:
        G: the Gramian (m, m), or a (K, m, m) stack, of the scaled losses.
        scaler: a ``torch.amp.GradScaler`` (anything with ``get_scale()``).
    """
    get_scale = getattr(scaler, "get_scale", None)
    if get_scale is None:
        raise TypeError(message("scaler", "a torch.amp.GradScaler (with get_scale())",
                                type(scaler).__name__))
    S = float(get_scale())
    return G / (S * S)
