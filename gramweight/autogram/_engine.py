"""The autogram engine: the flow that turns a recorded forward into the Gramian, then ``.grad``.

``Engine`` hooks the modules (construction), takes the calls the forward recorded, runs
one backward to the tensors each use needs, hands each use's gradients to its rule (or to the
generic fallback, ``rules/_generic.py``), sums the factors into the Gramian, and keeps them for
``Engine.backward``. What the flow relies on is kept out of its way: recording the forward
in ``_recording.py``, every check and error message in ``_validation.py``, the per-layer
maths in ``rules/``.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from ._distributed import Distributed, resolve_group
from ._recording import Recording, _Call
from ._validation import (
    REQUIRED,
    check_arguments,
    check_batch_size,
    check_compiled,
    check_factors,
    check_gramian_pass,
    check_input_batch_sizes,
    check_losses,
    check_modules,
    check_not_compiled,
    check_open,
    check_parameters,
    check_per,
    check_reached,
    check_recorded,
    check_scope,
    check_uses,
    check_versions,
    check_weights,
    describe,
    group_parameters,
    task_parameters,
)
from .rules import RULES, Factor, PerLoss, Rule
from .rules._factors import gramian_of_uses
from .rules._generic import generic, targets

__all__ = ["Engine"]


def _total(tensors: Iterable[Tensor]) -> Tensor:
    """Sum of tensors without the copy that ``sum()`` makes when adding its start, 0."""
    it = iter(tensors)
    total = next(it)
    for x in it:
        total = total + x
    return total


class _Use(NamedTuple):
    """The parameters of one recorded call that one rule, or the generic fallback, covers."""

    call: _Call
    # key of each parameter in the factors the rule returns (its name for a rule, the key of
    # its alias for the generic fallback) -> the parameter
    params: Mapping[Any, nn.Parameter]
    generic: bool


def _uses(calls: list[_Call]) -> Iterator[_Use]:
    """Every use, the rules' first (the order in which the Gramian is summed)."""
    for c in calls:
        if c.rule_params:
            yield _Use(c, c.rule_params, False)
    for c in calls:
        if c.aliases:
            yield _Use(c, {key: p for key, (p, _) in c.aliases.items()}, True)


class Engine:
    r"""Computes the Gramian $G = J J^\top$ of a model's losses, layer by layer.

    The engine hooks the given modules. During their forward pass it keeps, for every call of a
    module that owns parameters, the inputs autograd already saves;
    [`gramian`][gramweight.autogram.Engine.gramian] runs one backward pass (vmapped over the tasks
    when the losses share samples) to get the gradient reaching each module's output, and per-layer
    rules (``gramweight.autogram.rules``) turn (inputs, output gradients) into the Gramian, without
    ever materialising the Jacobian. [`backward`][gramweight.autogram.Engine.backward] then fills
    ``.grad`` from what that pass kept: a training step is one forward and one backward.

    Three shapes of losses (rows and columns of ``G`` follow ``losses.flatten()``):

    - ``batch_dim=0``, losses (B,): one loss per sample (instance-wise), ``m = B``;
    - ``batch_dim=None``, losses (m,): several losses of the whole batch;
    - ``batch_dim=0``, losses (B, t): ``t`` losses per sample, ``m = B * t``.

    With ``batch_dim=0`` every hooked module must keep the samples independent and have them on
    dimension 0 of its inputs and outputs; modules that mix the samples (BatchNorm with the batch's
    statistics) are refused at construction. RNNs (``nn.RNN``, ``nn.LSTM``, ``nn.GRU``) are then
    unrolled in time into linear maps with the batch on dimension 0, whatever their ``batch_first``,
    so they are exact too; given a packed sequence (or a parametrized weight) they are refused in
    the forward. An output of batch size 1 that an elementwise op broadcasts over the batch inside
    the hooked forward (a position embedding looked up with ids of shape (1, T)) is exact: the
    engine expands it to the batch first. In-place ops on outputs after a call (``out += identity``)
    are exact; in-place changes of the inputs a rule reads again are refused.

    Parameters used outside a rule (a module called several times, parameters shared between
    modules, a parent using a child's parameter, free parameters of any module) are seen by a torch
    function mode active during the forward pass, and contribute exactly, cross terms included.
    Frozen parameters (``requires_grad=False``) are left out. Reparametrized weights
    (``torch.nn.utils.parametrize``, the legacy ``weight_norm`` / ``spectral_norm``) are covered the
    same way, through the parameters they are computed from. Modules compiled by ``torch.compile``
    are refused: give the engine the uncompiled module and call that.

    Args:
        modules: a module, or several, whose parameters the Gramian is taken over.
        batch_dim: required, no default: 0 when loss ``i`` (or row ``i`` of a (B, t) loss matrix)
            depends on sample ``i`` only, None when every loss may depend on the whole batch
            (multi-task losses of shape (m,)). No default, because the engine cannot tell (m,)
            multi-task losses from (B,) per-sample losses when m == B, and taking one for the other
            gives a wrong Gramian.
        rules: extra rules ``{module_type: fn}`` for this engine, also used by subclasses that keep
            the type's ``forward`` (see [`register_rule`][gramweight.autogram.register_rule] for the
            signature); they take precedence over the built-in ones.
        task_specific: modules or parameters outside the hooked ones (the heads of a shared trunk)
            that get the plain gradient of ``losses.sum()`` in
            [`backward`][gramweight.autogram.Engine.backward], unweighted, from the same backward
            pass: the shared-representation mode of TorchJD's ``mtl_backward`` (the Gramian covers
            the trunk only).
        keep_gradients: when a layer's Gramian materialises its per-sample gradients, the engine
            keeps them for [`backward`][gramweight.autogram.Engine.backward] only if they are no
            larger than the layer's inputs and output gradients (default), and otherwise recomputes
            the weighted gradient in [`backward`][gramweight.autogram.Engine.backward] with one
            matrix product, like autograd's own weight gradient. True always keeps them: one product
            fewer per layer, more peak memory.
        process_group: None (default): one process. ``"world"`` or a
            ``torch.distributed.ProcessGroup``: data parallelism, one engine per rank, each on its
            rank's shard of the batch (see the "Distributed training" page). With ``batch_dim=0``
            [`gramian`][gramweight.autogram.Engine.gramian] returns the exact Gramian of the losses
            of the global batch, ``(M, M)`` with ``M`` the losses of every rank in rank order, the
            same on every rank; with ``batch_dim=None`` the Gramian of the (m,) losses averaged over
            the ranks. [`backward`][gramweight.autogram.Engine.backward] takes weights for those
            losses and all-reduces the weighted gradients itself (one call): every rank gets the
            same ``.grad``. A ``DistributedDataParallel`` wrapper's own all-reduce never runs, as
            the engine does not back-propagate into the parameters.
        scope: with a process group, ``"global"`` (default, as above) or ``"local"``: each rank's
            Gramian of its own losses, nothing exchanged by
            [`gramian`][gramweight.autogram.Engine.gramian], and
            [`backward`][gramweight.autogram.Engine.backward] averages the ranks' weighted
            gradients. A different method (each rank's weights see its own samples only), for tight
            traffic budgets.

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
        batch_dim: int | None = REQUIRED,
        rules: Mapping[type, Any] | None = None,
        keep_gradients: bool = False,
        task_specific: nn.Module | nn.Parameter | Iterable[nn.Module | nn.Parameter] | None
        = None,
        process_group: Any = None,
        scope: str = "global",
    ):
        roots = [modules] if isinstance(modules, nn.Module) else list(modules)
        check_arguments(modules, roots, batch_dim)
        # data parallelism (``_distributed.py``): None keeps the engine single-process
        check_scope(scope, process_group)
        self._dist = (None if process_group is None else
                      Distributed(resolve_group(process_group), scope, batch_dim))
        self.batch_dim = batch_dim
        self.keep_gradients = bool(keep_gradients)
        by_type: dict[type, Rule] = dict(RULES)
        for cls, fn in (rules or {}).items():
            by_type[cls] = fn if isinstance(fn, Rule) else Rule(fn)

        named: list[tuple[str, nn.Module]] = []
        seen: set[int] = set()
        for k, root in enumerate(roots):
            for name, mod in root.named_modules(remove_duplicate=False):
                if id(mod) in seen:
                    continue
                seen.add(id(mod))
                prefix = f"{k}." if len(roots) > 1 else ""
                named.append(((prefix + name).rstrip(".") or type(mod).__name__, mod))
        check_modules(named, batch_dim)
        check_not_compiled(named)
        self._names = {id(mod): name for name, mod in named}

        # the modules of a parametrization (``module.parametrizations.weight`` and what it
        # holds) are not hooked: the parametrized weight is computed inside the call that
        # reads it, so its originals are that call's parameters, for the generic fallback;
        # they belong to the block of the parametrized module
        owner_of: dict[int, str] = {}
        for name, mod in named:
            if parametrize.is_parametrized(mod):
                for sub in mod.parametrizations.modules():
                    owner_of.setdefault(id(sub), name)

        # parameters: owner (first module holding it) = its block
        blocks: list[str] = []
        self._params: list[nn.Parameter] = []
        self._param_block: dict[int, int] = {}
        own_names: dict[tuple[int, int], str] = {}
        self._param_names: dict[int, str] = {}  # id -> its path in the model, for messages
        for name, mod in named:
            for pname, p in mod._parameters.items():
                if p is None:
                    continue
                own_names[(id(mod), id(p))] = pname
                if id(p) in self._param_block:
                    continue
                at_root = len(roots) == 1 and mod is roots[0]  # named by its type: no prefix
                self._param_names[id(p)] = pname if at_root else f"{name}.{pname}"
                block = owner_of.get(id(mod), name)
                if block not in blocks:
                    blocks.append(block)
                self._param_block[id(p)] = blocks.index(block)
                self._params.append(p)
        check_parameters(self._params)
        self.blocks: tuple[str, ...] = tuple(blocks)
        """Names of the modules owning parameters: the order of ``gramian(..., per="module")``."""
        self.parameter_names: tuple[str, ...] = tuple(self._param_names[id(p)]
                                                      for p in self._params)
        """Paths of the parameters: the order of ``gramian(..., per="parameter")``."""
        self._param_ids = {id(p) for p in self._params}
        self._task_params = task_parameters(task_specific, self._param_ids, self._param_names)
        self._task_grads: list[Tensor | None] | None = None
        self._grouping: tuple[tuple[str, ...], dict[int, int]] = (self.blocks,
                                                                 self._param_block)

        self._kept: dict[int, tuple[nn.Parameter, list[Factor]]] | None = None
        self._m = 0
        self._closed = False
        hooked = (mod for _, mod in named if id(mod) not in owner_of)
        self._recording = Recording(hooked, rules=by_type,
                                    own_names=own_names, param_ids=self._param_ids,
                                    batch_dim=batch_dim, names=self._names)

    # ------------------------------------------------------------------ public API
    def __enter__(self) -> Engine:
        check_open(self._closed)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Remove every hook and drop everything kept. The engine cannot be used afterwards."""
        self._recording.close()
        self._kept = None
        self._closed = True

    def reset(self) -> None:
        """Forget the recorded forward passes and kept factors (e.g. after an exception)."""
        check_open(self._closed)
        self._recording.calls, self._kept = [], None

    def groups(self, per: str | Mapping[str, str] | None = "module") -> tuple[str, ...]:
        """The names of the blocks of ``gramian(..., per=per)``, in the order of its stack.

        ``"module"`` (and None): ``self.blocks``; ``"parameter"``: ``self.parameter_names``;
        a mapping: its group names, in the order they first appear among its values.
        """
        check_open(self._closed)
        return self._groups_of(per)[0]

    def gramian(self, losses: Tensor, *, per: str | Mapping[str, str] | None = None,
                retain_graph: bool = False) -> Tensor:
        """The Gramian of the gradients of ``losses.flatten()`` w.r.t. the hooked parameters.

        Args:
            losses: (B,) or (B, t) with ``batch_dim=0``; (m,) with ``batch_dim=None``.
            per: None for the (m, m) Gramian; otherwise the (K, m, m) stack of the Gramians of
                K blocks of parameters, which sum to the full Gramian: ``"module"`` (the
                modules owning parameters, ``self.blocks``), ``"parameter"`` (one block per
                parameter tensor, ``self.parameter_names``), or a mapping ``{path: group}``
                from module or parameter paths (as in ``self.blocks`` and
                ``self.parameter_names``) to group names (``{"encoder": "enc", "decoder":
                "dec"}``): each parameter goes to the group of the longest path that is it or
                one of its prefixes, and every parameter must have one. ``self.groups(per)``
                names the blocks.
            retain_graph: keep the autograd graph (to call ``losses.backward`` afterwards).

        Returns:
            ``G`` of shape (m, m), or (K, m, m) with ``per`` given, in the losses' dtype.
        """
        check_open(self._closed)
        grouping = self._groups_of(per)
        check_losses(losses, self.batch_dim)
        go, batched, n, t = self._cotangents(losses)
        compiled = self._recording.compiled
        calls, self._kept = self._recording.take(), None
        check_compiled(compiled)
        check_versions(calls, self._names)

        # each use is paired with the slice of the backward's inputs built for it, so that it
        # gets exactly the gradients of its own tensors
        per_sample = self.batch_dim is not None
        inputs: list[Any] = []
        slots: list[tuple[_Use, slice]] = []
        for use in _uses(calls):
            xs = (targets(use.call.aliases, use.call.targets(), batched=per_sample)
                  if use.generic else [tgt.edge for tgt in use.call.rule_targets()])
            slots.append((use, slice(len(inputs), len(inputs) + len(xs))))
            inputs += xs
        check_recorded(inputs)
        check_uses(losses, calls, self._param_names, self._names)
        n_uses = len(inputs)
        inputs += self._task_params  # their plain gradients come out of the same backward
        # with batch_dim=0 the generic fallback's local backward runs through the graph again
        need_graph = retain_graph or (per_sample and any(use.generic for use, _ in slots))
        try:
            grads = torch.autograd.grad(losses, inputs, go, retain_graph=need_graph,
                                        allow_unused=True, is_grads_batched=batched)
        except RuntimeError as e:
            if "use_reentrant" in str(e) and hasattr(e, "add_note"):
                e.add_note("(raised in Engine.gramian, which differentiates the losses to the "
                           "recorded outputs with torch.autograd.grad: checkpoint with "
                           "use_reentrant=False, which is exact)")
            raise
        check_reached(grads[:n_uses])
        self._task_grads = [None if g is None else (g.sum(0) if batched else g)
                            for g in grads[n_uses:]]
        grads = [None if g is None else (g if batched else g.unsqueeze(0))
                 for g in grads[:n_uses]]
        pending = deque((use, grads[s]) for use, s in slots)
        del inputs, calls, slots, grads
        self._grouping = grouping
        with torch.no_grad():
            return self._assemble(pending, losses, per is not None, n, t, retain_graph)

    def backward(self, weights: Tensor) -> None:
        """Accumulate into ``.grad`` the update ``weights @ J`` from what ``gramian`` kept.

        The ``task_specific`` parameters (see the class) get the plain gradient of
        ``losses.sum()``, unweighted, from the same pass.

        Args:
            weights: (m,) — every parameter gets ``sum_i w[i] * grad of loss i``, as
                ``losses.flatten().backward(w)`` would; or (K, m) — the parameters of block
                ``k`` get ``sum_i W[k, i] * grad of loss i``, with the blocks of the last
                ``gramian(..., per=...)`` call (``self.groups(per)``; the modules,
                ``self.blocks``, when it was called with ``per=None``).
        """
        check_open(self._closed)
        check_gramian_pass(self._kept)
        names, index = self._grouping
        check_weights(weights, self._m, len(names))
        kept, self._kept = self._kept, None
        task_grads, self._task_grads = self._task_grads, None
        plain = list(zip(self._task_params, task_grads or ()))
        with torch.no_grad():
            if self._dist is not None:  # one all_reduce of every rank's gradients
                self._dist.accumulate(self._params, kept, weights, index, plain)
                return
            self._accumulate(kept, weights, index)
            for p, g in plain:
                if g is not None:
                    _add_grad(p, g.to(p.dtype))

    # ------------------------------------------------------------------ the flow
    def _cotangents(self, losses: Tensor) -> tuple[Tensor, bool, int, int]:
        """Cotangents of the (checked) losses, whether they are batched, and (n, t)."""
        if self.batch_dim is None:
            m = losses.numel()
            eye = torch.eye(m, dtype=losses.dtype, device=losses.device)
            return eye.reshape(m, *losses.shape), True, 1, m
        if losses.dim() == 1:
            return torch.ones_like(losses), False, losses.shape[0], 1
        B, t = losses.shape
        eye = torch.eye(t, dtype=losses.dtype, device=losses.device)
        return eye.unsqueeze(1).expand(t, B, t), True, B, t

    def _factors(self, use: _Use, grads: list[Tensor | None], n: int, t: int,
                 retain_graph: bool) -> Mapping[Any, Factor]:
        """The factors of one use's parameters, by the keys of ``use.params``."""
        c, per_sample = use.call, self.batch_dim is not None
        if use.generic:
            return generic(describe(c.module, self._names), c.aliases, c.targets(), grads,
                           batched=per_sample, n=n, t=t, retain_graph=retain_graph)
        grads = [tgt.gradient(g) for tgt, g in zip(c.rule_targets(), grads) if g is not None]
        if not grads:
            return {}
        dY = _total(grads)  # one term, or one per expansion of a broadcast output
        if dY.dtype in (torch.float16, torch.bfloat16):
            # half-precision activations (torch.autocast): the rule's products and sums run
            # in float32, which its factors then use (the inputs are cast where they are read)
            dY = dY.float()
        args = c.rule_args()
        if per_sample:
            where = describe(c.module, self._names)
            check_batch_size(where, dY.shape[1], n)
            check_input_batch_sizes(where, args, n)
        try:
            out = c.rule.fn(c.module, args, dY, batched=per_sample)
        except Exception as e:  # a rule knows its module, not the module's path: say it
            if hasattr(e, "add_note"):
                e.add_note(f"(raised by the rule for {describe(c.module, self._names)})")
            raise
        check_factors(describe(c.module, self._names), c.rule_params, out)
        return out

    def _groups_of(self, per) -> tuple[tuple[str, ...], dict[int, int]]:
        """The block names of ``per`` and the block of each parameter, by id (checked)."""
        check_per(per)
        if per is None or per == "module":
            return self.blocks, self._param_block
        if per == "parameter":
            return self.parameter_names, {id(p): k for k, p in enumerate(self._params)}
        return group_parameters(per, self._params, self._param_names)

    def _assemble(self, pending: deque[tuple[_Use, list[Tensor | None]]], losses: Tensor,
                  per: bool, n: int, t: int, retain_graph: bool) -> Tensor:
        """Turn the output gradients into Gramians, freeing each layer's tensors as it goes;
        with ``per``, one per block of ``self._grouping``."""
        m = n * t
        names, block_of = self._grouping
        K = len(names)
        Gs = losses.new_zeros(K, m, m) if per else None
        G = losses.new_zeros(m, m)
        factors: dict[int, tuple[nn.Parameter, list[Factor]]] = {}
        expected = Counter(id(p) for use, _ in pending for p in use.params.values())
        done: dict[int, int] = {}
        exchanging = self._dist is not None and self._dist.exchanges

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
            if exchanging:  # the global Gramian is made from every rank's factors at the end
                if len(fs) > 1:  # one factor per parameter: the sum of its uses
                    factors[id(p)] = (p, [PerLoss(_total(f.grads() for f in fs))])
                return
            if len(fs) == 1:
                Gp = fs[0].gramian()
            else:  # the cross terms between the uses: the Gramian of their sum
                Gp, total = gramian_of_uses(fs, m, p.shape)
                if total is not None:  # materialised whole: backward needs only the sum
                    factors[id(p)] = (p, [PerLoss(total)])
            if per:
                Gs[block_of[id(p)]] += Gp.to(losses.dtype)
            else:
                G.add_(Gp.to(losses.dtype))

        # the generic fallback's local backwards (batch_dim=0) run through the graph again: all
        # but the last keep it, the last frees it unless the caller asked to keep it
        generic_left = sum(use.generic for use, _ in pending)
        while pending:
            use, grads = pending.popleft()
            generic_left -= use.generic
            out = self._factors(use, grads, n, t, retain_graph or generic_left > 0)
            del grads
            for key, p in use.params.items():
                if key in out:
                    add(p, out[key])
            del out
            if use.generic or not use.call.aliases:  # the call's last use: free its tensors
                use.call.args = use.call.outputs = use.call.watched = None
                use.call.expanded = {}
            for p in use.params.values():
                settle(p)
        if exchanging:  # the Gramian of the global batch, from every rank's factors
            G, m = self._dist.gramian(self._params, factors, block_of, K, per, m, t,
                                      losses)
            Gs = G
        self._kept, self._m = factors, m
        return Gs if per else G

    def _accumulate(self, kept, weights: Tensor, block_of: Mapping[int, int]) -> None:
        while kept:  # each layer's kept tensors are released as soon as its gradient exists
            _, (p, fs) = kept.popitem()
            w = weights if weights.dim() == 1 else weights[block_of[id(p)]]
            _add_grad(p, _total(f.weighted(w) for f in fs).to(p.dtype))
            del fs


def _add_grad(p: nn.Parameter, g: Tensor) -> None:
    """Accumulate ``g`` into ``p.grad``, as autograd does."""
    if p.grad is None:
        p.grad = g.detach()
    else:
        p.grad += g.detach()
