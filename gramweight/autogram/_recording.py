"""Recording the forward pass: every call of a hooked module, and how it used the parameters.

- :class:`Recording` holds the forward hooks and the calls recorded since the last
  ``gramian``. The pre-hook, which runs before the module's own, opens a :class:`_Call` (and,
  for the outermost hooked call, enters the torch function mode), so that what those
  pre-hooks compute from the parameters (the legacy ``weight_norm``) is inside the call. The
  post-hook closes it with the inputs the forward got, with the gradient edge of its output, its
  outputs where the generic fallback needs them, and the versions of its tensors.
- :class:`_Recorder`, the torch function mode, sees every torch function that the hooked
  forwards call with a parameter: a use of a rule module's own parameter is left to the rule,
  every other use goes to a per-call alias ``p.view_as(p)``.
- :class:`_LinearUse` stands for a module in a ``linear`` use that a decomposition
  (``rules/_attention.py``, ``rules/_rnn.py``) records for the Linear rule.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

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


def _reparametrized(module: nn.Module) -> bool:
    return parametrize.is_parametrized(module) or any(
        isinstance(h, _REPARAMETRIZING_HOOKS) for h in module._forward_pre_hooks.values())


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
    # what autograd differentiates to: the output's gradient edge for a rule (so that the
    # output itself can be freed, and in-place changes of it after the call do not matter),
    # the output tensors for the generic fallback
    edge: Any = None
    outputs: list[Tensor] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)

    def current_versions(self) -> list[int]:
        """Versions of the outputs and tensor inputs: an in-place op on one changes them."""
        return [x._version for x in self.outputs] + [
            x._version for x in self.args if isinstance(x, Tensor)]


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
        leaves, spec = pytree.tree_flatten((args, kwargs))
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
        args, kwargs = pytree.tree_unflatten(leaves, spec)
        return func(*args, **kwargs)


@torch.compiler.disable
def _eager_torch_function(mode: _Recorder, func, types, args, kwargs):
    return mode._record(func, args, kwargs or {})


class Recording:
    """The hooks on the modules, and the calls they recorded since the last :meth:`take`.

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
        rule = self.rules.get(type(module))
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
        if call is None or output is None or not (call.rule_params or call.aliases):
            return None  # nothing used, no gradient enabled, or the forward raised
        call.args = args  # the inputs the forward got, after the module's own pre-hooks
        leaves = [x for x in pytree.tree_leaves(output)
                  if isinstance(x, Tensor) and x.requires_grad]
        if call.rule_params:
            check_single_output(describe(module, self.names), output, leaves)
            call.edge = get_gradient_edge(leaves[0])
        call.outputs = leaves if call.aliases else []
        call.versions = call.current_versions()
        self.calls.append(call)
        return None

    def _innermost(self) -> nn.Module | None:
        """The module of the innermost open hooked call."""
        return next((c.module for c in reversed(self._stack) if c is not None), None)

    def where(self) -> str:
        """The innermost open hooked call, as messages name it."""
        module = self._innermost()
        return "a hooked module" if module is None else describe(module, self.names)

    def linear_use(self, x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                   bias_rows: slice | None = None) -> Tensor:
        """``F.linear`` whose parameter uses the Linear rule covers (for decompositions)."""
        b = bias if bias is None or bias_rows is None else bias[bias_rows]
        y = F.linear(x, weight, b)
        params = {name: p for name, p in (("weight", weight), ("bias", bias))
                  if p is not None and id(p) in self.param_ids and p.requires_grad}
        check_decomposed_parameters((weight, bias), self.param_ids, self.where())
        if params and y.requires_grad:
            call = _Call(_LinearUse(weight, bias, bias_rows, self._innermost()), _LINEAR_USE_RULE, (x,),
                         rule_params=params, edge=get_gradient_edge(y))
            call.versions = call.current_versions()
            self.calls.append(call)
        return y
