"""The autogram engine: the Gramian of a model's losses without the Jacobian."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.graph import get_gradient_edge
from torch.overrides import TorchFunctionMode
from torch.utils import _pytree as pytree

from .._checks import format_shape, message
from .rules import RULES, Factor, PerLoss, Rule
from .rules._attention import DECOMPOSITIONS
from .rules._linear import linear as _linear_rule

__all__ = ["Engine"]

# Tensor properties that return a differentiable function of the tensor. Every other
# property (shape, dtype, grad, data, ...) is read on the parameter itself.
_DIFFERENTIABLE_PROPERTIES = frozenset({"T", "mT", "H", "mH", "real", "imag"})


def _total(tensors: Iterable[Tensor]) -> Tensor:
    """Sum of tensors without the copy that ``sum()`` makes when adding its start, 0."""
    it = iter(tensors)
    total = next(it)
    for x in it:
        total = total + x
    return total


@dataclass(eq=False)
class _Call:
    """One call of a hooked module during the forward pass."""

    module: nn.Module
    rule: Rule | None
    args: tuple = ()
    kwargs: dict = field(default_factory=dict)
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


class _LinearUse:
    """Stands for a module in a ``linear`` use recorded by a decomposition."""

    def __init__(self, weight: Tensor, bias: Tensor | None, bias_rows: slice | None):
        self.weight, self.bias, self.bias_rows = weight, bias, bias_rows


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

    def __init__(self, engine: Engine):
        super().__init__()
        self.engine = engine

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        engine = self.engine
        if getattr(func, "__name__", None) == "__get__":
            prop = getattr(getattr(func, "__self__", None), "__name__", None)
            if prop not in _DIFFERENTIABLE_PROPERTIES:
                return func(*args, **kwargs)
        if engine.batch_dim is not None and func is F.batch_norm:
            training = kwargs.get("training", args[5] if len(args) > 5 else False)
            if training:
                raise RuntimeError(engine._batchnorm_message("a batch_norm call"))
        leaves, spec = pytree.tree_flatten((args, kwargs))
        hit = [i for i, x in enumerate(leaves)
               if isinstance(x, Tensor) and id(x) in engine._param_ids and x.requires_grad]
        if not hit or not engine._stack:
            return func(*args, **kwargs)
        call = engine._stack[-1]
        if call is None:
            return func(*args, **kwargs)
        decomposition = DECOMPOSITIONS.get(func)
        if decomposition is not None:
            out = decomposition(*args, **kwargs, linear=engine._linear_use)
            if out is not NotImplemented:
                return out
        for i in hit:
            p = leaves[i]
            name = engine._own_names.get((id(call.module), id(p)))
            if call.rule is not None and name is not None and name not in call.rule_params:
                call.rule_params[name] = p
                continue
            if call.rule is not None and name is not None:
                raise RuntimeError(message(
                    f"a {type(call.module).__name__} call", "using each of its own parameters "
                    "at most once (its rule sees one use)",
                    f"parameter '{name}' used twice"))
            if id(p) not in call.aliases:
                call.aliases[id(p)] = (p, p.view_as(p))
            leaves[i] = call.aliases[id(p)][1]
        args, kwargs = pytree.tree_unflatten(leaves, spec)
        return func(*args, **kwargs)


class Engine:
    r"""Computes the Gramian :math:`G = J J^\top` of a model's losses, layer by layer.

    The engine hooks the given modules. During their forward pass it keeps, for every call of
    a module that owns parameters, the inputs autograd already saves; :meth:`gramian` runs one
    backward pass (vmapped over the tasks when the losses share samples) to get the gradient
    reaching each module's output, and per-layer rules (``gramweight.autogram.rules``) turn
    (inputs, output gradients) into the Gramian, without ever materialising the Jacobian.
    :meth:`backward` then fills ``.grad`` from what that pass kept: a training step is one
    forward and one backward.

    Three shapes of losses (rows and columns of ``G`` follow ``losses.flatten()``):

    - ``batch_dim=0``, losses (B,): one loss per sample (instance-wise), ``m = B``;
    - ``batch_dim=None``, losses (m,): several losses of the whole batch;
    - ``batch_dim=0``, losses (B, t): ``t`` losses per sample, ``m = B * t``.

    With ``batch_dim=0`` every hooked module must keep the samples independent and have them
    on dimension 0 of its inputs and outputs; modules that mix the samples (BatchNorm in
    training mode, RNNs with their batch on another dimension) are refused at construction.

    Parameters used outside a rule (a module called several times, parameters shared between
    modules, a parent using a child's parameter, free parameters of any module) are seen by a
    torch function mode active during the forward pass, and contribute exactly, cross terms
    included. Frozen parameters (``requires_grad=False``) are left out.

    Args:
        modules: a module, or several, whose parameters the Gramian is taken over.
        batch_dim: 0 when loss ``i`` (or row ``i`` of a (B, t) loss matrix) depends on sample
            ``i`` only, None when every loss may depend on the whole batch.
        rules: extra rules ``{module_type: fn}`` for this engine (see
            :func:`gramweight.autogram.register_rule` for the signature); they take precedence
            over the built-in ones.
        keep_gradients: when a layer's Gramian materialises its per-sample gradients, the
            engine keeps them for :meth:`backward` only if they are no larger than the layer's
            inputs and output gradients (default), and otherwise recomputes the weighted
            gradient in :meth:`backward` with one matrix product, like autograd's own weight
            gradient. True always keeps them: one product fewer per layer, more peak memory.

    Examples:
        >>> import torch, gramweight as gw
        >>> _ = torch.manual_seed(0)
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
        >>> x, y = torch.randn(5, 3), torch.randn(5, 1)
        >>> with gw.autogram.Engine(model, batch_dim=0) as engine:
        ...     losses = ((model(x) - y) ** 2).squeeze(1)   # one loss per sample
        ...     G = engine.gramian(losses)                  # (5, 5)
        ...     engine.backward(gw.mean(G))                 # .grad of the mean loss
        >>> G.shape
        torch.Size([5, 5])
        >>> engine.blocks
        ('0', '2')
    """

    def __init__(
        self,
        modules: nn.Module | Iterable[nn.Module],
        *,
        batch_dim: int | None = 0,
        rules: Mapping[type, Any] | None = None,
        keep_gradients: bool = False,
    ):
        roots = [modules] if isinstance(modules, nn.Module) else list(modules)
        if not roots or not all(isinstance(r, nn.Module) for r in roots):
            raise TypeError(message("modules", "an nn.Module or a non-empty iterable of them",
                                    type(modules).__name__))
        if batch_dim is not None and (isinstance(batch_dim, bool) or batch_dim != 0):
            raise ValueError(message("batch_dim", "0 or None", repr(batch_dim)))
        self.batch_dim = batch_dim
        self.keep_gradients = bool(keep_gradients)
        self._rules: dict[type, Rule] = dict(RULES)
        for cls, fn in (rules or {}).items():
            self._rules[cls] = fn if isinstance(fn, Rule) else Rule(fn)

        named: list[tuple[str, nn.Module]] = []
        seen: set[int] = set()
        for k, root in enumerate(roots):
            for name, mod in root.named_modules(remove_duplicate=False):
                if id(mod) in seen:
                    continue
                seen.add(id(mod))
                prefix = f"{k}." if len(roots) > 1 else ""
                named.append(((prefix + name).rstrip(".") or type(mod).__name__, mod))
        self._check_modules(named)

        # parameters: owner (first module holding it) = its block
        blocks: list[str] = []
        self._params: list[nn.Parameter] = []
        self._param_block: dict[int, int] = {}
        self._own_names: dict[tuple[int, int], str] = {}
        for name, mod in named:
            for pname, p in mod._parameters.items():
                if p is None:
                    continue
                self._own_names[(id(mod), id(p))] = pname
                if id(p) in self._param_block:
                    continue
                if name not in blocks:
                    blocks.append(name)
                self._param_block[id(p)] = blocks.index(name)
                self._params.append(p)
        if not self._params:
            raise ValueError(message("modules", "modules with parameters", "none"))
        self.blocks: tuple[str, ...] = tuple(blocks)
        """Names of the modules owning parameters: the order of ``gramian(..., per="module")``."""
        self._param_ids = {id(p) for p in self._params}

        self._stack: list[_Call] = []
        self._mode: _Recorder | None = None
        self._calls: list[_Call] = []
        self._kept: dict[int, tuple[nn.Parameter, list[Factor]]] | None = None
        self._m = 0
        self._closed = False
        self._handles = []
        for _, mod in named:
            self._handles.append(mod.register_forward_pre_hook(self._pre_hook, with_kwargs=True))
            self._handles.append(mod.register_forward_hook(self._post_hook, with_kwargs=True,
                                                           always_call=True))

    # ------------------------------------------------------------------ construction checks
    def _batchnorm_message(self, where: str) -> str:
        return message(
            "modules", "free of BatchNorm in training mode when batch_dim is set (it mixes the "
            "samples of a batch, so per-sample losses are not independent); call .eval() on "
            "it, use GroupNorm/LayerNorm, or pass batch_dim=None", where)

    def _check_modules(self, named: list[tuple[str, nn.Module]]) -> None:
        if self.batch_dim is None:
            return
        for name, mod in named:
            if isinstance(mod, nn.modules.batchnorm._BatchNorm) and mod.training:
                raise ValueError(self._batchnorm_message(f"{type(mod).__name__} '{name}'"))
            if isinstance(mod, nn.RNNBase):
                raise ValueError(message(
                    "modules", "free of RNNs when batch_dim is set (their parameters are used "
                    "inside one fused op across time steps, which no per-sample rule sees); "
                    "pass batch_dim=None", f"{type(mod).__name__} '{name}'"))

    # ------------------------------------------------------------------ hooks
    def _pre_hook(self, module, args, kwargs):
        if not torch.is_grad_enabled():
            self._stack.append(None)
            return None
        if (self.batch_dim is not None and isinstance(module, nn.modules.batchnorm._BatchNorm)
                and module.training):
            raise RuntimeError(self._batchnorm_message(f"{type(module).__name__} in training"))
        rule = self._rules.get(type(module))
        if rule is not None and (kwargs or not rule.applies(module)):
            rule = None
        if not self._stack or all(c is None for c in self._stack):
            if self._mode is None:
                self._mode = _Recorder(self)
                self._mode.__enter__()
        self._stack.append(_Call(module, rule, args, kwargs))
        return None

    def _post_hook(self, module, args, kwargs, output):
        call = self._stack.pop() if self._stack else None
        if not self._stack and self._mode is not None:
            mode, self._mode = self._mode, None
            mode.__exit__(None, None, None)
        if call is None or output is None or not (call.rule_params or call.aliases):
            return None  # nothing used, no gradient enabled, or the forward raised
        leaves = [x for x in pytree.tree_leaves(output)
                  if isinstance(x, Tensor) and x.requires_grad]
        if call.rule_params and (len(leaves) != 1 or not isinstance(output, Tensor)):
            raise RuntimeError(message(
                "rule modules", "called so that they return one tensor",
                f"{type(module).__name__} returning {type(output).__name__}"))
        if call.rule_params:
            call.edge = get_gradient_edge(leaves[0])
        call.outputs = leaves if call.aliases else []
        call.versions = [x._version for x in call.outputs] + [
            x._version for x in call.args if isinstance(x, Tensor)]
        self._calls.append(call)
        return None

    def _linear_use(self, x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                    bias_rows: slice | None = None) -> Tensor:
        """``F.linear`` whose parameter uses the Linear rule covers (for decompositions)."""
        b = bias if bias is None or bias_rows is None else bias[bias_rows]
        y = F.linear(x, weight, b)
        params = {name: p for name, p in (("weight", weight), ("bias", bias))
                  if p is not None and id(p) in self._param_ids and p.requires_grad}
        unknown = [t for t in (weight, bias) if t is not None and t.requires_grad
                   and id(t) not in self._param_ids]
        if unknown:
            raise RuntimeError(message("the parameters of a decomposed module",
                                       "parameters of the hooked modules", "another tensor"))
        if params and y.requires_grad:
            call = _Call(_LinearUse(weight, bias, bias_rows), _LINEAR_USE_RULE, (x,),
                         rule_params=params, edge=get_gradient_edge(y))
            call.versions = [x._version]
            self._calls.append(call)
        return y

    # ------------------------------------------------------------------ public API
    def __enter__(self) -> Engine:
        self._check_open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove every hook and drop everything kept. The engine cannot be used afterwards."""
        for h in self._handles:
            h.remove()
        self._handles = []
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        self._stack, self._calls, self._kept = [], [], None
        self._closed = True

    def reset(self) -> None:
        """Forget the recorded forward passes and kept factors (e.g. after an exception)."""
        self._check_open()
        self._calls, self._kept = [], None

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(message("engine", "open (it was closed; create a new Engine)",
                                       "a closed engine"))

    def _grad_outputs(self, losses: Tensor) -> tuple[Tensor, bool, int, int]:
        """Cotangents of the losses, whether they are batched, and (n, t)."""
        if not isinstance(losses, Tensor) or not losses.dtype.is_floating_point:
            raise TypeError(message("losses", "a floating-point tensor", type(losses).__name__
                                    if not isinstance(losses, Tensor) else f"dtype {losses.dtype}"))
        if not losses.requires_grad:
            raise ValueError(message("losses", "a tensor that requires grad (computed by the "
                                     "hooked modules)", "a tensor without grad"))
        if self.batch_dim is None:
            if losses.dim() == 0 or losses.numel() == 0:
                raise ValueError(message("losses", "of shape (m,) with m >= 1 when batch_dim "
                                         "is None", f"shape {format_shape(losses.shape)}"))
            m = losses.numel()
            eye = torch.eye(m, dtype=losses.dtype, device=losses.device)
            return eye.reshape(m, *losses.shape), True, 1, m
        if losses.dim() not in (1, 2) or losses.numel() == 0:
            raise ValueError(message("losses", "of shape (B,) or (B, t) when batch_dim=0 (one "
                                     "row per sample)", f"shape {format_shape(losses.shape)}"))
        if losses.dim() == 1:
            return torch.ones_like(losses), False, losses.shape[0], 1
        B, t = losses.shape
        eye = torch.eye(t, dtype=losses.dtype, device=losses.device)
        return eye.unsqueeze(1).expand(t, B, t), True, B, t

    def gramian(self, losses: Tensor, *, per: str | None = None, retain_graph: bool = False
                ) -> Tensor:
        """The Gramian of the gradients of ``losses.flatten()`` w.r.t. the hooked parameters.

        Args:
            losses: (B,) or (B, t) with ``batch_dim=0``; (m,) with ``batch_dim=None``.
            per: None for the (m, m) Gramian; ``"module"`` for the (K, m, m) stack of the
                Gramians of each block's parameters (blocks in the order of ``self.blocks``),
                which sum to the full Gramian.
            retain_graph: keep the autograd graph (to call ``losses.backward`` afterwards).

        Returns:
            ``G`` of shape (m, m), or (K, m, m) with ``per="module"``, in the losses' dtype.
        """
        self._check_open()
        if per not in (None, "module"):
            raise ValueError(message("per", 'None or "module"', repr(per)))
        go, batched, n, t = self._grad_outputs(losses)
        calls, self._calls, self._kept = self._calls, [], None

        rule_calls = [c for c in calls if c.rule_params]
        generic = [c for c in calls if c.aliases]
        for c in calls:
            tensors = c.outputs + [x for x in c.args if isinstance(x, Tensor)]
            if [x._version for x in tensors] != c.versions:
                raise RuntimeError(message(
                    "the inputs of hooked modules", "left unmodified until gramian (no in-place "
                    "op on them after the call)",
                    f"a tensor of {type(c.module).__name__} modified in place"))
        inputs: list[Any] = [c.edge for c in rule_calls]
        if self.batch_dim is None:
            inputs += [a for c in generic for (_, a) in c.aliases.values()]
        else:
            inputs += [y for c in generic for y in c.outputs]
        if not inputs:
            raise ValueError(message("losses", "computed by the hooked modules (run their "
                                     "forward with grad enabled first)", "no recorded call"))
        self._check_uses(losses, rule_calls, generic)
        need_graph = retain_graph or (self.batch_dim is not None and bool(generic))
        grads = torch.autograd.grad(losses, inputs, go, retain_graph=need_graph,
                                    allow_unused=True, is_grads_batched=batched)
        if all(g is None for g in grads):
            raise ValueError(message("losses", "dependent on the hooked modules' parameters",
                                     "losses with no path to any of them"))
        grads = [None if g is None else (g if batched else g.unsqueeze(0)) for g in grads]
        del inputs, calls
        with torch.no_grad():
            return self._assemble(rule_calls, generic, grads, losses, per, n, t)

    def _assemble(self, rule_calls, generic, grads, losses, per, n, t) -> Tensor:
        """Turn the output gradients into Gramians, freeing each layer's tensors as it goes."""
        m = n * t
        K = len(self.blocks)
        Gs = losses.new_zeros(K, m, m) if per else None
        G = losses.new_zeros(m, m)
        factors: dict[int, tuple[nn.Parameter, list[Factor]]] = {}
        expected: dict[int, int] = {}
        for c in rule_calls:
            for p in c.rule_params.values():
                expected[id(p)] = expected.get(id(p), 0) + 1
        for c in generic:
            for p, _ in c.aliases.values():
                expected[id(p)] = expected.get(id(p), 0) + 1
        done: dict[int, int] = {}

        def add(p: nn.Parameter, f: Factor) -> None:
            factors.setdefault(id(p), (p, []))[1].append(f)

        def settle(p: nn.Parameter) -> None:
            # once every use of p is in, its Gramian is added and only what backward needs stays
            done[id(p)] = done.get(id(p), 0) + 1
            if done[id(p)] != expected[id(p)] or id(p) not in factors:
                return
            fs = factors[id(p)][1]
            for f in fs:
                f.keep_grads = self.keep_gradients
            if len(fs) == 1:
                Gp = fs[0].gramian()
            else:
                total = _total(f.grads() for f in fs)
                factors[id(p)] = (p, [PerLoss(total)])
                g = total.flatten(1)
                Gp = g @ g.T
            if per:
                Gs[self._param_block[id(p)]] += Gp.to(losses.dtype)
            else:
                G.add_(Gp.to(losses.dtype))

        i = 0
        for c in rule_calls:
            dY, grads[i] = grads[i], None
            i += 1
            if dY is not None:
                if self.batch_dim is not None and dY.shape[1] != n:
                    raise ValueError(self._batch_message(c, dY.shape[1], n))
                out = c.rule.fn(c.module, c.args, dY, batched=self.batch_dim is not None)
                del dY
                for name, p in c.rule_params.items():
                    if name not in out:
                        raise RuntimeError(message(f"rule for {type(c.module).__name__}",
                                                   f"a factor for '{name}'", "none"))
                    add(p, out[name])
                del out
            c.args = c.outputs = None
            for p in c.rule_params.values():
                settle(p)
        for c in generic:
            if self.batch_dim is None:
                for p, _ in c.aliases.values():
                    g, grads[i] = grads[i], None
                    i += 1
                    if g is not None:
                        add(p, PerLoss(g.reshape(m, *p.shape)))
            else:
                k = len(c.outputs)
                dYs, grads[i:i + k] = grads[i:i + k], [None] * k
                i += k
                self._add_generic(c, dYs, n, t, add)
                del dYs
            c.args = c.outputs = None
            for p, _ in c.aliases.values():
                settle(p)
        self._kept, self._m = factors, m
        return Gs if per else G

    def _check_uses(self, losses: Tensor, rule_calls: list[_Call], generic: list[_Call]) -> None:
        """Refuse any path from the losses to a hooked parameter that no recorded use covers.

        Such a path (a parameter used outside the forward of the hooked modules, e.g. a
        weight penalty added to the losses) would otherwise be missing from the Gramian.
        """
        allowed: dict[Any, set[int]] = {}  # node -> parameters it may reach directly
        for c in generic:
            for p, a in c.aliases.values():
                allowed.setdefault(a.grad_fn, set()).add(id(p))
        for c in rule_calls:
            stops = {x.grad_fn for x in c.args if isinstance(x, Tensor) and x.grad_fn is not None}
            covered = {id(p) for p in c.rule_params.values()}
            todo = [c.edge.node]
            seen = set()
            while todo:
                node = todo.pop()
                if node is None or node in seen or node in stops:
                    continue
                seen.add(node)
                allowed.setdefault(node, set()).update(covered)
                todo.extend(nxt for nxt, _ in node.next_functions)
        todo, seen = [losses.grad_fn], set()
        while todo:
            node = todo.pop()
            if node is None or node in seen:
                continue
            seen.add(node)
            for nxt, _ in node.next_functions:
                if nxt is None:
                    continue
                var = getattr(nxt, "variable", None)
                if var is not None and id(var) in self._param_ids:
                    if id(var) not in allowed.get(node, ()):
                        raise ValueError(message(
                            "losses", "dependent on the hooked parameters only through the "
                            "forward of the hooked modules (compute a weight penalty inside "
                            "the forward, or add its gradient after engine.backward)",
                            f"a use of a {type(var).__name__} of shape "
                            f"{format_shape(var.shape)} outside it"))
                else:
                    todo.append(nxt)

    def _batch_message(self, c: _Call, got: int, B: int) -> str:
        return message(
            "batch_dim=0", "the sample dimension (dim 0) of every hooked module's output",
            f"an output of {type(c.module).__name__} with {got} rows for {B} losses")

    def _add_generic(self, c: _Call, dYs: list[Tensor | None], n: int, t: int, add) -> None:
        """Per-sample gradients of the aliases of one call, through its own graph."""
        outs, cots = [], []
        for y, dY in zip(c.outputs, dYs):
            if dY is None:
                continue
            if y.dim() == 0 or y.shape[0] != n:
                raise ValueError(self._batch_message(c, y.shape[0] if y.dim() else 0, n))
            eye = torch.eye(n, dtype=dY.dtype, device=dY.device)
            mask = eye.reshape(n, 1, n, *([1] * (y.dim() - 1)))
            cots.append((dY.unsqueeze(0) * mask).reshape(n * t, *y.shape))
            outs.append(y)
        if not outs:
            return
        pairs = list(c.aliases.values())
        with torch.enable_grad():
            gs = torch.autograd.grad(outs, [a for _, a in pairs], cots, retain_graph=True,
                                     allow_unused=True, is_grads_batched=True)
        for (p, _), g in zip(pairs, gs):
            if g is not None:
                add(p, PerLoss(g))

    def backward(self, weights: Tensor) -> None:
        """Accumulate into ``.grad`` the update ``weights @ J`` from what ``gramian`` kept.

        Args:
            weights: (m,) — every parameter gets ``sum_i w[i] * grad of loss i``, as
                ``losses.flatten().backward(w)`` would; or (K, m) — the parameters of block
                ``k`` (``self.blocks[k]``) get ``sum_i W[k, i] * grad of loss i``.
        """
        self._check_open()
        if self._kept is None:
            raise RuntimeError(message("engine.gramian(losses)", "called before "
                                       "engine.backward (once per backward)", "no Gramian pass"))
        m, K = self._m, len(self.blocks)
        if not isinstance(weights, Tensor):
            raise TypeError(message("weights", "a tensor", type(weights).__name__))
        if tuple(weights.shape) not in ((m,), (K, m)):
            raise ValueError(message("weights", f"of shape ({m},) or ({K}, {m})",
                                     f"shape {format_shape(weights.shape)}"))
        if not bool(torch.isfinite(weights).all()):
            raise ValueError(message("weights", "finite (no NaN or Inf)", "a non-finite entry"))
        kept, self._kept = self._kept, None
        with torch.no_grad():
            self._accumulate(kept, weights)

    def _accumulate(self, kept, weights: Tensor) -> None:
        while kept:  # each layer's kept tensors are released as soon as its gradient exists
            _, (p, fs) = kept.popitem()
            w = weights if weights.dim() == 1 else weights[self._param_block[id(p)]]
            g = _total(f.weighted(w) for f in fs).to(p.dtype)
            if p.grad is None:
                p.grad = g.detach()
            else:
                p.grad += g.detach()
            del fs, g
