"""Rule for ``nn.Conv1d`` and ``nn.Conv2d`` (any stride, padding, dilation, groups)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._factors import Factor, Outer, PerLoss
from ._registry import register_rule


@register_rule(nn.Conv1d, nn.Conv2d)
def conv(module: nn.Conv1d | nn.Conv2d, inputs: tuple, grad_output: Tensor, *, batched: bool
         ) -> dict[str, Factor]:
    """A convolution is a linear map applied at every output position to the unfolded input.

    The weight's per-loss gradients come from one grouped weight-gradient convolution, unless
    the ghost form on the unfolded input is cheaper (few positions, many channels).
    """
    d = module.weight.dim() - 2
    x, dY = inputs[0], grad_output
    if x.dim() == d + 1:  # unbatched input (C, ...)
        x, dY = x.unsqueeze(0), dY.unsqueeze(1)
    padding = module.padding
    if isinstance(padding, str) or module.padding_mode != "zeros":
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        x = F.pad(x, module._reversed_padding_repeated_twice, mode=mode)
        padding = (0,) * d
    kernel, stride, dilation = module.kernel_size, module.stride, module.dilation
    if d == 1:  # a 1-D convolution is a 2-D one of height 1
        x, dY = x.unsqueeze(2), dY.unsqueeze(3)
        kernel, stride, dilation, padding = ((1, *kernel), (1, *stride), (1, *dilation),
                                             (0, *padding))
    t, N = dY.shape[0], x.shape[0]
    g, O = module.groups, module.out_channels
    n = N if batched else 1
    P = dY[0, 0, 0].numel() * (1 if batched else N)
    I = module.weight[0].numel()
    out: dict[str, Factor] = {}
    if module.bias is not None:
        b = dY.reshape(t, n, -1, O, dY[0, 0, 0].numel()).sum((2, 4))  # (t, n, O)
        out["bias"] = PerLoss(b.transpose(0, 1).reshape(n * t, O))
    if not Outer.cost_says_ghost(n, P, g, I, t, O // g):
        out["weight"] = PerLoss(_per_sample_weight_grads(module, x, dY, kernel, stride, dilation,
                                                         padding, batched))
        return out
    cols = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)  # (N, C*k, L)
    cols = cols.reshape(N, g, -1, cols.shape[-1]).permute(0, 3, 1, 2)  # (N, L, g, Ik)
    dY = dY.reshape(t, N, g, O // g, -1).permute(0, 1, 4, 2, 3)  # (t, N, L, g, Og)
    cols = cols.reshape(n, -1, *cols.shape[2:])
    dY = dY.reshape(t, n, -1, *dY.shape[3:])
    out["weight"] = Outer(cols, dY, module.weight.shape)
    return out


def _per_sample_weight_grads(module, x, dY, kernel, stride, dilation, padding, batched):
    """Per-loss weight gradients as one grouped weight-gradient convolution (no unfolding).

    Every (sample, task) pair becomes a group: the input is (1, n*t*C, ...), the output
    gradient (1, n*t*O, ...), and the result (n*t*O, C/g, *kernel) holds the n*t gradients.
    """
    t, N = dY.shape[0], x.shape[0]
    g, O, C = module.groups, module.out_channels, x.shape[1]
    spatial_in, spatial_out = x.shape[2:], dY.shape[3:]
    if batched:  # groups over (sample, task): a batch of 1
        xs = x.unsqueeze(1).expand(N, t, *x.shape[1:]).reshape(1, N * t * C, *spatial_in)
        dys = dY.transpose(0, 1).reshape(1, N * t * O, *spatial_out)
        groups, rows = N * t * g, N * t
    else:  # groups over tasks, summed over the batch
        xs = x.unsqueeze(1).expand(N, t, *x.shape[1:]).reshape(N, t * C, *spatial_in)
        dys = dY.transpose(0, 1).reshape(N, t * O, *spatial_out)
        groups, rows = t * g, t
    shape = (rows * O, C // g, *kernel)
    grads = torch.ops.aten.convolution_backward(
        dys, xs.to(dY.dtype), torch.empty(shape, dtype=dY.dtype, device=dY.device), None,
        stride, padding, dilation, False, [0] * len(kernel), groups, [False, True, False])[1]
    return grads.reshape(rows, *module.weight.shape)
