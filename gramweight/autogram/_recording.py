"""Recording the forward pass: every call of a hooked module, and how it used the parameters.

- ``Recording`` holds the forward hooks and the calls recorded since the last
  ``gramian``. The pre-hook, which runs before the module's own, opens a ``_Call`` (and,
  for the outermost hooked call, enters the torch function mode), so that what those
  pre-hooks compute from the parameters (the legacy ``weight_norm``) is inside the call. The
  post-hook closes it with the inputs the forward got, the gradient edges of its outputs
  (taken then, so that in-place changes of an output afterwards do not matter), and the
  versions of the tensors a rule reads again.
- ``_Recorder``, the torch function mode, sees every torch function that the hooked
  forwards call with a parameter: a use of a rule module's own parameter is left to the rule,
  every other use goes to a per-call alias ``p.view_as(p)``. With ``batch_dim=0`` it also sees
  an output of a hooked call broadcast over the batch by an elementwise op (a position
  embedding of shape (1, T, D) added to (B, T, D) activations): it hands the op the output
  expanded to the batch, whose gradient is per sample, and records that expansion.
- ``_LinearUse`` stands for a module in a ``linear`` use that a decomposition
  (``rules/_attention.py``, ``rules/_rnn.py``) records for the Linear rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.graph import get_gradient_edge
from torch.nn.utils import parametrize
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

from ._validation import (
    check_batchnorm_call,
    check_batchnorm_module,
    check_decomposed_parameters,
    check_parametrization_cache,
    check_single_output,
    describe,
    reused_parameter_message,
    rnn_call_message,
)
from .rules import PerLoss, Rule
from .rules._registry import rule_for
from .rules._decompositions import DECOMPOSITIONS
from .rules._rnn import RNN_FUNCTIONS, not_unrolled
from .rules._linear import linear as _linear_rule

__all__ = ["Recording"]

# Tensor properties that return a differentiable function of the tensor. Every other
# property (shape, dtype, grad, data, ...) is read on the parameter itself.
_DIFFERENTIABLE_PROPERTIES = frozenset({"T", "mT", "H", "mH", "real", "imag"})

# Forward pre-hooks that compute a module's weight from other parameters (the legacy
# ``torch.nn.utils.weight_norm`` / ``spectral_norm``): the module's rule, which expects its
# own parameters, does not apply; the generic fallback covers the parameters they use.
_REPARAMETRIZING_HOOKS = (WeightNorm, SpectralNorm)


# Elementwise ops that broadcast their tensor arguments: an output of a hooked call of batch
# size 1 given to one of them with a batched tensor is broadcast over the batch, which is the
# same as expanding it first.
_BROADCASTING = frozenset(
    name + suffix
    for name in ("add", "sub", "rsub", "mul", "div", "true_divide", "addcmul", "addcdiv",
                 "maximum", "minimum", "where", "lerp")
    for suffix in ("", "_"))


def _reparametrized(module: nn.Module) -> bool:
    return parametrize.is_parametrized(module) or any(
        isinstance(h, _REPARAMETRIZING_HOOKS) for h in module._forward_pre_hooks.values())


class Target(NamedTuple):
    """A tensor the engine's backward differentiates to: its gradient edge and its shape.

    ``edge`` is taken when the call ends. For an output that is a view of the whole of its
    base (``addmm(...).view(B, T, -1)``) it is the base's edge, of shape ``grad_shape``: an
    in-place op on the view later rebases the view's own edge, not the base's history.
    """

    edge: Any
    shape: torch.Size
    grad_shape: torch.Size

    def gradient(self, g: Tensor) -> Tensor:
        """The gradient at the edge, (t, *grad_shape), as one of the tensor: (t, *shape)."""
        return g if self.grad_shape == self.shape else g.reshape(g.shape[0], *self.shape)

    def cotangent(self, c: Tensor) -> Tensor:
        """A cotangent (k, *shape) of the tensor, as one of the edge: (k, *grad_shape)."""
        return c if self.grad_shape == self.shape else c.reshape(c.shape[0], *self.grad_shape)


def _target_of(y: Tensor) -> Target:
    """``y`` itself as a target (a tensor the recorder made, never changed in place)."""
    return Target(get_gradient_edge(y), y.shape, y.shape)


def _batched_shape(leaves: list) -> torch.Size | None:
    """The shape an elementwise op broadcasts its tensor arguments to, when that shape has a
    batch (dimension 0 of size > 1); None otherwise, or when the op raises by itself."""
    tensors = [x for x in leaves if isinstance(x, Tensor)]
    if len(tensors) < 2:
        return None
    try:
        S = torch.broadcast_shapes(*(x.shape for x in tensors))
    except RuntimeError:
        return None
    return S if len(S) and S[0] > 1 else None


def _whole_view(y: Tensor) -> bool:
    """Whether ``y`` is a view of all of its base, element for element (a reshape of it)."""
    b = y._base
    return (b is not None and b.numel() == y.numel() and b.is_contiguous()
            and y.is_contiguous() and y.storage_offset() == b.storage_offset())


def target(y: Tensor) -> tuple[Target, bool]:
    """The target standing for an output ``y``, and whether ``y`` must stay unchanged (a
    partial view: an in-place change of it, or of its base, moves its edge)."""
    if not y._is_view():
        return _target_of(y), False
    if _whole_view(y) and y._base.requires_grad:
        return Target(get_gradient_edge(y._base), y.shape, y._base.shape), False
    return _target_of(y), True


@dataclass(eq=False)
class _Call:
    """One call of a hooked module during the forward pass."""

    module: nn.Module
    rule: Rule | None
    args: tuple = ()
    # parameters the rule covers (own parameters used by the call), by name
    rule_params: dict[str, nn.Parameter] = field(default_factory=dict)
    # every other use: parameter -> the alias the call used in its place
    aliases: dict[int, tuple[nn.Parameter, Tensor]] = field(default_factory=dict)
    # the output, for a rule, as a target: its gradient edge taken at the end of the call, so
    # that the output itself can be freed, and in-place changes of it afterwards do not matter
    output: Target | None = None
    # every output that requires grad, by its edge likewise, for the generic fallback
    outputs: list[Target] = field(default_factory=list)
    # output j broadcast over the batch -> the expansions that stand for it (see _broadcast)
    expanded: dict[int, list[Target]] = field(default_factory=dict)
    # (batch size, dimensions added) of the expansions, the same for every output
    broadcast: tuple[int, int] | None = None
    # for each expansion: the edge it expands, (node, output number), and its own node that
    # points to that edge; gramian checks that the expanded tensors reach the losses only
    # through their expansions
    entries: list[tuple[tuple[Any, int], Any]] = field(default_factory=list)
    # the tensors that must be unchanged at gramian time (a rule's inputs, an output
    # that is a partial view: an in-place change of it or its base would move its edge), and
    # their versions
    watched: list[Tensor] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)

    @property
    def edge(self) -> Any:
        """The gradient edge of a rule's output."""
        return self.output.edge

    def current_versions(self) -> list[int]:
        """Versions of the watched tensors: an in-place op on one changes them."""
        return [x._version for x in self.watched]

    def watch(self, tensors: list[Tensor]) -> None:
        self.watched = tensors
        self.versions = self.current_versions()

    def targets(self) -> list[Target]:
        """What the generic fallback's local backward starts from: every output, or the
        expansions standing for it where it was broadcast."""
        return [t for j, out in enumerate(self.outputs)
                for t in self.expanded.get(j, [out])]

    def rule_targets(self) -> list[Target]:
        """What a rule's output gradient is summed from: its output, or its expansions."""
        return self.expanded[0] if self.expanded else [self.output]

    def rule_args(self) -> tuple:
        """The inputs a rule sees: expanded like the output where it was broadcast."""
        if self.broadcast is None:
            return self.args
        B, k = self.broadcast
        return tuple(_expand(x, B, k) if isinstance(x, Tensor) and x.dim() else x
                     for x in self.args)


def _expand(x: Tensor, B: int, k: int) -> Tensor:
    """``x`` broadcast to a batch of ``B``: dimension 0 of size 1 expanded (k = 0), or a new
    dimension 0 (k = 1)."""
    if k == 1:
        x = x.unsqueeze(0)
    return x.expand(B, *x.shape[1:])


class _LinearUse:
    """Stands for a module in a ``linear`` use recorded by a decomposition."""

    def __init__(self, weight: Tensor, bias: Tensor | None, bias_rows: slice | None,
                 owner: nn.Module | None):
        self.weight, self.bias, self.bias_rows = weight, bias, bias_rows
        self.owner = owner  # the module whose forward made the use: messages name it


def _sliced_linear_rule(module: _LinearUse, inputs, grad_output, *, batched):
    out = _linear_rule(module, inputs, grad_output, batched=batched)
    if module.bias_rows is not None and "bias" in out:
        g = out["bias"].grads()
        full = g.new_zeros(g.shape[0], *module.bias.shape)
        full[:, module.bias_rows] = g
        out["bias"] = PerLoss(full)
    return out


_LINEAR_USE_RULE = Rule(_sliced_linear_rule)


def _linear_arguments(input, weight, bias=None):
    """``F.linear``'s arguments, bound by name."""
    if not isinstance(input, Tensor) or not isinstance(weight, Tensor):
        return None
    return input, weight, bias if isinstance(bias, Tensor) else None


class _ExpandedUse:
    """Stands for a module in the use of a parameter expanded over the batch (see
    ``Recording.expanded_use``)."""

    use = "a parameter broadcast over the batch"

    def __init__(self, param: Tensor, owner: nn.Module | None):
        self.param, self.owner = param, owner


def _expanded_rule(module: _ExpandedUse, inputs, grad_output, *, batched):
    # grad_output (t, n, *param.shape[1:]): the gradient of row s is sample s's
    t, n = grad_output.shape[:2]
    return {"param": PerLoss(grad_output.transpose(0, 1).reshape(n * t, *module.param.shape))}


_EXPANDED_USE_RULE = Rule(_expanded_rule)


_CONTAINERS = (list, tuple, dict)


def _flatten(args: tuple, kwargs: dict):
    """The leaves of a torch function's arguments and how to put them back: without pytree's
    cost for the usual flat arguments (the recorder sees every op of the forward)."""
    if any(isinstance(a, _CONTAINERS) for a in args) or any(
            isinstance(v, _CONTAINERS) for v in kwargs.values()):
        return pytree.tree_flatten((args, kwargs))
    return [*args, *kwargs.values()], (len(args), tuple(kwargs))


def _unflatten(leaves: list, spec):
    if isinstance(spec, pytree.TreeSpec):
        return pytree.tree_unflatten(leaves, spec)
    n, keys = spec
    return tuple(leaves[:n]), dict(zip(keys, leaves[n:]))


class _Recorder(TorchFunctionMode):
    """Sees every torch function called during the forward of the hooked modules.

    Uses of a hooked parameter inside a call of a module with a rule, by its own parameters,
    are left to the rule. Every other use is redirected to a per-call alias ``p.view_as(p)``,
    whose gradient is exactly that use's contribution.
    """

    def __init__(self, recording: Recording):
        super().__init__()
        self.recording = recording

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if torch.compiler.is_compiling():
            # a torch.compile'd function called inside a hooked forward: torch.compile
            # breaks its graph at each op, which is then recorded, exactly, in eager mode
            return _eager_torch_function(self, func, types, args, kwargs)
        return self._record(func, args, kwargs or {})

    def _record(self, func, args, kwargs):
        rec = self.recording
        if getattr(func, "__name__", None) == "__get__":
            prop = getattr(getattr(func, "__self__", None), "__name__", None)
            if prop not in _DIFFERENTIABLE_PROPERTIES:
                return func(*args, **kwargs)
        if rec.batch_dim is not None and func is F.batch_norm:
            check_batchnorm_call(args, kwargs, rec.where())
        leaves, spec = _flatten(args, kwargs)
        if rec._tracked and getattr(func, "__name__", None) in _BROADCASTING:
            if self._broadcast(func, leaves):
                args, kwargs = _unflatten(leaves, spec)
        hit = [i for i, x in enumerate(leaves)
               if isinstance(x, Tensor) and id(x) in rec.param_ids and x.requires_grad]
        if not hit or not rec._stack:
            return func(*args, **kwargs)
        call = rec._stack[-1]
        if call is None:
            return func(*args, **kwargs)
        decomposition = DECOMPOSITIONS.get(func)
        if func in RNN_FUNCTIONS and rec.batch_dim is None:
            decomposition = None  # the fused op in the generic fallback: exact, and faster
        if decomposition is not None:
            out = decomposition(*args, **kwargs, linear=rec.linear_use)
            if out is not NotImplemented:
                return out
            if func in RNN_FUNCTIONS:
                raise RuntimeError(rnn_call_message(not_unrolled(func, args, kwargs),
                                                    rec.where()))
        if rec.batch_dim is not None and not any(
                call.rule is not None and (id(call.module), id(leaves[i])) in rec.own_names
                for i in hit):
            out = self._per_sample_use(func, args, kwargs, leaves, spec, hit)
            if out is not NotImplemented:
                return out
        for i in hit:
            p = leaves[i]
            name = rec.own_names.get((id(call.module), id(p)))
            if call.rule is not None and name is not None and name not in call.rule_params:
                call.rule_params[name] = p
                continue
            if call.rule is not None and name is not None:
                raise RuntimeError(reused_parameter_message(describe(call.module, rec.names),
                                                            name))
            if id(p) not in call.aliases:
                call.aliases[id(p)] = (p, p.view_as(p))
            leaves[i] = call.aliases[id(p)][1]
        args, kwargs = _unflatten(leaves, spec)
        return func(*args, **kwargs)

    def _per_sample_use(self, func, args, kwargs, leaves: list, spec, hit: list[int]):
        """With ``batch_dim=0``, a use of parameters outside their module's rule whose
        per-sample gradients are linear in the batch, recorded for a rule instead of an alias
        (whose generic fallback costs a backward per sample):

        - ``F.linear(x, weight, bias)`` (a tied output projection, ``F.linear(h, wte.weight)``):
          for the Linear rule, as a decomposition's ``linear`` use;
        - a parameter with a leading dimension of size 1 expanded over dimension 0
          (``cls.expand(B, -1, -1)``) or broadcast over it by an elementwise op (``x + pos``
          with ``pos`` of shape (1, T, D)): the op gets the parameter expanded to the batch,
          whose gradient has one row per sample, and that expansion is recorded.

        Returns ``NotImplemented`` for any other use.
        """
        rec = self.recording
        if func is F.linear:
            bound = _linear_arguments(*args, **kwargs)
            if bound is None:
                return NotImplemented
            x, weight, bias = bound
            ids = {id(leaves[i]) for i in hit}
            if (id(weight) in ids and weight.dim() == 2 and id(x) not in ids and x.dim() >= 2
                    and (bias is None or id(bias) in ids or not bias.requires_grad)):
                return rec.linear_use(x, weight, bias)
            return NotImplemented
        name = getattr(func, "__name__", None)
        if name == "expand" and len(hit) == 1 and hit[0] == 0:
            p = leaves[0]
            with torch.no_grad():
                shape = func(*args, **kwargs).shape
            if len(shape) == p.dim() >= 2 and p.shape[0] == 1 and shape[0] > 1:
                return rec.expanded_use(p, shape[0]).expand(shape)
            return NotImplemented
        if name in _BROADCASTING and not name.endswith("_"):
            S = _batched_shape(leaves)
            if S is None or any(leaves[i].dim() != len(S) or leaves[i].shape[0] != 1
                                for i in hit):
                return NotImplemented
            leaves = list(leaves)
            expanded: dict[int, Tensor] = {}
            for i in hit:
                p = leaves[i]
                if id(p) not in expanded:
                    expanded[id(p)] = rec.expanded_use(p, S[0])
                leaves[i] = expanded[id(p)]
            args, kwargs = _unflatten(leaves, spec)
            return func(*args, **kwargs)
        return NotImplemented

    def _broadcast(self, func, leaves: list) -> bool:
        """Expand to the batch every tracked output that ``func`` broadcasts over it.

        The op's result is unchanged (broadcasting is expanding), but the gradient of the
        expansion keeps one row per sample where that of the output sums them. Returns whether
        a leaf was replaced.
        """
        rec = self.recording
        S = _batched_shape(leaves)
        if S is None:
            return False
        in_place = func.__name__.endswith("_")
        replaced = False
        for i, x in enumerate(leaves):
            if not isinstance(x, Tensor) or id(x) not in rec._tracked or (in_place and i == 0):
                continue
            k = len(S) - x.dim()
            if not (k == 1 or (k == 0 and x.shape[0] == 1)):
                continue
            call, j = rec._tracked[id(x)]
            if call.broadcast not in (None, (S[0], k)):
                continue  # left as it is: gramian refuses the call's output (check_uses)
            call.broadcast = (S[0], k)
            y = _expand(x, S[0], k)
            call.expanded.setdefault(j, []).append(_target_of(y))
            source = get_gradient_edge(x)
            entry = y.grad_fn if k == 0 else y.grad_fn.next_functions[0][0]
            call.entries.append(((source.node, source.output_nr), entry))
            leaves[i] = y
            replaced = True
        return replaced


@torch.compiler.disable
def _eager_torch_function(mode: _Recorder, func, types, args, kwargs):
    return mode._record(func, args, kwargs or {})


class Recording:
    """The hooks on the modules, and the calls they recorded since the last ``take``.

    Args:
        modules: every module to hook.
        rules: the rule of each module type.
        own_names: ``(id(module), id(parameter)) -> name`` of every parameter a module owns.
        param_ids: ids of the parameters the Gramian is taken over.
        batch_dim: the engine's ``batch_dim``.
        names: ``id(module) -> its path in the model``, for messages.
    """

    def __init__(self, modules: Iterable[nn.Module], *, rules: Mapping[type, Rule],
                 own_names: Mapping[tuple[int, int], str], param_ids: set[int],
                 batch_dim: int | None, names: Mapping[int, str] | None = None):
        self.rules, self.own_names, self.param_ids = rules, own_names, param_ids
        self.names = names or {}
        self.batch_dim = batch_dim
        self.calls: list[_Call] = []  # closed calls, in the order their forwards ended
        self._stack: list[_Call | None] = []  # open calls; None where grad is disabled
        # with batch_dim=0, the outputs of the calls closed during the current outermost
        # forward, which an elementwise op may still broadcast: id -> (call, output index)
        self._tracked: dict[int, tuple[_Call, int]] = {}
        self._tracked_refs: list[Tensor] = []  # keeps those ids valid until the forward ends
        self._mode: _Recorder | None = None
        # the path of a hooked module whose forward torch.compile traced (see check_compiled)
        self.compiled: str | None = None
        self._handles = []
        for mod in modules:
            self._handles.append(mod.register_forward_pre_hook(self._open, with_kwargs=True,
                                                               prepend=True))
            self._handles.append(mod.register_forward_hook(self._post_hook, with_kwargs=True,
                                                           always_call=True))

    def take(self) -> list[_Call]:
        """The recorded calls, which the recording forgets."""
        calls, self.calls = self.calls, []
        self.compiled = None
        return calls

    def close(self) -> None:
        """Remove every hook and forget everything."""
        for h in self._handles:
            h.remove()
        self._handles = []
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        self._stack, self.calls = [], []
        self._untrack()

    def _untrack(self) -> None:
        self._tracked, self._tracked_refs = {}, []

    def _open(self, module, args, kwargs):
        if torch.compiler.is_compiling():
            # torch.compile traces the hooks instead of running them; what it records
            # cannot be trusted, so gramian refuses (the flag survives as a side effect)
            if self.compiled is None:
                self.compiled = self.names.get(id(module), type(module).__name__)
            return
        if not torch.is_grad_enabled():
            self._stack.append(None)
            return
        rule = rule_for(self.rules, module)
        if rule is not None and (kwargs or not rule.applies(module) or _reparametrized(module)):
            rule = None
        if not self._stack or all(c is None for c in self._stack):
            if self._mode is None:
                self._mode = _Recorder(self)
                self._mode.__enter__()
        # pushed before the checks: when one raises, the post-hook (always called) pops it
        self._stack.append(_Call(module, rule))
        check_batchnorm_module(module, self.batch_dim, self.names)
        if parametrize.is_parametrized(module):
            check_parametrization_cache(describe(module, self.names), parametrize._cache_enabled)

    def _post_hook(self, module, args, kwargs, output):
        if torch.compiler.is_compiling():
            return None  # see _open
        call = self._stack.pop() if self._stack else None
        if not self._stack and self._mode is not None:
            mode, self._mode = self._mode, None
            mode.__exit__(None, None, None)
        if not self._stack:
            self._untrack()  # no op can broadcast these outputs any more
        if call is None or output is None or not (call.rule_params or call.aliases):
            return None  # nothing used, no gradient enabled, or the forward raised
        call.args = args  # the inputs the forward got, after the module's own pre-hooks
        leaves = [x for x in pytree.tree_leaves(output)
                  if isinstance(x, Tensor) and x.requires_grad]
        targets, watched = [], []
        for y in leaves:
            tgt, unchanged = target(y)
            targets.append(tgt)
            if unchanged:
                watched.append(y)
        if call.rule_params:
            check_single_output(describe(module, self.names), output, leaves)
            call.output = targets[0]
            watched += [x for x in args if isinstance(x, Tensor)]
        if call.aliases:
            call.outputs = targets
        call.watch(watched)
        if self.batch_dim is not None and self._stack:
            for j, y in enumerate(leaves):
                self._tracked[id(y)] = (call, j)
                self._tracked_refs.append(y)
        self.calls.append(call)
        return None

    def _innermost(self) -> nn.Module | None:
        """The module of the innermost open hooked call."""
        return next((c.module for c in reversed(self._stack) if c is not None), None)

    def where(self) -> str:
        """The innermost open hooked call, as messages name it."""
        module = self._innermost()
        return "a hooked module" if module is None else describe(module, self.names)

    def expanded_use(self, p: Tensor, B: int) -> Tensor:
        """``p``, of shape (1, ...), expanded to (B, ...): its use through that expansion is
        recorded, the gradient of row ``s`` of the expansion being sample ``s``'s."""
        y = p.expand(B, *p.shape[1:])
        call = _Call(_ExpandedUse(p, self._innermost()), _EXPANDED_USE_RULE,
                     rule_params={"param": p}, output=_target_of(y))
        self.calls.append(call)
        return y

    def linear_use(self, x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                   bias_rows: slice | None = None) -> Tensor:
        """``F.linear`` whose parameter uses the Linear rule covers (for decompositions)."""
        b = bias if bias is None or bias_rows is None else bias[bias_rows]
        y = F.linear(x, weight, b)
        params = {name: p for name, p in (("weight", weight), ("bias", bias))
                  if p is not None and id(p) in self.param_ids and p.requires_grad}
        check_decomposed_parameters((weight, bias), self.param_ids, self.where())
        if params and y.requires_grad:
            call = _Call(_LinearUse(weight, bias, bias_rows, self._innermost()),
                         _LINEAR_USE_RULE, (x,), rule_params=params, output=_target_of(y))
            call.watch([x])
            self.calls.append(call)
        return y
