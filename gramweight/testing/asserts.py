"""Property checks usable on any weighting, ours or yours.

Each check takes the weighting and the arguments to call it with: ``weighting(G, *args,
**kwargs)``. A weighting may return the weights ``w`` or a tuple ``(w, state)`` (stateful
methods); only ``w`` is checked, except by [`assert_pure`][gramweight.testing.assert_pure], which
checks everything.

Updates are compared where they live: two weight vectors ``a`` and ``b`` give updates whose
difference has norm ``sqrt((a - b)ᵀ G (a - b))``, computed from ``G`` alone. This makes the
checks meaningful when ``G`` is singular and several weight vectors give the same update.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

from ._tree import tree_leaves, tree_map

__all__ = [
    "assert_non_conflicting",
    "assert_permutation_equivariant",
    "assert_pure",
    "assert_scale_invariant",
]


def _weights(result: Any) -> Tensor:
    return result[0] if isinstance(result, tuple) else result


def _update_distance(G: Tensor, a: Tensor, b: Tensor) -> tuple[float, float]:
    """``‖(a - b)ᵀJ‖`` and the natural scale ``sqrt(max G_ii) * max(‖a‖₁, ‖b‖₁)``."""
    G = G.double()
    d = (a.double() - b.double()).unsqueeze(-1)
    dist = float((d.mT @ G @ d).clamp_min(0).sqrt().max())
    scale = float(G.diagonal(dim1=-2, dim2=-1).amax().clamp_min(0).sqrt()) * max(
        float(a.double().abs().sum(-1).max()), float(b.double().abs().sum(-1).max()), 1e-300
    )
    return dist, scale


def assert_non_conflicting(
    weighting: Callable[..., Any], G: Tensor, /, *args: Any, rtol: float = 1e-6, **kwargs: Any
) -> Tensor:
    """Assert that the update ``wᵀJ`` conflicts with no gradient: ``G @ w >= -tol``.

    ``(G w)_i`` is the dot product of the update with the i-th gradient. The tolerance is
    ``rtol * max|G| * ‖w‖₁``, the round-off scale of that product.

    Returns:
        The weights, for further checks.

    Examples:
        >>> import torch, gramweight as gw
        >>> from gramweight.testing import assert_non_conflicting
        >>> G = torch.tensor([[1.0, 0.5], [0.5, 1.0]], dtype=torch.float64)
        >>> assert_non_conflicting(gw.mean, G)
        tensor([0.5000, 0.5000], dtype=torch.float64)
    """
    w = _weights(weighting(G, *args, **kwargs))
    Gw = (G.double() @ w.double().unsqueeze(-1)).squeeze(-1)
    tol = rtol * float(G.double().abs().max()) * float(w.double().abs().sum(-1).max())
    worst = float(Gw.min())
    if worst < -tol:
        raise AssertionError(
            f"the update conflicts with a gradient: min (G @ w) = {worst:.6g} < -{tol:.3g}"
            f" (G @ w = {Gw.tolist()}, w = {w.tolist()})"
        )
    return w


def assert_permutation_equivariant(
    weighting: Callable[..., Any],
    G: Tensor,
    /,
    *args: Any,
    rtol: float = 1e-6,
    permutation: Sequence[int] | Tensor | None = None,
    **kwargs: Any,
) -> None:
    """Assert that permuting the objectives permutes the weights' update accordingly.

    Checks ``w(P G Pᵀ) == P w(G)``, compared in update space (see the module docstring), with
    tolerance ``rtol`` times the natural scale of the update. ``permutation`` defaults to the
    reversal of the objectives. For a stateful weighting, pass a state that does not depend on
    the order of the objectives (a fresh ``_init``).
    """
    m = G.shape[-1]
    perm = (
        torch.arange(m - 1, -1, -1) if permutation is None else torch.as_tensor(permutation)
    ).to(G.device)
    w = _weights(weighting(G, *args, **kwargs))
    Gp = G[..., perm, :][..., :, perm]
    wp = _weights(weighting(Gp, *args, **kwargs))
    dist, scale = _update_distance(Gp, wp, w[..., perm])
    if not dist <= rtol * scale:
        raise AssertionError(
            f"not permutation-equivariant: updates differ by {dist:.6g} (scale {scale:.3g},"
            f" rtol {rtol:g}); w(G)[perm] = {w[..., perm].tolist()}, w(PGPᵀ) = {wp.tolist()}"
        )


def assert_scale_invariant(
    weighting: Callable[..., Any],
    G: Tensor,
    /,
    *args: Any,
    scales: Sequence[float] = (1e-3, 1e3),
    rtol: float = 1e-6,
    **kwargs: Any,
) -> None:
    """Assert that ``w(c G) == w(G)`` for every ``c`` in ``scales`` (compared in update space)."""
    w = _weights(weighting(G, *args, **kwargs))
    for c in scales:
        wc = _weights(weighting(G * c, *args, **kwargs))
        dist, scale = _update_distance(G, wc, w)
        if not dist <= rtol * scale:
            raise AssertionError(
                f"not scale-invariant at scale {c:g}: updates differ by {dist:.6g} (scale"
                f" {scale:.3g}, rtol {rtol:g}); w(G) = {w.tolist()}, w(cG) = {wc.tolist()}"
            )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return (
            a.dtype == b.dtype
            and a.shape == b.shape
            and a.device == b.device
            and bool(torch.equal(a, b) or torch.equal(a.isnan(), b.isnan()) and torch.equal(
                torch.nan_to_num(a), torch.nan_to_num(b)))
        )
    return type(a) is type(b) and a == b


def assert_pure(weighting: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """Assert that a call leaves its inputs bitwise unchanged and is repeatable bitwise.

    Calls ``weighting(*args, **kwargs)`` twice. Every tensor in the arguments (including inside
    tuples, lists, dicts and NamedTuple states) must be unchanged afterwards, and the two
    results must be equal bitwise, leaf by leaf.

    Returns:
        The first result.

    Examples:
        >>> import torch, gramweight as gw
        >>> from gramweight.testing import assert_pure
        >>> assert_pure(gw.random, torch.eye(2), key=3)
        tensor([0.6521, 0.3479])
    """
    before = tree_map(lambda t: t.detach().clone(), (args, kwargs))
    first = weighting(*args, **kwargs)
    second = weighting(*args, **kwargs)
    for (path, old), (_, new) in zip(tree_leaves(before), tree_leaves((args, kwargs))):
        if isinstance(old, Tensor) and not _same(old, new):
            raise AssertionError(f"the call modified its input at {path or 'argument'}")
    first_leaves, second_leaves = list(tree_leaves(first)), list(tree_leaves(second))
    if len(first_leaves) != len(second_leaves):
        raise AssertionError("two identical calls returned results of different structure")
    for (path, a), (_, b) in zip(first_leaves, second_leaves):
        if not _same(a, b):
            raise AssertionError(f"two identical calls differ at output{path}")
    return first
