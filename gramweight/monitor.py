r"""What to log during training, from the Gramian (and per block, from a (K, m, m) stack).

All of it comes from $G$ and $w$ alone: the gradients' norms $\sqrt{G_{ii}}$, their cosine
similarities $G_{ij} / \sqrt{G_{ii} G_{jj}}$, which pairs conflict ($G_{ij} < 0$), and the
update's norm $\sqrt{w^\top G w}$ and its inner product with each gradient, $(G w)_i$ (negative:
the update increases loss $i$ to first order).

```python
import torch, gramweight as gw

G = torch.tensor([[4.0, -1.0], [-1.0, 1.0]])
w = gw.upgrad(G)
stats = gw.monitor.summary(G, w)     # plain floats and lists, ready for a logger
print(stats["conflicting_pairs"], round(stats["update_norm"], 4))
```
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._checks import message

__all__ = ["conflicts", "cosine_similarity", "summary", "update_norm"]


def _check(G: Tensor) -> None:
    if not isinstance(G, Tensor) or G.dim() not in (2, 3) or G.shape[-1] != G.shape[-2]:
        raise ValueError(message("G", "a Gramian (m, m) or a stack of them (K, m, m)",
                                 f"shape {tuple(getattr(G, 'shape', ()))}"))


def cosine_similarity(G: Tensor) -> Tensor:
    r"""The (m, m) cosine similarities of the gradients, $G_{ij} / \sqrt{G_{ii} G_{jj}}$ (0 where
    a gradient is zero; 1 on the diagonal of a non-zero one). Batched over a (K, m, m) stack.

    Examples:
        >>> import torch, gramweight as gw
        >>> gw.monitor.cosine_similarity(torch.tensor([[4.0, -2.0], [-2.0, 4.0]]))
        tensor([[ 1.0000, -0.5000],
                [-0.5000,  1.0000]])
    """
    _check(G)
    d = G.diagonal(dim1=-2, dim2=-1).clamp(min=0).sqrt()
    outer = d.unsqueeze(-1) * d.unsqueeze(-2)
    cos = torch.where(outer > 0, G / torch.where(outer > 0, outer, 1), 0)
    return cos.clamp(-1, 1)


def conflicts(G: Tensor) -> Tensor:
    """The (m, m) boolean matrix of conflicting pairs, ``G[i, j] < 0`` (never on the
    diagonal). Batched over a (K, m, m) stack."""
    _check(G)
    eye = torch.eye(G.shape[-1], dtype=torch.bool, device=G.device)
    return (G < 0) & ~eye


def update_norm(G: Tensor, w: Tensor) -> Tensor:
    r"""$\|w^\top J\| = \sqrt{w^\top G w}$ (0-dim), or one per block for (K, m, m) and (K, m)."""
    _check(G)
    return torch.einsum("...i,...ij,...j->...", w.to(G.dtype), G, w.to(G.dtype)).clamp(
        min=0).sqrt()


def summary(G: Tensor, w: Tensor | None = None) -> dict:
    r"""Everything above as plain Python numbers and lists, for a logger.

    Keys: ``gradient_norms`` ($\sqrt{G_{ii}}$), ``cosine_similarity`` (m × m),
    ``conflicting_pairs`` (the number of pairs $i < j$ with $G_{ij} < 0$),
    ``min_cosine``; with ``w``: ``weights``, ``update_norm``, ``alignment`` ($(G w)_i$, the
    update's inner product with each gradient) and ``increases`` (the losses the update
    increases to first order, $(G w)_i < 0$). For a (K, m, m) stack, each value is a list over
    the blocks.
    """
    _check(G)
    if G.dim() == 3:
        blocks = [summary(G[b], None if w is None else (w[b] if w.dim() == 2 else w))
                  for b in range(G.shape[0])]
        return {k: [block[k] for block in blocks] for k in blocks[0]}
    m = G.shape[-1]
    cos = cosine_similarity(G)
    upper = torch.triu(torch.ones(m, m, dtype=torch.bool, device=G.device), 1)
    out = {
        "gradient_norms": G.diagonal().clamp(min=0).sqrt().tolist(),
        "cosine_similarity": cos.tolist(),
        "conflicting_pairs": int((conflicts(G) & upper).sum()),
        "min_cosine": float(cos[upper].min()) if m > 1 else 1.0,
    }
    if w is not None:
        if tuple(w.shape) != (m,):
            raise ValueError(message("w", f"of shape ({m},)", f"shape {tuple(w.shape)}"))
        Gw = G @ w.to(G.dtype)
        out.update(weights=w.tolist(), update_norm=float(update_norm(G, w)),
                   alignment=Gw.tolist(), increases=[i for i in range(m) if Gw[i] < 0])
    return out
