"""Weightings: pure functions from a Gramian to weights, one file per method."""

from ._aligned_mtl import aligned_mtl
from ._cagrad import cagrad
from ._config import config
from ._constant import constant
from ._cr_mogm import CRMOGMState, cr_mogm, cr_mogm_init
from ._dualproj import dualproj
from ._fairgrad import fairgrad
from ._gradvac import GradVacState, gradvac, gradvac_init
from ._imtl_g import imtl_g
from ._krum import krum
from ._mean import mean
from ._mgda import mgda
from ._modo import MoDoState, modo, modo_init
from ._nash_mtl import NashMTLState, nash_mtl, nash_mtl_init
from ._orders import visiting_orders
from ._pcgrad import pcgrad
from ._random import random
from ._sdmgrad import SDMGradState, sdmgrad, sdmgrad_init
from ._sum import sum  # noqa: A004
from ._upgrad import upgrad

__all__ = [
    "CRMOGMState",
    "GradVacState",
    "MoDoState",
    "NashMTLState",
    "SDMGradState",
    "aligned_mtl",
    "cagrad",
    "config",
    "constant",
    "cr_mogm",
    "cr_mogm_init",
    "dualproj",
    "fairgrad",
    "gradvac",
    "gradvac_init",
    "imtl_g",
    "krum",
    "mean",
    "mgda",
    "modo",
    "modo_init",
    "nash_mtl",
    "nash_mtl_init",
    "pcgrad",
    "random",
    "sdmgrad",
    "sdmgrad_init",
    "sum",
    "upgrad",
    "visiting_orders",
]
