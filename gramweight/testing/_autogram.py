"""Reference Gramian of a model's losses: ``J @ J.T`` with the Jacobian from ``torch.func``."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .._checks import message

__all__ = ["reference_gramian"]


def reference_gramian(model_or_params: nn.Module | Sequence[Tensor],
                      losses_fn: Callable[..., Tensor]) -> Tensor:
    """The Gramian ``J @ J.T`` of ``losses_fn()``'s gradients, from ``torch.func.jacrev``.

    Obviously correct and slow: the whole Jacobian (m, n) is built. Use it to check the
    autogram engine, or a rule of your own, on small models.

    Args:
        model_or_params: a module (the Jacobian is taken w.r.t. its parameters that require
            grad; tied parameters count once) and then ``losses_fn()`` takes no argument and
            calls the module; or a sequence of tensors and then ``losses_fn(*params)`` takes
            them as arguments.
        losses_fn: returns the losses, any shape; rows of ``G`` follow ``losses.flatten()``.
            It runs once under ``torch.func.jacrev``: it must not update buffers in place
            (BatchNorm tracking running statistics in training mode), and randomness (dropout)
            is drawn as in an ordinary call, so seed it as you seed the run you compare with.

    Returns:
        ``G`` of shape (m, m).

    Examples:
        >>> import torch
        >>> from gramweight.testing import reference_gramian
        >>> w = torch.tensor([1.0, 2.0])
        >>> reference_gramian([w], lambda w: torch.stack([w.sum(), (w ** 2).sum()]))
        tensor([[ 2.,  6.],
                [ 6., 20.]])
    """
    if isinstance(model_or_params, nn.Module):
        params = tuple(p for p in model_or_params.parameters() if p.requires_grad)
        index = {id(p): k for k, p in enumerate(params)}
        # every place a parameter is registered (a tied parameter has several)
        slots = [(mod, name, index[id(p)]) for mod in model_or_params.modules()
                 for name, p in mod._parameters.items() if p is not None and id(p) in index]

        def f(*ps: Tensor) -> Tensor:
            for mod, name, k in slots:
                mod._parameters[name] = ps[k]
            try:
                return losses_fn().flatten()
            finally:
                for mod, name, k in slots:
                    mod._parameters[name] = params[k]
    else:
        params = tuple(model_or_params)
        if not all(isinstance(p, Tensor) for p in params):
            raise TypeError(message("model_or_params", "an nn.Module or a sequence of tensors",
                                    type(model_or_params).__name__))

        def f(*ps: Tensor) -> Tensor:
            return losses_fn(*ps).flatten()
    if not params:
        raise ValueError(message("model_or_params", "with parameters that require grad", "none"))
    jac = torch.func.jacrev(f, argnums=tuple(range(len(params))))(*params)
    J = torch.cat([j.reshape(j.shape[0], -1) for j in jac], dim=1)
    return (J @ J.T).detach()
