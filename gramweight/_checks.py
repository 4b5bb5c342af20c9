"""Input validation shared by every public function.

Every error raised here uses one template:

```text
`<name>` must be <requirement>, got <what was given>.
```
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import Any

import torch
from torch import Tensor

from ._host import use_host

__all__ = [
    "KEY_MAX",
    "all_finite",
    "check_gramian",
    "check_gramian_scale",
    "check_key",
    "check_matrix",
    "check_number",
    "check_state",
    "check_vector",
    "format_shape",
    "message",
]


def message(name: str, requirement: str, got: str) -> str:
    """Build the one error message template of the library."""
    return f"`{name}` must be {requirement}, got {got}."


def format_shape(shape: Iterable[int]) -> str:
    """A shape as it appears in error messages: ``(3, 4)``, ``(3,)``."""
    dims = tuple(shape)
    return "(" + ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "") + ")"


# From this many entries on, the asymmetry pass reads a contiguous transpose.
_CONTIGUOUS_T_NUMEL = 1 << 16


def _roundoff_tol(dtype: torch.dtype) -> float:
    # Gramians accumulated over layers or in another order than ``J @ J.T`` differ from
    # their transpose by a few ulps of the largest entry; sqrt(eps) leaves ample room
    # for that while refusing anything visibly asymmetric.
    return math.sqrt(torch.finfo(dtype).eps)


def _check_float_tensor(t: Any, name: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(message(name, "a torch.Tensor", type(t).__name__))
    if not t.dtype.is_floating_point:
        raise TypeError(message(name, "a real floating-point tensor", f"dtype {t.dtype}"))


def check_matrix(M: Any, name: str = "M", *, batched: bool = False) -> Tensor:
    """Validate a real, finite, square matrix (or a stack of them when ``batched``).

    Unlike `check_gramian`, no symmetry is required (cross matrices ``J1 @ J2.T``).
    Returns ``M`` unchanged.
    """
    _check_float_tensor(M, name)
    if batched:
        if M.dim() < 2:
            raise ValueError(
                message(name, "a matrix of shape (..., m, m)", f"shape {format_shape(M.shape)}")
            )
    elif M.dim() != 2:
        raise ValueError(
            message(name, "a matrix of shape (m, m)", f"shape {format_shape(M.shape)}")
        )
    if M.shape[-1] != M.shape[-2]:
        raise ValueError(message(name, "a square matrix", f"shape {format_shape(M.shape)}"))
    if M.shape[-1] == 0:
        raise ValueError(message(name, "at least 1 x 1", f"shape {format_shape(M.shape)}"))
    if not all_finite(M):
        raise ValueError(message(name, "finite (no NaN or Inf)", "a non-finite entry"))
    return M


def all_finite(t: Tensor) -> bool:
    """Whether every entry of ``t`` is finite, in one host synchronisation (two at most)."""
    if t.numel() == 0:
        return True
    # A NaN or an infinity makes the sum non-finite: one reduction, much cheaper than
    # isfinite(t).all(). Only a sum that overflows from finite entries needs a second look
    # (min/max propagate NaN). (Reading a number off a graph would warn.)
    values = t.detach() if t.requires_grad else t
    extremes = [float(values.sum())]
    if not math.isfinite(extremes[0]):
        extremes = torch.stack(torch.aminmax(values)).tolist()
    return all(map(math.isfinite, extremes))


def _extremes(G: Tensor) -> tuple[float, float, float, float]:
    """``(min G, max G, max |G - Gᵀ|, min diag G)`` of a matrix, in one host synchronisation.

    A NaN or an infinity anywhere makes one of the first three non-finite.
    """
    # the host twin: about eight float operations per entry, against six tensor operations
    if use_host(G, 8 * G.numel(), 6):
        return _extremes_host(G)
    # (min and max propagate NaN)
    lo, hi = torch.aminmax(G)
    if G.numel() < _CONTIGUOUS_T_NUMEL and G.device.type == "cpu" and torch.equal(G, G.mT):
        # Exactly symmetric (as a product J @ J.T usually is): no asymmetry pass. A NaN is
        # never equal to itself, so a matrix with one takes the full path below.
        lo_, hi_, diag_ = torch.stack([lo, hi, G.diagonal().amin()]).tolist()
        return lo_, hi_, 0.0, diag_
    T = G.mT.contiguous() if G.numel() >= _CONTIGUOUS_T_NUMEL else G.mT
    asym = (G - T).abs().amax()
    return tuple(torch.stack([lo, hi, asym, G.diagonal().amin()]).tolist())


def _extremes_host(G: Tensor) -> tuple[float, float, float, float]:
    """The host twin of `_extremes`, from one copy of the entries to Python floats."""
    rows = G.tolist()
    flat = list(chain.from_iterable(rows))
    if not all(map(math.isfinite, flat)):
        return math.nan, math.nan, math.nan, math.nan
    # entry by entry against the transpose's (each pair twice; C-level loops only)
    asym = max(map(abs, map(operator.sub, flat, chain.from_iterable(zip(*rows)))))
    return min(flat), max(flat), asym, min(flat[:: len(rows) + 1])


def check_gramian(G: Any, name: str = "G", *, batched: bool = False) -> Tensor:
    """Validate a Gramian and return it symmetrised, with its diagonal clamped at 0.

    ``G`` must be a real floating-point tensor of shape (m, m) with m >= 1 (or (..., m, m)
    when ``batched``), finite, symmetric up to round-off and with a non-negative diagonal up
    to round-off. Round-off asymmetry and slightly negative diagonal entries are repaired,
    never refused; the input is not modified.

    Raises:
        TypeError: ``G`` is not a tensor, or its dtype is integer, boolean or complex.
        ValueError: wrong shape, NaN/Inf, clear asymmetry or clearly negative diagonal.
    """
    return _check_gramian(G, name, batched)[0]


def check_gramian_scale(G: Any, name: str = "G") -> tuple[Tensor, float, float]:
    """`check_gramian` of one matrix, detached from autograd, also returning its largest
    absolute entry and its smallest diagonal entry (after the repair, so >= 0) as Python
    floats, read in the same host synchronisation.

    The closed-form weightings normalise by the first and skip the zero-row guards when the
    second is positive, without another reduction or a test on the device.
    """
    S, scale, diag_min = _check_gramian(G, name, False)
    return (S.detach() if S.requires_grad else S), scale, max(diag_min, 0.0)


def _check_gramian(G: Any, name: str, batched: bool) -> tuple[Tensor, float, float]:
    _check_float_tensor(G, name)
    if batched:
        if G.dim() < 2:
            raise ValueError(
                message(name, "a matrix of shape (..., m, m)", f"shape {format_shape(G.shape)}")
            )
    elif G.dim() != 2:
        raise ValueError(
            message(name, "a matrix of shape (m, m)", f"shape {format_shape(G.shape)}")
        )
    if G.shape[-1] != G.shape[-2]:
        raise ValueError(message(name, "a square matrix", f"shape {format_shape(G.shape)}"))
    if G.shape[-1] == 0:
        raise ValueError(message(name, "at least 1 x 1", f"shape {format_shape(G.shape)}"))
    if G.numel() == 0:
        return G.clone(), 0.0, 0.0

    # All the checks reduce to a few numbers fetched in one host sync.
    tol = _roundoff_tol(G.dtype)
    if G.dim() == 2:
        lo_, hi_, asym_, diag_ = _extremes(G)
        if not (math.isfinite(lo_) and math.isfinite(hi_) and math.isfinite(asym_)):
            raise ValueError(message(name, "finite (no NaN or Inf)", "a non-finite entry"))
        scale_max = max(-lo_, hi_)
        asym_rel = asym_ / scale_max if scale_max > 0 else asym_
        diag_rel = diag_ / scale_max if scale_max > 0 else diag_
    else:
        # amin/amax propagate NaN, so a non-finite entry shows up as a non-finite extreme; a
        # contiguous transpose makes the asymmetry pass several times faster than a strided
        # one on large matrices (amin and amax separately: aminmax with a dim is slow on CPU).
        flat = G.reshape(*G.shape[:-2], -1)
        diff = flat - G.mT.contiguous().reshape(flat.shape)
        lo, hi = flat.amin(dim=-1), flat.amax(dim=-1)
        dlo, dhi = diff.amin(dim=-1), diff.amax(dim=-1)
        diag_min = G.diagonal(dim1=-2, dim2=-1).amin(dim=-1)
        scale = torch.maximum(-lo, hi)
        asym = torch.maximum(-dlo, dhi)
        safe = scale.clamp_min(torch.finfo(G.dtype).tiny)
        scale_max, asym_rel, diag_rel = torch.stack(
            [scale.amax(), (asym / safe).amax(), (diag_min / safe).amin()]
        ).tolist()
        diag_ = math.nan  # (not needed by the batched callers)
    if not math.isfinite(scale_max) or not math.isfinite(asym_rel):
        raise ValueError(message(name, "finite (no NaN or Inf)", "a non-finite entry"))
    if asym_rel > tol:
        raise ValueError(
            message(name, "symmetric up to round-off", f"a relative asymmetry of {asym_rel:.3g}")
        )
    if diag_rel < -tol:
        raise ValueError(
            message(name, "positive semi-definite (non-negative diagonal)",
                    f"diagonal entry {float(G.diagonal(dim1=-2, dim2=-1).min()):.6g}")
        )
    # Repairs cost extra operations, so they run only when something needs repairing.
    S = G if asym_rel == 0 else (G + G.mT) / 2
    if diag_rel < 0:
        S = S.diagonal_scatter(S.diagonal(dim1=-2, dim2=-1).clamp_min(0), dim1=-2, dim2=-1)
    return S, scale_max, diag_


def check_vector(
    v: Any,
    name: str,
    *,
    length: int | None = None,
    positive: bool = False,
    non_negative: bool = False,
    like: Tensor | None = None,
) -> Tensor:
    """Validate a 1-D finite vector and return it as a tensor (dtype/device of ``like``).

    A tensor comes back detached: no weighting is differentiable, so an option given as a
    tensor with a graph (the losses of a training step, a learned preference) must not carry
    it into the weights or a state."""
    if isinstance(v, Tensor):
        if v.is_complex() or not (v.dtype.is_floating_point or v.dtype in _INT_DTYPES):
            raise TypeError(message(name, "a real tensor", f"dtype {v.dtype}"))
        if v.dim() != 1:
            raise ValueError(message(name, "a 1-D vector", f"shape {format_shape(v.shape)}"))
        values = v.detach()
    elif isinstance(v, Sequence) and not isinstance(v, str):
        if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            raise TypeError(message(name, "a sequence of numbers or a tensor", repr(v)))
        values = None
    else:
        raise TypeError(message(name, "a sequence of numbers or a tensor", type(v).__name__))
    if length is not None and len(v) != length:
        raise ValueError(message(name, f"of length {length}", f"length {len(v)}"))
    # Python numbers are checked in Python; a tensor costs one host sync.
    floats = [float(x) for x in v] if values is None else values.double().tolist()
    if not all(math.isfinite(x) for x in floats):
        raise ValueError(message(name, "finite (no NaN or Inf)", "a non-finite entry"))
    if positive and not all(x > 0 for x in floats):
        raise ValueError(message(name, "positive", f"minimum {min(floats):.6g}"))
    if non_negative and not all(x >= 0 for x in floats):
        raise ValueError(message(name, "non-negative", f"minimum {min(floats):.6g}"))
    if values is None:
        dtype = like.dtype if like is not None else torch.get_default_dtype()
        return torch.tensor(floats, dtype=dtype, device=None if like is None else like.device)
    return values if like is None else values.to(dtype=like.dtype, device=like.device)


_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


# Keys seed torch.Generator().manual_seed, whose CPU generator keeps the seed modulo 2**63:
# every key in this range draws differently, and a key outside it would alias one inside
# (-1 draws as 2**63 - 1) or overflow.
KEY_MAX = 2**63 - 1


def check_key(key: Any, name: str = "key") -> int:
    """Validate a random key: a Python ``int`` (``bool`` refused) in ``[0, 2**63 - 1]``.

    This is the key range of every stochastic function of the library
    ([`pcgrad`][gramweight.pcgrad], [`gradvac`][gramweight.gradvac], [`random`][gramweight.random],
    [`visiting_orders`][gramweight.visiting_orders]): each key in it gives its own draw. Negative
    keys and keys of 2**63 or more are refused, because ``torch.Generator().manual_seed`` keeps its
    seed modulo 2**63 (``-1`` would draw as ``2**63 - 1``, ``2**63`` as ``0``) or overflows.

    Raises:
        TypeError: ``key`` is not an ``int`` (or is ``None`` or a ``bool``).
        ValueError: ``key`` is outside ``[0, 2**63 - 1]``.
    """
    if key is None:
        raise TypeError(message(name, "an int (the random key; pass key=step)", "None"))
    if isinstance(key, bool) or not isinstance(key, int):
        raise TypeError(message(name, "an int", type(key).__name__))
    if not 0 <= key <= KEY_MAX:
        raise ValueError(message(name, "in [0, 2**63 - 1]", repr(key)))
    return key


def check_number(
    x: Any,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    integer: bool = False,
) -> Any:
    """Validate a Python scalar option against an interval and return it."""
    if integer:
        if isinstance(x, bool) or not isinstance(x, int):
            raise TypeError(message(name, "an int", type(x).__name__))
    elif isinstance(x, bool) or not isinstance(x, (int, float)):
        raise TypeError(message(name, "a real number", type(x).__name__))
    if not math.isfinite(x):
        raise ValueError(message(name, "finite", repr(x)))
    lo_ok = low is None or (x > low if low_open else x >= low)
    hi_ok = high is None or (x < high if high_open else x <= high)
    if not (lo_ok and hi_ok):
        if low is not None and high is not None:
            req = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        elif low is not None:
            req = f"{'>' if low_open else '>='} {low:g}"
        else:
            req = f"{'<' if high_open else '<='} {high:g}"
        raise ValueError(message(name, req, repr(x)))
    return x


def check_state(
    state: Any,
    cls: type,
    name: str = "state",
    *,
    finite: bool = True,
    **expected_shapes: tuple[int, ...],
) -> Any:
    """Validate a NamedTuple state: its type, the shapes of the named fields and (unless
    ``finite=False``, for a second look at a state already checked) that every floating-point
    tensor field is finite.

    A NaN or an infinity in a state can only come from a corrupted state (every method returns
    finite states from finite inputs); it would pass through as NaN weights or be silently
    dropped, so it is refused, naming the field: "`state.targets` must be finite (no NaN or
    Inf), got a non-finite entry."
    """
    if not isinstance(state, cls):
        raise TypeError(message(name, f"a {cls.__name__} (from the matching _init)", type(state).__name__))
    for field, shape in expected_shapes.items():
        value = getattr(state, field)
        if tuple(value.shape) != tuple(shape):
            raise ValueError(
                message(f"{name}.{field}", f"of shape {tuple(shape)} (state built for another m or K?)",
                        f"shape {format_shape(value.shape)}")
            )
    for field, value in zip(state._fields, state) if finite else ():
        if isinstance(value, Tensor) and value.dtype.is_floating_point and not all_finite(value):
            raise ValueError(
                message(f"{name}.{field}", "finite (no NaN or Inf)", "a non-finite entry")
            )
    return state
