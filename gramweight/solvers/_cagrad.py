"""CAGrad's inner problem: ``min bᵀw + κ sqrt(wᵀAw)`` over the simplex ``w >= 0, Σw = 1``,
as the simplex QP ``min ½ wᵀAw + ρ bᵀw`` at the ``ρ`` where ``κ ρ = sqrt(wᵀAw)``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ._box_qp import KKT_TOL, nonneg_qp
from ._face import JITTER, solve_blocks, solve_free

__all__ = ["cagrad_simplex"]


def cagrad_simplex(
    A: Tensor, b: Tensor, kappa: float, *, max_iters: int = 50, face_steps: int = 16
) -> Tensor:
    """The minimiser over the simplex of ``bᵀw + kappa · sqrt(wᵀAw)`` (``kappa > 0``).

    Its optimality conditions are those of ``min ½ wᵀAw + ρ bᵀw`` over the simplex at the
    ``ρ >= 0`` with ``kappa · ρ = sqrt(wᵀAw)``. On a fixed free set (face) the QP's solution and
    its multipliers are affine in ``ρ`` (one factorisation, two right-hand sides), so that
    scalar equation is a quadratic, solved exactly. Active-set steps move the free set until the
    solution at that root satisfies the KKT conditions, starting from the full set at the
    ``ρ`` of the mean gradient (``b = A 1 / m``, as in CAGrad); a face without a root moves
    ``ρ`` to its next breakpoint instead. Usually 2 to 4 steps, each exact on its face.

    If those steps do not settle within ``face_steps`` (they can cycle on singular problems),
    or the solution is at ``wᵀAw = 0`` (where the objective is not differentiable), a monotone
    search finishes: ``ρ`` kept in a shrinking bracket, the simplex QP re-solved at each ``ρ``
    (warm-started from the previous free set), the root of the face's quadratic taken when it
    stays inside the bracket.
    """
    m = A.shape[-1]
    tiny = torch.finfo(A.dtype).tiny
    # Equilibrate (w = S y, S = diag(A)^(-1/2)): every coordinate is judged at its own scale.
    d = A.diagonal()
    S = torch.where(d > 0, d.clamp_min(tiny).rsqrt(), 1.0)
    As = S.unsqueeze(1) * A * S
    bs = b * S
    b_sum, bs_max, d_max = torch.stack([b.sum(), bs.abs().max(), d.max()]).tolist()
    # A root where ‖g_w‖ = kappa ρ is zero up to round-off is not a solution of the equation:
    # there the objective is not differentiable (left to the search below)
    norm_floor = 1e-10 * math.sqrt(max(d_max, 0.0))
    # ρ = ‖g_w‖ / kappa: start from the norm of the mean gradient, ‖g_0‖ = sqrt(bᵀ1 / m)
    rho = math.sqrt(max(b_sum / m, 0.0)) / kappa
    free = torch.ones(m, dtype=torch.bool, device=A.device)
    for _ in range(face_steps):
        idx = free.nonzero().squeeze(1)
        A_col = As.index_select(1, idx)
        Ak = A_col.index_select(0, idx)
        sk, bk = S.index_select(0, idx), bs.index_select(0, idx)
        if idx.numel() == 0:
            break  # no free index left (round-off): leave it to the search below
        # the face's system for the two right-hand sides s and b (see solve_blocks: the simplex
        # row, the jitter that keeps duplicated rows solvable with equal shares, the refinement)
        P = solve_blocks(Ak, torch.stack([sk, bk], dim=1), sk, jitter=JITTER)[0]
        sp, sq = (sk @ P).tolist()
        if not sp > 0.0:
            break  # round-off: leave the face to the search below
        # the face's solution y(ρ) = y0 + ρ y1, the columns of Y (sᵀy0 = 1, sᵀy1 = 0)
        Y = P @ P.new_tensor([[1.0 / sp, sq / sp], [0.0, -1.0]])
        # yᵢᵀ As yⱼ and yᵢᵀ bs: ‖g_w‖² and the multiplier nu of sᵀy = 1 are polynomials in ρ
        Q = Y.mT @ torch.cat([Ak @ Y, bk.unsqueeze(1)], dim=1)
        (q00, q01, q02), (_, q11, q12) = Q.tolist()

        def nu_at(r: float) -> float:
            return q00 + 2.0 * r * q01 + r * r * q11 + r * (q02 + r * q12)

        # the root ρ > 0 of qa ρ² + qb ρ + qc = kappa² ρ² - ‖g_w(ρ)‖² (qa > 0 >= qc), without
        # cancellation; a face without one (or with ‖g_w‖ = 0 there) is not the optimal face:
        # keep ρ, to move the free set
        qa, qb, qc = kappa**2 - q11, -2.0 * q01, min(-q00, 0.0)
        root = math.sqrt(max(qb * qb - 4.0 * qa * qc, 0.0)) if qa > 0.0 else math.nan
        exact = False
        if root == root:
            new_rho = -2.0 * qc / (qb + root) if qb > 0 else (root - qb) / (2.0 * qa)
            if kappa * new_rho > norm_floor:
                rho, exact = new_rho, True
        y = torch.add(Y[:, 0], Y[:, 1], alpha=rho)
        # the multipliers of y >= 0: mu = As y + ρ bs - nu S (zero on the face up to the jitter)
        mu = torch.addmv(torch.add(bs * rho, S, alpha=-nu_at(rho)), A_col, y)
        y_min, y_sum, mu_min = torch.stack(
            [y.amin(), y.abs().sum(), torch.where(free, math.inf, mu).amin()]
        ).tolist()
        # Tolerances relative to the terms of mu themselves (|As_ij| <= 1, so |As y| <= ‖y‖₁):
        # divided by ρ, they are the multipliers of the original problem, which must be judged
        # at their own scale even when ρ and ‖g_w‖ are tiny (a gradient of norm 1e-12 is not
        # the minimiser just because it is nearly 0).
        ok = y_min >= -KKT_TOL * y_sum and mu_min >= -KKT_TOL * (rho * bs_max + y_sum)
        # a free set that reproduces itself satisfies the KKT conditions up to round-off
        same = y_min > 0.0 and mu_min >= 0.0
        if exact and (ok or same):
            w = torch.zeros_like(b).index_copy_(0, idx, y.clamp_min(0.0) * sk)
            return w / w.sum()
        if same:
            # The face is optimal for the QP at this ρ but holds no root of the equation: move ρ
            # towards it (up where kappa ρ < ‖g_w‖) to the first breakpoint, where an index
            # leaves or enters the face; the free set at ρ just past it is the next face.
            up = qa * rho * rho + qb * rho + qc < 0
            sign = 1.0 if up else -1.0
            dy = sign * Y[:, 1]
            nu_slope = nu_at(rho + 1.0) - nu_at(rho)
            dmu = sign * torch.addmv(torch.add(bs, S, alpha=-nu_slope), A_col, Y[:, 1])
            t = torch.cat([torch.where(dy < 0, -y / dy, math.inf),
                           torch.where(~free & (dmu < 0), -mu / dmu, math.inf)]).amin()
            step = float(t)
            if not step < math.inf:
                break
            step = (1.0 + 1e-9) * step
            rho = rho + step if up else max(rho - step, 0.5 * rho)
            y = torch.add(Y[:, 0], Y[:, 1], alpha=rho)
            mu = torch.addmv(torch.add(bs * rho, S, alpha=-nu_at(rho)), A_col, y)
        y_full = torch.zeros_like(b).index_copy_(0, idx, y)
        free = torch.where(free, y_full > 0, mu < 0)

    C01 = torch.stack([torch.zeros_like(b), b])
    # bracket: psi(rho) = kappa·rho - ‖g_w(rho)‖ is non-decreasing, psi(0) <= 0 and
    # psi(max‖g_i‖ / kappa) >= 0
    lo, hi = 0.0, float(A.diagonal().max().clamp_min(0).sqrt()) / kappa
    rho = hi / 2
    w = None
    for _ in range(max_iters):
        init = None if w is None else (w > 0).unsqueeze(0)
        w = nonneg_qp(A, (rho * b).unsqueeze(0), simplex=True, init_free=init)[0]
        norm = float((w @ A @ w).clamp_min(0).sqrt())
        psi = kappa * rho - norm
        if psi <= 0:
            lo = max(lo, rho)
        if psi >= 0:
            hi = min(hi, rho)
        if abs(psi) <= 1e-13 * (kappa * rho + norm) or hi - lo <= 1e-15 * hi:
            break
        # affine pieces on the current free set: w(r) = w0 + r w1
        free2 = (w > 0).unsqueeze(0).expand(2, m)
        W, _ = solve_free(A, C01, free2, simplex=torch.ones_like(b))
        w0, w1 = W[0], W[1] - W[0]
        qa = kappa**2 - float(w1 @ A @ w1)
        qb = -2.0 * float(w0 @ A @ w1)
        qc = -float(w0 @ A @ w0)
        new = math.nan
        if abs(qa) > 1e-300:
            disc = qb * qb - 4 * qa * qc
            if disc >= 0:
                roots = [(-qb + s * math.sqrt(disc)) / (2 * qa) for s in (1.0, -1.0)]
                inside = [r for r in roots if lo <= r <= hi]
                if inside:
                    new = min(inside, key=lambda r: abs(r - rho))
        elif qb != 0:
            new = -qc / qb
        if not (lo <= new <= hi) or new == rho:
            new = (lo + hi) / 2 if new != rho else new
            if new == rho:
                break
        rho = new
    return w
