"""Shared matrices for the unit tests of the weightings."""

import torch

J = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]], dtype=torch.float64)
G = J @ J.T  # [[18, -22], [-22, 38]]


def gram(rows):
    M = torch.tensor(rows, dtype=torch.float64)
    return M @ M.T


def edge_gramians():
    """m = 1, zero, rank one, duplicated rows, opposite rows, tiny and huge scales."""
    return {
        "m1": torch.tensor([[4.0]], dtype=torch.float64),
        "zero": torch.zeros(3, 3, dtype=torch.float64),
        "rank1": gram([[1.0, 2.0], [2.0, 4.0], [-1.0, -2.0]]),
        "duplicated": gram([[1.0, 0.0, 1.0], [1.0, 0.0, 1.0], [0.0, 2.0, -1.0]]),
        "opposite": gram([[1.0, 2.0, 0.0], [-2.0, -4.0, 0.0], [0.0, 1.0, 1.0]]),
        "zero_row": gram([[1.0, 2.0], [0.0, 0.0], [-3.0, 1.0]]),
        "tiny": G * 1e-15,
        "huge": G * 1e15,
    }
