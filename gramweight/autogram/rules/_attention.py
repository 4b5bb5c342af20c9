"""``nn.MultiheadAttention``: computed as linear maps plus attention, so that the Linear rule
covers every one of its parameters.

The engine's recorder intercepts ``F.multi_head_attention_forward`` and calls
``multi_head_attention`` instead: the same function written with batch-first tensors, where
each projection goes through ``linear(x, weight, bias, bias_rows=...)``, a callback that records
the use for the Linear rule. The result is the same up to round-off (attention weights are
computed in another order), and dropout draws the same masks as without the engine.
Unusual configurations (``add_bias_kv``, ``add_zero_attn``, static keys, unbatched inputs) return
``NotImplemented`` and go to the generic fallback.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["DECOMPOSITIONS", "multi_head_attention"]


def _float_mask(mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
    if mask is None or mask.dtype.is_floating_point:
        return mask
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(mask, -math.inf)


def multi_head_attention(
    query, key, value, embed_dim_to_check, num_heads, in_proj_weight, in_proj_bias, bias_k,
    bias_v, add_zero_attn, dropout_p, out_proj_weight, out_proj_bias, training=True,
    key_padding_mask=None, need_weights=True, attn_mask=None, use_separate_proj_weight=False,
    q_proj_weight=None, k_proj_weight=None, v_proj_weight=None, static_k=None, static_v=None,
    average_attn_weights=True, is_causal=False, *, linear,
):
    """Same signature as ``F.multi_head_attention_forward`` plus the ``linear`` callback."""
    if (bias_k is not None or bias_v is not None or add_zero_attn or static_k is not None
            or static_v is not None or query.dim() != 3):
        return NotImplemented
    E, H = embed_dim_to_check, num_heads
    L, B, _ = query.shape
    S = key.shape[0]
    d = E // H
    q_in, k_in, v_in = (x.transpose(0, 1) for x in (query, key, value))  # batch first
    if not use_separate_proj_weight:
        if query is key and key is value:
            q, k, v = linear(q_in, in_proj_weight, in_proj_bias).chunk(3, dim=-1)
        else:  # one packed weight, three inputs: three uses of the whole weight
            q = linear(q_in, in_proj_weight, in_proj_bias)[..., :E]
            k = linear(k_in, in_proj_weight, in_proj_bias)[..., E:2 * E]
            v = linear(v_in, in_proj_weight, in_proj_bias)[..., 2 * E:]
    else:
        q = linear(q_in, q_proj_weight, in_proj_bias, bias_rows=slice(0, E))
        k = linear(k_in, k_proj_weight, in_proj_bias, bias_rows=slice(E, 2 * E))
        v = linear(v_in, v_proj_weight, in_proj_bias, bias_rows=slice(2 * E, 3 * E))
    q = q.reshape(B, L, H, d).transpose(1, 2)
    k = k.reshape(B, S, H, d).transpose(1, 2)
    v = v.reshape(B, S, H, d).transpose(1, 2)

    mask = _float_mask(attn_mask, q.dtype)
    if mask is not None:
        mask = mask.reshape(B, H, L, S) if mask.dim() == 3 else mask.reshape(1, 1, L, S)
    if key_padding_mask is not None:
        kpm = _float_mask(key_padding_mask, q.dtype).reshape(B, 1, 1, S)
        mask = kpm if mask is None else mask + kpm
    if not training:
        dropout_p = 0.0

    if need_weights:
        scores = (q * math.sqrt(1.0 / d)) @ k.transpose(-2, -1)
        if mask is not None:
            scores = scores + mask
        weights = torch.softmax(scores, dim=-1)
        if dropout_p > 0.0:
            weights = F.dropout(weights, p=dropout_p)
        out = weights @ v
        if average_attn_weights:
            weights = weights.mean(dim=1)
    else:
        causal = is_causal and mask is None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                             is_causal=causal)
        weights = None
    out = out.transpose(1, 2).reshape(B, L, E)
    out = linear(out, out_proj_weight, out_proj_bias)
    # sequence-first and contiguous, as torch returns it: later ops that depend on the memory
    # layout (dropout draws its mask in memory order) then behave exactly as without the engine
    return out.transpose(0, 1).contiguous(), weights


DECOMPOSITIONS = {F.multi_head_attention_forward: multi_head_attention}
"""Functions the recorder replaces by an equivalent written with recorded ``linear`` uses."""
