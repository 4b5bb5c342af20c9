"""Registry of Jacobian-space references and the check against them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ..._checks import message
from .._tree import tree_leaves

REFERENCES: dict[str, Callable[..., Any]] = {}
"""Jacobian-space reference implementations, by weighting name."""


def register_reference(name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering ``fn`` as the reference of the weighting called ``name``.

    A reference takes the Jacobian ``J`` (m, n) (and, for a stateful method, the state),
    plus the same keyword options as the weighting, and returns the update vector (n,)
    computed literally in Jacobian space as the paper writes it (stateful: ``(update,
    new_state)``).
    """

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in REFERENCES:
            raise ValueError(message("name", "a name without a reference yet", repr(name)))
        REFERENCES[name] = fn
        return fn

    return decorator


def _default_rtol(dtype: torch.dtype) -> float:
    return 1e-6 if dtype == torch.float64 else 1e-3


def check_against_reference(
    weighting: Callable[..., Any],
    reference: Callable[..., Any],
    J: Tensor,
    /,
    *args: Any,
    rtol: float | None = None,
    atol: float = 0.0,
    **kwargs: Any,
) -> Any:
    """Assert that ``weighting(J @ J.T, *args, **kwargs) @ J == reference(J, *args, **kwargs)``.

    The Gramian is formed in float64 and cast back to ``J``'s dtype. The two updates are
    compared in float64: ``‖u - r‖ <= atol + rtol * max(‖r‖, max_i ‖J_i‖)``, the second term
    being the natural scale of an update made of O(1) multiples of the gradients; ``rtol``
    defaults to 1e-6 in float64 and 1e-3 in float32. When both return ``(result, state)``,
    every tensor of the two new states must also agree to the same relative tolerance.

    Returns:
        The weighting's result, so that stateful checks can chain calls.

    Examples:
        >>> import torch, gramweight as gw
        >>> from gramweight.testing import REFERENCES, check_against_reference
        >>> J = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]], dtype=torch.float64)
        >>> check_against_reference(gw.mean, REFERENCES["mean"], J)
        tensor([0.5000, 0.5000], dtype=torch.float64)
    """
    rtol = _default_rtol(J.dtype) if rtol is None else rtol
    J64 = J.double()
    G = (J64 @ J64.T).to(J.dtype)
    result = weighting(G, *args, **kwargs)
    expected = reference(J, *args, **kwargs)
    w = result[0] if isinstance(result, tuple) else result
    ref = expected[0] if isinstance(expected, tuple) else expected
    update = w.double() @ J64
    ref = ref.double()
    if update.shape != ref.shape:
        raise AssertionError(f"update shape {tuple(update.shape)} != reference {tuple(ref.shape)}")
    scale = max(float(ref.norm()), float(J64.norm(dim=-1).max()) if J64.numel() else 0.0)
    err = float((update - ref).norm())
    if not err <= atol + rtol * scale:
        raise AssertionError(
            f"update differs from the reference by {err:.6g} (scale {scale:.3g}, rtol {rtol:g}):"
            f"\n  weighting: {update.tolist()}\n  reference: {ref.tolist()}\n  w = {w.tolist()}"
        )
    if isinstance(result, tuple) and isinstance(expected, tuple) and len(result) > 1:
        for (path, a), (_, b) in zip(tree_leaves(result[1:]), tree_leaves(expected[1:])):
            if isinstance(a, Tensor) and isinstance(b, Tensor):
                a64, b64 = a.double(), b.to(a.device).double()
                bound = atol + rtol * max(float(b64.abs().max()) if b64.numel() else 0.0, 1.0)
                if a64.shape != b64.shape or not float((a64 - b64).abs().max()) <= bound:
                    raise AssertionError(f"new state differs from the reference at state{path}")
    return result
