"""gramweight: multi-task and multi-objective training from the Gramian of the loss gradients.

Every weighting is a pure function ``G -> w`` of the Gramian ``G = J @ J.T`` of the ``m``
loss gradients; the update is ``w @ J``. See ``WEIGHTINGS`` for the full list.
"""

from collections.abc import Callable

from . import autogram, testing, weightings
from . import jacobian, loss_weightings, monitor
from .weightings import *  # noqa: F403 - the flat public API is the weightings' own list
from ._weighter import Weighter, step_key

__version__ = "0.1.0"

WEIGHTINGS: dict[str, Callable] = {name: entry.fn for name, entry in weightings.REGISTRY.items()}
"""Every weighting of the library, by name (the same name as the function).

A plain dict built from `gramweight.weightings.REGISTRY`, which also tells each method's kind
(stochastic, stateful), its `_init` and state class, and its claimed properties."""

# Public names that ``from gramweight import *`` leaves out, because they would shadow the
# builtins of the same name: they stay the documented names (``gw.sum(G)``, ``gw.random``).
_NOT_STAR_EXPORTED = ("random", "sum")
from .weightings import random, sum  # noqa: E402, A004 - the methods' names

__all__ = [n for n in ["WEIGHTINGS", "autogram", "testing", *weightings.__all__]
           if n not in _NOT_STAR_EXPORTED]
__all__ += ["loss_weightings", "Weighter", "step_key", "jacobian", "monitor"]
