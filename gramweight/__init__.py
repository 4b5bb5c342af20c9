"""gramweight: multi-task and multi-objective training from the Gramian of the loss gradients.

Every weighting is a pure function ``G -> w`` of the Gramian ``G = J @ J.T`` of the ``m``
loss gradients; the update is ``w @ J``. See ``WEIGHTINGS`` for the full list.
"""

from collections.abc import Callable

from . import autogram, testing
from .weightings import constant, mean, random, sum  # noqa: A004

__version__ = "0.1.0"

WEIGHTINGS: dict[str, Callable] = {
    "mean": mean,
    "sum": sum,
    "constant": constant,
    "random": random,
}
"""Every weighting of the library, by name (the same name as the function)."""

__all__ = [
    "WEIGHTINGS",
    "autogram",
    "constant",
    "mean",
    "random",
    "sum",
    "testing",
]
