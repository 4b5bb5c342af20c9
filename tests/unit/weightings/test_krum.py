"""krum: the issue's value, Krum's selection, ties and errors."""

import pytest
import torch

import gramweight as gw
from tests.unit.weightings._common import gram

JK = torch.tensor([[1.0, 1, 1], [1, 0, 1], [75, -666, 23], [1, 2, 3], [2, 0, 1]], dtype=torch.float64)
GK = JK @ JK.T


def test_issue_values():
    w = gw.krum(GK, n_byzantine=1, n_selected=4)
    assert torch.equal(w, torch.tensor([0.25, 0.25, 0, 0.25, 0.25], dtype=torch.float64))


def test_single_selection_by_hand():
    # squared distances d01 = 1, d04 = 2, d03 = 5, d14 = 1, d13 = 8, d34 = 9 (row 2 is far);
    # sums of the m - f - 2 = 2 nearest: row 0 -> 3, row 1 -> 2, row 3 -> 13, row 4 -> 3
    w = gw.krum(GK, n_byzantine=1)
    assert torch.equal(w, torch.tensor([0.0, 1, 0, 0, 0], dtype=torch.float64))
    w = gw.krum(GK, n_byzantine=1, n_selected=2)  # then rows 0 and 4 tie: the lower index
    assert torch.equal(w, torch.tensor([0.5, 0.5, 0, 0, 0], dtype=torch.float64))


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
