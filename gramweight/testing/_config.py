"""Device and dtype chosen by environment variables for a whole test run."""

from __future__ import annotations

import os

import torch

from .._checks import message

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def test_dtype() -> torch.dtype:
    """The dtype of a test run: ``GRAMWEIGHT_TEST_DTYPE`` (``float32`` or ``float64``, default
    ``float64``)."""
    name = os.environ.get("GRAMWEIGHT_TEST_DTYPE", "float64")
    if name not in _DTYPES:
        raise ValueError(message("GRAMWEIGHT_TEST_DTYPE", "float32 or float64", repr(name)))
    return _DTYPES[name]


def test_device() -> torch.device:
    """The device of a test run: ``GRAMWEIGHT_TEST_DEVICE`` (default ``cpu``)."""
    return torch.device(os.environ.get("GRAMWEIGHT_TEST_DEVICE", "cpu"))


# pytest would otherwise try to collect these two functions as tests.
test_dtype.__test__ = False  # type: ignore[attr-defined]
test_device.__test__ = False  # type: ignore[attr-defined]
