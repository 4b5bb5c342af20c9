"""DB-MTL: dual-balancing multi-task learning (loss scales by a log, gradient magnitudes)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._checks import check_gramian, check_vector
from ..solvers import to_work_dtype

__all__ = ["db_mtl"]


def db_mtl(G: Tensor, /, *, losses: Sequence[float] | Tensor) -> Tensor:
    r"""DB-MTL with $\beta = 0$ (Lin, Ye, Xu, Shi and Zhang, "Dual-Balancing for
    Multi-Task Learning", 2023, https://arxiv.org/abs/2308.12029).

    Loss-scale balancing trains on $\log L_i$, whose gradient is $h_i = g_i /
    L_i$; gradient-magnitude balancing then rescales every $h_i$ to the largest norm
    $\max_j \|h_j\|$ and sums them:

    $$
    J^\top w = \sum_i \frac{\max_j \|h_j\|}{\|h_i\|}\, h_i, \qquad
    w_i = \frac{\max_j \sqrt{G_{jj}} / L_j}{\sqrt{G_{ii}}}
    $$

    (``w_i = 0`` for a zero gradient, which the sum cannot use). The paper replaces each
    $h_i$ by an exponential moving average of the vectors (decay $\beta$), which is
    not a function of ``G``; $\beta = 0$ is the part that is.

    Args:
        G: Gramian of shape (m, m).
        losses: The m positive loss values $L_i$ (a sequence or a tensor).

    Returns:
        Weights of shape (m,), with ``G``'s dtype and device.

    Properties:
        Scale-invariant (``w(cG) = w(G)``), and so in the losses' common scale. Permutation-
        equivariant when the losses are permuted with ``G``. Not non-conflicting. Every task's
        term of the update has the same norm $\max_j \|h_j\|$.

    Deviations:
        LibMTL's ``DB_MTL`` takes ``log(L + 1e-8)``, keeps the moving average (its
        ``DB_beta``) and adds ``1e-8`` to the norms; here ``β = 0``, the losses must be
        positive, and a zero gradient gets weight 0 instead of ``1e8`` times the largest norm.
        TorchJD has no DB-MTL.

    Raises:
        ValueError: ``losses`` of the wrong length, not finite or not positive.

    Examples:
        >>> import torch, gramweight as gw
        >>> G = torch.tensor([[18.0, -22.0], [-22.0, 38.0]], dtype=torch.float64)
        >>> gw.db_mtl(G, losses=[0.5, 2.0])
        tensor([2.0000, 1.3765], dtype=torch.float64)
    """
    G = check_gramian(G).detach()
    m = G.shape[-1]
    Gw = to_work_dtype(G)
    L = check_vector(losses, "losses", length=m, positive=True, like=Gw)
    norms = Gw.diagonal().sqrt()
    top = (norms / L).amax()
    w = torch.where(norms > 0, top / torch.where(norms > 0, norms, 1.0), 0.0)
    return w.to(G.dtype)
