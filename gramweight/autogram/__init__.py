"""autogram: the Gramian of a model's losses, layer by layer, without the Jacobian."""

from ._amp import unscale
from ._distributed import check_same_on_every_rank
from ._engine import Engine
from .rules import RULES, Factor, Outer, PerLoss, Rows, register_rule

__all__ = ["RULES", "Engine", "Factor", "Outer", "PerLoss", "Rows", "check_same_on_every_rank",
           "register_rule", "unscale"]
