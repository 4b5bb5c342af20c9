"""Rule for ``nn.Embedding`` (without ``max_norm``, ``scale_grad_by_freq`` or ``sparse``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ._factors import Factor, Rows
from ._registry import register_rule, split_samples


def _plain(module: nn.Embedding) -> bool:
    return module.max_norm is None and not module.scale_grad_by_freq and not module.sparse


@register_rule(nn.Embedding, when=_plain)
def embedding(module: nn.Embedding, inputs: tuple, grad_output: Tensor, *, batched: bool
              ) -> dict[str, Factor]:
    """Per-loss gradients restricted to the rows the batch looks up (exact, never V x D)."""
    idx, dY, n, t = split_samples(inputs[0].unsqueeze(-1), grad_output, batched, 1)
    idx = idx[..., 0]  # (n, P)
    D = module.embedding_dim
    rows, inverse = torch.unique(idx, return_inverse=True)
    U = rows.shape[0]
    flat = (inverse + U * torch.arange(n, device=idx.device).unsqueeze(1)).reshape(-1)
    src = dY.permute(1, 2, 0, 3).reshape(-1, t, D)  # (n * P, t, D)
    compact = dY.new_zeros(n * U, t, D).index_add_(0, flat, src)
    compact = compact.reshape(n, U, t, D).transpose(1, 2)  # (n, t, U, D)
    if module.padding_idx is not None:
        compact = compact * (rows != module.padding_idx).to(compact.dtype).unsqueeze(-1)
    return {"weight": Rows(compact.reshape(n * t, U, D), rows, module.weight.shape)}
