"""The generic fallback: every use of a parameter that no rule covers.

The recorder redirects each such use to a per-call alias ``p.view_as(p)`` (see
``autogram/_recording.py``), so the gradient of the alias is exactly that use's contribution.

- With ``batch_dim=None`` the engine's one backward reaches the aliases themselves: their
  gradients are the per-loss gradients.
- With ``batch_dim=0`` that backward stops at the call's outputs (their gradient edges, taken
  when the call ended), and a local backward from the outputs to the aliases, vmapped over
  the losses with each output gradient restricted to its own sample, gives the per-sample
  gradients. It runs through the call's own recorded graph,
  so dropout and anything stochastic inside stay exact.

The engine asks ``targets`` what to differentiate the losses to for a call, and gives what
it gets for them to ``generic``, which returns factors like a rule does.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from torch import Tensor, nn

from .._validation import check_batch_size
from ._factors import Factor, PerLoss

__all__ = ["generic", "targets"]

Aliases = Mapping[Hashable, tuple[nn.Parameter, Tensor]]


def targets(aliases: Aliases, outputs: list, *, batched: bool) -> list:
    """What the engine's backward differentiates the losses to for one call: the gradient
    edges of its outputs (batched), or its aliases."""
    return [o.edge for o in outputs] if batched else [a for _, a in aliases.values()]


def generic(module: str, aliases: Aliases, outputs: list,
            grads: list[Tensor | None], *, batched: bool, n: int, t: int,
            retain_graph: bool = True) -> dict[Hashable, Factor]:
    """Per-loss gradients of the parameters one call used through its aliases.

    Args:
        module: the module called, as errors name it (``Linear 'h.0.fc'``).
        aliases: ``{key: (parameter, alias)}``, the call's aliases.
        outputs: the call's outputs that require grad, as targets (``_recording.Target``:
            gradient edges taken when the call ended, so that an in-place change of an output
            afterwards does not move them); an output broadcast over the batch stands for
            its expansions.
        grads: what the engine's backward gave for ``targets(aliases, outputs, batched=...)``,
            in that order, each with a leading loss axis; None where a target has no path
            to the losses.
        batched: whether dimension 0 indexes independent samples (``batch_dim=0``).
        n, t: samples and tasks: loss ``(s, k)`` is row ``s * t + k``.
        retain_graph: whether the local backward (``batched``) keeps the graph it runs through.

    Returns:
        ``{key: PerLoss}`` for every alias of ``aliases`` that the losses depend on.
    """
    if not batched:
        return {key: PerLoss(g.reshape(n * t, *p.shape))
                for (key, (p, _)), g in zip(aliases.items(), grads) if g is not None}
    outs, cots = [], []
    for out, dY in zip(outputs, grads):
        if dY is None:
            continue
        shape = out.shape
        check_batch_size(module, shape[0] if len(shape) else 0, n)
        dY = out.gradient(dY)
        eye = torch.eye(n, dtype=dY.dtype, device=dY.device)
        mask = eye.reshape(n, 1, n, *([1] * (len(shape) - 1)))
        cots.append(out.cotangent((dY.unsqueeze(0) * mask).reshape(n * t, *shape)))
        outs.append(out.edge)
    if not outs:
        return {}
    with torch.enable_grad():
        gs = torch.autograd.grad(outs, [a for _, a in aliases.values()], cots,
                                 retain_graph=retain_graph, allow_unused=True,
                                 is_grads_batched=True)
    return {key: PerLoss(g) for key, g in zip(aliases, gs) if g is not None}
