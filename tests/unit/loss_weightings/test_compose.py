"""compose: D ⊙ weighting(D G D) is the weighting of the rescaled Jacobian diag(D) J, checked
against the Jacobian-space references."""

import functools

import pytest
import torch

import gramweight as gw
from gramweight.testing import REFERENCES

F64 = torch.float64
CASES = {
    "mean": {},
    "upgrad": {},
    "mgda": {},
    "imtl_g": {},
    "pcgrad": {"key": 3},
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("seed", range(5))
def test_composition_is_the_weighting_of_the_rescaled_jacobian(name, seed):
    g = torch.Generator().manual_seed(seed)
    J = torch.randn(4, 6, generator=g, dtype=F64)
    D = gw.loss_weightings.geometric_mean(torch.rand(4, generator=g, dtype=F64) + 0.1)
    w = gw.loss_weightings.compose(J @ J.T, D, gw.WEIGHTINGS[name], **CASES[name])
    expected = REFERENCES[name](D.unsqueeze(1) * J, **CASES[name])
    torch.testing.assert_close(w @ J, expected, rtol=1e-6, atol=1e-9)
    # the documented two lines
    two_lines = D * gw.WEIGHTINGS[name](D[:, None] * (J @ J.T) * D[None, :], **CASES[name])
    torch.testing.assert_close(two_lines, w, rtol=0, atol=0)


def test_stateful_weighting_returns_its_state():
    # the gradients lie within a half-plane (angles 27°, 104° and -34°), so Nash-MTL's
    # equations have a root (no non-negative combination of the rows vanishes)
    J = torch.tensor([[1.0, 0.5], [-0.3, 1.2], [0.6, -0.4]], dtype=F64)
    D = torch.tensor([0.5, 1.0, 2.0], dtype=F64)
    state = gw.nash_mtl_init(3)
    w, new = gw.loss_weightings.compose(J @ J.T, D, gw.nash_mtl, state)
    expected, ref_state = REFERENCES["nash_mtl"](D.unsqueeze(1) * J, state)
    torch.testing.assert_close(w @ J, expected, rtol=1e-6, atol=1e-9)
    assert type(new) is type(state)
    for a, b in zip(new, ref_state):
        torch.testing.assert_close(a.double(), b.double(), rtol=1e-6, atol=1e-9)


def test_with_a_partial_and_errors():
    G = torch.eye(2, dtype=F64)
    w = gw.loss_weightings.compose(G, [2.0, 1.0], functools.partial(gw.constant, weights=[1.0, 1.0]))
    assert w.tolist() == [2.0, 1.0]
    with pytest.raises(ValueError, match=r"^`D` must be non-negative, got minimum -1\.$"):
        gw.loss_weightings.compose(G, [1.0, -1.0], gw.mean)
    with pytest.raises(ValueError, match=r"^`D` must be of length 2, got length 3\.$"):
        gw.loss_weightings.compose(G, [1.0, 1.0, 1.0], gw.mean)
