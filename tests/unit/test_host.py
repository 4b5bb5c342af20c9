"""Interchangeable paths must agree: every host twin (``gramweight._host``) against its tensor
path, and the QP solver's other pairs of paths (m x m against gathered face steps, the definite
solver against the jittered one, MGDA's two-task closed form against the QP), in one table.

Each row draws its inputs with hypothesis, runs them through both paths and compares. A host
twin is forced by lifting the cost rule's threshold and its tensor path by
``gramweight._host.disabled()``; the solver's paths by patching the size that chooses them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import gramweight as gw
import gramweight._host as host
from gramweight._checks import check_gramian_scale
from gramweight.solvers import (
    _box_qp,
    dual_cone_weights,
    min_norm_simplex,
    nonneg_qp,
    power_balance,
)
from gramweight.solvers._min_norm import _segment_min_norm
from gramweight.testing.strategies import gramians
from gramweight.weightings._gradvac import GradVacState

from .solvers._problems import kkt_violation

F64 = torch.float64


def on_host(fn: Callable[[], Any]) -> Any:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(host, "FLOAT_OPS_PER_TENSOR_OP", math.inf)
        return fn()


def on_tensors(fn: Callable[[], Any]) -> Any:
    with host.disabled():
        return fn()


def gathered_from(m: int, fn: Callable[[], Any]) -> Any:
    """``fn()`` on tensors, with m x m face steps below size ``m`` and gathered ones from it."""
    with host.disabled(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(_box_qp, "_GATHER_MIN_M", m)
        return fn()


DENSE, GATHERED = 10**9, 0


@dataclass(frozen=True)
class Pair:
    """Two paths of one computation on the drawn ``inputs``, compared by
    ``agree(first(inputs), second(inputs), inputs)``."""

    name: str
    inputs: st.SearchStrategy
    first: Callable[[Any], Any]
    second: Callable[[Any], Any]
    agree: Callable[[Any, Any, Any], None]


def twin(name: str, inputs: st.SearchStrategy, fn: Callable[[Any], Any], agree) -> Pair:
    """A host twin against its tensor path: ``fn(inputs)`` through each."""
    return Pair(
        name, inputs, lambda x: on_host(lambda: fn(x)), lambda x: on_tensors(lambda: fn(x)), agree
    )


def close(a: torch.Tensor, b: torch.Tensor, scale: float = 1.0) -> bool:
    # float64 paths agree to round-off; float32 ones to its precision
    eps = torch.finfo(a.dtype).eps
    return torch.allclose(a, b, rtol=1e3 * eps, atol=1e3 * eps * scale)


def seeded(shape: tuple[int, ...], seed: int, normal: bool = True) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn if normal else torch.rand)(*shape, generator=gen, dtype=F64)


# --- inputs ---------------------------------------------------------------------------------

SEEDS = st.integers(0, 2**32 - 1)


@st.composite
def perturbed_gramians(draw: st.DrawFn) -> torch.Tensor:
    """A Gramian, sometimes off symmetry or off a non-negative diagonal by round-off (repaired
    by the check)."""
    G = draw(gramians(m=st.integers(1, 8)))
    if draw(st.booleans()):
        tiny = torch.finfo(G.dtype).eps * float(G.abs().max())
        noise = (seeded(G.shape, draw(SEEDS)) * tiny).to(G.dtype)
        G = G + noise.triu(1) if draw(st.booleans()) else G - noise.diagonal().abs().diag()
    return G


@st.composite
def box_problems(draw: st.DrawFn, definite: bool | None = None) -> tuple:
    """``(A, C, definite)``: a trace-normalised Gramian (regularised when definite) and linear
    terms in its range, so the problems are bounded."""
    G = draw(gramians(m=st.integers(1, 8), dtype=F64))
    m = G.shape[0]
    trace = float(G.trace())
    A = G / trace if trace > 0 else G
    definite = draw(st.booleans()) if definite is None else definite
    if definite:
        A = A + 1e-4 * torch.eye(m, dtype=F64)
    C = seeded((draw(st.integers(1, 4)), m), draw(SEEDS)) @ A
    return A, C, definite


@st.composite
def simplex_problems(draw: st.DrawFn) -> tuple:
    """``(A, C)``: a Gramian scaled to unit largest diagonal, and linear terms in its range (as
    MGDA's and CAGrad's are)."""
    G = draw(gramians(m=st.integers(1, 8), dtype=F64))
    top = float(G.diagonal().max())
    A = G / top if top > 0 else G
    return A, seeded((draw(st.integers(1, 4)), G.shape[0]), draw(SEEDS)) @ A


@st.composite
def balance_problems(draw: st.DrawFn) -> tuple:
    """``(G, alpha, init)``: a Gramian (zero, opposite, duplicated rows among its structures)
    with its tasks rescaled by up to 10^±4, a fairness exponent, and sometimes a warm start."""
    G = draw(gramians(m=st.integers(1, 8), dtype=F64))
    m = G.shape[0]
    k = torch.tensor(draw(st.lists(st.integers(-4, 4), min_size=m, max_size=m)), dtype=F64)
    scale = 10.0**k
    G = scale[:, None] * G * scale[None, :]
    alpha = draw(st.sampled_from([0.3, 1.0, 2.0]))
    init = None
    if draw(st.booleans()):
        init = seeded((m,), draw(SEEDS), normal=False) + 0.1
    return G, alpha, init


# --- comparisons ----------------------------------------------------------------------------


def same_check(a: tuple, b: tuple, G: torch.Tensor) -> None:
    (S1, scale1, diag1), (S2, scale2, diag2) = a, b
    assert torch.equal(S1, S2) and scale1 == scale2 and diag1 == diag2


def optimal(A: torch.Tensor, C: torch.Tensor, X: torch.Tensor, simplex: bool) -> bool:
    # the KKT conditions up to the round-off of the multipliers' terms
    scale = (1 + float(C.abs().max())) * (1 + float(X.abs().max()))
    return bool((X >= 0).all()) and kkt_violation(A, C, X, simplex=simplex) < 1e-12 * scale


def same_box(X1: torch.Tensor, X2: torch.Tensor, problem: tuple) -> None:
    A, C, _ = problem
    for X in (X1, X2):
        assert optimal(A, C, X, simplex=False)
    # the minimiser is unique up to the null space of A: compare A x
    atol = 1e-10 * (1 + float(X2.abs().max()))
    assert torch.allclose(X1 @ A, X2 @ A, rtol=0, atol=atol)


def same_simplex(X1: torch.Tensor, X2: torch.Tensor, problem: tuple) -> None:
    A, C = problem
    f1, f2 = (0.5 * ((X @ A) * X).sum(dim=1) + (C * X).sum(dim=1) for X in (X1, X2))
    for X in (X1, X2):
        assert optimal(A, C, X, simplex=True)
        assert torch.allclose(X.sum(dim=1), torch.ones(X.shape[0], dtype=F64))
    assert torch.allclose(f1, f2, rtol=0, atol=1e-12 * (1 + float(f2.abs().max())))


def same_dual_cone(V1: torch.Tensor, V2: torch.Tensor, inputs: tuple) -> None:
    G, U, _, _ = inputs
    scale = float(G.abs().max()) + 1e-300
    assert bool((V1 >= U).all()) and bool((V2 >= U).all())
    atol = 1e-9 * scale * (1 + float(V2.abs().max()))
    assert torch.allclose(V1 @ G, V2 @ G, rtol=0, atol=atol)


def same_min_norm(w1: torch.Tensor, w2: torch.Tensor, G: torch.Tensor) -> None:
    scale = float(G.diagonal().max())
    for w in (w1, w2):
        assert abs(float(w.sum()) - 1) < 1e-12 and bool((w >= 0).all())
        assert float((G @ w).min() - w @ G @ w) >= -1e-9 * scale
    assert abs(float(w1 @ G @ w1 - w2 @ G @ w2)) <= 1e-12 * scale


def same_weights(scale_of: Callable[[Any], float]) -> Callable[[Any, Any, Any], None]:
    def agree(a: Any, b: Any, inputs: Any) -> None:
        for x, y in zip(a, b):
            assert close(x, y, scale_of(inputs)), (x, y)

    return agree


def same_gradvac(a: tuple, b: tuple, inputs: tuple) -> None:
    # a correction towards a gradient 1e6 times shorter amplifies the cosine's round-off
    (w1, t1), (w2, t2) = a, b
    assert torch.allclose(w1, w2, rtol=1e-11, atol=1e-9 * float(w2.abs().max()))
    assert torch.allclose(t1, t2, rtol=1e-11, atol=1e-13)


def same_balance(w1: torch.Tensor, w2: torch.Tensor, problem: tuple) -> None:
    # Where the unit-diagonal form of G is well conditioned the solution is unique and
    # determined to its round-off (amplified by the conditioning); near a cancelling combination
    # the diagonal term comes from the smallest eigenvalue's round-off, which each path gets
    # differently (eigvalsh against bisection), so compare what the term leaves determined:
    # updates within 1e-3 of the longest gradient (the cancelling gradients' contributions
    # cancel, power_balance's docstring). The weights themselves are not compared there: both
    # paths stop at the same relative residual, but where (G w)_i cancels that residual's
    # round-off leaves them undetermined by far more (a factor 90 between two converged
    # answers on a rank-one 7 x 7 Gramian with alpha = 0.3, unchanged by 1000 more steps)
    G, alpha, _ = problem
    eps = torch.finfo(F64).eps
    for w in (w1, w2):
        assert bool(torch.isfinite(w).all()) and bool((w > 0).all())
    diag = G.diagonal()
    top = float(diag.max())
    dd = torch.where(diag > 0, diag, top if top > 0 else 1.0)
    lam = float(torch.linalg.eigvalsh(G / (dd.sqrt()[:, None] * dd.sqrt()[None, :]))[0])
    if lam > 1e-6:
        assert torch.allclose(w1, w2, rtol=1e-13 / lam, atol=0), (w1, w2)
        return
    # ‖(w1 - w2)ᵀ J‖², up to the round-off of forming it from weights this large
    d = w1 - w2
    noise = 100 * eps * float(d.abs() @ G.abs() @ d.abs())
    assert float(d @ G @ d) <= 1e-6 * top + noise, (w1, w2)


def modo_call(inputs: tuple) -> tuple:
    G, gamma = inputs
    w, state = gw.modo(G, gw.modo_init(G.shape[0], dtype=G.dtype), gamma=gamma)
    return w, state.weights


def sdmgrad_call(inputs: tuple) -> tuple:
    G, lambda_ = inputs
    # 3 iterations: projected steps amplify round-off, so a long run compares chaos
    w, state = gw.sdmgrad(G, gw.sdmgrad_init(G.shape[0], dtype=G.dtype), n_iters=3, lambda_=lambda_)
    return w, state.weights


def gradvac_call(inputs: tuple) -> tuple:
    G, targets, beta, eps = inputs
    w, state = gw.gradvac(G, GradVacState(targets), beta=beta, eps=eps, key=0)
    return w, state.targets


def pcd_call(inputs: tuple) -> tuple:
    G, tau = inputs
    # two calls: the second one reads the moving average of the first
    state = gw.pcd_init(G.shape[0], dtype=G.dtype)
    _, state = gw.pcd(G, state, tau=tau)
    w, state = gw.pcd(G * 2, state, tau=tau)
    return w, state.sq_norms / max(float(G.diagonal().max()), 1e-30)


def same_pcd(a: tuple, b: tuple, inputs: tuple) -> None:
    # with duplicated rows the weights are not unique (a duplicate's share may go to either
    # copy): compare the updates, ‖(a - b)ᵀ J‖² = (a - b)ᵀ G (a - b) for the second call's G
    G = inputs[0] * 2
    top = max(float(G.diagonal().max()), 1e-30)
    d = a[0] - b[0]
    eps = torch.finfo(G.dtype).eps
    assert float(d @ G @ d) <= (1e3 * eps) ** 2 * 100.0 * top, (a[0], b[0])
    assert close(a[1], b[1]), (a[1], b[1])


def dual_cone_call(inputs: tuple) -> torch.Tensor:
    G, U, norm_eps, reg_eps = inputs
    return dual_cone_weights(G, U, norm_eps=norm_eps, reg_eps=reg_eps)


def two_tasks_qp(G: torch.Tensor) -> torch.Tensor:
    top = float(G.diagonal().max())
    A = G / top if top > 0 else G
    return nonneg_qp(A, torch.zeros(1, 2, dtype=G.dtype), simplex=True)[0]


PAIRS = [
    twin("check", perturbed_gramians(), check_gramian_scale, same_check),
    twin(
        "check, through the closed forms",
        st.tuples(
            gramians(m=st.integers(1, 8)),
            st.sampled_from(["imtl_g", "config", "aligned_mtl", "mean"]),
        ),
        lambda inputs: (gw.WEIGHTINGS[inputs[1]](inputs[0]),),
        same_weights(lambda inputs: 1.0),
    ),
    twin(
        "modo",
        st.tuples(gramians(m=st.integers(1, 8)), st.sampled_from([0.01, 0.1, 1.0])),
        modo_call,
        same_weights(lambda inputs: float(inputs[0].abs().max()) * inputs[1] + 1.0),
    ),
    twin(
        "sdmgrad",
        st.tuples(gramians(m=st.integers(1, 8), scaled=False), st.sampled_from([0.0, 0.3])),
        sdmgrad_call,
        same_weights(lambda inputs: 10.0),
    ),
    twin(
        "pcgrad, two tasks",
        st.tuples(gramians(m=2, dtype=F64), st.integers(0, 100)),
        lambda inputs: (gw.pcgrad(inputs[0], key=inputs[1]),),
        same_weights(lambda inputs: 1.0),
    ),
    twin(
        "gradvac, two tasks",
        st.tuples(
            gramians(m=2, dtype=F64),
            st.floats(-0.99, 0.99).map(
                lambda t: torch.tensor([[0.0, t], [t / 2, 0.0]], dtype=F64)
            ),
            st.sampled_from([0.0, 0.3, 1.0]),
            st.sampled_from([0.0, 1e-8, 0.1]),
        ),
        gradvac_call,
        same_gradvac,
    ),
    twin(
        "pcd",
        st.tuples(gramians(m=st.integers(1, 8)), st.sampled_from([0.0, 0.02, 0.5])),
        pcd_call,
        same_pcd,
    ),
    twin("box QP", box_problems(), lambda p: nonneg_qp(p[0], p[1], definite=p[2]), same_box),
    twin(
        "simplex QP", simplex_problems(), lambda p: nonneg_qp(p[0], p[1], simplex=True),
        same_simplex,
    ),
    twin(
        "dual cone",
        st.tuples(
            gramians(m=st.integers(1, 8), dtype=F64),
            st.sampled_from([0.0, 1e-4]),
            st.sampled_from([0.0, 1e-4]),
        ).map(lambda t: (t[0], torch.eye(t[0].shape[0], dtype=F64) / t[0].shape[0], t[1], t[2])),
        dual_cone_call,
        same_dual_cone,
    ),
    twin(
        "balance (fairgrad, nash_mtl)",
        balance_problems(),
        lambda p: power_balance(p[0], alpha=p[1], init=p[2]),
        same_balance,
    ),
    twin("min norm, two tasks", gramians(m=2, dtype=F64), min_norm_simplex, same_min_norm),
    Pair(
        "min norm, two tasks: closed form against the QP",
        gramians(m=2, dtype=F64),
        lambda G: on_tensors(lambda: _segment_min_norm(G)),
        lambda G: on_tensors(lambda: two_tasks_qp(G)),
        same_min_norm,
    ),
    Pair(
        "box QP: m x m against gathered face steps",
        box_problems(),
        lambda p: gathered_from(DENSE, lambda: nonneg_qp(p[0], p[1], definite=p[2])),
        lambda p: gathered_from(GATHERED, lambda: nonneg_qp(p[0], p[1], definite=p[2])),
        same_box,
    ),
    Pair(
        "simplex QP: m x m against gathered face steps",
        simplex_problems(),
        lambda p: gathered_from(DENSE, lambda: nonneg_qp(p[0], p[1], simplex=True)),
        lambda p: gathered_from(GATHERED, lambda: nonneg_qp(p[0], p[1], simplex=True)),
        same_simplex,
    ),
    Pair(
        "box QP, m x m steps: definite against jittered",
        box_problems(definite=True),
        lambda p: gathered_from(DENSE, lambda: nonneg_qp(p[0], p[1], definite=True)),
        lambda p: gathered_from(DENSE, lambda: nonneg_qp(p[0], p[1])),
        same_box,
    ),
    Pair(
        "box QP, gathered: both sides (definite) against jittered free blocks",
        box_problems(definite=True),
        lambda p: gathered_from(GATHERED, lambda: nonneg_qp(p[0], p[1], definite=True)),
        lambda p: gathered_from(GATHERED, lambda: nonneg_qp(p[0], p[1])),
        same_box,
    ),
]


@pytest.mark.parametrize("pair", PAIRS, ids=[p.name for p in PAIRS])
@given(data=st.data())
def test_paths_agree(pair, data):
    inputs = data.draw(pair.inputs, label="inputs")
    pair.agree(pair.first(inputs), pair.second(inputs), inputs)
