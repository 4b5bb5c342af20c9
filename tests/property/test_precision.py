"""Every weighting in float32 is as accurate as its float64 result rounded to float32 allows.

On a well-conditioned Gramian (condition number <= 1e3, full rank), the weights are unique and
a smooth function of G, so the float32 answer must equal the float64 answer on the same input
(the float32 Gramian, cast to float64) up to a few float32 round-offs amplified by the
conditioning: relative 1e-5, normwise on the weights (max |w32 - w64| <= 1e-5 max |w64|;
entrywise would ask small weights for more digits than the large ones carry). The weights,
not the update: G has full rank, so they determine each other, and the weights are what
every method returns.

Methods that are not smooth functions of G compare only away from their switching points
(see ``away_from_switches``). A method that misses the bound is a strict xfail stating the
measured gap; an explicit example where it misses makes the xfail deterministic.
"""

import contextlib

import pytest
import torch
from hypothesis import assume, example, given
from hypothesis import strategies as st

import gramweight as gw
from gramweight import _host
from gramweight.testing.strategies import gramians
from tests._calling import call, options, supports

NAMES = sorted(gw.WEIGHTINGS)
RTOL = 1e-5
MAX_COND = 1e3

# The fixed examples below are the spectral closed forms' worst draws before their float32
# inputs were decomposed in float64 (relative gaps 9.6e-5, 3.5e-5, 2.2e-5): kept as regressions.
# name -> why the method misses the bound, with the measured gap (none at present: the
# spectral forms' float32 gap, up to 9.6e-5, closed with their float64 decomposition)
XFAIL: dict[str, str] = {}


def _example(m: int, n: int, seed: int) -> torch.Tensor:
    """The Gramian of the drawn "generic" J of gramweight.testing.strategies for that seed."""
    J = torch.randn(m, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    G = J @ J.T
    return (G + G.T) / 2


def well_conditioned(G: torch.Tensor) -> bool:
    eig = torch.linalg.eigvalsh(G)
    return float(eig[0]) > 0 and float(eig[-1]) <= MAX_COND * float(eig[0])


def away_from_switches(name: str, G: torch.Tensor) -> bool:
    """Whether ``G`` is away from the points where the method's weights jump.

    Krum selects the rows of the smallest scores: a near tie between the last selected and
    the first rejected score can go either way in float32. PCGrad (and CR-MOGM over it)
    projects a pair when its dot product is negative, GradVac when its cosine is below a
    target starting at 0: a cosine within float32's reach of 0 can flip the test. Away from
    these, the weights are smooth in G and must agree.
    """
    d = G.diagonal()
    if name in ("pcgrad", "gradvac", "cr_mogm"):
        cos = G / (d.unsqueeze(0) * d.unsqueeze(1)).sqrt()
        off = cos[~torch.eye(G.shape[0], dtype=torch.bool)]
        return bool((off.abs() >= 1e-3).all())
    if name == "krum":
        m = G.shape[0]
        kw = options(name, m)
        f, k = kw["n_byzantine"], kw["n_selected"]
        dist = d.unsqueeze(0) + d.unsqueeze(1) - 2 * G
        dist = dist + torch.diag(torch.full((m,), float("inf"), dtype=G.dtype))
        scores = dist.sort(dim=1).values[:, : m - f - 2].sum(dim=1).sort().values
        if k >= m:
            return True
        return float(scores[k] - scores[k - 1]) > 1e-3 * float(scores[k].abs())
    return True


def _param(name: str):
    marks = () if name not in XFAIL else pytest.mark.xfail(strict=True, reason=XFAIL[name])
    return pytest.param(name, id=name, marks=marks)


@pytest.mark.parametrize("name", [_param(name) for name in NAMES])
@given(
    G=gramians(
        m=st.integers(1, 8), n=st.integers(8, 12), structures=("generic",), dtype=torch.float64
    )
)
@example(G=_example(4, 4, 140))
@example(G=_example(4, 4, 86))
@example(G=_example(5, 5, 161))
@pytest.mark.parametrize("host", [True, False], ids=["host", "tensors"])
def test_float32_is_float64_rounded(name, host, G):
    # both paths of a method with a Python-float twin for small problems (gramweight._host)
    assume(supports(name, G.shape[0]) and well_conditioned(G))
    G32 = G.float()
    G64 = G32.double()  # the same input: the float32 Gramian, exactly
    assume(well_conditioned(G64) and away_from_switches(name, G64))
    with contextlib.nullcontext() if host else _host.disabled():
        w32 = call(name, G32)
        w64 = call(name, G64)
    assert w32.dtype == torch.float32
    gap = float((w32.double() - w64).abs().max())
    assert gap <= RTOL * float(w64.abs().max()), (
        f"float32 {w32.tolist()} vs float64 {w64.tolist()}: relative gap "
        f"{gap / float(w64.abs().max()):.3g}"
    )
