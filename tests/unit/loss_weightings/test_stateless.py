"""geometric_mean and stch against the gradients of their scalarisations (autograd on the
paper's formula), hand values and errors."""

import math

import pytest
import torch

import gramweight as gw

F64 = torch.float64
lw = gw.loss_weightings


def _grad(f, losses):
    """d f / d losses by autograd: the weights of the losses in f's gradient."""
    x = torch.tensor(losses, dtype=F64, requires_grad=True)
    (g,) = torch.autograd.grad(f(x), x)
    return g


def test_geometric_mean_hand_and_autograd():
    # (1 * 4)^(1/2) = 2: D = 2 / (2 * 1), 2 / (2 * 4)
    assert lw.geometric_mean(torch.tensor([1.0, 4.0], dtype=F64)).tolist() == [1.0, 0.25]
    losses = [0.3, 1.7, 2.2, 9.0]
    expected = _grad(lambda x: x.prod() ** (1 / 4), losses)
    torch.testing.assert_close(lw.geometric_mean(losses).double(), expected, rtol=1e-6, atol=0)
    torch.testing.assert_close(lw.geometric_mean(torch.tensor(losses, dtype=F64)), expected, rtol=1e-14, atol=0)


def test_geometric_mean_does_not_overflow():
    # 50 losses of 1e10: the product overflows float64; D = (1e10) / (50 * 1e10) = 1/50
    D = lw.geometric_mean(torch.full((50,), 1e10, dtype=F64))
    torch.testing.assert_close(D, torch.full((50,), 1 / 50, dtype=F64), rtol=1e-13, atol=0)


def test_geometric_mean_errors():
    with pytest.raises(ValueError, match=r"^`losses` must be positive, got minimum 0\.$"):
        lw.geometric_mean([1.0, 0.0])


def test_stch_against_autograd_of_the_scalarisation():
    losses, lam, z, mu = [0.4, 1.1, 2.5], [0.5, 0.3, 0.2], [0.1, 0.0, 0.5], 0.3
    lam_t, z_t = torch.tensor(lam, dtype=F64), torch.tensor(z, dtype=F64)
    expected = _grad(lambda x: mu * torch.logsumexp(lam_t * (x - z_t) / mu, 0), losses)
    D = lw.stch(torch.tensor(losses, dtype=F64), preference=lam, ideal=z, mu=mu)
    torch.testing.assert_close(D, expected, rtol=1e-14, atol=0)


def test_stch_defaults_and_small_mu():
    # uniform 1/m and z = 0: softmax((1, 2) / (2 mu)) / 2 at mu = 0.5: (1, e) / (1 + e) / 2
    D = lw.stch(torch.tensor([1.0, 2.0], dtype=F64), mu=0.5)
    e = math.e
    torch.testing.assert_close(D, torch.tensor([1 / (1 + e) / 2, e / (1 + e) / 2], dtype=F64))
    # mu -> 0: the Tchebycheff subgradient, all of lambda_i on the largest weighted gap
    D = lw.stch(torch.tensor([1.0, 2.0, 1.5], dtype=F64), preference=[0.5, 0.2, 0.3], mu=1e-4)
    torch.testing.assert_close(D, torch.tensor([0.5, 0.0, 0.0], dtype=F64), rtol=0, atol=1e-12)


def test_stch_errors():
    with pytest.raises(ValueError, match=r"^`mu` must be > 0, got 0\.0\.$"):
        lw.stch([1.0, 2.0], mu=0.0)
    with pytest.raises(ValueError, match=r"^`preference` must be positive, got minimum 0\.$"):
        lw.stch([1.0, 2.0], preference=[1.0, 0.0])
    with pytest.raises(ValueError, match=r"^`ideal` must be of length 2, got length 1\.$"):
        lw.stch([1.0, 2.0], ideal=[0.0])
