"""Testing kit."""

from ._autogram import reference_gramian

__all__ = ["reference_gramian"]
