"""Rule for ``nn.Conv1d`` and ``nn.Conv2d`` (any stride, padding, dilation, groups)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ._factors import Factor, Outer, PerLoss
from ._registry import register_rule


@register_rule(nn.Conv1d, nn.Conv2d)
def conv(module: nn.Conv1d | nn.Conv2d, inputs: tuple, grad_output: Tensor, *, batched: bool
         ) -> dict[str, Factor]:
    """A convolution is a linear map applied at every output position to the unfolded input."""
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
    if d == 1:
        x = x.unsqueeze(2)
        kernel, stride, dilation, padding = ((1, *kernel), (1, *stride), (1, *dilation),
                                             (0, *padding))
    t, N = dY.shape[0], x.shape[0]
    g, O = module.groups, module.out_channels
    cols = F.unfold(x, kernel, dilation=dilation, padding=padding, stride=stride)  # (N, C*k, L)
    cols = cols.reshape(N, g, -1, cols.shape[-1]).permute(0, 3, 1, 2)  # (N, L, g, Ik)
    dY = dY.reshape(t, N, g, O // g, -1).permute(0, 1, 4, 2, 3)  # (t, N, L, g, Og)
    n = N if batched else 1
    cols = cols.reshape(n, -1, *cols.shape[2:])
    dY = dY.reshape(t, n, -1, *dY.shape[3:])
    out: dict[str, Factor] = {"weight": Outer(cols, dY, module.weight.shape)}
    if module.bias is not None:
        out["bias"] = PerLoss(dY.sum(2).transpose(0, 1).reshape(n * t, O))
    return out
