"""Every check of the autogram engine, and every message it raises.

- at construction: the arguments (``batch_dim`` is required), the modules (BatchNorm in
  training mode when ``batch_dim`` is set), that some module owns parameters;
- while recording the forward: BatchNorm switched to training, a rule module using one of its
  own parameters twice or returning more than one tensor, a decomposition given a tensor that
  is no hooked parameter, an RNN given a packed sequence or a computed weight when
  ``batch_dim`` is set;
- in ``gramian``: the losses and ``per``, in-place changes of recorded tensors
  (``check_versions``), uses of the parameters that no record covers
  (``check_uses``), the batch size of every output, the factors a rule returns;
- in ``backward``: that a Gramian pass came first, the weights.

All messages follow the one template of ``gramweight._checks.message``:
"`name` must be <requirement>, got <what was given>."
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .._checks import format_shape, message

if TYPE_CHECKING:
    from ._recording import _Call

__all__ = [
    "REQUIRED",
    "batch_size_message",
    "check_arguments",
    "check_batch_size",
    "check_batchnorm_call",
    "check_batchnorm_module",
    "check_compiled",
    "check_decomposed_parameters",
    "check_factors",
    "check_gramian_pass",
    "check_input_batch_sizes",
    "check_losses",
    "check_modules",
    "check_not_compiled",
    "check_open",
    "check_parameters",
    "check_parametrization_cache",
    "check_per",
    "check_reached",
    "check_recorded",
    "check_scope",
    "check_single_output",
    "check_uses",
    "check_versions",
    "check_weights",
    "describe",
    "group_parameters",
    "reused_parameter_message",
    "rnn_call_message",
    "task_parameters",
]


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()
"""Default of ``Engine``'s ``batch_dim``: not a value, a marker that it was not given."""

_BATCH_DIM_CHOICES = (
    "given: 0 when loss i (or row i of a (B, t) loss matrix) depends on sample i only, "
    "None for losses of shape (m,) that may each depend on the whole batch (multi-task)")


def describe(module: Any, names: Mapping[int, str]) -> str:
    """A module as messages name it: its type and its path in the model, ``Linear 'h.0.fc'``.

    A ``linear`` use recorded by a decomposition (or a parameter's use recorded for a rule) is
    named by the module whose forward made it.
    """
    owner = getattr(module, "owner", None)
    if owner is not None:
        use = getattr(module, "use", "a linear projection")
        return f"{use} inside {describe(owner, names)}"
    name = names.get(id(module))
    return type(module).__name__ + ("" if name is None else f" '{name}'")


# ---------------------------------------------------------------------- construction
def check_arguments(modules: Any, roots: list, batch_dim: Any) -> None:
    """``modules`` (given as ``roots``, a list) and ``batch_dim`` of ``Engine``."""
    if not roots or not all(isinstance(r, nn.Module) for r in roots):
        raise TypeError(message("modules", "an nn.Module or a non-empty iterable of them",
                                type(modules).__name__))
    if batch_dim is REQUIRED:
        raise TypeError(message("batch_dim", _BATCH_DIM_CHOICES, "no batch_dim"))
    if batch_dim is not None and (isinstance(batch_dim, bool) or batch_dim != 0):
        raise ValueError(message("batch_dim", "0 or None", repr(batch_dim)))


def check_scope(scope: Any, process_group: Any) -> None:
    """``scope`` of ``Engine``: "global" or "local", the latter with a process group only."""
    if scope not in ("global", "local"):
        raise ValueError(message("scope", '"global" or "local"', repr(scope)))
    if scope == "local" and process_group is None:
        raise ValueError(message("scope", '"global" when process_group is None (the local '
                                 "scope is a data-parallel mode)", '"local"'))


def _batchnorm_message(where: str) -> str:
    return message(
        "modules", "free of BatchNorm using the batch's statistics (training mode, or "
        "track_running_stats=False) when batch_dim is set (it mixes the samples of a batch, so "
        "per-sample losses are not independent); call .eval() on a BatchNorm with running "
        "statistics, use GroupNorm/LayerNorm, or pass batch_dim=None", where)


def _mixes_samples(module: nn.Module) -> bool:
    """A BatchNorm that normalises with the batch's statistics: in training mode, or without
    running statistics (``track_running_stats=False``) in any mode."""
    return isinstance(module, nn.modules.batchnorm._BatchNorm) and (
        module.training or module.running_mean is None or module.running_var is None)


def check_modules(named: list[tuple[str, nn.Module]], batch_dim: int | None) -> None:
    """Refuse, when ``batch_dim`` is set, the modules that mix the samples."""
    if batch_dim is None:
        return
    for name, mod in named:
        if _mixes_samples(mod):
            raise ValueError(_batchnorm_message(f"{type(mod).__name__} '{name}'"))


def check_not_compiled(named: list[tuple[str, nn.Module]]) -> None:
    """Refuse a module wrapped by ``torch.compile`` (an ``OptimizedModule``)."""
    from torch._dynamo.eval_frame import OptimizedModule

    for name, mod in named:
        if isinstance(mod, OptimizedModule):
            raise TypeError(message(
                "modules", "uncompiled (torch.compile traces the engine's hooks instead of "
                "running them, which gives a wrong Gramian); pass the module torch.compile "
                "wrapped (its `_orig_mod`) and run it uncompiled while the engine is used",
                f"the torch.compile'd module '{name}'"))


def check_parameters(params: list[nn.Parameter]) -> None:
    if not params:
        raise ValueError(message("modules", "modules with parameters", "none"))


def check_open(closed: bool) -> None:
    if closed:
        raise RuntimeError(message("engine", "open (it was closed; create a new Engine)",
                                   "a closed engine"))


# ---------------------------------------------------------------------- recording
def check_batchnorm_module(module: nn.Module, batch_dim: int | None,
                           names: Mapping[int, str]) -> None:
    """A BatchNorm put in training mode after the engine was built."""
    if batch_dim is not None and _mixes_samples(module):
        state = "in training" if module.training else "without running statistics"
        raise RuntimeError(_batchnorm_message(f"{describe(module, names)} {state}"))


def check_batchnorm_call(args: tuple, kwargs: dict, where: str) -> None:
    """A functional ``batch_norm`` in training mode (the caller checks that batch_dim is set),
    called in the forward of ``where`` (a module, as described)."""
    training = kwargs.get("training", args[5] if len(args) > 5 else False)
    if training:
        raise RuntimeError(_batchnorm_message(f"a batch_norm call in training mode inside "
                                              f"{where}"))


def check_parametrization_cache(name: str, cache_enabled: int) -> None:
    """A parametrized module (``name``, as described) called inside ``parametrize.cached()``."""
    if cache_enabled:
        raise RuntimeError(message(
            "parametrized modules", "called outside torch.nn.utils.parametrize.cached() "
            "(a cached weight is computed once and then shared by several calls, whose "
            "per-sample gradients the engine cannot separate); run the forward without it",
            f"{name} called inside it"))


def reused_parameter_message(module: str, name: str) -> str:
    """A call of a rule module (``module``, as described) using an own parameter twice."""
    return message(
        f"a call of {module}", "using each of its own parameters at most once (its rule "
        "sees one use: use the parameter once per call, or give Engine(..., rules=...) a "
        "rule for its type that covers both uses)", f"parameter '{name}' used twice")


def rnn_call_message(what: str, where: str) -> str:
    """With ``batch_dim`` set: a fused RNN op that cannot be unrolled (``what``: a packed
    sequence, a computed weight), called in the forward of ``where`` (a module, as described)."""
    return message(
        "RNNs", "given a padded tensor and their own parameters when batch_dim is set (the "
        "engine unrolls them into linear maps with one row per sample: a PackedSequence holds "
        "the samples sorted by length, step after step, and a weight computed from other "
        "tensors is no parameter the Linear rule covers); pass the padded batch (the RNN then "
        "also runs over the padding), a plain parameter, or batch_dim=None, which is exact",
        f"{what} in {where}")


def check_single_output(module: str, output: Any, leaves: list[Tensor]) -> None:
    """A module whose rule covers its parameters returns one tensor (the rule's ``dY``)."""
    if len(leaves) != 1 or not isinstance(output, Tensor):
        raise RuntimeError(message(
            "rule modules", "called so that they return one tensor (a rule sees one output "
            "gradient)", f"{module} returning {type(output).__name__}"))


def check_decomposed_parameters(tensors: Iterable[Tensor | None], param_ids: set[int],
                                where: str) -> None:
    """A decomposition's ``linear`` use (in the forward of ``where``, a module as described)
    differentiates to hooked parameters only."""
    if any(t is not None and t.requires_grad and id(t) not in param_ids for t in tensors):
        raise RuntimeError(message(
            "the projection weights of a decomposed module", "parameters of the hooked "
            "modules (hook the module that owns them too, or detach them)",
            f"another tensor that requires grad, in {where}"))


# ---------------------------------------------------------------------- gramian
def check_per(per: Any) -> None:
    if isinstance(per, Mapping):
        if not per or not all(isinstance(k, str) and isinstance(v, str)
                              for k, v in per.items()):
            raise TypeError(message("per", "a non-empty mapping {path: group name} of strings",
                                    repr(dict(per))[:80]))
        return
    if per not in (None, "module", "parameter"):
        raise ValueError(message("per", 'None, "module", "parameter" or a mapping {path: '
                                 'group name}', repr(per)))


def group_parameters(per: Mapping[str, str], params: list[nn.Parameter],
                     param_names: Mapping[int, str]) -> tuple[tuple[str, ...], dict[int, int]]:
    """The groups of ``per`` (``{module or parameter path: group}``) and each parameter's.

    A parameter goes to the group of the longest path of ``per`` that is its own path or a
    prefix of it ending at a dot. Every parameter must get a group, and every path must
    match a parameter (a typo would otherwise go unnoticed).
    """
    names = tuple(dict.fromkeys(per.values()))
    block_of: dict[int, int] = {}
    used: set[str] = set()
    missing = []
    for p in params:
        path = param_names[id(p)]
        keys = [k for k in per if path == k or path.startswith(k + ".") or k == ""]
        if not keys:
            missing.append(path)
            continue
        key = max(keys, key=len)
        used.add(key)
        block_of[id(p)] = names.index(per[key])
    if missing:
        shown = ", ".join(f"'{m}'" for m in missing[:3]) + (", ..." if len(missing) > 3 else "")
        raise ValueError(message("per", "a mapping that gives every hooked parameter a group "
                                 "(add their module's path, or '' for the rest)",
                                 f"no group for {shown}"))
    unknown = [k for k in per if k not in used]
    if unknown:
        raise ValueError(message("per", "a mapping whose paths are hooked modules or "
                                 "parameters (as in engine.blocks and engine.parameter_names)",
                                 f"the path '{unknown[0]}', which matches no parameter"))
    return names, block_of


def task_parameters(given: Any, hooked: set[int], param_names: Mapping[int, str]
                    ) -> list[nn.Parameter]:
    """The parameters of ``Engine(..., task_specific=...)``: not hooked, requiring grad."""
    if given is None:
        return []
    items = [given] if isinstance(given, (nn.Module, nn.Parameter)) else list(given)
    params: list[nn.Parameter] = []
    for item in items:
        if isinstance(item, nn.Parameter):
            ps = [item]
        elif isinstance(item, nn.Module):
            ps = list(item.parameters())
        else:
            raise TypeError(message("task_specific", "a module, a parameter, or an iterable "
                                    "of them", type(item).__name__))
        for p in ps:
            if id(p) in hooked:
                raise ValueError(message(
                    "task_specific", "parameters outside the hooked modules (the Gramian "
                    "covers those; give the engine the shared trunk only)",
                    f"the hooked parameter '{param_names[id(p)]}'"))
            if p.requires_grad and all(p is not q for q in params):
                params.append(p)
    return params


def check_losses(losses: Any, batch_dim: int | None) -> None:
    """Type, grad and shape of the losses for ``batch_dim``."""
    if not isinstance(losses, Tensor) or not losses.dtype.is_floating_point:
        raise TypeError(message("losses", "a floating-point tensor", type(losses).__name__
                                if not isinstance(losses, Tensor) else f"dtype {losses.dtype}"))
    if not losses.requires_grad:
        raise ValueError(message("losses", "a tensor that requires grad (computed by the "
                                 "hooked modules)", "a tensor without grad"))
    if batch_dim is None:
        if losses.dim() != 1 or losses.numel() == 0:
            raise ValueError(message("losses", "of shape (m,) with m >= 1 when batch_dim "
                                     "is None (stack several losses with torch.stack)",
                                     f"shape {format_shape(losses.shape)}"))
    elif losses.dim() not in (1, 2) or losses.numel() == 0:
        raise ValueError(message("losses", "of shape (B,) or (B, t) when batch_dim=0 (one "
                                 "row per sample)", f"shape {format_shape(losses.shape)}"))


def check_versions(calls: list[_Call], names: Mapping[int, str]) -> None:
    """Refuse a tensor that gramian reads again changed in place after its call.

    Those are the inputs of a call whose parameters a rule covers (the rule reads them), and
    the outputs that are views (an in-place change of a view, or of its base, moves its
    gradient edge). Any other output may be changed in place: its edge was taken when the
    call ended.
    """
    for c in calls:
        if c.current_versions() != c.versions:
            raise RuntimeError(message(
                "the inputs of hooked modules", "left unmodified until gramian (the rule of "
                "the module reads them again; no in-place op on them after the call: use the "
                "out-of-place op, e.g. x = x + 1 or relu(inplace=False), or clone the tensor "
                "first)",
                f"an input (or an output that is a view) of {describe(c.module, names)} "
                "modified in place"))


def check_compiled(name: str | None) -> None:
    """Refuse a forward that torch.compile traced through a hooked module."""
    if name is not None:
        raise RuntimeError(message(
            "the hooked modules", "run uncompiled (torch.compile traces the engine's hooks "
            "instead of running them, which gives a wrong Gramian); call the module the "
            "engine hooks, not its torch.compile'd wrapper",
            f"a forward of module '{name}' under torch.compile"))


def check_recorded(inputs: list) -> None:
    if not inputs:
        raise ValueError(message("losses", "computed by the hooked modules (run their "
                                 "forward with grad enabled first)", "no recorded call"))


def check_uses(losses: Tensor, calls: list[_Call], param_names: Mapping[int, str],
               names: Mapping[int, str] | None = None) -> None:
    """Refuse any path from the losses to a hooked parameter that no recorded use covers,
    and any path to a broadcast output other than through its expansions.

    A parameter used outside the forward of the hooked modules (e.g. a weight penalty added
    to the losses) would otherwise be missing from the Gramian; an output broadcast over the
    batch and also used another way would have that use summed over the samples.
    ``param_names`` maps the id of every hooked parameter to its path in the model, ``names``
    that of every module.
    """
    # (node, output number) of a broadcast output -> the nodes of its expansions, its call
    broadcast: dict[tuple[Any, int], tuple[set[Any], _Call]] = {}
    for c in calls:
        for source, entry in c.entries:
            broadcast.setdefault(source, (set(), c))[0].add(entry)
    allowed: dict[Any, set[int]] = {}  # node -> parameters it may reach directly
    for c in calls:
        for p, a in c.aliases.values():
            allowed.setdefault(a.grad_fn, set()).add(id(p))
    for c in calls:
        if not c.rule_params:
            continue
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
        for nxt, nr in node.next_functions:
            if nxt is None:
                continue
            hit = broadcast.get((nxt, nr))
            if hit is not None and node not in hit[0]:
                raise ValueError(message(
                    "batch_dim=0", "one row per sample in every hooked module's outputs, or "
                    "an output of batch size 1 used only through elementwise ops (add, mul, "
                    "where, ...) that broadcast it over the batch inside the hooked forward",
                    f"an output of {describe(hit[1].module, names or {})} broadcast over the "
                    "batch and also used another way (expand it to the batch yourself, e.g. "
                    "x.expand(B, -1, -1), before that use)"))
            var = getattr(nxt, "variable", None)
            if var is not None and id(var) in param_names:
                if id(var) not in allowed.get(node, ()):
                    raise ValueError(message(
                        "losses", "dependent on the hooked parameters only through the "
                        "forward of the hooked modules (compute a weight penalty inside "
                        "the forward, or add its gradient after engine.backward)",
                        f"a use of parameter '{param_names[id(var)]}' of shape "
                        f"{format_shape(var.shape)} outside it"))
            else:
                todo.append(nxt)


def check_reached(grads: Iterable[Tensor | None]) -> None:
    if all(g is None for g in grads):
        raise ValueError(message("losses", "dependent on the hooked modules' parameters",
                                 "losses with no path to any of them"))


def batch_size_message(seen: str) -> str:
    """With ``batch_dim=0``: an input or output of a hooked call without one row per loss."""
    return message(
        "batch_dim=0", "the sample dimension (dim 0) of every hooked module's inputs and "
        "outputs, one row per sample and per loss row; pass batch_dim=None for losses of "
        "shape (m,) that each depend on the whole batch (multi-task), run one forward "
        "per gramian call (engine.reset() forgets a forward whose losses are not used), or "
        "expand an output of batch size 1 to the batch yourself (x.expand(B, ...)) where no "
        "elementwise op broadcasts it directly inside the hooked forward", seen)


def check_batch_size(module: str, got: int, B: int) -> None:
    """With ``batch_dim=0``: an output of a hooked call (``module``, as described) has one row
    per sample."""
    if got != B:
        raise ValueError(batch_size_message(f"an output of {module} with {got} rows for {B} "
                                            "losses"))


def check_input_batch_sizes(module: str, args: tuple, B: int) -> None:
    """With ``batch_dim=0``: the tensor inputs of a rule's call (``module``, as described)
    have one row per sample, as its output has."""
    for x in args:
        if isinstance(x, Tensor) and x.dim() and x.shape[0] != B:
            raise ValueError(batch_size_message(
                f"an input of {module} with {x.shape[0]} rows for {B} losses"))


def check_factors(module: str, names: Iterable[str], out: Mapping[str, Any]) -> None:
    """A rule returns a factor for every parameter it covers (``module``, as described)."""
    for name in names:
        if name not in out:
            raise RuntimeError(message(f"the rule for {module}", f"returning a factor for "
                                       f"'{name}' (fix the registered rule)", "none"))


# ---------------------------------------------------------------------- backward
def check_gramian_pass(kept: Any) -> None:
    if kept is None:
        raise RuntimeError(message("engine.gramian(losses)", "called before "
                                   "engine.backward (once per backward)", "no Gramian pass"))


def check_weights(weights: Any, m: int, K: int) -> None:
    """(m,) or (K, m), finite."""
    if not isinstance(weights, Tensor):
        raise TypeError(message("weights", "a tensor", type(weights).__name__))
    if tuple(weights.shape) not in ((m,), (K, m)):
        raise ValueError(message("weights", f"of shape ({m},) or ({K}, {m})",
                                 f"shape {format_shape(weights.shape)}"))
    if not bool(torch.isfinite(weights).all()):
        raise ValueError(message("weights", "finite (no NaN or Inf)", "a non-finite entry"))
