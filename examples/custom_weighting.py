"""Write your own weighting and check it with gramweight.testing.

The weighting: "normalised mean", the mean of the unit-norm gradients,
w_i = 1 / (m sqrt(G_ii)) (0 for a zero gradient). Its Jacobian-space reference is written
the obvious way, on the gradient vectors. Hypothesis then draws Jacobians and Gramians of
every structure gramweight tests its own methods on.

Run: python examples/custom_weighting.py
"""

import os

import torch
from hypothesis import given, settings

import gramweight as gw
from gramweight.testing import (
    assert_non_conflicting,
    assert_permutation_equivariant,
    assert_pure,
    check_against_reference,
)
from gramweight.testing.strategies import gramians, jacobians

EXAMPLES = 20 if os.environ.get("GRAMWEIGHT_EXAMPLE_SMALL") else 200


def normalised_mean(G: torch.Tensor, /) -> torch.Tensor:
    norms = G.diagonal().clamp_min(0).sqrt()
    return torch.where(norms > 0, 1 / norms.clamp_min(torch.finfo(G.dtype).tiny), 0.0) / G.shape[-1]


def normalised_mean_reference(J: torch.Tensor, /) -> torch.Tensor:
    units = [g / g.norm() if g.norm() > 0 else torch.zeros_like(g) for g in J.double()]
    return sum(units) / len(units)


@settings(max_examples=EXAMPLES, deadline=None)
@given(J=jacobians(dtype=torch.float64, structures=("generic", "rank_deficient", "zero_rows")))
def check_reference(J):
    check_against_reference(normalised_mean, normalised_mean_reference, J, rtol=1e-9)


@settings(max_examples=EXAMPLES, deadline=None)
@given(G=gramians(dtype=torch.float64))
def check_properties(G):
    assert_permutation_equivariant(normalised_mean, G, rtol=1e-9)
    assert_pure(normalised_mean, G)


check_reference()
print("matches its Jacobian-space reference on", EXAMPLES, "drawn Jacobians")
check_properties()
print("permutation-equivariant and pure on", EXAMPLES, "drawn Gramians")

# It is not non-conflicting: two aligned gradients outvote a third one that opposes them.
# The assert says so, with the offending numbers.
J = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-0.9, 0.436]], dtype=torch.float64)
G = J @ J.T
try:
    assert_non_conflicting(normalised_mean, G)
    raise SystemExit("expected a conflict")
except AssertionError as error:
    print("as expected, not non-conflicting:", str(error).split(" (G @ w =")[0])

# A weighting that passes these checks can sit next to gramweight's own ones. The record
# gramweight registers its methods with checks the calling convention (G positional-only,
# options keyword-only) and carries the claims that generic code tests:
entry = gw.Weighting(normalised_mean, properties={"permutation_equivariant"})
print(entry)
print("normalised mean:", entry.fn(G).tolist(), " mean:", gw.mean(G).tolist())
