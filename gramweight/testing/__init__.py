"""Tools to test weightings and autogram rules: yours as well as ours.

- [`strategies`][gramweight.testing.strategies]: hypothesis strategies drawing Jacobians and
Gramians of
  chosen structure (imported on first use, since hypothesis is only a test dependency).
- [`references`][gramweight.testing.references]: Jacobian-space reference implementations and
  [`check_against_reference`][gramweight.testing.check_against_reference].
- [`asserts`][gramweight.testing.asserts]: property checks for any weighting.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import asserts, references
from ._autogram import reference_gramian
from ._config import test_device, test_dtype
from .asserts import (
    assert_non_conflicting,
    assert_permutation_equivariant,
    assert_pure,
    assert_scale_invariant,
)
from .references import REFERENCES, check_against_reference, register_reference

__all__ = [
    "REFERENCES",
    "assert_non_conflicting",
    "assert_permutation_equivariant",
    "assert_pure",
    "assert_scale_invariant",
    "asserts",
    "check_against_reference",
    "reference_gramian",
    "references",
    "register_reference",
    "strategies",
    "test_device",
    "test_dtype",
]


def __getattr__(name: str) -> Any:
    # hypothesis is a test extra: load the strategies only when someone asks for them.
    if name == "strategies":
        return importlib.import_module(f"{__name__}.strategies")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
