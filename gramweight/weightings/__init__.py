"""Weightings: pure functions from a Gramian to weights, one file per method."""

from ._constant import constant
from ._mean import mean
from ._random import random
from ._sum import sum  # noqa: A004

__all__ = ["constant", "mean", "random", "sum"]
