"""Weightings: pure functions from a Gramian to weights, one file per method."""

from ._aligned_mtl import aligned_mtl
from ._cagrad import cagrad
from ._config import config
from ._constant import constant
from ._dualproj import dualproj
from ._fairgrad import fairgrad
from ._imtl_g import imtl_g
from ._krum import krum
from ._mean import mean
from ._mgda import mgda
from ._nash_mtl import NashMTLState, nash_mtl, nash_mtl_init
from ._random import random
from ._sum import sum  # noqa: A004
from ._upgrad import upgrad

__all__ = [
    "NashMTLState",
    "aligned_mtl",
    "cagrad",
    "config",
    "constant",
    "dualproj",
    "fairgrad",
    "imtl_g",
    "krum",
    "mean",
    "mgda",
    "nash_mtl",
    "nash_mtl_init",
    "random",
    "sum",
    "upgrad",
]
