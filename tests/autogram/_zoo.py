"""A zoo of small architectures for the autogram correctness tests.

Every entry builds ``(model, inputs, forward)``: ``forward(model, inputs)`` returns a
(B, d) tensor whose row ``b`` depends on sample ``b`` only (unless the entry is marked as
mixing samples), from which the tests derive the three shapes of losses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor, nn

B = 4


class Arch(NamedTuple):
    build: Callable[[], tuple[nn.Module, object, Callable]]
    instance_wise: bool = True  # False: samples are mixed, only batch_dim=None applies


ZOO: dict[str, Arch] = {}


def arch(instance_wise: bool = True):
    def deco(fn):
        ZOO[fn.__name__] = Arch(fn, instance_wise)
        return fn
    return deco


def _call(model, x):
    return model(x)


def _flat(model, x):
    return model(x).flatten(1)


@arch()
def mlp():
    m = nn.Sequential(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 6), nn.Tanh(), nn.Linear(6, 3))
    return m, torch.randn(B, 5), _call


@arch()
def mlp_no_bias():
    m = nn.Sequential(nn.Linear(5, 6, bias=False), nn.Sigmoid(), nn.Linear(6, 2, bias=False))
    return m, torch.randn(B, 5), _call


@arch()
def linear_sequence():
    # Linear on (B, S, I): the positions are summed over inside each sample
    m = nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2))
    return m, torch.randn(B, 7, 3), _flat


@arch()
def linear_long_sequence():
    # wide layer, short sequence: materialised per-sample gradients are the cheaper form
    m = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2))
    return m, torch.randn(B, 40, 2), _flat


@arch()
def cnn():
    m = nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.ReLU(), nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Linear(4 * 3 * 3, 3),
    )
    return m, torch.randn(B, 2, 8, 8), _call


@arch()
def conv1d_dilated_grouped():
    m = nn.Sequential(nn.Conv1d(4, 6, 3, dilation=2, groups=2), nn.Tanh(),
                      nn.Conv1d(6, 2, 2, stride=2, bias=False), nn.Flatten())
    return m, torch.randn(B, 4, 11), _call


@arch()
def conv2d_same_reflect():
    m = nn.Sequential(nn.Conv2d(2, 4, (3, 2), padding="same", padding_mode="reflect", groups=2),
                      nn.ReLU(), nn.Conv2d(4, 2, 2, padding=1, padding_mode="circular"),
                      nn.Flatten())
    return m, torch.randn(B, 2, 5, 6), _call


@arch()
def embedding_bag():
    m = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 3))
    return m, torch.randint(0, 10, (B, 3)), _call


@arch()
def embedding_padding_idx():
    m = nn.Sequential(nn.Embedding(6, 3, padding_idx=0), nn.Tanh(), nn.Flatten())
    x = torch.tensor([[0, 1, 2, 1], [3, 0, 0, 5], [1, 1, 1, 1], [2, 4, 0, 3]])
    return m, x, _call


class TiedLM(nn.Module):
    def __init__(self, V=7, D=4):
        super().__init__()
        self.emb = nn.Embedding(V, D)
        self.mix = nn.Linear(D, D)
        self.head = nn.Linear(D, V)
        self.head.weight = self.emb.weight  # tied input / output embeddings

    def forward(self, x):
        return self.head(torch.tanh(self.mix(self.emb(x))))


@arch()
def tied_embedding():
    return TiedLM(), torch.randint(0, 7, (B, 5)), _flat


class Reuse(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        return self.lin(torch.tanh(self.lin(x)))


@arch()
def module_reused():
    return Reuse(), torch.randn(B, 4), _call


@arch()
def conv_reused():
    conv = nn.Conv2d(2, 2, 3, padding=1)
    return nn.Sequential(conv, nn.Tanh(), conv, nn.Flatten()), torch.randn(B, 2, 4, 4), _call


class Shared(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 3)
        self.b = nn.Linear(3, 2)
        self.c = nn.Linear(3, 3, bias=False)
        self.c.weight = self.a.weight  # one parameter, two modules

    def forward(self, x):
        return self.b(torch.relu(self.c(torch.sin(self.a(x)))))


@arch()
def shared_parameter():
    return Shared(), torch.randn(B, 3), _call


class ParentUsesChild(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 3)
        self.out = nn.Linear(3, 2)

    def forward(self, x):
        h = torch.tanh(self.lin(x))
        h = h @ self.lin.weight  # the parent uses its child's parameter directly
        return self.out(h) + self.out.bias


@arch()
def parent_uses_child_parameter():
    return ParentUsesChild(), torch.randn(B, 3), _call


@arch()
def frozen_parameters():
    m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 4), nn.LayerNorm(4), nn.Linear(4, 2))
    m[0].weight.requires_grad_(False)
    m[2].requires_grad_(False)
    m[3].bias.requires_grad_(False)
    return m, torch.randn(B, 3), _call


class Unused(nn.Module):
    def __init__(self):
        super().__init__()
        self.used = nn.Linear(3, 2)
        self.never_called = nn.Linear(3, 2)
        self.unused_output = nn.Linear(3, 5)
        self.free_unused = nn.Parameter(torch.randn(3))

    def forward(self, x):
        self.unused_output(x)  # output dropped: contributes nothing
        return self.used(x)


@arch()
def unused_parameters_and_outputs():
    return Unused(), torch.randn(B, 3), _call


class PyTree(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.ModuleDict({"a": nn.Linear(2, 3), "b": nn.Linear(4, 3)})
        self.scale = nn.Parameter(torch.randn(3))

    def forward(self, inputs: dict, *, mode: str = "sum", power: int = 2):
        ha = self.enc["a"](inputs["a"])
        hb = self.enc["b"](inputs["pair"][1])
        h = ha + hb if mode == "sum" else ha * hb
        return {"main": (h * self.scale) ** power, "aux": [hb.sum(-1), None, "tag"]}


@arch()
def pytree_in_out():
    x = {"a": torch.randn(B, 2), "pair": ("unused", torch.randn(B, 4))}

    def fwd(model, inputs):
        out = model(inputs, mode="prod", power=1)
        return torch.cat([out["main"], out["aux"][0].unsqueeze(1)], 1)
    return PyTree(), x, fwd


class FreeParams(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.randn(3))
        self.shift = nn.Parameter(torch.randn(3))
        self.mat = nn.Parameter(torch.randn(3, 2))

    def forward(self, x):
        return torch.tanh(x * self.scale + self.shift) @ self.mat


@arch()
def free_parameters():
    return FreeParams(), torch.randn(B, 3), _call


class GenericAroundRule(nn.Module):
    def __init__(self):
        super().__init__()
        self.gate = nn.Parameter(torch.randn(4))
        self.inner = nn.Linear(3, 4)

    def forward(self, x, temperature: float = 1.0, use_gate: bool = True):
        h = self.inner(x)
        return h * torch.sigmoid(self.gate / temperature) if use_gate else h


class CallsWithOptions(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = GenericAroundRule()
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        h = self.block(x, 2.0, use_gate=True)
        return self.out(self.block.inner(x) + h)


@arch()
def free_parameter_around_child_and_non_tensor_args():
    return CallsWithOptions(), torch.randn(B, 3), _call


@arch()
def layer_norm():
    m = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4), nn.ReLU(), nn.Linear(4, 3),
                      nn.LayerNorm(3, bias=False))
    return m, torch.randn(B, 3), _call


@arch()
def layer_norm_sequence_2d():
    m = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm((5, 4)), nn.Flatten())
    return m, torch.randn(B, 5, 3), _call


@arch()
def group_norm_cnn():
    m = nn.Sequential(nn.Conv2d(2, 4, 3), nn.GroupNorm(2, 4), nn.ReLU(), nn.Flatten(),
                      nn.Linear(4 * 4 * 4, 2))
    return m, torch.randn(B, 2, 6, 6), _call


@arch()
def rms_norm():
    m = nn.Sequential(nn.Linear(3, 4), nn.RMSNorm(4), nn.Linear(4, 2), nn.RMSNorm(2, eps=1e-3))
    return m, torch.randn(B, 6, 3), _flat


@arch()
def dropout_train():
    m = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 3))
    return m, torch.randn(B, 4), _call


@arch()
def dropout_eval():
    m = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.ReLU(), nn.Linear(8, 3)).eval()
    return m, torch.randn(B, 4), _call


class Attention(nn.Module):
    def __init__(self, **kw):
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True, **kw)

    def forward(self, q, kv):
        out, _ = self.attn(q, kv[0], kv[1])
        return out


@arch()
def mha_kdim_vdim():
    m = Attention(kdim=3, vdim=5)
    x = (torch.randn(B, 2, 4), (torch.randn(B, 3, 3), torch.randn(B, 3, 5)))
    return m, x, lambda model, x: model(x[0], x[1]).flatten(1)


class SelfAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True, dropout=0.3)

    def forward(self, x):
        out, weights = self.attn(x, x, x, need_weights=True)
        return torch.cat([out.flatten(1), weights.flatten(1)], 1)


@arch()
def mha_self_with_dropout():
    return SelfAttention(), torch.randn(B, 3, 4), _call


@arch()
def transformer_encoder():
    layer = nn.TransformerEncoderLayer(8, 2, dim_feedforward=12, dropout=0.0, batch_first=True)
    m = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
    return m, torch.randn(B, 3, 8), _flat


@arch()
def batchnorm_eval():
    m = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten())
    m[1].running_mean.uniform_(-1, 1)
    m[1].running_var.uniform_(0.5, 2)
    return m.eval(), torch.randn(B, 2, 5, 5), _call


@arch(instance_wise=False)
def batchnorm_train():
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4, track_running_stats=False), nn.Tanh(), nn.Linear(4, 2))
    return m, torch.randn(B, 3), _call


@arch()
def lstm():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.LSTM(3, 4, batch_first=True)
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            h, _ = self.rnn(x)
            return self.out(h[:, -1])
    return Net(), torch.randn(B, 5, 3), _call


# ------------------------------------------------------------------ the three loss shapes
def losses_of(out: Tensor, shape: str) -> Tensor:
    target = torch.linspace(-1, 1, out.shape[1], dtype=out.dtype)
    if shape == "instance":  # (B,)
        return ((out - target) ** 2).sum(1)
    if shape == "mixed":  # (B, 2)
        return torch.stack([((out - target) ** 2).sum(1), torch.sin(out.sum(1))], 1)
    # "multitask": (3,) losses of the whole batch
    return torch.stack([((out - target) ** 2).mean(), torch.cos(out.mean()),
                        (out[:, 0] * out[:, -1]).mean()])


SHAPES = ("instance", "mixed", "multitask")


def batch_dim_of(shape: str):
    return None if shape == "multitask" else 0


class AttentionBiasKV(nn.Module):
    # add_bias_kv / add_zero_attn: no decomposition, the generic fallback handles it
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True, add_bias_kv=True,
                                          add_zero_attn=True)

    def forward(self, x):
        return self.attn(x, x, x, need_weights=False)[0]


@arch()
def mha_generic_fallback():
    return AttentionBiasKV(), torch.randn(B, 3, 4), _flat


class CrossAttention(nn.Module):
    def __init__(self):
        super().__init__()
        self.attn = nn.MultiheadAttention(4, 2, batch_first=True)

    def forward(self, x):
        q, kv = x[:, :2], x[:, 2:]
        mask = torch.tensor([[False, True, False], [False, False, True]])
        pad = torch.zeros(x.shape[0], 3, dtype=torch.bool)
        pad[0, 2] = True
        return self.attn(q, kv, kv, attn_mask=mask, key_padding_mask=pad,
                         average_attn_weights=False)[0]


@arch()
def mha_cross_packed_with_masks():
    return CrossAttention(), torch.randn(B, 5, 4), _flat


class FunctionalTied(nn.Module):
    # the output layer is a functional call on the embedding table, inside the parent
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(6, 3)
        self.proj = nn.Linear(3, 3)

    def forward(self, idx):
        h = torch.tanh(self.proj(self.emb(idx)))
        return nn.functional.linear(h, self.emb.weight)


@arch()
def functional_tied_output():
    return FunctionalTied(), torch.randint(0, 6, (B, 4)), _flat


@arch()
def causal_transformer_decoder_only():
    layer = nn.TransformerEncoderLayer(4, 2, dim_feedforward=6, dropout=0.0, batch_first=True,
                                       norm_first=True, activation="gelu")
    def fwd(model, x):
        mask = nn.Transformer.generate_square_subsequent_mask(3, dtype=x.dtype)
        return model(x, src_mask=mask, is_causal=True).flatten(1)
    return layer, torch.randn(B, 3, 4), fwd


@arch()
def conv_few_positions_many_channels():
    # few output positions: the ghost form on the unfolded input is the cheaper one
    m = nn.Sequential(nn.Conv2d(12, 16, 2), nn.Tanh(), nn.Flatten(1, 2),
                      nn.Conv1d(16, 16, 2, groups=2), nn.Flatten())
    return m, torch.randn(B, 12, 2, 3), _call


class Temperature(nn.Module):
    # a 0-dim parameter in a module without a rule: a learned temperature
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(1.7))

    def forward(self, x):
        return self.scale * x


class ScaledHead(nn.Module):
    # 0-dim parameters at the root (used by the root's forward) and on a Linear (which has a
    # rule, for its own weight and bias; the parent uses the Linear's 0-dim parameter)
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 4)
        self.lin.temperature = nn.Parameter(torch.tensor(0.6))
        self.inner = Temperature()
        self.out = nn.Linear(4, 2)
        self.scale = nn.Parameter(torch.tensor(-1.3))

    def forward(self, x):
        h = torch.tanh(self.lin.temperature * self.lin(x))
        return self.scale * self.out(self.inner(h)) + self.scale ** 2 * x[:, :2]


@arch()
def scalar_parameters():
    return ScaledHead(), torch.randn(B, 3), _call


# ------------------------------------------------------------------ patterns of third-party models
# Our own modules written the way torchvision, timm and Hugging Face write theirs (issue 12).
class BasicBlock(nn.Module):
    # torchvision's ResNet BasicBlock: BatchNorm, in-place ReLU, an in-place residual sum on
    # BatchNorm's output, a downsampling shortcut
    def __init__(self, cin, cout, stride, bn):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = bn(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = bn(cout)
        self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), bn(cout))

    def forward(self, x):
        identity = self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


def resnet(track_running_stats=True):
    def bn(c):
        return nn.BatchNorm2d(c, track_running_stats=track_running_stats)
    m = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1, bias=False), bn(3), nn.ReLU(inplace=True),
                      BasicBlock(3, 4, 2, bn), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                      nn.Linear(4, 3))
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, nn.BatchNorm2d):
                if track_running_stats:
                    mod.running_mean.uniform_(-0.5, 0.5)
                    mod.running_var.uniform_(0.5, 2)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
    return m


@arch()
def resnet_basic_block_eval():
    return resnet().eval(), torch.randn(B, 2, 6, 6), _call


@arch(instance_wise=False)
def resnet_basic_block_train():
    # BatchNorm with the batch's statistics and the in-place residual: exact with batch_dim=None
    # (without running statistics: the jacrev reference cannot update them; the engine can,
    # see test_engine_regressions)
    return resnet(track_running_stats=False).train(), torch.randn(B, 2, 6, 6), _call


class SqueezeExcite(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        self.fc1, self.fc2 = nn.Conv2d(c, r, 1), nn.Conv2d(r, c, 1)

    def forward(self, x):
        s = nn.functional.adaptive_avg_pool2d(x, 1)
        s = nn.functional.hardsigmoid(self.fc2(torch.relu(self.fc1(s))), inplace=True)
        return x * s


class InvertedResidual(nn.Module):
    # MobileNetV3's block: expand, depthwise, squeeze-excite, project, in-place residual
    def __init__(self, c, e):
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv2d(c, e, 1, bias=False), nn.BatchNorm2d(e), nn.Hardswish(inplace=True),
            nn.Conv2d(e, e, 3, padding=1, groups=e, bias=False), nn.BatchNorm2d(e),
            nn.Hardswish(inplace=True), SqueezeExcite(e, 2),
            nn.Conv2d(e, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x):
        result = self.block(x)
        result += x
        return result


@arch()
def mobilenet_v3_block_eval():
    m = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), InvertedResidual(3, 6), nn.Flatten(),
                      nn.Linear(3 * 16, 3))
    return m.eval(), torch.randn(B, 2, 4, 4), _call


class PositionLM(nn.Module):
    # GPT-2 / BERT embeddings: positions looked up with ids of shape (1, T) (or (T,)) and
    # broadcast over the batch; BERT adds them in place
    def __init__(self, T, ids_shape, in_place):
        super().__init__()
        self.tok = nn.Embedding(7, 4)
        self.pos = nn.Embedding(T, 4)
        self.types = nn.Embedding(2, 4)
        self.norm = nn.LayerNorm(4)
        self.head = nn.Linear(4, 2)
        self.ids_shape, self.in_place = ids_shape, in_place

    def forward(self, ids):
        B, T = ids.shape
        positions = torch.arange(T).reshape(self.ids_shape)
        h = self.tok(ids)
        types = self.types(torch.zeros(1, T, dtype=torch.long))  # broadcast too, by mul
        if self.in_place:
            h += self.pos(positions)
            h.mul_(types)
        else:
            h = h + self.pos(positions)
            h = torch.where(ids.unsqueeze(-1) > 2, types, 1.0) * h
        return self.head(self.norm(h)).flatten(1)


@arch()
def broadcast_position_lookup():
    return PositionLM(5, (1, 5), False), torch.randint(0, 7, (B, 5)), _call


@arch()
def broadcast_position_lookup_in_place_t_equals_b():
    # ids (T,) with T == B: the (T, D) output has B rows without being a batch
    return PositionLM(B, (B,), True), torch.randint(0, 7, (B, B)), _call


class TransposedLinear(nn.Module):
    # Hugging Face's Conv1D: a Linear whose weight is stored (in, out); no rule, the generic
    # fallback; its output then changed in place
    def __init__(self, i, o):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(i, o) * 0.5)
        self.bias = nn.Parameter(torch.randn(o) * 0.1)

    def forward(self, x):
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).reshape(
            *x.shape[:-1], -1)


class ConvOneDBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_fc, self.c_proj = TransposedLinear(4, 6), TransposedLinear(6, 4)

    def forward(self, x):
        h = self.c_fc(x)
        h.tanh_()
        out = self.c_proj(h)
        out += x
        return out


@arch()
def hf_conv1d_transposed_linear_in_place():
    m = nn.Sequential(ConvOneDBlock(), nn.LayerNorm(4), nn.Flatten(), nn.Linear(12, 2))
    return m, torch.randn(B, 3, 4), _call


class SubclassedNorms(nn.Module):
    # a subclass that keeps its base's forward uses the base's rule; one that overrides it
    # (timm's GroupNorm does) goes to the generic fallback
    class KeepsForward(nn.LayerNorm):
        pass

    class OwnForward(nn.GroupNorm):
        def forward(self, x):
            return nn.functional.group_norm(x, self.num_groups, self.weight, self.bias,
                                            self.eps) * 2.0

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(2, 4, 2)
        self.gn = self.OwnForward(2, 4)
        self.ln = self.KeepsForward(3)
        self.out = nn.Linear(12, 2)

    def forward(self, x):
        return self.out(self.ln(self.gn(self.conv(x))).flatten(1))


@arch()
def subclasses_of_ruled_types():
    return SubclassedNorms(), torch.randn(B, 2, 4), _call


# ------------------------------------------------------------------ reparametrized weights
# The weight is computed from other parameters inside the forward; the parametrized module goes
# to the generic fallback, whose per-sample vjp runs through the reparametrization (issue 12).
_P = nn.utils.parametrizations


@arch()
def parametrized_weight_norm_out_is_b():
    # out_features == B: the parametrization's output has B rows, like a batch (issue 12)
    m = nn.Sequential(_P.weight_norm(nn.Linear(5, B)), nn.Tanh(), nn.Linear(B, 3))
    return m, torch.randn(B, 5), _call


@arch()
def parametrized_spectral_norm_and_orthogonal():
    # eval: spectral_norm's power iteration runs in training only, so every forward (the
    # reference's too) sees the same weight
    m = nn.Sequential(_P.spectral_norm(nn.Linear(5, 3)), nn.Tanh(),
                      _P.orthogonal(nn.Linear(3, 3)), nn.Tanh(), nn.Linear(3, 2))
    return m.eval(), torch.randn(B, 5), _call


class _Symmetric(nn.Module):
    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([1.5, 0.5, -1.0]))  # a parameter of its own

    def forward(self, X):
        return (X.triu() + X.triu(1).mT) * self.scale


@arch()
def parametrized_custom_with_own_parameter_and_conv():
    lin = nn.Linear(3, 3)
    nn.utils.parametrize.register_parametrization(lin, "weight", _Symmetric())
    conv = _P.weight_norm(nn.Conv1d(2, 3, 2))
    m = nn.Sequential(conv, nn.Tanh(), nn.Flatten(), nn.Linear(6, 3), nn.Tanh(), lin)
    return m, torch.randn(B, 2, 3), _call


@arch()
def legacy_weight_and_spectral_norm():
    # torch.nn.utils.weight_norm / spectral_norm: the weight is set by a forward pre-hook
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        first = nn.utils.weight_norm(nn.Linear(5, B))
    m = nn.Sequential(first, nn.Tanh(), nn.utils.spectral_norm(nn.Linear(B, 2)))
    return m.eval(), torch.randn(B, 5), _call


# ------------------------------------------------------------------ RNNs, unrolled in time
# The fused op is recomputed as recorded linear uses (rules/_rnn.py): exact with batch_dim=0.
class GRUTimeMajor(nn.Module):
    # batch_first=False: output (T, B, 2H) and h_n (L * 2, B, H), the batch on dimension 1
    def __init__(self):
        super().__init__()
        self.rnn = nn.GRU(3, 3, num_layers=2, bidirectional=True)
        self.out = nn.Linear(6 + 12, 2)

    def forward(self, x):
        y, h = self.rnn(x.transpose(0, 1))
        return self.out(torch.cat([y[-1], h.transpose(0, 1).flatten(1)], 1))


@arch()
def gru_two_layers_bidirectional_time_major():
    return GRUTimeMajor(), torch.randn(B, 4, 3), _call


@arch()
def rnn_relu_no_bias():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.rnn = nn.RNN(3, 4, nonlinearity="relu", bias=False, batch_first=True)
            self.out = nn.Linear(4, 2)

        def forward(self, x):
            return self.out(self.rnn(x)[0]).flatten(1)
    return Net(), torch.randn(B, 3, 3), _call


class LSTMGivenState(nn.Module):
    # hx computed by a hooked Linear from the input, h_n and c_n in the output too
    def __init__(self):
        super().__init__()
        self.init = nn.Linear(3, 8)
        self.rnn = nn.LSTM(3, 4, batch_first=True)
        self.out = nn.Linear(4, 2)

    def forward(self, x):
        h0, c0 = torch.tanh(self.init(x[:, 0])).unsqueeze(0).chunk(2, dim=-1)
        y, (h, c) = self.rnn(x, (h0.contiguous(), c0.contiguous()))
        return torch.cat([self.out(y[:, -1]), h[0] * c[0]], 1)


@arch()
def lstm_given_state():
    return LSTMGivenState(), torch.randn(B, 5, 3), _call


# ------------------------------------------------------------------ per-sample uses for rules
# Uses of a parameter outside its module's rule whose per-sample gradients are linear in the
# batch: recorded for a rule instead of the generic fallback (issue 13).
class TinyViT(nn.Module):
    # parameters in the root's own forward: a class token expanded to the batch, a position
    # embedding and a scale of batch size 1 broadcast over it by elementwise ops
    def __init__(self, D=4, T=4):
        super().__init__()
        self.patch = nn.Conv2d(2, D, 2, stride=2)
        self.cls = nn.Parameter(torch.randn(1, 1, D))
        self.pos = nn.Parameter(torch.randn(1, T + 1, D))
        self.scale = nn.Parameter(torch.randn(1, 1, D))
        self.norm = nn.LayerNorm(D)
        self.mlp = nn.Linear(D, D)
        self.head = nn.Linear(D, 3)

    def forward(self, x):
        h = self.patch(x).flatten(2).transpose(1, 2)  # (B, T, D)
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), h], 1) + self.pos
        h = h + torch.tanh(self.mlp(self.norm(h))) * self.scale
        return self.head(h[:, 0] + h[:, 1:].mean(1))


@arch()
def vit_root_parameters():
    return TinyViT(), torch.randn(B, 2, 4, 4), _call


class TiedProjection(nn.Module):
    # GPT-2's output layer: F.linear on the token embedding, with a free bias, on (B, T, D)
    def __init__(self, V=7, D=3):
        super().__init__()
        self.wte = nn.Embedding(V, D)
        self.block = nn.Linear(D, D)
        self.bias = nn.Parameter(torch.randn(V))

    def forward(self, idx):
        h = torch.tanh(self.block(self.wte(idx)))
        return nn.functional.linear(h, self.wte.weight, self.bias)


@arch()
def tied_output_projection_f_linear():
    return TiedProjection(), torch.randint(0, 7, (B, 3)), _flat


class Conv1D(nn.Module):
    # structured like transformers.pytorch_utils.Conv1D, and named like it: its rule is looked
    # up by qualified name, without transformers
    def __init__(self, nf, nx):
        super().__init__()
        self.nf, self.nx = nf, nx
        self.weight = nn.Parameter(torch.randn(nx, nf) * 0.5)
        self.bias = nn.Parameter(torch.randn(nf) * 0.1)

    def forward(self, x):
        size_out = x.size()[:-1] + (self.nf,)
        return torch.addmm(self.bias, x.view(-1, x.size(-1)), self.weight).view(size_out)


Conv1D.__module__ = "transformers.pytorch_utils"


class OwnForwardConv1D(Conv1D):
    def forward(self, x):  # overrides forward: no rule, the generic fallback
        return super().forward(x) * 2.0


class GPT2MLP(nn.Module):
    def __init__(self, D=4):
        super().__init__()
        self.c_fc, self.c_proj = Conv1D(6, D), Conv1D(D, 6)
        self.other = OwnForwardConv1D(D, D)

    def forward(self, x):
        h = self.c_fc(x)
        h.tanh_()
        out = self.c_proj(h)
        out += x
        return self.other(out).flatten(1)


@arch()
def hf_conv1d_by_name():
    return GPT2MLP(), torch.randn(B, 3, 4), _call


class LlamaRMSNorm(nn.Module):
    # structured and named like Hugging Face's (its rule is looked up by qualified name)
    def __init__(self, D, eps=1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(D))
        self.variance_epsilon = eps

    def forward(self, hidden_states):
        input_dtype = hidden_states.dtype
        hidden_states = hidden_states.to(torch.float32)
        variance = hidden_states.pow(2).mean(-1, keepdim=True)
        hidden_states = hidden_states * torch.rsqrt(variance + self.variance_epsilon)
        return self.weight * hidden_states.to(input_dtype)


LlamaRMSNorm.__module__ = "transformers.models.llama.modeling_llama"


@arch()
def hf_rms_norm_by_name():
    # first: its float32 normalisation then rounds only the input's gradient (float64 tests)
    m = nn.Sequential(LlamaRMSNorm(3), nn.Linear(3, 2), nn.Flatten())
    return m, torch.randn(B, 3, 3), _call
