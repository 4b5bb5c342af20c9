"""Every function the recorder replaces by an equivalent written with recorded ``linear`` uses.

One registry for the decompositions of each family (``_attention.py``, ``_rnn.py``): the
recorder calls ``DECOMPOSITIONS[func](*args, **kwargs, linear=...)``, which returns the
function's result, or ``NotImplemented`` where it cannot decompose that call exactly.
"""

from __future__ import annotations

from ._attention import DECOMPOSITIONS as _ATTENTION
from ._rnn import DECOMPOSITIONS as _RNN

__all__ = ["DECOMPOSITIONS"]

DECOMPOSITIONS = {**_ATTENTION, **_RNN}
"""Function -> decomposition, for every family."""
