"""For users who have gradients, not a model: the Jacobian's Gramian, the update, ``.grad``.

A Jacobian is given as one (m, n) tensor (row ``i``: the gradient of loss ``i``), or as one
tensor (m, *p.shape) per parameter, in the order of the parameters. Every function accepts
both forms and returns the update in the form it was given.

```python
import torch, gramweight as gw

model = torch.nn.Linear(3, 2)
losses = model(torch.randn(8, 3)).pow(2).mean(0)           # (2,) losses
J = gw.jacobian.of(losses, list(model.parameters()))      # [(2, 2, 3), (2, 2)]
G = gw.jacobian.gramian(J)                                 # (2, 2)
update = gw.jacobian.combine(J, gw.upgrad(G))              # w @ J, per parameter
gw.jacobian.write_grad(list(model.parameters()), update)   # accumulate into .grad
```
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ._checks import message

__all__ = ["combine", "gramian", "of", "write_grad"]

Jacobian = Tensor | Sequence[Tensor]


def _rows(J: Jacobian, name: str = "J") -> list[Tensor]:
    """The Jacobian as a list of (m, numel) matrices, checked."""
    parts = [J] if isinstance(J, Tensor) else list(J)
    if not parts or not all(isinstance(x, Tensor) for x in parts):
        raise TypeError(message(name, "a tensor (m, n) or a non-empty sequence of tensors "
                                "(m, *shape)", type(J).__name__))
    m = parts[0].shape[0] if parts[0].dim() else None
    for x in parts:
        if x.dim() < 1 or x.shape[0] != m or not x.dtype.is_floating_point:
            raise ValueError(message(name, "floating-point tensors with the same number of "
                                     "rows m (one per loss)",
                                     f"shapes {[tuple(x.shape) for x in parts]}"))
    if isinstance(J, Tensor) and J.dim() != 2:
        raise ValueError(message(name, "of shape (m, n) when it is one tensor (a list of "
                                 "tensors (m, *shape) for one per parameter)",
                                 f"shape {tuple(J.shape)}"))
    return [x.reshape(m, -1) for x in parts]


def gramian(J: Jacobian) -> Tensor:
    r"""$G = J J^\top$, shape (m, m), summed over the parameters of a per-parameter Jacobian.

    Examples:
        >>> import torch, gramweight as gw
        >>> gw.jacobian.gramian(torch.tensor([[1.0, 2.0], [3.0, -1.0]]))
        tensor([[ 5.,  1.],
                [ 1., 10.]])
    """
    rows = _rows(J)
    G = rows[0] @ rows[0].T
    for r in rows[1:]:
        G = G + r @ r.T
    return G


def combine(J: Jacobian, weights: Tensor | Callable[[Tensor], Tensor]) -> Jacobian:
    r"""The update $w^\top J$, in the form ``J`` was given.

    Args:
        J: the Jacobian, (m, n) or one (m, *shape) per parameter.
        weights: the (m,) weights, or a callable ``G -> w`` (a stateless weighting, a
            ``functools.partial`` of one with its options, or a `gramweight.Weighter`), called
            on ``gramian(J)``.

    Returns:
        (n,) for an (m, n) ``J``; a list of tensors of the parameters' shapes otherwise.

    Examples:
        >>> import torch, gramweight as gw
        >>> J = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])
        >>> gw.jacobian.combine(J, torch.tensor([0.5, 0.5]))
        tensor([0.0000, 0.5000])
        >>> gw.jacobian.combine(J, gw.mean)
        tensor([0.0000, 0.5000])
    """
    rows = _rows(J)
    w = weights(gramian(J)) if callable(weights) else weights
    m = rows[0].shape[0]
    if not isinstance(w, Tensor) or tuple(w.shape) != (m,):
        raise ValueError(message("weights", f"of shape ({m},), one per row of J",
                                 f"{type(w).__name__} of shape {tuple(getattr(w, 'shape', ()))}"))
    out = [(w.to(r.dtype) @ r) for r in rows]
    if isinstance(J, Tensor):
        return out[0]
    return [u.reshape(x.shape[1:]) for u, x in zip(out, J)]


def of(losses: Tensor, params: Sequence[Tensor], *, retain_graph: bool = False
       ) -> list[Tensor]:
    """The Jacobian of ``losses.flatten()`` w.r.t. ``params``: one (m, *p.shape) per parameter,
    by one vmapped backward pass (zeros where a loss does not reach a parameter).

    This materialises the Jacobian, (m × number of parameters): for a model, the autogram
    engine gives the Gramian and the update without it.
    """
    if not isinstance(losses, Tensor) or not losses.requires_grad:
        raise ValueError(message("losses", "a tensor that requires grad", type(losses).__name__))
    params = list(params)
    flat = losses.reshape(-1)
    eye = torch.eye(flat.shape[0], dtype=flat.dtype, device=flat.device)
    grads = torch.autograd.grad(flat, params, eye, retain_graph=retain_graph,
                                allow_unused=True, is_grads_batched=True)
    return [torch.zeros(flat.shape[0], *p.shape, dtype=p.dtype, device=p.device)
            if g is None else g for g, p in zip(grads, params)]


def write_grad(params: Sequence[Tensor], update: Tensor | Sequence[Tensor], *,
               accumulate: bool = True) -> None:
    """Put ``update`` into the ``.grad`` of ``params``, as ``backward`` would.

    Args:
        params: the parameters, in the order of the Jacobian's columns (or of its tensors).
        update: a flat (n,) vector (n the parameters' total size), or one tensor per
            parameter of its shape.
        accumulate: add to an existing ``.grad`` (as autograd does); False replaces it.
    """
    params = list(params)
    if isinstance(update, Tensor):
        sizes = [p.numel() for p in params]
        if update.dim() != 1 or update.numel() != sum(sizes):
            raise ValueError(message("update", f"a flat vector of the parameters' total size "
                                     f"({sum(sizes)}) or one tensor per parameter",
                                     f"shape {tuple(update.shape)}"))
        parts = [u.reshape(p.shape) for u, p in zip(update.split(sizes), params)]
    else:
        parts = list(update)
        if len(parts) != len(params) or any(u.shape != p.shape for u, p in zip(parts, params)):
            raise ValueError(message("update", "one tensor per parameter, of its shape",
                                     f"{len(parts)} tensors for {len(params)} parameters"))
    with torch.no_grad():
        for p, u in zip(params, parts):
            u = u.detach().to(p.dtype)
            if p.grad is None or not accumulate:
                p.grad = u.clone()
            else:
                p.grad += u
