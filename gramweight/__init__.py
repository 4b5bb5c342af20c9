"""gramweight: multi-task and multi-objective training from the Gramian of the loss gradients.

Every weighting is a pure function ``G -> w`` of the Gramian ``G = J @ J.T`` of the ``m``
loss gradients; the update is ``w @ J``. See ``WEIGHTINGS`` for the full list.
"""

from collections.abc import Callable

from . import autogram, testing
from .weightings import (  # noqa: A004
    CRMOGMState,
    GradVacState,
    MoDoState,
    SDMGradState,
    constant,
    cr_mogm,
    cr_mogm_init,
    gradvac,
    gradvac_init,
    mean,
    modo,
    modo_init,
    pcgrad,
    random,
    sdmgrad,
    sdmgrad_init,
    sum,
    visiting_orders,
)

__version__ = "0.1.0"

WEIGHTINGS: dict[str, Callable] = {
    "mean": mean,
    "sum": sum,
    "constant": constant,
    "random": random,
    "pcgrad": pcgrad,
    "gradvac": gradvac,
    "cr_mogm": cr_mogm,
    "modo": modo,
    "sdmgrad": sdmgrad,
}
"""Every weighting of the library, by name (the same name as the function)."""

__all__ = [
    "CRMOGMState",
    "GradVacState",
    "MoDoState",
    "SDMGradState",
    "WEIGHTINGS",
    "autogram",
    "constant",
    "cr_mogm",
    "cr_mogm_init",
    "gradvac",
    "gradvac_init",
    "mean",
    "modo",
    "modo_init",
    "pcgrad",
    "random",
    "sdmgrad",
    "sdmgrad_init",
    "sum",
    "testing",
    "visiting_orders",
]
