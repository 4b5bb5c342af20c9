"""Suite-wide settings: hypothesis profiles, and the dtype/device of the run."""

import os

import pytest
import torch
from hypothesis import HealthCheck, settings

from gramweight.testing import test_device, test_dtype

# torch's first call is slow and Gramians of 1e15-scaled matrices take a moment: no deadline.
settings.register_profile(
    "dev", max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "ci",
    max_examples=60,
    deadline=None,
    derandomize=True,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


@pytest.fixture
def dtype() -> torch.dtype:
    return test_dtype()


@pytest.fixture
def device() -> torch.device:
    return test_device()
