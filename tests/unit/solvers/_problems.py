"""Problems the solver tests share, and slow, obviously correct references."""

import itertools

import torch


def brute_force(A, c, simplex):
    """Minimise over every support: the best KKT-feasible equality-constrained solution."""
    m = c.shape[0]
    ones = torch.ones(m, dtype=torch.float64)
    best = None
    for size in range(1 if simplex else 0, m + 1):
        for S in itertools.combinations(range(m), size):
            x = torch.zeros(m, dtype=torch.float64)
            if S:
                idx = list(S)
                AS = A[idx][:, idx]
                if simplex:
                    K = torch.zeros(size + 1, size + 1, dtype=torch.float64)
                    K[:size, :size] = AS
                    K[:size, size] = K[size, :size] = 1.0
                    rhs = torch.cat([-c[idx], ones[:1]])
                    x[idx] = torch.linalg.lstsq(K, rhs.unsqueeze(1)).solution.squeeze(1)[:size]
                else:
                    x[idx] = torch.linalg.lstsq(AS, -c[idx].unsqueeze(1)).solution.squeeze(1)
            if bool((x >= -1e-9).all()) and (not simplex or abs(float(x.sum()) - 1) < 1e-9):
                f = float(0.5 * x @ A @ x + c @ x)
                if best is None or f < best:
                    best = f
    return best


def problems(seed, count=40):
    gen = torch.Generator().manual_seed(seed)
    for trial in range(count):
        m = int(torch.randint(1, 7, (1,), generator=gen))
        n = int(torch.randint(1, 8, (1,), generator=gen))
        J = torch.randn(m, n, generator=gen, dtype=torch.float64)
        if trial % 4 == 1 and m > 1:
            J[1] = -0.5 * J[0]
        if trial % 4 == 2 and m > 2:
            J[2] = J[0]
        if trial % 4 == 3:
            J[0] *= 1e3
        yield J @ J.T, torch.randn(3, m, generator=gen, dtype=torch.float64)


def structured(seed, count, m_max):
    """Gramians of random Jacobians with opposite, duplicated, zero and dominant rows, fewer
    columns than rows (singular), at scales from 1e-15 to 1e15."""
    gen = torch.Generator().manual_seed(seed)
    for trial in range(count):
        m = int(torch.randint(3, m_max + 1, (1,), generator=gen))
        n = int(torch.randint(1, 2 * m, (1,), generator=gen))
        J = torch.randn(m, n, generator=gen, dtype=torch.float64)
        J[1] = -0.5 * J[0] if trial % 5 == 1 else J[1]
        J[2] = J[0] if trial % 5 == 2 else J[2]
        J[-1] = 0.0 if trial % 5 == 3 else J[-1]
        J[0] = 1e4 * J[0] if trial % 5 == 4 else J[0]
        yield J @ J.T * 10.0 ** float(torch.randint(-15, 16, (1,), generator=gen))


def kkt_violation(A, C, X, simplex):
    """Largest violation of the KKT conditions (a certificate of optimality for convex QPs)."""
    mu = X @ A + C
    if simplex:
        nu = torch.stack([mu[i][X[i] > 0].mean() for i in range(X.shape[0])]).unsqueeze(1)
        mu = mu - nu
    stationarity = (mu * (X > 0)).abs().max()
    sign = (-mu).clamp_min(0).max()
    return max(float(stationarity), float(sign), float((-X).clamp_min(0).max()))
