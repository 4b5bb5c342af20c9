"""Composing weights on the losses with any Gramian weighting."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import Tensor

from .._checks import check_gramian, check_vector


def compose(
    G: Tensor,
    D: Sequence[float] | Tensor,
    weighting: Callable[..., Any],
    /,
    *args: Any,
    **options: Any,
) -> Any:
    r"""A Gramian weighting applied to the losses rescaled by ``D``: ``D ⊙ weighting(D G D)``.

    Weighting the losses by $D$ (``(D * losses).sum()``) rescales the Jacobian to
    $\operatorname{diag}(D) J$, whose Gramian is $D G D$
    ($D_i G_{ij} D_j$). A weighting finds weights $w'$ on those rescaled rows;
    on the original rows they are $D \odot w'$, since
    $w'^\top \operatorname{diag}(D) J = (D \odot w')^\top J$. So any loss weighting of
    [`loss_weightings`][gramweight.loss_weightings] (or weights of your own) composes with any
    Gramian weighting in two lines, which this function is:

    ```python
    Gd = D[:, None] * G * D[None, :]
    w = D * gw.upgrad(Gd)            # the update is w @ J, or engine.backward(w)
    ```

    Args:
        G: Gramian of shape (m, m).
        D: The weights on the losses, non-negative, shape (m,).
        weighting: Any weighting ``G -> w`` (or ``(G, state) -> (w, state)``).
        *args: Passed on after the rescaled Gramian (a stateful weighting's state).
        **options: Passed on as keywords (``key``, ``losses``, ...).

    Returns:
        The weights on the original losses, shape (m,), with ``G``'s dtype; for a weighting
        that returns ``(w, state)``, ``(D ⊙ w, state)``.

    Raises:
        ValueError: ``G`` not a valid Gramian; ``D`` of the wrong length, not finite or
            negative.

    Examples:
        >>> import torch, gramweight as gw
        >>> J = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]], dtype=torch.float64)
        >>> D = gw.loss_weightings.geometric_mean(torch.tensor([1.0, 4.0], dtype=torch.float64))
        >>> w = gw.loss_weightings.compose(J @ J.T, D, gw.mgda)
        >>> w @ J
        tensor([0.1195, 0.4382, 0.4382], dtype=torch.float64)
        >>> Jd = D[:, None] * J  # the rescaled Jacobian: the same update
        >>> gw.mgda(Jd @ Jd.T) @ Jd
        tensor([0.1195, 0.4382, 0.4382], dtype=torch.float64)
    """
    G = check_gramian(G)
    d = check_vector(D, "D", length=G.shape[-1], non_negative=True, like=G)
    result = weighting(d.unsqueeze(1) * G * d.unsqueeze(0), *args, **options)
    if isinstance(result, tuple):
        return (d * result[0], *result[1:])
    return d * result
