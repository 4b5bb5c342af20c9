"""Rules for the affine parameters of ``LayerNorm``, ``GroupNorm``, ``RMSNorm``, BatchNorm, and
Hugging Face's RMSNorm (by qualified name)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._factors import Factor, PerLoss
from ._registry import register_rule, split_samples


def _affine(xhat: Tensor, grad_output: Tensor, batched: bool, features: int, has_bias: bool
            ) -> dict[str, Factor]:
    # y = xhat * weight + bias (broadcast over the leading dimensions)
    xh, dY, n, t = split_samples(xhat, grad_output, batched, features)
    xh, dY = xh.flatten(2), dY.flatten(3)
    shape = xhat.shape[xhat.dim() - features:]
    out: dict[str, Factor] = {
        "weight": PerLoss(torch.einsum("tnpf,npf->ntf", dY, xh).reshape(n * t, *shape))
    }
    if has_bias:
        out["bias"] = PerLoss(dY.sum(2).transpose(0, 1).reshape(n * t, *shape))
    return out


@register_rule(nn.LayerNorm)
def layer_norm(module: nn.LayerNorm, inputs: tuple, grad_output: Tensor, *, batched: bool
               ) -> dict[str, Factor]:
    """``y = normalise(x) * weight + bias`` over the last ``len(normalized_shape)`` dims."""
    ns = module.normalized_shape
    xhat = F.layer_norm(inputs[0], ns, eps=module.eps)
    return _affine(xhat, grad_output, batched, len(ns), module.bias is not None)


@register_rule(nn.RMSNorm)
def rms_norm(module: nn.RMSNorm, inputs: tuple, grad_output: Tensor, *, batched: bool
             ) -> dict[str, Factor]:
    """``y = x / rms(x) * weight`` over the last ``len(normalized_shape)`` dims."""
    ns = module.normalized_shape
    xhat = F.rms_norm(inputs[0], ns, eps=module.eps)
    return _affine(xhat, grad_output, batched, len(ns), False)


@register_rule(nn.GroupNorm)
def group_norm(module: nn.GroupNorm, inputs: tuple, grad_output: Tensor, *, batched: bool
               ) -> dict[str, Factor]:
    """``y = normalise_per_group(x) * weight[c] + bias[c]`` on (N, C, ...) inputs."""
    x = inputs[0]
    xhat = F.group_norm(x, module.num_groups, eps=module.eps)
    # channels last, so that the per-channel parameters are the trailing feature dimension
    xhat = xhat.movedim(1, -1)
    dY = grad_output.movedim(2, -1)
    return _affine(xhat, dY, batched, 1, True)


def _batch_statistics(module: nn.modules.batchnorm._BatchNorm) -> bool:
    """Whether a BatchNorm normalises with the statistics of the batch (as its forward does)."""
    return module.training or module.running_mean is None or module.running_var is None


@register_rule(nn.modules.batchnorm._BatchNorm)
def batch_norm(module: nn.modules.batchnorm._BatchNorm, inputs: tuple, grad_output: Tensor, *,
               batched: bool) -> dict[str, Factor]:
    """``y = normalise(x) * weight[c] + bias[c]`` on (N, C, ...) inputs.

    In eval mode (with running statistics) the normalisation is a fixed affine map per
    channel and the samples stay independent. With the batch's statistics (training mode, or
    no running statistics) it mixes the samples, so the engine accepts it only with
    ``batch_dim=None``, where the whole batch is one "sample" and ``normalise`` is the batch's.
    """
    x = inputs[0]
    if _batch_statistics(module):
        xhat = F.batch_norm(x, None, None, training=True, eps=module.eps)
    else:
        xhat = F.batch_norm(x, module.running_mean, module.running_var, training=False,
                            eps=module.eps)
    return _affine(xhat.movedim(1, -1), grad_output.movedim(2, -1), batched, 1, True)


@register_rule(*(f"transformers.models.{m}.modeling_{m}.{c}RMSNorm"
                 for m, c in (("llama", "Llama"), ("mistral", "Mistral"), ("qwen2", "Qwen2"),
                              ("qwen3", "Qwen3"))))
def hf_rms_norm(module: nn.Module, inputs: tuple, grad_output: Tensor, *, batched: bool
                ) -> dict[str, Factor]:
    """Hugging Face's RMSNorm (Llama and its copies): ``weight * normalise(x)``, with the
    normalisation computed in float32 and cast back to the input's dtype, as its forward does."""
    x = inputs[0]
    h = x.to(torch.float32)
    xhat = (h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + module.variance_epsilon)).to(x.dtype)
    return _affine(xhat, grad_output, batched, 1, False)
