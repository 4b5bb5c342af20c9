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


@pytest.mark.parametrize("n", [1024, 16])
def test_large_projections_satisfy_their_kkt_conditions(n):
    # UPGrad's m = 256 projections of float32 Gramians of random m x n Jacobians (n = 4m, the
    # benchmark's: the conjugate gradients converge; rank 16: they give up and the
    # factorisations finish), each checked against the KKT conditions of the problem as
    # upgrad's docstring states it, written here in float64: min ½vᵀĜv s.t. v >= u with
    # Ĝ = G / tr(G) + reg_eps·I. They are sufficient for optimality (a convex QP), so they
    # certify each row on their own: v >= u, λ = Ĝv >= 0, and λ_j = 0 where v_j > u_j.
    # Tolerance: the solver's contract. It stops when the multipliers of its equilibrated
    # problem (Ĝ scaled to a unit diagonal), which are λ_j / sqrt(Ĝ_jj), pass -1e-11 (times
    # (1 + ‖c‖∞)(1 + ‖x‖∞), about 1 here); 1e-10 · sqrt(Ĝ_jj) leaves a margin of 10 for the
    # round-off of the products of size 256 (1e-14 relative).
    m = 256
    gen = torch.Generator().manual_seed(0)
    J = torch.randn(m, n, generator=gen)
    G = J @ J.T
    U = torch.eye(m, dtype=torch.float64) / m
    V = dual_cone_weights(G, U, norm_eps=1e-4, reg_eps=1e-4)
    Gd = G.double()
    G_hat = Gd / Gd.trace() + 1e-4 * torch.eye(m, dtype=torch.float64)
    lam = V @ G_hat
    tol = 1e-10 * G_hat.diagonal().sqrt()
    assert bool((V >= U).all())
    assert bool((lam >= -tol).all())
    assert bool((lam.abs() <= tol)[V > U].all())
    # and upgrad's weights are the sum of the projections (pref = 1/m), in float32
    w = gw.upgrad(G)
    assert torch.allclose(w.double(), V.sum(dim=0), rtol=1e-6, atol=0)
