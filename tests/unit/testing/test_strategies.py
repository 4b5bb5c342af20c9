"""The strategies draw what they claim: shapes, dtypes, structures, scales, replays."""

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gramweight.testing import test_dtype
from gramweight.testing.strategies import STRUCTURES, _structured, gramians, jacobians


@given(J=jacobians(m=st.integers(1, 6), n=st.integers(1, 6)))
def test_jacobians_are_finite_and_of_the_test_dtype(J):
    assert J.dtype == test_dtype()
    assert bool(torch.isfinite(J).all())
    assert 1 <= J.shape[0] <= 6 and 1 <= J.shape[1] <= 6


@given(G=gramians(dtype=torch.float64))
def test_gramians_are_symmetric_psd(G):
    assert torch.equal(G, G.T)
    eig = torch.linalg.eigvalsh(G)
    assert float(eig.min()) >= -1e-9 * max(float(G.abs().max()), 1e-300)


@settings(max_examples=10)
@given(G=gramians(m=3, dtype=torch.float32))
def test_dtype_argument(G):
    assert G.dtype == torch.float32 and G.shape == (3, 3)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_structures():
    m, n = 6, 8
    J = _structured("rank_deficient", m, n, gen())
    assert torch.linalg.matrix_rank(J) < min(m, n)
    J = _structured("duplicated_rows", m, n, gen(3))
    assert len({tuple(r.tolist()) for r in J}) < m
    J = _structured("zero_rows", m, n, gen())
    assert bool((J.abs().sum(1) == 0).any())
    J = _structured("opposite_rows", m, n, gen())
    cos = torch.nn.functional.cosine_similarity(J[0], J[1], dim=0)
    assert abs(float(cos) + 1) < 1e-12
    J = _structured("dominant_row", m, n, gen())
    norms = J.norm(dim=1)
    assert float(norms.max() / norms.median()) > 1e4


def test_same_seed_same_matrix():
    for s in STRUCTURES:
        assert torch.equal(_structured(s, 4, 5, gen(7)), _structured(s, 4, 5, gen(7)))


def test_scales_reach_both_extremes():
    seen = []

    @settings(max_examples=300, derandomize=True)
    @given(G=gramians(m=2, n=2, structures=("generic",), dtype=torch.float64))
    def collect(G):
        seen.append(float(G.abs().max()))

    collect()
    assert min(seen) < 1e-8 and max(seen) > 1e8
