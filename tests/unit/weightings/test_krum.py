"""krum: ties, scale and dtype, errors, and the selection against a sort by hand.

Its values on a five-gradient example are in test_expected_values.py.
"""

import pytest
import torch

import gramweight as gw
from tests.unit.weightings._common import gram

JK = torch.tensor([[1.0, 1, 1], [1, 0, 1], [75, -666, 23], [1, 2, 3], [2, 0, 1]], dtype=torch.float64)
GK = JK @ JK.T


def test_ties_go_to_the_lower_index():
    w = gw.krum(torch.eye(4, dtype=torch.float64), n_byzantine=0, n_selected=2)
    assert torch.equal(w, torch.tensor([0.5, 0.5, 0, 0], dtype=torch.float64))


def test_scale_and_dtype():
    assert torch.equal(gw.krum(GK * 1e-15, n_byzantine=1), gw.krum(GK, n_byzantine=1))
    assert gw.krum(GK.float(), n_byzantine=1).dtype == torch.float32


def test_errors():
    with pytest.raises(ValueError, match=r"^`G` must be of size m >= n_byzantine \+ 3 = 5, got m = 3\.$"):
        gw.krum(gram([[1.0], [2.0], [3.0]]), n_byzantine=2)
    with pytest.raises(ValueError, match=r"^`n_selected` must be <= m = 5, got 6\.$"):
        gw.krum(GK, n_byzantine=1, n_selected=6)
    with pytest.raises(ValueError, match=r"^`n_selected` must be >= 1, got 0\.$"):
        gw.krum(GK, n_byzantine=1, n_selected=0)
    with pytest.raises(ValueError, match=r"^`n_byzantine` must be >= 0, got -1\.$"):
        gw.krum(GK, n_byzantine=-1)
    with pytest.raises(TypeError, match=r"^`n_byzantine` must be an int, got float\.$"):
        gw.krum(GK, n_byzantine=1.0)
    with pytest.raises(TypeError, match="n_byzantine"):
        gw.krum(GK)


def _krum_by_hand(J, n_byzantine, n_selected):
    """Scores from the rows' squared distances, sorted in Python; ties to the lower index."""
    m = J.shape[0]
    rows = J.tolist()
    scores = []
    for i in range(m):
        d = sorted(sum((a - b) ** 2 for a, b in zip(rows[i], rows[j])) for j in range(m) if j != i)
        scores.append(sum(d[: m - n_byzantine - 2]))
    chosen = sorted(range(m), key=lambda i: (scores[i], i))[:n_selected]
    w = torch.zeros(m, dtype=torch.float64)
    w[chosen] = 1.0 / n_selected
    return w, scores


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(("m", "n_byzantine", "seed"), [(6, 1, 0), (40, 18, 1), (200, 98, 2)])
def test_duplicated_gradients_tie_to_the_lower_index(dtype, m, n_byzantine, seed):
    # Integer gradients: the Gramian is exact, so duplicated gradients give identical rows.
    gen = torch.Generator().manual_seed(seed)
    J = torch.randint(-300, 301, (m, 5), generator=gen).to(torch.float64)
    perm = torch.randperm(m, generator=gen).tolist()
    for dst, src in zip(perm[: m // 3], perm[m // 3 : 2 * (m // 3)]):
        J[dst] = J[src]
    _, scores = _krum_by_hand(J, n_byzantine, 1)
    ordered = sorted(scores)
    # a cut inside a run of equal scores: only the lower indices of the run are selected
    cut = next(r for r in range(1, m) if ordered[r] == ordered[r - 1])
    for n_selected in (1, 2, cut, m // 3):
        expected, _ = _krum_by_hand(J, n_byzantine, n_selected)
        w = gw.krum((J @ J.T).to(dtype), n_byzantine=n_byzantine, n_selected=n_selected)
        assert torch.equal(w, expected.to(dtype))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_mutual_nearest_neighbours_tie_to_the_lower_index(dtype):
    # collinear gradients a, 3.4a, -7a with f = 0: rows 0 and 1 are each other's nearest
    # neighbour, so their scores are the same distance (whatever its round-off)
    a = torch.tensor([0.2953, -0.1546, -0.4437], dtype=torch.float64)
    J = torch.stack([a, 3.4 * a, -7.0 * a])
    w = gw.krum((J @ J.T).to(dtype), n_byzantine=0)
    assert torch.equal(w, torch.tensor([1.0, 0, 0], dtype=dtype))


def test_two_groups_of_duplicates_tie_whatever_the_rounding_of_the_gramian():
    # found by the property suite: gradients A, B, A, B, B, A; every score is |A - B|^2, but
    # J @ J.T rounds the entries of the last row differently (a within-group distance of
    # -3.6e-15 instead of 0), and the selection went to rows 0 and 2 (A twice) by round-off.
    # With the tie rule it is the lower indices, 0 and 1: the mean of A and B.
    A = torch.tensor([1.3038, 0.0364, -0.3108, 1.4260, -0.6342, -1.5466, -0.4651, 0.7138,
                      0.7002, -1.1857, 0.5150, 0.3578], dtype=torch.float64)
    B = torch.tensor([0.8870, -1.5520, 0.1539, 1.5152, -2.0586, 1.2655, -0.9793, -0.9039,
                      0.7141, 0.4716, 0.3080, -1.8545], dtype=torch.float64)
    for perturb in (0.0, 1e-15, -2e-15):
        J = torch.stack([A, B, A, B, B, A])
        G = J @ J.T
        G[5, 0] += perturb * float(G[0, 0])  # round-off of the kind J @ J.T makes
        w = gw.krum(G, n_byzantine=1, n_selected=2)
        assert w.tolist() == [0.5, 0.5, 0.0, 0.0, 0.0, 0.0]
