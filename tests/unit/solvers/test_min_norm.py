"""MGDA's min-norm point (``gramweight.solvers._min_norm``)."""

import math

import torch

import gramweight._host as host
from gramweight.solvers import min_norm_simplex

from ._problems import brute_force, problems, structured


def test_min_norm_simplex_against_brute_force():
    for G, _ in problems(3):
        w = min_norm_simplex(G)
        best = brute_force(G / G.diagonal().max(), torch.zeros(G.shape[0], dtype=torch.float64), True)
        assert float(0.5 * w @ G @ w) / float(G.diagonal().max()) <= best + 1e-10


def test_min_norm_simplex_paths_agree(monkeypatch):
    for G in structured(15, 40, 14):
        monkeypatch.setattr(host, "FLOAT_OPS_PER_TENSOR_OP", math.inf)
        w_h = min_norm_simplex(G)
        with host.disabled():
            w_t = min_norm_simplex(G)
        scale = float(G.diagonal().max())
        for w in (w_h, w_t):
            assert abs(float(w.sum()) - 1) < 1e-12 and bool((w >= 0).all())
            # the min-norm property: every (G w)_j >= wᵀ G w (up to round-off)
            assert float((G @ w).min() - w @ G @ w) >= -1e-9 * scale
        assert abs(float(w_h @ G @ w_h - w_t @ G @ w_t)) <= 1e-10 * scale
