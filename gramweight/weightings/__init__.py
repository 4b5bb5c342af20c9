"""Weightings: pure functions from a Gramian to weights, one file per method."""

from ._constant import constant
from ._cr_mogm import CRMOGMState, cr_mogm, cr_mogm_init
from ._gradvac import GradVacState, gradvac, gradvac_init
from ._mean import mean
from ._modo import MoDoState, modo, modo_init
from ._orders import visiting_orders
from ._pcgrad import pcgrad
from ._random import random
from ._sdmgrad import SDMGradState, sdmgrad, sdmgrad_init
from ._sum import sum  # noqa: A004

__all__ = [
    "CRMOGMState",
    "GradVacState",
    "MoDoState",
    "SDMGradState",
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
    "visiting_orders",
]
