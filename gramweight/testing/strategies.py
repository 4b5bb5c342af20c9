"""Hypothesis strategies drawing Jacobians and Gramians of chosen structure.

Hypothesis draws the sizes, the structure, the scale and an integer seed; the values come
from ``torch.Generator().manual_seed(seed)`` on the CPU in float64, then are cast. So a failing
example shrinks (smaller m and n, simpler structure, scale 1) and replays exactly.

Structures (``STRUCTURES``):

- ``"generic"``: i.i.d. standard normal entries.
- ``"rank_deficient"``: a product of two normal factors of inner size r < min(m, n).
- ``"duplicated_rows"``: some rows are exact copies of others.
- ``"zero_rows"``: some rows are zero.
- ``"opposite_rows"``: some rows are negative multiples of others (direct conflicts).
- ``"dominant_row"``: one row is 1e6 times larger than the others.

On top of its structure, a drawn matrix is scaled as a whole so that its Gramian spans
1e-15 to 1e15 (a Jacobian is scaled by the square root of the Gramian's factor).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from hypothesis import strategies as st
from torch import Tensor

from .._checks import message
from ._config import test_device, test_dtype

__all__ = ["STRUCTURES", "gramians", "jacobians"]

STRUCTURES: tuple[str, ...] = (
    "generic",
    "rank_deficient",
    "duplicated_rows",
    "zero_rows",
    "opposite_rows",
    "dominant_row",
)


def _as_strategy(x: int | st.SearchStrategy[int]) -> st.SearchStrategy[int]:
    return st.just(x) if isinstance(x, int) else x


def _structured(structure: str, m: int, n: int, gen: torch.Generator) -> Tensor:
    def randn(*shape: int) -> Tensor:
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    def randint(high: int, size: int) -> Tensor:
        return torch.randint(high, (size,), generator=gen)

    J = randn(m, n)
    if structure == "rank_deficient":
        # inner size r in [1, min(m, n) - 1]; a 1 x n or m x 1 matrix gets r = 1 (rank 1)
        r = 1 + int(randint(min(m, n) - 1, 1)) if min(m, n) > 1 else 1
        J = randn(m, r) @ randn(r, n)
    elif structure == "duplicated_rows":
        # rows 0..sources-1 are distinct (sources < m), the others copy them
        sources = 1 + int(randint(m - 1, 1)) if m > 1 else 1
        J = J[torch.cat([torch.arange(sources), randint(sources, m - sources)])]
        J = J[torch.randperm(m, generator=gen)]
    elif structure == "zero_rows":
        zero = torch.rand(m, generator=gen, dtype=torch.float64) < 0.5
        zero[int(randint(m, 1))] = True
        J[zero] = 0.0
    elif structure == "opposite_rows":
        for i in range(1, m, 2):
            factor = 0.1 + 3 * float(torch.rand(1, generator=gen, dtype=torch.float64))
            J[i] = -factor * J[i - 1]
    elif structure == "dominant_row":
        J[int(randint(m, 1))] *= 1e6
    elif structure != "generic":
        raise ValueError(message("structure", f"one of {STRUCTURES}", repr(structure)))
    return J


@st.composite
def _jacobian64(
    draw: st.DrawFn,
    m: int | st.SearchStrategy[int],
    n: int | st.SearchStrategy[int],
    structures: Sequence[str],
    scaled: bool,
) -> tuple[Tensor, float]:
    for s in structures:
        if s not in STRUCTURES:
            raise ValueError(message("structures", f"a subset of {STRUCTURES}", repr(s)))
    m_, n_ = draw(_as_strategy(m)), draw(_as_strategy(n))
    if m_ < 1 or n_ < 1:
        raise ValueError(message("m and n", ">= 1", f"m={m_}, n={n_}"))
    structure = draw(st.sampled_from(list(structures)))
    seed = draw(st.integers(0, 2**32 - 1))
    exponent = draw(st.one_of(st.just(0.0), st.floats(-15.0, 15.0))) if scaled else 0.0
    J = _structured(structure, m_, n_, torch.Generator().manual_seed(seed))
    return J, 10.0**exponent


def jacobians(
    *,
    m: int | st.SearchStrategy[int] = st.integers(1, 8),
    n: int | st.SearchStrategy[int] = st.integers(1, 12),
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    structures: Sequence[str] = STRUCTURES,
    scaled: bool = True,
) -> st.SearchStrategy[Tensor]:
    """Draw a Jacobian ``J`` of shape (m, n) of one of the ``structures``.

    Args:
        m: Number of rows (objectives): an int or a strategy of ints.
        n: Number of columns (parameters): an int or a strategy of ints.
        dtype: Defaults to [`test_dtype`][gramweight.testing.test_dtype]
            (``GRAMWEIGHT_TEST_DTYPE``).
        device: Defaults to [`test_device`][gramweight.testing.test_device].
        structures: The structures to draw from (see the module docstring).
        scaled: Whether to scale the matrix so that its Gramian spans 1e-15 to 1e15.

    Examples:
        >>> from hypothesis import given
        >>> from gramweight.testing.strategies import jacobians
        >>> @given(jacobians(m=3, n=4))
        ... def test_shape(J):
        ...     assert J.shape == (3, 4)
        >>> test_shape()
    """
    dtype = test_dtype() if dtype is None else dtype
    device = test_device() if device is None else device
    return _jacobian64(m, n, structures, scaled).map(
        lambda pair: (pair[0] * pair[1] ** 0.5).to(dtype=dtype, device=device)
    )


def gramians(
    *,
    m: int | st.SearchStrategy[int] = st.integers(1, 8),
    n: int | st.SearchStrategy[int] = st.integers(1, 12),
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    structures: Sequence[str] = STRUCTURES,
    scaled: bool = True,
) -> st.SearchStrategy[Tensor]:
    """Draw a Gramian ``G = J Jᵀ`` (m, m), with ``J`` drawn as in `jacobians`.

    ``G`` is formed (and symmetrised) in float64, then cast, so it is exactly symmetric. Its rank is at
    most ``min(m, n)``: choose ``n < m`` to get singular Gramians.

    Examples:
        >>> from hypothesis import given
        >>> import torch
        >>> from gramweight.testing.strategies import gramians
        >>> @given(gramians(m=4))
        ... def test_psd(G):
        ...     assert bool((torch.linalg.eigvalsh(G.double()) >= -1e-6 * G.abs().max()).all())
        >>> test_psd()
    """
    dtype = test_dtype() if dtype is None else dtype
    device = test_device() if device is None else device
    return _jacobian64(m, n, structures, scaled).map(
        lambda pair: (_gram(pair[0]) * pair[1]).to(dtype=dtype, device=device)
    )


def _gram(J: Tensor) -> Tensor:
    # A matrix product need not be bitwise symmetric; its symmetric part is, and is as exact.
    G = J @ J.T
    return (G + G.T) / 2
