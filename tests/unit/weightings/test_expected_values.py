"""One table of expected values of the weightings, every row with the source of its numbers.

A row is one call of a weighting on a small fixed input (for a stateful method: the last of a
few calls from ``<name>_init(m)``, on the same input unless a call names its own ``G``) and the
weights it must return, or the update ``w @ J`` when the row gives ``J``. Every row's
``source`` starts with its kind:

- ``hand``: derived by hand; the derivation is written next to the row, with the steps needed
  to redo it on paper;
- ``peer``: TorchJD 0.18 (``torchjd.aggregation``) on the same input, the value it returns;
- ``independent``: computed in this file by a route that shares nothing with the library's code
  (none of its regularisers, thresholds or helpers): the paper's vector formula on ``J`` with
  ``torch.linalg``, or the defining equation solved by the plain Newton method below.

The tolerances are those of the assertions the rows replaced. The ``independent`` rows ask
for ``1e-10``: their problems are well conditioned (condition numbers below 100), so code and
reference should agree to about 1e-14, and a larger gap is a modelling difference, such as a
regulariser, not round-off. A row that the current code misses is a strict xfail that states
the measured gap.

Not here: checks against re-implementations run over sweeps of keys or draws (PCGrad's loop
over visiting orders, SDMGrad's inner steps, Krum's duplicated rows), the states the calls
return, errors, edge cases and properties. They stay in the method's own test file.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import pytest
import torch
from torch import Tensor

import gramweight as gw
from tests.unit.weightings._common import G, J, gram


def vec(*values: float) -> Tensor:
    return torch.tensor(values, dtype=torch.float64)


class Row(NamedTuple):
    id: str
    name: str
    G: Tensor
    expected: Tensor
    source: str
    tol: dict[str, float] | None = None  # torch.allclose tolerances; None: torch.equal
    options: dict[str, Any] = {}
    J: Tensor | None = None  # when given, the row's expected value is the update w @ J
    before: tuple[dict[str, Any], ...] = ()  # options of the earlier calls (stateful methods;
    # a "G" entry is that call's Gramian, default the row's)
    xfail: str | None = None  # why the current code misses this row, with the measured gap


INDEPENDENT = {"rtol": 1e-10, "atol": 0.0}
DIGITS = {"atol": 1e-4}  # the rows that replaced 4-digit literals keep their tolerance

# The running example, TorchJD's documentation example: g_0 = (-4, 1, 1), g_1 = (6, 1, 1),
# G = [[18, -22], [-22, 38]] (J and G of _common.py), trace 56, det 18·38 - 22² = 200.
N0, N1 = math.sqrt(18.0), math.sqrt(38.0)  # ‖g_0‖, ‖g_1‖

# Three gradients in R⁴ and a 3×3 Gramian, both well conditioned (cond(G) about 4.5 and 4.7).
J3 = torch.tensor(
    [[1.0, 2.0, 0.0, 1.0], [0.0, -1.0, 3.0, 0.0], [2.0, 0.0, -1.0, 1.0]], dtype=torch.float64
)
G3 = gram([[1.0, 0.0, 0.5], [-0.5, 1.0, 0.0], [0.2, -0.3, 1.0]])

# Krum's example: rows 0, 1, 3, 4 close together, row 2 far away.
JK = torch.tensor(
    [[1.0, 1, 1], [1, 0, 1], [75, -666, 23], [1, 2, 3], [2, 0, 1]], dtype=torch.float64
)


# --- Independent routes: the papers' formulas on J, the defining equations by plain Newton ---


def balance_root(Gm: Tensor, alpha: float) -> Tensor:
    """The positive ``w`` with ``G w = w^(-1/alpha)``, by Newton's method on that equation.

    FairGrad's equation; with ``alpha = 1`` it is Nash-MTL's bargaining condition
    ``(G w) ⊙ w = 1``. No regulariser and no rescaling: from ``w = 1`` each step solves
    ``(G + p diag(w^(-p-1))) d = -(G w - w^(-p))`` (``p = 1/alpha``), halved until ``w`` stays
    positive and the residual decreases; it stops at a residual of 1e-14 relative.
    """
    p = 1.0 / alpha
    w = torch.ones(Gm.shape[0], dtype=torch.float64)

    def residual(x: Tensor) -> Tensor:
        return Gm @ x - x ** (-p)

    for _ in range(100):
        r = residual(w)
        if float(r.norm()) <= 1e-14 * float((w ** (-p)).norm()):
            return w
        d = torch.linalg.solve(Gm + torch.diag(p * w ** (-p - 1.0)), -r)
        t = 1.0
        while bool((w + t * d <= 0).any()) or float(residual(w + t * d).norm()) >= float(r.norm()):
            t /= 2
            assert t > 1e-30, "no Newton step decreases the residual"
        w = w + t * d
    raise AssertionError(f"Newton did not converge (residual {float(r.norm()):.3g})")


def aligned_update(Jm: Tensor, pref: Tensor) -> Tensor:
    """Aligned-MTL's update from the SVD of the gradient matrix (Senushkin et al. 2023).

    With ``Jᵀ = U S Vᵀ`` (full rank m), the aligned gradients are the columns of
    ``σ U Vᵀ``: orthogonal, all of norm ``σ = min S`` (the paper's scale), spanning the same
    space as the gradients. The update is their ``pref``-weighted sum.
    """
    U, S, Vh = torch.linalg.svd(Jm.T, full_matrices=False)
    assert float(S.min()) > 1e-8 * float(S.max()), "the formula needs full rank"
    return S.min() * (U @ (Vh @ pref))


def config_update(Jm: Tensor, pref: Tensor) -> Tensor:
    """ConFIG's update (Liu et al., ICLR 2025, Sec. 3) on the gradient vectors.

    The unit gradients ``U`` (rows ``g_i / ‖g_i‖``), the direction ``x = U⁺ pref`` (so that
    ``u_iᵀx = pref_i``) with torch's own pseudo-inverse, made a unit vector ``x̂``, and given
    the length ``Σ_i g_iᵀ x̂``.
    """
    units = Jm / Jm.norm(dim=1, keepdim=True)
    x = torch.linalg.pinv(units) @ pref
    x_hat = x / x.norm()
    return (Jm @ x_hat).sum() * x_hat


def nash_update(Jm: Tensor, max_norm: float) -> Tensor:
    """Nash-MTL's update ``Jᵀ w`` with ``(G w) ⊙ w = 1``, clipped to norm ``max_norm``."""
    update = Jm.T @ balance_root(Jm @ Jm.T, 1.0)
    norm = float(update.norm())
    return update * (max_norm / norm) if norm > max_norm else update


def vaccine(norm_i: float, norm_j: float, phi: float, target: float, eps: float = 1e-8) -> float:
    """GradVac's coefficient on ``g_j`` added to ``g_i`` when their cosine ``phi`` is below the
    target ``φ̂`` (Wang et al., ICLR 2021), with the eps of gw.gradvac in the denominator:
    ``‖g_i‖ (φ̂ √(1-φ²) - φ √(1-φ̂²)) / (‖g_j‖ √(1-φ̂²) + eps)``."""
    s_phi, s_hat = math.sqrt(1 - phi**2), math.sqrt(1 - target**2)
    return norm_i * (target * s_phi - phi * s_hat) / (norm_j * s_hat + eps)


# --- Hand derivations used by several rows ---

# FairGrad (alpha = 1) and Nash-MTL on the running example: w_i (G w)_i = 1 for i = 0, 1, so
# 18 w0² - 22 w0 w1 = 38 w1² - 22 w0 w1, i.e. w0 / w1 = √(38/18) = √19 / 3; then
# w1² (38 - 22 √19 / 3) = 1. Numerically w = (0.591461152, 0.407071483); TorchJD 0.18's
# FairGradWeighting(alpha=1) returns the same to 1e-12.
W1_BALANCE = 1.0 / math.sqrt(38.0 - 22.0 * math.sqrt(19.0) / 3.0)
W_BALANCE = vec(math.sqrt(19.0) / 3.0 * W1_BALANCE, W1_BALANCE)

# The bisector of the unit gradients, x̂ = (u_0 + u_1) / ‖u_0 + u_1‖ with u_i = g_i / ‖g_i‖:
# (0.054153, 0.706069, 0.706069). For two unit vectors, U⁺1 is the point x of their span with
# u_0ᵀx = u_1ᵀx = 1, i.e. (u_0 + u_1) / (1 + u_0ᵀu_1), a multiple of u_0 + u_1.
_bisector = J[0] / N0 + J[1] / N1
X_HAT = _bisector / _bisector.norm()

# GradVac on the running example: with one other task the visiting order does not matter, and
# the rows are always the original gradients, whose cosine is φ = -22 / (√18 √38 + eps).
# Call 1: targets 0 > φ, so row 0 gets a_0 g_1 and row 1 gets a_1 g_0 with the coefficients
# of `vaccine` (target 0: a_0 = 22 / 38, a_1 = 22 / 18 up to eps, PCGrad's projections), and
# w = (1 + a_1, 1 + a_0). The targets become (1 - β) 0 + β φ = φ / 2 (β = 0.5). Call 2: φ is
# below φ / 2, the same formula with target φ / 2.
PHI = -22.0 / (N0 * N1 + 1e-8)
GRADVAC_CALL_1 = vec(1 + vaccine(N1, N0, PHI, 0.0), 1 + vaccine(N0, N1, PHI, 0.0))
GRADVAC_CALL_2 = vec(1 + vaccine(N1, N0, PHI, PHI / 2), 1 + vaccine(N0, N1, PHI, PHI / 2))

# IMTL-G on the running example: w ∝ G⁻¹ d with d = (‖g_0‖, ‖g_1‖) and
# G⁻¹ = [[38, 22], [22, 18]] / 200 (the factor 1/200 goes with the normalisation to sum 1).
IMTL_G = torch.tensor([[38.0, 22.0], [22.0, 18.0]], dtype=torch.float64) @ vec(N0, N1)

# MoDo's second step from (0.55, 0.45) (see the row "modo-step1"): Mλ = (0, 5), + ρλ =
# (0.055, 5.045); x = 0.55 - 0.01 · 0.055 and y = 0.45 - 0.01 · 5.045 are both shifted by
# (1 - x - y) / 2 (the two stay positive, so that is the simplex projection).
_x, _y = 0.55 - 0.01 * 0.055, 0.45 - 0.01 * 5.045
MODO_STEP_2 = vec(_x + (1 - _x - _y) / 2, _y + (1 - _x - _y) / 2)


_s = (0.1 * 0.5 / (0.5 + 1e-8), -0.1 * 1.0 / (1.0 + 1e-8))  # IMTL's log scales after call 1
IMTL_CALL_2 = IMTL_G / (math.exp(-_s[0]) * IMTL_G[0] + math.exp(-_s[1]) * IMTL_G[1])
_T = (N0 + N1) / 2  # GradNorm's mean norm at call 1 (see the rows "gradnorm-call*")
GRADNORM_CALL_2 = 2 * torch.softmax(vec(1.0, -1.0) * (0.1 * _T / (_T + 1e-8)), dim=0)


def PCD_TWO(tau: float) -> Tensor:  # noqa: N802 - a table constant, computed per tau
    """PCD on the running example with eps = 0 (see the rows "pcd-tau*")."""
    c = -22.0 / math.sqrt(684.0)
    lam = tau - c
    norm = math.sqrt(1 + 2 * lam * c + lam**2)
    return vec(1.0 / norm, math.sqrt(18.0) * lam / (math.sqrt(38.0) * norm))


ROWS = [
    # ---- mean, sum, constant ----
    Row("mean", "mean", G, vec(0.5, 0.5), "hand: w_i = 1/m"),
    Row("sum", "sum", G, vec(1.0, 1.0), "hand: w_i = 1"),
    # 0.25 (-4, 1, 1) + 2 (6, 1, 1) = (-1 + 12, 0.25 + 2, 0.25 + 2)
    Row(
        "constant-update", "constant", G, vec(11.0, 2.25, 2.25), "hand: the weighted sum",
        options={"weights": [0.25, 2]}, J=J,
    ),
    # ---- upgrad ----
    Row(
        "upgrad", "upgrad", G, vec(1.1109210467854445, 0.7894310312164523),
        "peer: TorchJD 0.18 UPGradWeighting()(G), printed tensor([1.1109, 0.7894]) in the "
        "docstring of torchjd.aggregation",
        DIGITS,
    ),
    # Each projection is v = argmin vᵀG'v over v >= u, G' = G/56 + 1e-4 I; its KKT conditions:
    # G'v >= 0, with (G'v)_j = 0 where v_j > u_j. For u = e_0/2, (G'u)_1 = -11/56 < 0, so
    # v = u + b e_1 with (G'v)_1 = 0: b = (11/56) / (38/56 + 1e-4), and then
    # (G'v)_0 = (18/56 + 1e-4)/2 - 22 b/56 = 0.047 >= 0. For u = e_1/2 likewise
    # a = (11/56) / (18/56 + 1e-4), (G'v)_1 = 0.099 >= 0. w = (1/2 + a, b + 1/2).
    Row(
        "upgrad-regularised", "upgrad", G,
        vec(0.5 + (11 / 56) / (18 / 56 + 1e-4), 0.5 + (11 / 56) / (38 / 56 + 1e-4)),
        "hand: one active constraint per projection", {"rtol": 1e-12},
    ),
    # As above with reg_eps = 0: -11 + 38 b = 0 and -11 + 18 a = 0.
    Row(
        "upgrad-exact", "upgrad", G, vec(0.5 + 11 / 18, 0.5 + 11 / 38),
        "hand: one active constraint per projection", {"rtol": 1e-12, "atol": 0.0},
        options={"reg_eps": 0.0},
    ),
    # Six equal gradients: u = e_i/6 already has G'u = 1/36 + 1e-4/6 e_i > 0, no projection.
    Row(
        "upgrad-equal-gradients", "upgrad", torch.ones(6, 6, dtype=torch.float64),
        torch.full((6,), 1 / 6, dtype=torch.float64),
        "hand: no gradient conflicts, each u = e_i/6 is its own projection", DIGITS,
    ),
    # ---- dualproj ----
    # With G' = G/56 + 1e-4 I, u = (1/2, 1/2): (G'u)_0 = (18/56 + 1e-4)/2 - 11/56 < 0; raising
    # w_0 until (G'w)_0 = 0 gives w_0 = (11/56) / (18/56 + 1e-4), and then (G'w)_1 > 0.
    Row(
        "dualproj", "dualproj", G, vec(0.6109210467854445, 0.5),
        "peer: TorchJD 0.18 DualProjWeighting()(G); the same as the hand value "
        "w_0 = (11/56) / (18/56 + 1e-4), w_1 = 1/2",
        DIGITS,
    ),
    # As above with reg_eps = 0: (G w)_0 = 18 w_0 - 11 = 0.
    Row(
        "dualproj-exact", "dualproj", G, vec(11 / 18, 0.5),
        "hand: one active constraint", {"rtol": 1e-12}, options={"reg_eps": 0.0},
    ),
    # ---- mgda ----
    # Two tasks: min over w_0 of ‖w_0 g_0 + (1 - w_0) g_1‖² is at
    # w_0 = (G_11 - G_01) / (G_00 + G_11 - 2 G_01) = (38 + 22) / (18 + 38 + 44) = 0.6.
    Row("mgda", "mgda", G, vec(0.6, 0.4), "hand: the min-norm point of a segment", DIGITS),
    # The same formula on Ĝ = N⁻¹GN⁻¹, the weights applied to the raw gradients:
    # "none": 0.6 g_0 + 0.4 g_1 = (0, 1, 1).
    Row(
        "mgda-none-update", "mgda", G, vec(0.0, 1.0, 1.0),
        "hand: 0.6 g_0 + 0.4 g_1", DIGITS, options={"norm": "none"}, J=J,
    ),
    # "l2": Ĝ has a unit diagonal, so w = (1/2, 1/2) and the update is (g_0 + g_1) / 2.
    Row(
        "mgda-l2-update", "mgda", G, vec(1.0, 1.0, 1.0),
        "hand: equal normalised norms, w = (1/2, 1/2)", DIGITS, options={"norm": "l2"}, J=J,
    ),
    # "loss", L = (0.5, 2): Ĝ = [[72, -22], [-22, 9.5]], w_0 = 31.5 / 125.5; the first entry
    # of the update is (-4 · 31.5 + 6 · 94) / 125.5 = 438 / 125.5 = 3.49004 (docs: 3.4900).
    Row(
        "mgda-loss-update", "mgda", G, vec(438 / 125.5, 1.0, 1.0),
        "hand: the segment formula on Ĝ", DIGITS,
        options={"norm": "loss", "losses": [0.5, 2.0]}, J=J,
    ),
    # "loss+", N = diag(L_i ‖g_i‖): Ĝ = [[4, -c], [-c, 0.25]] with c = 22 / √684; w_0 =
    # (0.25 + c) / (4.25 + 2c) = 0.183939, first entry -4 w_0 + 6 (1 - w_0) = 4.16062.
    Row(
        "mgda-loss+-update", "mgda", G,
        vec(6 - 10 * (0.25 + 22 / math.sqrt(684)) / (4.25 + 44 / math.sqrt(684)), 1.0, 1.0),
        "hand: the segment formula on Ĝ", DIGITS,
        options={"norm": "loss+", "losses": [0.5, 2.0]}, J=J,
    ),
    # g_1 = -2 g_0 (G = [[1, -2], [-2, 4]]): w_0 = (4 + 2) / (1 + 4 + 4) = 2/3, update 0.
    Row(
        "mgda-stationary", "mgda", torch.tensor([[1.0, -2.0], [-2.0, 4.0]], dtype=torch.float64),
        vec(2 / 3, 1 / 3), "hand: the min-norm point of a segment through 0", {"rtol": 1e-8},
    ),
    # ---- imtl_g ----
    # the closed form w ∝ G⁻¹ d, see IMTL_G
    Row(
        "imtl_g", "imtl_g", G,
        IMTL_G / IMTL_G.sum(),
        "hand: the closed form of the paper", {"rtol": 1e-12},
    ),
    Row(
        "imtl_g-peer", "imtl_g", G, vec(0.5923303169377979, 0.40766968306220214),
        "peer: TorchJD 0.18 IMTLGWeighting()(G)", DIGITS,
    ),
    # ---- aligned_mtl ----
    # w = √λ_min G^(-1/2) (1/2, 1/2). For a 2×2 PSD matrix, G^(1/2) = (G + s I) / t with
    # s = √det = √200, t = √(tr + 2s) = √(56 + 2√200); so G^(-1/2) = t (G + sI)⁻¹ =
    # t [[38 + s, 22], [22, 18 + s]] / D, D = (18 + s)(38 + s) - 22² = 400 + 56 s. With
    # λ_min = 28 - √(28² - 200) = 28 - √584: w = √λ_min t / (2D) · (60 + s, 40 + s)
    # = (0.559072, 0.408261).
    Row(
        "aligned_mtl", "aligned_mtl", G,
        math.sqrt(28 - math.sqrt(584)) * math.sqrt(56 + 2 * math.sqrt(200))
        / (2 * (400 + 56 * math.sqrt(200)))
        * vec(60 + math.sqrt(200), 40 + math.sqrt(200)),
        "hand: the 2×2 matrix square root", DIGITS,
    ),
    Row(
        "aligned_mtl-svd", "aligned_mtl", G, aligned_update(J, vec(0.5, 0.5)),
        "independent: the aligned gradients from the SVD of J", INDEPENDENT, J=J,
    ),
    Row(
        "aligned_mtl-svd-m3", "aligned_mtl", J3 @ J3.T,
        aligned_update(J3, torch.full((3,), 1 / 3, dtype=torch.float64)),
        "independent: the aligned gradients from the SVD of J", INDEPENDENT, J=J3,
    ),
    Row(
        "aligned_mtl-svd-m3-pref", "aligned_mtl", J3 @ J3.T, aligned_update(J3, vec(0.2, 0.3, 0.5)),
        "independent: the aligned gradients from the SVD of J", INDEPENDENT,
        options={"pref": [0.2, 0.3, 0.5]}, J=J3,
    ),
    # ---- cagrad ----
    # Ĝ = G/56, u = (1/2, 1/2), √φ = c ‖g_u‖ = 0.5 √(uᵀĜu) = 0.5 √(3/56). The inner problem
    # min_{w ∈ Δ} wᵀĜu + √φ ‖g_w‖ is solved at the vertex e_0: its derivative towards e_1,
    # (Ĝu)_1 - (Ĝu)_0 + √φ (Ĝ_01 - Ĝ_00) / √Ĝ_00 = (10 - 20 √3 / √18) / 56, is positive.
    # The weights u + (√φ / ‖g_w‖) e_0 = (1/2 + 0.5 √(3/18), 1/2) = (1/2 + 1 / (2√6), 1/2)
    # (the trace normalisation cancels in the ratio √φ / ‖g_w‖).
    Row(
        "cagrad", "cagrad", G, vec(0.5 + 1 / (2 * math.sqrt(6)), 0.5),
        "hand: the inner problem at a vertex", DIGITS, options={"c": 0.5},
    ),
    # ---- krum ----
    # Squared distances between rows 0, 1, 3, 4: d01 = 1, d04 = 2, d03 = 5, d14 = 1, d13 = 8,
    # d34 = 9 (row 2 is far from all). The score sums the m - f - 2 = 2 smallest: row 0 -> 3,
    # row 1 -> 2, row 3 -> 13, row 4 -> 3, row 2 -> huge.
    Row(
        "krum-four", "krum", JK @ JK.T, vec(0.25, 0.25, 0.0, 0.25, 0.25),
        "hand: the four best scores", options={"n_byzantine": 1, "n_selected": 4},
    ),
    Row(
        "krum-one", "krum", JK @ JK.T, vec(0.0, 1.0, 0.0, 0.0, 0.0),
        "hand: the best score", options={"n_byzantine": 1},
    ),
    # rows 0 and 4 tie at 3 for the second place: the lower index
    Row(
        "krum-two", "krum", JK @ JK.T, vec(0.5, 0.5, 0.0, 0.0, 0.0),
        "hand: the two best scores, a tie to the lower index",
        options={"n_byzantine": 1, "n_selected": 2},
    ),
    # ---- fairgrad ----
    Row(
        "fairgrad", "fairgrad", G, W_BALANCE, "hand: the two-task balance equation", DIGITS,
        options={"alpha": 1.0},
    ),
    Row(
        "fairgrad-round-off", "fairgrad", G, W_BALANCE,
        "hand: the two-task balance equation (the documented 'solved to round-off')",
        INDEPENDENT, options={"alpha": 1.0},
    ),
    *(
        Row(
            f"fairgrad-newton-alpha{alpha}", "fairgrad", G3, balance_root(G3, alpha),
            "independent: Newton on G w = w^(-1/alpha)", INDEPENDENT, options={"alpha": alpha},
        )
        for alpha in (0.5, 2.0, 5.0)
    ),
    # ---- nash_mtl ----
    # The balance weights (see W_BALANCE) have wᵀGw = Σ_i w_i (G w)_i = 2 > 1, so the update is
    # clipped to norm 1. Since w_0 ‖g_0‖ = w_1 ‖g_1‖, it is along u_0 + u_1: the update is X_HAT.
    Row(
        "nash_mtl-update", "nash_mtl", G, X_HAT,
        "hand: the balance weights, clipped to a unit update", DIGITS, J=J,
    ),
    Row(
        "nash_mtl-round-off", "nash_mtl", G, W_BALANCE,
        "hand: the two-task balance equation (the documented 'solved to round-off')",
        INDEPENDENT, options={"max_norm": 0.0},
    ),
    Row(
        "nash_mtl-newton-m3", "nash_mtl", J3 @ J3.T, nash_update(J3, 1.0),
        "independent: Newton on (G w) ⊙ w = 1, the update clipped to norm 1", INDEPENDENT, J=J3,
    ),
    # ---- config ----
    # x̂ = X_HAT (the bisector, see above), length (g_0 + g_1)ᵀx̂ = (2, 2, 2)ᵀx̂:
    # update (0.158809, 2.070607, 2.070607).
    Row(
        "config-update", "config", G, (2.0 * X_HAT.sum()) * X_HAT,
        "hand: the bisector of the unit gradients", DIGITS, J=J,
    ),
    Row(
        "config-pinv", "config", G, config_update(J, vec(1.0, 1.0)),
        "independent: the paper's formula on J with torch.linalg.pinv", INDEPENDENT, J=J,
    ),
    Row(
        "config-pinv-m3", "config", J3 @ J3.T, config_update(J3, vec(1.0, 1.0, 1.0)),
        "independent: the paper's formula on J with torch.linalg.pinv", INDEPENDENT, J=J3,
    ),
    Row(
        "config-pinv-m3-pref", "config", J3 @ J3.T, config_update(J3, vec(1.0, 2.0, 3.0)),
        "independent: the paper's formula on J with torch.linalg.pinv", INDEPENDENT,
        options={"pref": [1.0, 2.0, 3.0]}, J=J3,
    ),
    # ---- pcgrad ----
    # g_0ᵀg_1 = -22 < 0: row 0 becomes g_0 + (22/38) g_1, row 1 becomes g_1 + (22/18) g_0, so
    # w = (1 + 22/18, 1 + 22/38) = (2.2222, 1.5789) whatever the key (one other task only).
    *(
        Row(
            f"pcgrad-key{key}", "pcgrad", G, vec(1 + 22 / 18, 1 + 22 / 38),
            "hand: one projection per row", {"rtol": 1e-15}, options={"key": key},
        )
        for key in (0, 1, 7, 2**40, 2**63 - 1)
    ),
    # g = (4, 3), (-2, -4), (-2, 0); key 1 shuffles all tasks as [1, 2, 0], [0, 1, 2], [1, 2, 0]:
    # row 0 = g_0 + g_1 + g_2 = (0, -1) then conflicts with g_0 itself (-3): + 3/25 g_0; row 1
    # = g_1 + 0.8 g_0 + 0.6 g_2; row 2 = g_2 + 0.32 g_0 (derivation in test_pcgrad.py).
    Row(
        "pcgrad-include-self", "pcgrad",
        torch.tensor([[25.0, -20.0, -8.0], [-20.0, 20.0, 4.0], [-8.0, 4.0, 4.0]], dtype=torch.float64),
        vec(1.12 + 0.8 + 0.32, 2.0, 2.6), "hand: the original code's shuffles, self included",
        {"rtol": 1e-14}, options={"key": 1, "include_self": True},
    ),
    # g_1 = -2 g_0 (one parameter): row 0 = g_0 + g_1 / 2 (= 0), row 1 = 2 g_0 + g_1 (= 0).
    Row(
        "pcgrad-opposite", "pcgrad", torch.tensor([[1.0, -2.0], [-2.0, 4.0]], dtype=torch.float64),
        vec(3.0, 1.5), "hand: one projection per row", options={"key": 0},
    ),
    # ---- gradvac ----
    Row(
        "gradvac-call1", "gradvac", G, GRADVAC_CALL_1, "hand: the vaccine coefficient, target 0",
        {"rtol": 1e-14}, options={"key": 3},
    ),
    Row(
        "gradvac-call2", "gradvac", G, GRADVAC_CALL_2,
        "hand: the vaccine coefficient, target φ/2", {"rtol": 1e-14},
        options={"key": 4}, before=({"key": 3},),
    ),
    Row(
        "gradvac-call1-peer", "gradvac", G, vec(2.2222222188740886, 1.5789473672605099),
        "peer: TorchJD 0.18 GradVacWeighting(), first call", DIGITS, options={"key": 0},
    ),
    Row(
        "gradvac-call2-peer", "gradvac", G, vec(1.8579878023633727, 1.4064152751328711),
        "peer: TorchJD 0.18 GradVacWeighting(), second call", DIGITS,
        options={"key": 1}, before=({"key": 0},),
    ),
    # ---- modo ----
    # λ = (1/2, 1/2), Mλ = (-2, 8), + ρλ = (0.05, 0.05); λ - 0.01 (-1.95, 8.05) = (0.5195,
    # 0.4195), whose projection onto the simplex adds (1 - 0.939) / 2 = 0.0305 to each entry.
    Row(
        "modo-step1", "modo", G, vec(0.55, 0.45), "hand: one projected step",
        {"rtol": 1e-13}, options={"gamma": 0.01},
    ),
    Row(
        "modo-step2", "modo", G, MODO_STEP_2, "hand: two projected steps", {"rtol": 1e-13},
        options={"gamma": 0.01}, before=({"gamma": 0.01},),
    ),
    # A cross matrix need not be symmetric: M = [[1, 2], [0, 1]], γ = ρ = 0.1: Mλ = (1.5, 0.5),
    # + ρλ = (1.55, 0.55); λ - 0.1 (...) = (0.345, 0.445), shifted by 0.105.
    Row(
        "modo-cross", "modo", torch.tensor([[1.0, 2.0], [0.0, 1.0]], dtype=torch.float64),
        vec(0.45, 0.55), "hand: one projected step", {"rtol": 1e-13},
    ),
    # γ = ρ = 0.1 on G: λ - 0.1 ((-2, 8) + (0.05, 0.05)) = (0.695, -0.305), projected onto the
    # simplex: (0.695 + 0.305, -0.305 + 0.305), the vertex e_0.
    Row("modo-vertex", "modo", G, vec(1.0, 0.0), "hand: one projected step to a vertex"),
    # ---- pcd ----
    # First call (and, on the same G, every call: v̂ = G_ii), eps = 0: g̃_i = g_i / ‖g_i‖, so
    # G̃ = [[1, c], [c, 1]] with c = -22 / √684. The one constraint g̃_1ᵀd >= τ is active
    # (c < τ): λ = τ - c, ‖d̃‖² = 1 + 2 λ c + λ², and w = (√18 / ‖d̃‖) (1 / √18, λ / √38).
    *(
        Row(
            f"pcd-tau{tau}-call{calls + 1}", "pcd", G, PCD_TWO(tau),
            "hand: one active constraint", {"rtol": 1e-12},
            options={"tau": tau, "eps": 0.0}, before=({"tau": tau, "eps": 0.0},) * calls,
        )
        for tau in (0.02, 0.5)
        for calls in (0, 2)
    ),
    Row(
        "pcd-peer", "pcd", G, vec(1.84806055948529635, 1.09536824776996311),
        "peer: TorchJD 0.18 PCDWeighting()(G), first call", {"rtol": 1e-10},
    ),
    Row(
        "pcd-peer-m3", "pcd", J3 @ J3.T * 2, vec(0.98110964436641857, 0.42981721066827250,
                                                 0.01868667646085249),
        "peer: TorchJD 0.18 PCDWeighting(tau=0.3), second call (on J3 J3ᵀ, then 2 J3 J3ᵀ)",
        {"rtol": 1e-9}, options={"tau": 0.3}, before=({"tau": 0.3, "G": J3 @ J3.T},),
    ),
    # opposite secondary gradients: no d makes progress on both, the update is g_0
    Row(
        "pcd-infeasible", "pcd", gram([[1.0, 1.0], [0.0, 1.0], [0.0, -2.0]]), vec(1.0, 0.0, 0.0),
        "hand: the constraints g̃_1ᵀd >= τ, -g̃_1ᵀd >= τ contradict each other",
    ),
    # ---- db_mtl ----
    # L = (0.5, 2): ‖h_i‖ = ‖g_i‖ / L_i = (2√18, √38 / 2), the largest 2√18; w_i = 2√18 / ‖g_i‖
    Row(
        "db_mtl", "db_mtl", G, vec(2.0, 2.0 * math.sqrt(18.0 / 38.0)),
        "hand: every log-loss gradient rescaled to the largest norm", {"rtol": 1e-14},
        options={"losses": [0.5, 2.0]},
    ),
    # equal losses L = 3: every h_i = g_i / 3 rescaled to the largest norm √38 / 3
    Row(
        "db_mtl-update", "db_mtl", G, math.sqrt(38.0) / 3 * (J[0] / N0 + J[1] / N1),
        "hand: (√38 / 3) (u_0 + u_1)", {"rtol": 1e-14}, options={"losses": [3.0, 3.0]}, J=J,
    ),
    # ---- imtl ----
    # Call 1: every scale 1, IMTL-G's weights. One Adam step from zero moments moves each log
    # scale by -lr g / (|g| + eps), g = L - 1 = (-0.5, 1). Call 2: IMTL-G on D G D gives
    # α ∝ D⁻¹ G⁻¹ d (d_i = ‖g_i‖), so w = D α ∝ G⁻¹ d = IMTL_G, normalised by 1ᵀD⁻¹ G⁻¹ d.
    Row(
        "imtl-call1", "imtl", G, IMTL_G / IMTL_G.sum(), "hand: IMTL-G with unit scales",
        {"rtol": 1e-12}, options={"losses": [0.5, 2.0]},
    ),
    Row(
        "imtl-call2", "imtl", G, IMTL_CALL_2, "hand: IMTL-G after one Adam step of the scales",
        {"rtol": 1e-12}, options={"losses": [0.5, 2.0], "lr": 0.1},
        before=({"losses": [0.5, 2.0], "lr": 0.1},),
    ),
    # ---- gradnorm ----
    # Call 1: logits 0, w = (1, 1). Its loss ratios are 1, so both targets are the mean norm
    # T = (√18 + √38) / 2: σ = (-1, +1), and the gradient w_k (σ_k n_k - ½ Σ σ_i n_i w_i) is
    # (-T, T). One Adam step from zero moments: z = lr T / (T + eps) (1, -1). Call 2:
    # w = 2 softmax(z).
    Row(
        "gradnorm-call1", "gradnorm", G, vec(1.0, 1.0), "hand: logits 0, w = m softmax(0)",
        options={"losses": [1.0, 2.0]},
    ),
    Row(
        "gradnorm-call2", "gradnorm", G, GRADNORM_CALL_2,
        "hand: one Adam step along the gradient of the norm loss", {"rtol": 1e-12},
        options={"losses": [0.5, 2.0], "lr": 0.1}, before=({"losses": [1.0, 2.0], "lr": 0.1},),
    ),
]


def run(row: Row) -> Tensor:
    fn = gw.WEIGHTINGS[row.name]
    init = getattr(gw, f"{row.name}_init", None)
    if init is None:
        return fn(row.G, **row.options)
    state = init(row.G.shape[-1])
    for options in row.before:
        options = dict(options)
        _, state = fn(options.pop("G", row.G), state, **options)
    w, _ = fn(row.G, state, **row.options)
    return w


def _param(row: Row):
    marks = () if row.xfail is None else pytest.mark.xfail(strict=True, reason=row.xfail)
    return pytest.param(row, id=row.id, marks=marks)


@pytest.mark.parametrize("row", [_param(row) for row in ROWS])
def test_expected_value(row: Row):
    w = run(row)
    actual = w if row.J is None else w @ row.J
    gap = float((actual - row.expected).abs().max())
    context = f"got {actual.tolist()}, expected {row.expected.tolist()}, gap {gap:.3g}"
    context += f" ({row.source})"
    if row.tol is None:
        assert torch.equal(actual, row.expected), context
    else:
        assert torch.allclose(actual, row.expected, **row.tol), context


def test_every_row_names_its_source():
    kinds = ("hand:", "peer:", "independent:")
    assert all(row.source.startswith(kinds) for row in ROWS)
    assert len({row.id for row in ROWS}) == len(ROWS)


def test_the_newton_reference_matches_the_two_task_closed_form():
    # the independent rows rely on balance_root; check it where the answer is known exactly
    assert torch.allclose(balance_root(G, 1.0), W_BALANCE, rtol=1e-14, atol=0.0)
