"""The balance equations of FairGrad and Nash-MTL (``gramweight.solvers._balance``)."""

import torch

from gramweight.solvers import power_balance


def test_power_balance_solves_the_equation_and_warm_starts():
    G = torch.tensor([[2.0, 0.5, -0.3], [0.5, 1.0, 0.2], [-0.3, 0.2, 3.0]], dtype=torch.float64)
    reg = 1e-6 * 3.0 * torch.eye(3, dtype=torch.float64)
    for alpha in (0.3, 1.0, 4.0):
        w = power_balance(G, alpha=alpha)
        assert torch.allclose((G + reg) @ w, w ** (-1 / alpha), rtol=1e-11)
        warm = power_balance(G, alpha=alpha, init=w * 1.5)
        assert torch.allclose(warm, w, rtol=1e-11)
