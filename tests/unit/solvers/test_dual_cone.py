"""The dual-cone projection of UPGrad and DualProj (``gramweight.solvers._dual_cone``)."""

import math

import pytest
import torch

import gramweight as gw
import gramweight._host as host
from gramweight.solvers import dual_cone_weights

from ._problems import problems, structured


def test_dual_cone_projection_is_feasible_and_optimal():
    for G, R in problems(2):
        U = R.abs()
        V = dual_cone_weights(G, U, norm_eps=0.0, reg_eps=0.0)
        assert bool((V >= U - 1e-12).all())
        scale = float(G.abs().max()) + 1e-300
        assert float((V @ G).min()) >= -1e-9 * scale * float(V.abs().sum(dim=1).max())
        # complementarity: wherever v_j > u_j the constraint is tight
        slack = (V - U) * (V @ G)
        assert float(slack.abs().max()) <= 1e-8 * scale * (1 + float(V.abs().max())) ** 2


@pytest.mark.parametrize("reg_eps", [0.0, 1e-4])
@pytest.mark.parametrize("norm_eps", [0.0, 1e-4])
def test_dual_cone_weights_paths_agree(monkeypatch, reg_eps, norm_eps):
    gramians = [*structured(14, 40, 10), torch.zeros(3, 3, dtype=torch.float64)]
    for G in gramians:
        m = G.shape[0]
        U = torch.eye(m, dtype=torch.float64) / m
        monkeypatch.setattr(host, "FLOAT_OPS_PER_TENSOR_OP", math.inf)
        V_h = dual_cone_weights(G, U, norm_eps=norm_eps, reg_eps=reg_eps)
        with host.disabled():
            V_t = dual_cone_weights(G, U, norm_eps=norm_eps, reg_eps=reg_eps)
        scale = float(G.abs().max()) + 1e-300
        assert bool((V_h >= U).all()) and bool((V_t >= U).all())
        atol = 1e-9 * scale * (1 + float(V_t.abs().max()))
        assert torch.allclose(V_h @ G, V_t @ G, rtol=0, atol=atol)
        if reg_eps == 0.0 and norm_eps == 0.0:
            for V in (V_h, V_t):
                assert float((V @ G).min()) >= -1e-9 * scale * float(V.abs().sum(dim=1).max())


@pytest.mark.parametrize(("m", "n"), [(256, 1024), (160, 16)])
def test_large_projections_satisfy_their_kkt_conditions(m, n):
    # UPGrad's m projections of float32 Gramians of random m x n Jacobians (n = 4m, the
    # benchmark's: the conjugate gradients converge; rank 16: they give up and the
    # factorisations finish), each
    # checked against the KKT conditions of the problem as upgrad's docstring states it,
    # written here in float64: min vᵀĜv s.t. v >= u with Ĝ = G / tr(G) + reg_eps·I. They are
    # sufficient for optimality (a convex QP), so they certify each row on their own: v >= u,
    # λ = Ĝv >= 0 and λ_j (v_j - u_j) = 0. Tolerance: the solver stops at a KKT violation of
    # 1e-11 relative to each equilibrated row's scale; Ĝ's diagonal varies by a factor of
    # about 2 here, so 1e-10 relative to max(diag Ĝ) · max|v| leaves a margin of 10 for that
    # rescaling and for the round-off of the products of size m (1e-14).
    gen = torch.Generator().manual_seed(0)
    J = torch.randn(m, n, generator=gen)
    G = J @ J.T
    U = torch.eye(m, dtype=torch.float64) / m
    V = dual_cone_weights(G, U, norm_eps=1e-4, reg_eps=1e-4)
    Gd = G.double()
    G_hat = Gd / Gd.trace() + 1e-4 * torch.eye(m, dtype=torch.float64)
    lam = V @ G_hat
    v_max = V.abs().amax(dim=1, keepdim=True)
    scale = float(G_hat.diagonal().max()) * v_max
    assert bool((V >= U).all())
    assert float((-lam / scale).max()) <= 1e-10
    assert float(((V - U) * lam / (scale * v_max)).abs().max()) <= 1e-10
    # and upgrad's weights are the sum of the projections (pref = 1/m): float32 output
    w = gw.upgrad(G)
    assert torch.allclose(w.double(), V.sum(dim=0), rtol=1e-6, atol=0)
