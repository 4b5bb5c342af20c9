"""The face systems of the QPs (``gramweight.solvers._face``)."""

import pytest
import torch

from gramweight.solvers import _face, nonneg_qp
from gramweight.solvers._face import solve_free

from ._problems import kkt_violation


def test_solve_free_with_empty_free_set_is_zero():
    A = torch.eye(3, dtype=torch.float64)
    x, nu = solve_free(A, torch.ones(2, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.bool), simplex=None)
    assert torch.equal(x, torch.zeros(2, 3, dtype=torch.float64)) and torch.equal(nu, torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize(
    ("chunk_bytes", "gather_bytes", "step_bytes"),
    [(1 << 22, 1 << 26, 1 << 30), (1 << 12, 1 << 12, 1 << 12), (1 << 12, 1 << 18, 1 << 16)],
)
def test_definite_path_in_chunks_and_ill_conditioned(
    monkeypatch, chunk_bytes, gather_bytes, step_bytes
):
    # the both-sides factorisation of large definite problems, in one batch or in many
    # chunks (gathered in one batch or several; the rows of a step, and of the gathered
    # solves of the non-definite comparison, in one batch or several), with the refinement
    # that an ill-conditioned matrix (reg 1e-8) calls for
    monkeypatch.setattr(_face, "_BLOCK_BYTES", chunk_bytes)
    monkeypatch.setattr(_face, "_GATHER_BYTES", gather_bytes)
    monkeypatch.setattr(_face, "STEP_BYTES", step_bytes)
    gen = torch.Generator().manual_seed(13)
    for m, n, reg in ((64, 256, 1e-4), (70, 20, 1e-8), (50, 49, 1e-6)):
        J = torch.randn(m, n, generator=gen, dtype=torch.float64)
        J[0] *= 1e3
        A = J @ J.T / (J * J).sum() + reg * torch.eye(m, dtype=torch.float64)
        C = (torch.rand(m, m, generator=gen, dtype=torch.float64) * torch.eye(m)) @ A
        X = nonneg_qp(A, C, definite=True)
        assert kkt_violation(A, C, X, simplex=False) < 1e-12
        assert torch.allclose(X @ A, nonneg_qp(A, C) @ A, rtol=0, atol=1e-10)
