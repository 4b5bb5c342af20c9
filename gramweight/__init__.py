"""gramweight: multi-task and multi-objective training from the Gramian of the loss gradients.

Every weighting is a pure function ``G -> w`` of the Gramian ``G = J @ J.T`` of the ``m``
loss gradients; the update is ``w @ J``. See ``WEIGHTINGS`` for the full list.
"""

from collections.abc import Callable

from . import autogram, testing, weightings
from .weightings import *  # noqa: F403 - the flat public API is the weightings' own list

__version__ = "0.1.0"

WEIGHTINGS: dict[str, Callable] = {
    "mean": mean,
    "sum": sum,
    "constant": constant,
    "random": random,
    "upgrad": upgrad,
    "dualproj": dualproj,
    "mgda": mgda,
    "imtl_g": imtl_g,
    "aligned_mtl": aligned_mtl,
    "cagrad": cagrad,
    "krum": krum,
    "fairgrad": fairgrad,
    "nash_mtl": nash_mtl,
    "config": config,
    "pcgrad": pcgrad,
    "gradvac": gradvac,
    "cr_mogm": cr_mogm,
    "modo": modo,
    "sdmgrad": sdmgrad,
}
"""Every weighting of the library, by name (the same name as the function)."""

__all__ = ["WEIGHTINGS", "autogram", "testing", *weightings.__all__]
