"""The spectral closed forms (``gramweight.solvers._spectral``, the working dtype of
``._precision``) and IMTL-G, ConFIG and Aligned-MTL in every float dtype.

Expected values: the running example by hand; the large Gramians by an independent route in
float64 on the same rounded input (a linear solve for IMTL-G and ConFIG, a plain
eigendecomposition with no cut-off for Aligned-MTL), so that what is left is the precision the
method computes in for the input's dtype.
"""

import functools
import math

import pytest
import torch

import gramweight as gw
from gramweight._checks import check_gramian_scale
from gramweight.solvers import eigen_dtype, psd_spectrum, spectral_input, spectral_rtol

HALF = (torch.float16, torch.bfloat16)
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def spectrum(G):
    """The kept eigenvalues of G, as the closed forms see them."""
    G, top, _ = check_gramian_scale(G)
    lam, _ = psd_spectrum(spectral_input(G, top), spectral_rtol(G.shape[0], G.dtype))
    return [x for x in lam if x]


def test_eigen_dtype():
    # torch.linalg.eigh has no half kernels; float32 would be as coarse as a float32 input
    assert [eigen_dtype(d) for d in DTYPES] == [torch.float32] * 2 + [torch.float64] * 2


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m", [2, 3, 8, 64])
def test_cut_off_drops_rounded_zeros_and_keeps_the_rest(dtype, m):
    # G = U diag(s²) Uᵀ with U (m, r) orthonormal, s² in [1, 4]: rank r by construction, its
    # nonzero eigenvalues within a factor 4 (kept in every dtype, even bfloat16's 1 / (4 eps) =
    # 32), its m - r zeros moved by the rounding to dtype only
    gen = torch.Generator().manual_seed(m)
    for r in sorted({1, m // 2, m - 1}):
        for _ in range(5):
            U, _ = torch.linalg.qr(torch.randn(m, r, generator=gen, dtype=torch.float64))
            s2 = 1 + 3 * torch.rand(r, generator=gen, dtype=torch.float64)
            G = (U * s2) @ U.T
            assert len(spectrum(((G + G.T) / 2).to(dtype))) == r


# The running example: G = [[18, -22], [-22, 38]] (exact in every dtype), d = (√18, √38),
# trace 56, det 200, eigenvalues 28 ± √584 (condition number 13.6).
G2 = torch.tensor([[18.0, -22.0], [-22.0, 38.0]], dtype=torch.float64)
N0, N1 = math.sqrt(18.0), math.sqrt(38.0)
S, T = math.sqrt(200.0), math.sqrt(56.0 + 2.0 * math.sqrt(200.0))
# IMTL-G: w ∝ G⁻¹ d = (38 d_0 + 22 d_1, 22 d_0 + 18 d_1) / 200, normalised to sum 1.
_IMTL = (38 * N0 + 22 * N1, 22 * N0 + 18 * N1)
# ConFIG: C = D⁻¹GD⁻¹ = [[1, c], [c, 1]] has C⁻¹1 ∝ (1, 1), so v ∝ (1/d_0, 1/d_1); G v =
# (d_0 - 22/d_1, d_1 - 22/d_0), vᵀGv = 2 (1 + c) with c = -22 / (d_0 d_1), w = (1ᵀGv / vᵀGv) v.
_GV_SUM = N0 + N1 - 22.0 / N1 - 22.0 / N0
_VGV = 2.0 * (1.0 - 22.0 / (N0 * N1))
# Aligned-MTL: w = √λ_min G^(-1/2) (1/2, 1/2), with G^(1/2) = (G + s I) / t, s = √det,
# t = √(tr + 2s) (the 2×2 square root), hence G^(-1/2) = t (G + sI)⁻¹ (the derivation of
# test_expected_values.py).
_ALIGNED = math.sqrt(28 - math.sqrt(584)) * T / (2 * (400 + 56 * S))
HAND = {
    "imtl_g": [x / sum(_IMTL) for x in _IMTL],
    "config": [_GV_SUM / _VGV / N0, _GV_SUM / _VGV / N1],
    "aligned_mtl": [_ALIGNED * (60 + S), _ALIGNED * (40 + S)],
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", list(HAND))
def test_running_example_in_every_dtype(name, dtype):
    # The input is exact in every dtype, so the only errors are the working precision's
    # round-off (a few times the condition number 13.6 times eps_w: below 1e-5 in float32,
    # 1e-12 in float64) and the rounding of the result to dtype (at most eps/2 relative).
    w = gw.WEIGHTINGS[name](G2.to(dtype))
    assert w.dtype == dtype
    work = 1e-5 if dtype in HALF else 1e-12
    bound = torch.finfo(dtype).eps / 2 + work
    for got, want in zip(w.tolist(), HAND[name]):
        assert abs(got - want) <= bound * abs(want), (got, want)


@functools.cache
def well_conditioned(m):
    # A = 2 I + 0.48 N / √m (N standard normal): ‖N‖ ≈ 2 √m, so by Weyl A's singular values lie
    # in about [1.04, 2.96] and G = A Aᵀ has condition number about 8 (<= 10)
    gen = torch.Generator().manual_seed(m)
    A = 2 * torch.eye(m, dtype=torch.float64)
    A += 0.48 / m**0.5 * torch.randn(m, m, generator=gen, dtype=torch.float64)
    G = A @ A.T
    return (G + G.T) / 2


def float64_route(name, G):
    """The weights on the float64 matrix G by routes that share nothing with the closed forms:
    IMTL-G's w ∝ G⁻¹ d and ConFIG's v = D⁻¹ C⁻¹ 1 by linear solves, Aligned-MTL's
    √λ_min G^(-1/2) 1/m from torch.linalg.eigh, keeping every eigenvalue."""
    d = G.diagonal().sqrt()
    if name == "imtl_g":
        v = torch.linalg.solve(G, d)
        return v / v.sum()
    if name == "config":
        C = G / d.unsqueeze(1) / d
        v = torch.linalg.solve(C, torch.ones_like(d)) / d
        Gv = G @ v
        return (Gv.sum() / (v @ Gv)) * v
    lam, V = torch.linalg.eigh(G)
    return lam[0].sqrt() * (V @ (lam.rsqrt() * V.sum(dim=0))) / G.shape[0]


def check_large(name, dtype, m):
    G = well_conditioned(m).to(dtype)
    w = gw.WEIGHTINGS[name](G)
    assert w.dtype == dtype
    # float64 on the input as rounded to dtype: an independent check of the precision the
    # method computes in. What dtype allows: the result's rounding (at most eps/2 of ‖w‖) plus
    # the working precision's round-off, condition number × √m × eps_w at most: < 1e-4 in
    # float32 (the half dtypes), < 1e-12 in float64.
    expected = float64_route(name, G.double())
    work = 1e-4 if dtype in HALF else 1e-12
    err = float((w.double() - expected).norm() / expected.norm())
    assert err <= torch.finfo(dtype).eps / 2 + work, err


# float32 at m = 1024, where a cut-off of 1000 · m · eps32 (0.12) dropped eigenvalues of
# condition number 9; the half dtypes at m = 256 (their failure, a cut-off >= 1, did not depend
# on m; their working round-off grows like √m and is checked at m = 2048 below).
@pytest.mark.parametrize(
    ("dtype", "m"), [(torch.float32, 1024), (torch.float16, 256), (torch.bfloat16, 256)]
)
@pytest.mark.parametrize("name", list(HAND))
def test_large_m_as_accurate_as_the_dtype(name, dtype, m):
    check_large(name, dtype, m)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("name", list(HAND))
def test_large_m_as_accurate_as_the_dtype_m2048(name, dtype):
    check_large(name, dtype, 2048)


@pytest.mark.parametrize("name", list(HAND))
def test_large_m_float64(name):
    # float64 against the same float64 routes (their round-off and the method's, ~1e-13 here)
    G = well_conditioned(256)
    expected = float64_route(name, G)
    assert float((gw.WEIGHTINGS[name](G) - expected).norm() / expected.norm()) <= 1e-10
