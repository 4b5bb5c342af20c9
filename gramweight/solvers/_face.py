"""The linear system of one face of the box and simplex QPs: on the free indices ``F`` (the
others held at 0), ``min ½ xᵀAx + cᵀx`` (with the simplex row also ``sᵀx = 1``) is
``A_FF x_F + c_F = ν s_F, s_Fᵀ x_F = 1``.

It is solved here once per representation: batched tensors (`solve_blocks`, on blocks
either masked to m x m, `solve_dense`, or gathered, `solve_free`;
`definite_solver` for regularised matrices), and Python floats (`solve_free_host`).
Both representations use the same three devices:

- a Tikhonov term (the jitter, relative to the largest diagonal entry) keeps the blocks of
  singular matrices (rank-deficient, duplicated or zero rows) solvable; a block that round-off
  makes indefinite beyond it is factored again with a larger one;
- with the simplex row, ``ρ s sᵀ`` (``ρ = 1 / sᵀs``) is added to the block: on ``{sᵀx = 1}``
  it only adds a constant to the objective, but makes the block definite whenever the face
  problem is well posed (``A`` may be singular: then eliminating with ``A⁻¹`` directly would
  cancel huge numbers). The multiplier ``ν`` shifts by ``ρ``;
- one step of iterative refinement against the block without the jitter removes the jitter's
  first-order effect (the error shrinks from ``jitter/λ`` to ``(jitter/λ)²``).
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable

import torch
from torch import Tensor

__all__ = [
    "JITTER",
    "STEP_BYTES",
    "definite_solver",
    "pad_scale",
    "solve_blocks",
    "solve_dense",
    "solve_free",
    "solve_free_host",
]

# Relative Tikhonov term added to the blocks. It keeps the systems of singular Gramians
# solvable and moves the solution by a relative 1e-10 at most, far below the 1e-6 the
# non-conflicting property allows.
JITTER = 1e-10
# The larger term of a block that round-off made indefinite beyond JITTER.
_RETRY_JITTER = 1e-7
# Largest intermediate of the gathers that build the blocks of large problems (the rows k x m
# of each block before its columns are picked): the rows are processed in batches below it.
# Small batches cost more than they save (each fresh multi-megabyte intermediate is paid in
# page faults); one batch would hold b·k·m numbers (over 500 MB for m = 512).
_GATHER_BYTES = 16 << 20
# Most bytes the gathered blocks (or their factors) of one batch of rows may fill: the face
# solves of large problems go through their rows in batches below it, so that their memory
# stays this plus a few m x m matrices whatever m (every row's block at once would take
# b·k² numbers: 8 GB for 2048 rows with k = 1024).
STEP_BYTES = 64 << 20
# Size of the batches of blocks factored at once: a batched factorisation of large blocks runs
# markedly slower once they no longer fit in the cache.
_BLOCK_BYTES = 1 << 20


def cholesky_solve(L: Tensor, r: Tensor) -> Tensor:
    """``(L Lᵀ)⁻¹ r`` by two triangular solves (several times cheaper than
    ``torch.cholesky_solve`` on small batched systems, which copies its operands)."""
    return torch.linalg.solve_triangular(
        L.mT, torch.linalg.solve_triangular(L, r, upper=False), upper=True
    )


def solve_blocks(
    M: Tensor, R: Tensor, s: Tensor | None, *, jitter: float, scale: Tensor | float = 1.0
) -> tuple[Tensor, Tensor | None]:
    """Solve ``(M + ρ s sᵀ) Z = R`` for every block of a batch (or for one block), with
    ``ρ = 1 / sᵀs``.

    Args:
        M: The blocks (..., k, k): free blocks, with ``scale`` times the identity on the
            indices that are not free (padding); overwritten when ``s`` is None.
        R: Right-hand sides (..., k, r).
        s: The simplex row of each block (..., k), zero off the free indices; None for the box.
        jitter: The Tikhonov term relative to ``scale``. 0 when the caller guarantees definite
            blocks: then no jitter, no second factorisation and no refinement.
        scale: The largest diagonal entry of the matrix the blocks come from.

    Returns:
        ``Z`` (..., k, r) and ``ρ`` (...) (None without ``s``).
    """
    rho = None
    if s is not None:
        rho = torch.linalg.vecdot(s, s).clamp_min_(torch.finfo(M.dtype).tiny).reciprocal_()
        M = torch.addcmul(M, (rho.unsqueeze(-1) * s).unsqueeze(-1), s.unsqueeze(-2))
    if not jitter:
        return cholesky_solve(torch.linalg.cholesky_ex(M)[0], R), rho
    jit: Tensor | float = jitter * scale
    M.diagonal(dim1=-2, dim2=-1).add_(jit)
    L, info = torch.linalg.cholesky_ex(M)
    if bool(info.any()):
        extra = (_RETRY_JITTER * scale) * (info > 0).to(M.dtype)
        M.diagonal(dim1=-2, dim2=-1).add_(extra.unsqueeze(-1))
        jit = (jit + extra)[..., None, None]
        L, _ = torch.linalg.cholesky_ex(M)
    Z = cholesky_solve(L, R)
    return Z + cholesky_solve(L, R - (M @ Z - jit * Z)), rho


def _on_face(Z: Tensor, s: Tensor | None, rho: Tensor | None) -> tuple[Tensor, Tensor | None]:
    """The face solutions and the multipliers ``ν`` of the sum from the solves ``Z`` of
    `solve_blocks` with ``R = [-c, s]`` (box: ``R = -c``, and no ``ν``)."""
    if s is None:
        return Z[..., 0], None
    z, a = Z[..., 0], Z[..., 1]
    denom = (a * s).sum(dim=1)
    nu = (1.0 - (z * s).sum(dim=1)) / torch.where(denom > 0, denom, 1.0)
    return torch.addcmul(z, nu.unsqueeze(1), a), nu - rho


def solve_dense(
    A: Tensor, C: Tensor, free: Tensor, s: Tensor | None, jitter: float
) -> tuple[Tensor, Tensor | None]:
    """Minimise ``½ xᵀAx + cᵀx`` for every row ``c`` of ``C`` with ``x`` zero off ``free``
    (with ``s``: also ``sᵀx = 1``), each row's system taken as one m x m matrix: its free block,
    with the identity on its bound indices (no gathers, for small m). ``A`` has a unit or zero
    diagonal (the jitter is relative to 1).

    Returns:
        ``x`` (b, m) and the multipliers ``ν`` (b,) of the sum (None without ``s``).
    """
    f = free.to(C.dtype)
    M = A * (f.unsqueeze(2) * f.unsqueeze(1))
    M.diagonal(dim1=1, dim2=2).add_(1.0 - f)
    R = (C * f).neg_().unsqueeze(2)
    sf = None
    if s is not None:
        sf = s * f
        R = torch.cat([R, sf.unsqueeze(2)], dim=2)
    Z, rho = solve_blocks(M, R, sf, jitter=jitter)
    return _on_face(Z, sf, rho)


def solve_free(
    A: Tensor,
    C: Tensor,
    free: Tensor,
    *,
    simplex: Tensor | None,
    _padded: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Minimise ``½ xᵀAx + cᵀx`` for every row ``c`` of ``C`` with ``x`` zero off ``free``,
    each row's free block gathered (for large m, or a matrix of any diagonal).

    With ``simplex`` (a positive vector ``s`` of length m), also subject to ``sᵀx = 1`` (then
    ``free`` must be non-empty per row).

    Returns:
        ``x`` of shape (b, m) and the multiplier ``nu`` of the sum constraint, of shape (b,)
        (zeros without ``simplex``), such that ``(A x + c - nu s)_F = 0`` up to the jitter.

    ``_padded`` (internal): ``(A padded with a zero row and column, its scale)`` from
    `pad_scale`, when the caller solves with the same ``A`` repeatedly.
    """
    b, m = C.shape
    x = torch.zeros_like(C)
    nu = torch.zeros(b, dtype=C.dtype, device=C.device)
    if b == 1:
        # One row (MGDA, CAGrad): its free indices need no sorting and no padding.
        idx = free[0].nonzero().squeeze(1)
        k = idx.numel()
        if k == 0:
            return x, nu
        if _padded is not None:
            scale = _padded[1]
        else:
            scale = A.diagonal().abs().max()
            scale = torch.where(scale > 0, scale, 1.0)
        Ak = A.index_select(0, idx).index_select(1, idx).unsqueeze(0)
        idx = idx.unsqueeze(0)
        validf = None
    else:
        counts = free.sum(dim=1)
        k = int(counts.max()) if b > 0 else 0
        if k == 0:
            return x, nu
        rows = max(1, STEP_BYTES // (k * (k + m + 1) * C.element_size()))
        if b > rows:
            # the blocks of every row and the rows they are gathered from would exceed
            # STEP_BYTES: batches of rows
            parts = [
                solve_free(
                    A, C[i : i + rows], free[i : i + rows], simplex=simplex, _padded=_padded
                )
                for i in range(0, b, rows)
            ]
            return torch.cat([x for x, _ in parts]), torch.cat([nu for _, nu in parts])
        # Gather each row's free indices first (a stable sort keeps their order), padded to k
        # with the index m of an extra zero row and column of A.
        order = torch.argsort((~free).to(torch.int8), dim=1, stable=True)
        valid = torch.arange(k, device=C.device).unsqueeze(0) < counts.unsqueeze(1)
        validf = valid.to(C.dtype)
        idx = torch.where(valid, order[:, :k], m)
        A_pad, scale = _padded if _padded is not None else pad_scale(A)
        Ak = A_pad.index_select(0, idx.reshape(-1)).view(b, k, m + 1).gather(
            2, idx.unsqueeze(1).expand(b, k, k)
        )
        Ak.diagonal(dim1=1, dim2=2).add_((1.0 - validf) * scale)  # identity on the padding
    # the free indices, clamped into range (the padding's values are masked by validf)
    idx_in = idx if validf is None else idx.clamp_max(m - 1)
    Ck = C.gather(1, idx_in)
    R = -(Ck if validf is None else Ck * validf).unsqueeze(2)
    sk = None
    if simplex is not None:
        sk = simplex[idx_in] if validf is None else simplex[idx_in] * validf
        R = torch.cat([R, sk.unsqueeze(2)], dim=2)
    Z, rho = solve_blocks(Ak, R, sk, jitter=JITTER, scale=scale)
    xk, nu_k = _on_face(Z, sk, rho)
    nu = nu if nu_k is None else nu_k
    if validf is None:
        return x.scatter(1, idx, xk), nu
    x = torch.zeros(b, m + 1, dtype=C.dtype, device=C.device).scatter(1, idx, xk * validf)[:, :m]
    return x, nu


def pad_scale(A: Tensor) -> tuple[Tensor, Tensor]:
    """``A`` with an extra zero row and column (the target of padded indices in
    `solve_free`) and the scale of its diagonal (1 for a zero matrix)."""
    scale = A.diagonal().abs().max()
    return torch.nn.functional.pad(A, (0, 1, 0, 1)), torch.where(scale > 0, scale, 1.0)


def definite_solver(
    A_pad: Tensor, with_inverse: Callable[[], tuple[Tensor, Tensor]], free: Tensor
) -> Callable[[Tensor], Tensor]:
    """For the free sets ``free`` (b, m), the map ``r -> x`` with ``x_F = (A_FF)⁻¹ r_F`` and
    ``x_B = 0`` (``r`` zero off ``F``), from one factorisation per row (batched).

    Each row factors the smaller of its two blocks: its free block of ``A``, or its bound
    block of ``H = A⁻¹``, through the complement ``(A_FF)⁻¹ = H_FF - H_FB (H_BB)⁻¹ H_BF``.
    ``A_pad`` is ``A`` with a zero row and column; ``with_inverse()`` gives ``H`` and ``A_pad``
    above ``H`` padded alike, and is only called when some row needs ``H``."""
    b, m = free.shape
    nf = free.sum(dim=1)
    side = nf > m - nf  # True: the bound block of H
    small = free ^ side.unsqueeze(1)
    counts = torch.where(side, m - nf, nf)
    k = int(counts.max())
    H, AH = with_inverse() if bool(side.any()) else (None, A_pad)
    freef = free.to(A_pad.dtype)
    if k == 0:
        # every row is all bound (x = 0) or all free (x = H r)
        return lambda r: torch.where(side.unsqueeze(1), r @ H, 0.0) if H is not None else r * 0.0
    # each row's indices of the small side first (a stable sort keeps their order), padded to
    # k with the index m of the zero row and column
    order = torch.argsort((~small).to(torch.int8), dim=1, stable=True)[:, :k]
    valid = torch.arange(k, device=free.device).unsqueeze(0) < counts.unsqueeze(1)
    idx = torch.where(valid, order, m)
    rows = idx + side.unsqueeze(1).to(idx.dtype) * (m + 1)  # rows of AH: of A, or of H
    pad = (~valid).to(A_pad.dtype)
    # rows gathered in batches of at most _GATHER_BYTES, factored in batches of _BLOCK_BYTES
    size = A_pad.element_size()
    chunk = max(1, _BLOCK_BYTES // (k * k * size))
    gather_chunk = chunk * max(1, _GATHER_BYTES // (chunk * k * (m + 1) * size))
    factors = []
    for g in range(0, b, gather_chunk):
        idx_g = idx[g : g + gather_chunk]
        n = idx_g.shape[0]
        blocks = AH.index_select(0, rows[g : g + gather_chunk].reshape(-1)).view(n, k, m + 1)
        blocks = blocks.gather(2, idx_g.unsqueeze(1).expand(n, k, k))
        blocks.diagonal(dim1=1, dim2=2).add_(pad[g : g + gather_chunk])  # identity on padding
        factors.extend(
            torch.linalg.cholesky_ex(blocks[i : i + chunk])[0] for i in range(0, n, chunk)
        )
    sidef = side.unsqueeze(1)

    def solve(r: Tensor) -> Tensor:
        y = r if H is None else torch.where(sidef, r @ H, r)
        rhs = torch.nn.functional.pad(y, (0, 1)).gather(1, idx).unsqueeze(2)
        z = torch.cat(
            [cholesky_solve(L, rhs[i : i + chunk]) for i, L in zip(range(0, b, chunk), factors)]
        )
        z = torch.zeros(b, m + 1, dtype=r.dtype, device=r.device).scatter(1, idx, z.squeeze(2))
        z = z[:, :m]
        return z if H is None else torch.where(sidef, (y - z @ H) * freef, z)

    return solve


# --- The same solve on Python floats, for the host twin of the QP ---------------------------


def _cholesky_host(M: list[list[float]], jitter: float) -> list[list[float]] | None:
    """Lower Cholesky factor (as rows of growing length) of ``M + jitter·I``, or None if a
    pivot is not positive."""
    L: list[list[float]] = []
    for i, Mi in enumerate(M):
        Li: list[float] = []
        for j in range(i):
            Lj = L[j]
            Li.append((Mi[j] - sum(map(operator.mul, Li, Lj))) / Lj[j])
        d = Mi[i] + jitter - sum(map(operator.mul, Li, Li))
        if not d > 0.0:
            return None
        Li.append(math.sqrt(d))
        L.append(Li)
    return L


def _cholesky_solve_host(L: list[list[float]], r: list[float]) -> list[float]:
    """``(L Lᵀ)⁻¹ r`` by forward and back substitution."""
    y: list[float] = []
    for Li, ri in zip(L, r):
        y.append((ri - sum(map(operator.mul, Li, y))) / Li[-1])
    for i in range(len(L) - 1, -1, -1):
        Li = L[i]
        yi = y[i] / Li[i]
        y[i] = yi
        for j in range(i):
            y[j] -= Li[j] * yi
    return y


def solve_free_host(
    A: list[list[float]], c: list[float], free: list[int], s: list[float] | None, jitter: float
) -> tuple[list[float], float] | None:
    """`solve_free` for one row on Python floats: the values on the free indices
    ``free`` (non-empty) and the multiplier ``nu``. None if the block cannot be factored even
    with the larger jitter."""
    M = [[row[j] for j in free] for row in (A[i] for i in free)]
    rho = 0.0
    if s is not None:
        sk = [s[i] for i in free]
        rho = 1.0 / sum(v * v for v in sk)
        M = [[a + rho * si * sj for a, sj in zip(row, sk)] for row, si in zip(M, sk)]
    L = _cholesky_host(M, jitter)
    if L is None:
        jitter += _RETRY_JITTER
        L = _cholesky_host(M, jitter)
        if L is None:
            return None

    def solve(r: list[float]) -> list[float]:
        z = _cholesky_solve_host(L, r)
        if jitter == 0.0:
            return z
        # refinement against the block without the jitter
        res = [ri - sum(map(operator.mul, row, z)) for ri, row in zip(r, M)]
        return [a + b for a, b in zip(z, _cholesky_solve_host(L, res))]

    z = solve([-c[i] for i in free])
    nu = 0.0
    if s is not None:
        a = solve(sk)
        denom = sum(map(operator.mul, a, sk))
        nu = (1.0 - sum(map(operator.mul, z, sk))) / (denom if denom > 0.0 else 1.0)
        z = [zi + nu * ai for zi, ai in zip(z, a)]
        nu -= rho
    return z, nu
