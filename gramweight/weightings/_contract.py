"""The weighting contract: the three calling conventions, and the record that registers a method.

Every weighting is one of three kinds (a stateful one may also be stochastic):

- stateless (`Stateless`): ``w = fn(G, /, **options)``;
- stochastic (`Stochastic`): the same with a required keyword ``key: int``, turned into a
  local ``torch.Generator`` (never the global RNG);
- stateful (`Stateful`): ``w, state = fn(G, state, /, **options)``, with a fresh state
  from ``<name>_init(m, *, dtype=None, device=None, ...)`` (`StateInit`), a NamedTuple
  of tensors. ``init(m)`` alone must give a usable state.

The protocols say this to a type checker; `Weighting` checks it at registration, where
it matters at run time: a weighting that breaks the convention fails on import, not in the
middle of someone's generic training loop.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, TypeVar

import torch
from torch import Tensor

from .._checks import message

__all__ = [
    "PROPERTIES",
    "StateInit",
    "Stateful",
    "Stateless",
    "Stochastic",
    "Weighting",
    "registry",
]

PROPERTIES = frozenset({"non_conflicting", "permutation_equivariant", "scale_invariant"})
"""The properties a weighting may claim (``tests/property`` checks every claim):
``non_conflicting`` (``G w >= 0``), ``permutation_equivariant`` (permuting the objectives permutes
the weights) and ``scale_invariant`` (``w(c G) = w(G)`` for ``c > 0``)."""

S = TypeVar("S", bound=tuple)


class Stateless(Protocol):
    """``w = fn(G, /, **options)``: weights (m,) with ``G``'s dtype and device."""

    def __call__(self, G: Tensor, /, **options: Any) -> Tensor: ...


class Stochastic(Protocol):
    """``w = fn(G, /, *, key, **options)``: the same weights for the same ``key``."""

    def __call__(self, G: Tensor, /, *, key: int, **options: Any) -> Tensor: ...


class Stateful(Protocol[S]):
    """``w, new_state = fn(G, state, /, **options)``: the state in is never modified."""

    def __call__(self, G: Tensor, state: S, /, **options: Any) -> tuple[Tensor, S]: ...


class StateInit(Protocol[S]):
    """``state = init(m, *, dtype=None, device=None, **options)``: a fresh state for ``m``
    objectives, its floating-point tensors in ``dtype`` (default
    ``torch.get_default_dtype()``), all of them on ``device`` (default: CPU)."""

    def __call__(
        self,
        m: int,
        *args: Any,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        **options: Any,
    ) -> S: ...


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_KEYWORD = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.VAR_KEYWORD)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


@dataclass(frozen=True, repr=False)
class Weighting:
    """One registered weighting: how generic code calls it, and what it claims.

    Built from the function, and for a stateful weighting its ``init`` and ``state`` class;
    ``name``, ``stochastic`` and ``required`` are read from the signature. Building one checks
    the calling convention, and refuses a function that breaks it with a ``TypeError`` or a
    ``ValueError`` in the library's one message template (so the record also checks a
    weighting of your own):

    - ``fn(G, /, **options) -> w``, or ``fn(G, state, /, **options) -> (w, new_state)`` when
      it has an ``init``; every option keyword-only;
    - a stochastic weighting takes ``key: int`` as a required keyword (no default: there is
      no global RNG to fall back on);
    - ``init`` is ``<name>_init(m, ..., *, dtype=None, device=None, ...)``, callable as
      ``init(m)``; ``state`` is the NamedTuple class it returns.

    Attributes:
        fn: The weighting function.
        init: ``<name>_init`` of a stateful weighting, ``None`` for a stateless one.
        state: The NamedTuple class ``init`` returns (``None`` for a stateless weighting).
        properties: The properties it claims, a subset of ``non_conflicting``,
            ``permutation_equivariant`` and ``scale_invariant``, each checked by the property
            suite on every drawn Gramian. A claim holds for the default options (and, for
            ``cr_mogm``, the inner weighting of the tests).
        name: ``fn.__name__``, the key in the registry and in ``gramweight.WEIGHTINGS``.
        stochastic: Whether ``fn`` takes the required keyword ``key: int``.
        required: The other required keyword-only options (``constant``'s ``weights``, ...):
            generic code must supply values for them.

    Examples:
        >>> import gramweight as gw
        >>> gw.weightings.REGISTRY["gradvac"]
        Weighting(gradvac, init=gradvac_init, state=GradVacState, properties=set())
        >>> entry = gw.weightings.REGISTRY["krum"]
        >>> entry.stateful, entry.stochastic, entry.required, sorted(entry.properties)
        (False, False, ('n_byzantine',), ['scale_invariant'])
    """

    fn: Callable[..., Any]
    init: Callable[..., Any] | None = None
    state: type | None = None
    properties: frozenset[str] = frozenset()
    name: str = field(init=False)
    stochastic: bool = field(init=False)
    required: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        name = _check_name(self.fn)
        if (self.init is None) != (self.state is None):
            given, missing = ("init", "state") if self.state is None else ("state", "init")
            raise TypeError(
                message(missing, f"given with `{given}` (a stateful weighting has both)", "None")
            )
        keywords = _check_signature(self.fn, name, stateful=self.init is not None)
        if self.init is not None:
            _check_state_class(self.state)
            _check_init(self.init, name)
        # (frozen: the derived fields are set once, here)
        object.__setattr__(self, "properties", _check_properties(self.properties))
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "stochastic", "key" in keywords)
        object.__setattr__(self, "required", tuple(k for k in keywords if k != "key"))

    @property
    def stateful(self) -> bool:
        """Whether the weighting takes and returns a state (it has an ``init``)."""
        return self.init is not None

    def __repr__(self) -> str:
        parts = [self.name]
        if self.init is not None:
            parts += [f"init={self.init.__name__}", f"state={self.state.__name__}"]
        claims = "{" + ", ".join(map(repr, sorted(self.properties))) + "}"
        parts.append(f"properties={claims if self.properties else 'set()'}")
        return f"Weighting({', '.join(parts)})"


def registry(*entries: Weighting) -> Mapping[str, Weighting]:
    """A read-only mapping name -> entry of the given entries, in their order.

    It also registers every state class with ``torch.serialization.add_safe_globals``, so that
    ``torch.load``'s default ``weights_only=True`` reloads saved states.
    """
    table: dict[str, Weighting] = {}
    for entry in entries:
        if not isinstance(entry, Weighting):
            raise TypeError(message("entry", "a Weighting", type(entry).__name__))
        if entry.name in table:
            raise ValueError(message("name", "unique in the registry", f"{entry.name!r} twice"))
        table[entry.name] = entry
    torch.serialization.add_safe_globals([e.state for e in table.values() if e.state is not None])
    return MappingProxyType(table)


def _name_of(fn: Any) -> str:
    return getattr(fn, "__name__", type(fn).__name__)


def _check_name(fn: Any) -> str:
    if not callable(fn):
        raise TypeError(message("fn", "a weighting function", type(fn).__name__))
    name = _name_of(fn)
    # the function's name is the registry key and the public name: gw.<name>
    if not (name.isidentifier() and name == name.lower() and not name.startswith("_")):
        raise ValueError(message("fn.__name__", "a public lowercase name (gw.<name>)", repr(name)))
    return name


def _signature(fn: Callable[..., Any], name: str) -> inspect.Signature:
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        raise TypeError(message(name, "a function with a signature", "none")) from None


def _check_signature(fn: Callable[..., Any], name: str, *, stateful: bool) -> list[str]:
    """Check ``(G, /, **options)`` (``(G, state, /, **options)`` when stateful) and return the
    required keyword-only options."""
    sig = _signature(fn, name)
    params = list(sig.parameters.values())
    n_pos = 2 if stateful else 1
    form = "`(G, state, /, **options)` (it has an `init`)" if stateful else "`(G, /, **options)`"
    # G (and the state) positional-only, so that options never collide with them; every option
    # keyword-only, so that a new option never shifts another one
    if not (
        len(params) >= n_pos
        and all(p.kind is inspect.Parameter.POSITIONAL_ONLY for p in params[:n_pos])
        and all(p.kind in _KEYWORD for p in params[n_pos:])
    ):
        raise TypeError(message(name, f"callable as {form}", f"`{name}{sig}`"))
    key = sig.parameters.get("key")
    if key is not None and key.default is not inspect.Parameter.empty:
        raise TypeError(
            message("key", "required (no default: the caller passes key=step)", f"`{name}{sig}`")
        )
    return [
        p.name
        for p in params[n_pos:]
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
    ]


def _check_state_class(state: Any) -> None:
    if not (isinstance(state, type) and issubclass(state, tuple) and hasattr(state, "_fields")):
        raise TypeError(message("state", "a NamedTuple class", repr(state)))


def _check_init(init: Any, name: str) -> None:
    if not callable(init):
        raise TypeError(message("init", "a function", type(init).__name__))
    if _name_of(init) != f"{name}_init":
        raise ValueError(message("init", f"named {name}_init", repr(_name_of(init))))
    sig = _signature(init, _name_of(init))
    params = list(sig.parameters.values())
    keywords = {
        p.name: p for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is None
    }
    # init(m) alone must build a usable state: generic code knows nothing else to pass
    if not (
        params
        and params[0].kind in _POSITIONAL
        and {"dtype", "device"} <= set(keywords)
        and all(p.default is not inspect.Parameter.empty or p.kind in _VARIADIC for p in params[1:])
    ):
        raise TypeError(
            message(
                "init",
                "callable as `(m, ..., *, dtype=None, device=None, ...)`",
                f"`{_name_of(init)}{sig}`",
            )
        )


def _check_properties(properties: Iterable[str]) -> frozenset[str]:
    if isinstance(properties, str) or not isinstance(properties, Iterable):
        raise TypeError(message("properties", "a set of property names", type(properties).__name__))
    claimed = frozenset(properties)
    unknown = claimed - PROPERTIES
    if unknown:
        raise ValueError(
            message("properties", f"a subset of {sorted(PROPERTIES)}", repr(sorted(unknown)))
        )
    return claimed
