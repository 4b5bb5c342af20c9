"""Per-layer Gramian rules, one file per layer family, registered by exact module type."""

from . import _conv, _embedding, _linear, _norm  # noqa: F401  (registration)
from ._factors import Factor, Outer, PerLoss, Rows
from ._registry import RULES, Rule, register_rule, split_samples

__all__ = ["RULES", "Factor", "Outer", "PerLoss", "Rows", "Rule", "register_rule", "split_samples"]
