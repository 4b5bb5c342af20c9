"""Jacobian-space reference implementations of the weightings.

Each reference computes the update ``wᵀJ`` the way the method's paper writes it, on the
gradient vectors themselves, so that a Gramian-space weighting can be checked against it with
[`check_against_reference`][gramweight.testing.check_against_reference]. References favour
obviousness over speed.
"""

from . import _aligned_mtl, _basic, _cagrad, _config, _cr_mogm, _fairgrad, _gradvac, _imtl_g
from . import _epo, _pmtl
from . import _krum, _mgda, _modo, _nash_mtl, _pcgrad, _sdmgrad, _upgrad
from . import _db_mtl, _gradnorm, _imtl, _pcd
from ._fairgrad import balance_margin
from ._framework import REFERENCES, check_against_reference, register_reference

__all__ = ["REFERENCES", "balance_margin", "check_against_reference", "register_reference"]
