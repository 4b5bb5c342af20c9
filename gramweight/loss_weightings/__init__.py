"""Loss weightings: weights ``D`` on the losses from the losses alone (and a state).

They are not functions of the Gramian, so they live here, out of ``gramweight.WEIGHTINGS``:
``LOSS_WEIGHTINGS`` is their own table. Each is ``D = fn(losses, /, **options)`` or, with a
state, ``D, state = fn(losses, state, /, **options)`` from ``<name>_init(m)``; the update of
the losses alone is ``(D * losses).sum().backward()``.
[`compose`][gramweight.loss_weightings.compose] combines any of them with any Gramian weighting: ``w
= D * weighting(D G D)``.
"""

from collections.abc import Callable

import torch as _torch

from ._compose import compose
from ._dwa import DWAState, dwa, dwa_init
from ._famo import FAMOState, famo, famo_init
from ._geometric_mean import geometric_mean
from ._imtl_l import IMTLLState, imtl_l, imtl_l_init
from ._stch import stch
from ._uncertainty import UncertaintyState, uncertainty, uncertainty_init

LOSS_WEIGHTINGS: dict[str, Callable] = {
    fn.__name__: fn for fn in (geometric_mean, stch, uncertainty, imtl_l, dwa, famo)
}
"""Every loss weighting, by name (the same name as the function)."""

STATE_INITS: dict[str, Callable] = {
    "uncertainty": uncertainty_init,
    "imtl_l": imtl_l_init,
    "dwa": dwa_init,
    "famo": famo_init,
}
"""``<name>_init`` of each stateful loss weighting, by name."""

# checkpoints reload with torch.load's default weights_only=True
_torch.serialization.add_safe_globals([UncertaintyState, IMTLLState, DWAState, FAMOState])

__all__ = [
    "LOSS_WEIGHTINGS",
    "STATE_INITS",
    "DWAState",
    "FAMOState",
    "IMTLLState",
    "UncertaintyState",
    "compose",
    "dwa",
    "dwa_init",
    "famo",
    "famo_init",
    "geometric_mean",
    "imtl_l",
    "imtl_l_init",
    "stch",
    "uncertainty",
    "uncertainty_init",
]
