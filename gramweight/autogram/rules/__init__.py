"""Per-layer Gramian rules, one file per layer family, registered by module type
(looked up along the MRO, see ``rule_for``).

``_generic.py`` holds the generic fallback for every use of a parameter that no rule covers;
the engine calls it like a rule.
"""

from . import _conv, _embedding, _linear, _norm, _transposed  # noqa: F401  (registration)
from ._factors import Factor, Outer, PerLoss, Rows
from ._registry import RULES, Rule, register_rule, split_samples

__all__ = ["RULES", "Factor", "Outer", "PerLoss", "Rows", "Rule", "register_rule", "split_samples"]
