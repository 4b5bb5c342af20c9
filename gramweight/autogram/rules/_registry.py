"""Registry of the per-layer Gramian rules, looked up along the module type's MRO."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import NamedTuple

from torch import Tensor, nn

from .._validation import batch_size_message
from ._factors import Factor

__all__ = ["RULES", "RULES_BY_NAME", "Rule", "qualified_name", "register_rule", "rule_for",
           "split_samples"]

RuleFn = Callable[..., dict[str, Factor]]


class Rule(NamedTuple):
    """A rule and the condition under which it applies to a module instance."""

    fn: RuleFn
    when: Callable[[nn.Module], bool] | None = None

    def applies(self, module: nn.Module) -> bool:
        return self.when is None or bool(self.when(module))


RULES: dict[type, Rule] = {}
"""Every built-in rule, by the module type it was registered for (see ``rule_for``)."""

RULES_BY_NAME: dict[str, Rule] = {}
"""Built-in rules for types of other libraries, by qualified class name
(``"transformers.pytorch_utils.Conv1D"``): they apply when that library is installed, which
gramweight never imports."""


def qualified_name(cls: type) -> str:
    """``module.QualName`` of a class, the key of :data:`RULES_BY_NAME`."""
    return f"{cls.__module__}.{cls.__qualname__}"


def rule_for(rules: Mapping[type, Rule], module: nn.Module) -> Rule | None:
    """The rule of ``module``: that of the first type of its MRO with one, if it applies.

    A type has a rule in ``rules`` (by type) or else in :data:`RULES_BY_NAME` (by qualified
    name).

    A subclass of a ruled type uses that type's rule unless it overrides ``forward`` (its
    ``forward`` is then not the one the rule was written for: the generic fallback covers its
    parameters, exactly). A rule registered for the subclass itself always wins.
    """
    cls = type(module)
    for base in cls.__mro__:
        rule = rules.get(base)
        if rule is None:
            rule = RULES_BY_NAME.get(qualified_name(base))
        if rule is None:
            continue
        if base is not cls and cls.forward is not base.forward:
            return None
        return rule
    return None


def register_rule(*types: type | str, when: Callable[[nn.Module], bool] | None = None):
    """Register ``fn(module, inputs, grad_output, *, batched) -> {param_name: Factor}``.

    The rule receives the positional inputs of one call of the module, the gradient reaching
    its (single tensor) output with a leading task axis of size ``t`` (shape
    ``(t, *output.shape)``), and ``batched``: whether dimension 0 of the inputs and of the
    output indexes independent samples (``batch_dim=0``) or the losses share the whole batch
    (``batch_dim=None``). Loss ``(s, k)`` (row ``s * t + k``) depends on sample ``s`` and task
    ``k``; when not batched there is one "sample" (the whole batch).

    A type may be given by its qualified name (``"transformers.pytorch_utils.Conv1D"``): the
    rule then applies to that class without importing its library.

    ``when`` optionally restricts the rule to some instances (e.g. ``Embedding`` without
    ``max_norm``); other instances go to the generic fallback.
    """

    def decorator(fn: RuleFn) -> RuleFn:
        for cls in types:
            if isinstance(cls, str):
                RULES_BY_NAME[cls] = Rule(fn, when)
            else:
                RULES[cls] = Rule(fn, when)
        return fn

    return decorator


def split_samples(x: Tensor, grad_output: Tensor, batched: bool, features: int):
    """Reshape an input (B, ..., *F) to (n, P, *F) and its output gradient likewise.

    ``features`` is the number of trailing feature dimensions of ``x`` and of the output.
    Returns ``(x, dY, n, t)`` with ``dY`` of shape (t, n, P, *F_out).
    """
    t = grad_output.shape[0]
    fx = x.shape[x.dim() - features:]
    fy = grad_output.shape[grad_output.dim() - features:]
    if batched:
        n = x.shape[0]
        if grad_output.shape[1] != n:
            raise ValueError(batch_size_message(
                f"an input of {n} rows and an output of {grad_output.shape[1]} rows"))
    else:
        n = 1
    return x.reshape(n, -1, *fx), grad_output.reshape(t, n, -1, *fy), n, t
