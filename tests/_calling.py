"""How generic tests call any entry of ``gramweight.WEIGHTINGS``.

Each method's kind comes from its entry in ``gramweight.weightings.REGISTRY``: a stochastic one
gets ``key``, a stateful one starts from a fresh ``entry.init(m)``. A weighting with another
required option (``entry.required``) must get example values in ``REQUIRED_OPTIONS``; the
generic suite fails with a message saying so until it does.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import Tensor

import gramweight as gw
from gramweight.weightings import REGISTRY

# name -> function of m giving the required keyword options other than `key`.
REQUIRED_OPTIONS: dict[str, Callable[[int], dict[str, Any]]] = {
    "constant": lambda m: {"weights": [0.5 + i / max(m, 1) for i in range(m)]},
    "krum": lambda m: {"n_byzantine": max(0, (m - 3) // 2), "n_selected": max(1, m // 3)},
    "cr_mogm": lambda m: {"inner": functools.partial(gw.pcgrad, key=7)},
    "db_mtl": lambda m: {"losses": [0.5 + 1.5 * i / max(m, 1) for i in range(m)]},
    "gradnorm": lambda m: {"losses": [0.5 + 1.5 * i / max(m, 1) for i in range(m)]},
    "imtl": lambda m: {"losses": [0.5 + 1.5 * i / max(m, 1) for i in range(m)]},
    # increasing losses against a flat preference: off the ray, so EPO balances
    "epo": lambda m: {
        "losses": [0.5 + i / m for i in range(m)],
        "preference": [1.0 + 0.25 * (i % 2) for i in range(m)],
    },
    # subproblem 0 (the uniform vector); the vector leaning to the last, largest loss makes
    # an active constraint
    "pmtl": lambda m: {
        "losses": [0.5 + i / m for i in range(m)],
        "preferences": [
            [1.0] * m,
            [1.0 + (i == 0) for i in range(m)],
            [1.0 + (i == m - 1) for i in range(m)],
        ],
        "index": 0,
    },
}


# name -> smallest number of objectives the weighting accepts (Krum needs m >= n_byzantine + 3).
MIN_M: dict[str, int] = {"krum": 3}


def supports(name: str, m: int) -> bool:
    """Whether weighting ``name`` accepts an (m, m) Gramian (see ``MIN_M``)."""
    return m >= MIN_M.get(name, 1)


def options(name: str, m: int, key: int = 0) -> dict[str, Any]:
    """The keyword options needed to call weighting ``name`` on an (m, m) Gramian."""
    entry = REGISTRY[name]
    kwargs = dict(REQUIRED_OPTIONS[name](m)) if name in REQUIRED_OPTIONS else {}
    missing = [kw for kw in entry.required if kw not in kwargs]
    if missing:
        raise AssertionError(
            f"weighting {name!r} requires the option(s) {missing}: add example values for them "
            "in REQUIRED_OPTIONS of tests/_calling.py"
        )
    if entry.stochastic:
        kwargs["key"] = key
    return kwargs


def initial_state(name: str, m: int) -> Any | None:
    """A fresh state of weighting ``name`` for ``m`` objectives (``None`` if it is stateless)."""
    init = REGISTRY[name].init
    return None if init is None else init(m)


def call(name: str, G: Tensor, key: int = 0) -> Tensor:
    """Weights of weighting ``name`` on ``G`` (from a fresh state if it is stateful)."""
    fn = gw.WEIGHTINGS[name]
    m = G.shape[-1]
    kwargs = options(name, m, key)
    state = initial_state(name, m)
    if state is None:
        return fn(G, **kwargs)
    w, _ = fn(G, state, **kwargs)
    return w


def arguments(name: str, G: Tensor, key: int = 0) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments of one call of weighting ``name`` on ``G``."""
    m = G.shape[-1]
    state = initial_state(name, m)
    args = (G,) if state is None else (G, state)
    return args, options(name, m, key)
