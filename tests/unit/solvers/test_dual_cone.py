"""The dual-cone projection of UPGrad and DualProj (``gramweight.solvers._dual_cone``)."""

import math

import pytest
import torch

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
