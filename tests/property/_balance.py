"""Jacobians on which FairGrad's and Nash-MTL's balance equations have a solution.

The equations ``G w = w^(-1/α)`` have a positive root exactly when no non-negative
combination of the gradients vanishes (``balance_margin(J) > 0``); the references solve them
as they stand, so they are compared only there, with a margin: near a cancelling combination
the root is large and as sensitive as ``1 / margin`` to the round-off of ``G`` (its
float32 cast, the weightings' diagonal term of the order of the dtype's round-off). Where no
root exists, the weightings' documented finite answer is checked by the unit tests
(tests/unit/solvers/test_balance.py) and by ``test_balance_without_a_solution_is_bounded``.
"""

import torch
from hypothesis import strategies as st

from gramweight.testing.references import balance_margin
from gramweight.testing.strategies import jacobians

# the structures that can have a root (a zero row or an opposite pair never does)
SOLVABLE_STRUCTURES = ("generic", "rank_deficient", "duplicated_rows", "dominant_row")


def solvable(J: torch.Tensor) -> bool:
    """Whether the balance equations of ``J J^T`` have a root, by a margin the dtype resolves."""
    return balance_margin(J) >= (1e-6 if J.dtype == torch.float64 else 1e-3)


def balance_jacobians(**kwargs) -> st.SearchStrategy[torch.Tensor]:
    """:func:`gramweight.testing.strategies.jacobians` restricted to solvable balance equations."""
    kwargs.setdefault("structures", SOLVABLE_STRUCTURES)
    return jacobians(**kwargs).filter(solvable)
