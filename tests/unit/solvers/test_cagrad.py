"""CAGrad's inner problem (``gramweight.solvers._cagrad``)."""

import torch

from gramweight.solvers import cagrad_simplex


def test_cagrad_simplex_against_a_grid():
    G = torch.tensor([[1.0, -0.6, 0.1], [-0.6, 2.0, -0.4], [0.1, -0.4, 0.5]], dtype=torch.float64)
    b = G @ torch.full((3,), 1 / 3, dtype=torch.float64)
    for kappa in (0.05, 0.3, 1.0):
        w = cagrad_simplex(G, b, kappa)

        def f(v):
            return float(b @ v) + kappa * float((v @ G @ v).clamp_min(0).sqrt())

        grid = [
            torch.tensor([a / 200, c / 200, 1 - (a + c) / 200], dtype=torch.float64)
            for a in range(201)
            for c in range(201 - a)
        ]
        assert f(w) <= min(f(v) for v in grid) + 1e-12
        assert abs(float(w.sum()) - 1) < 1e-12 and bool((w >= 0).all())


def _cagrad_problems():
    """(name, A, b, kappa) as CAGrad builds them, on generic (full-rank or not), duplicated,
    opposite and badly scaled Gramians, for several radii."""
    gen = torch.Generator().manual_seed(0)
    for m, rank, c in [(2, 2, 0.5), (5, 5, 0.5), (9, 3, 0.5), (30, 30, 0.5), (30, 12, 1.0),
                       (31, 26, 0.5), (70, 70, 0.5), (70, 70, 3.0), (120, 40, 0.2)]:
        J = torch.randn(m, rank, generator=gen, dtype=torch.float64) @ torch.randn(
            rank, 4 * m, generator=gen, dtype=torch.float64
        )
        variants = {
            "plain" if rank < m else "full_rank": J,
            "duplicated": torch.cat([J[: m // 2], J[: m - m // 2]]),
        }
        opposite = J.clone()
        opposite[0] = -J[1]  # 0 in the hull: a face holds a root at ‖g_w‖ = 0, not the optimum
        variants["opposite"] = opposite
        scales = torch.logspace(-6, 6, m, dtype=torch.float64)
        variants["row_scales"] = J * scales[torch.randperm(m, generator=gen)].unsqueeze(1)
        for name, JJ in variants.items():
            G = JJ @ JJ.T
            A = G / G.trace()
            b = A @ torch.full((m,), 1 / m, dtype=torch.float64)
            kappa = c * float(b.sum() / m) ** 0.5
            if kappa > 1e-12:  # (cagrad returns the mean when g_0 = 0)
                yield name, A, b, kappa


def _cagrad_objective(A, b, kappa, w):
    return float(b @ w) + kappa * float((w @ A @ w).clamp_min(0).sqrt())


def test_cagrad_simplex_face_steps_agree_with_the_search():
    # the active-set steps on the exact face equation against the bracketing search alone
    # (face_steps=0): the steps' answer is at least as good, and satisfies the KKT conditions
    for name, A, b, kappa in _cagrad_problems():
        w = cagrad_simplex(A, b, kappa)
        w_search = cagrad_simplex(A, b, kappa, face_steps=0)
        if name == "full_rank":  # the steps alone settle (no search: max_iters=0)
            w_steps = cagrad_simplex(A, b, kappa, max_iters=0)
            assert w_steps is not None and torch.equal(w_steps, w)
        assert bool((w >= 0).all()) and abs(float(w.sum()) - 1) < 1e-12
        f, f_search = (_cagrad_objective(A, b, kappa, v) for v in (w, w_search))
        assert f <= f_search + 1e-12 * (abs(f_search) + kappa)
        # the KKT conditions: b + kappa A w / ‖g_w‖ - nu >= 0, = 0 where w > 0 (where g_w = 0
        # the objective is not differentiable: then only the objective is compared). With row
        # norms spread over 1e12, some problems go to the search, whose multipliers are only
        # accurate to about 1e-4 of the gradient's scale there: only the objective is compared.
        norm = float((w @ A @ w).sqrt())
        if norm < 1e-9 or name == "row_scales":
            continue
        grad = b + kappa * (A @ w) / norm
        nu = float(grad @ w)
        scale = float(b.abs().max()) + kappa * float((A @ w).abs().max()) / norm
        assert float((grad - nu).min()) >= -1e-12 * scale
        assert float(((grad - nu) * w).abs().max()) <= 1e-12 * scale
