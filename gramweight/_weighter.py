"""``Weighter``: a weighting with its options, state, keys and step count, for a training loop.

The weightings are pure functions (``w = fn(G, **options)``, ``w, state = fn(G, state, ...)``,
``key=`` for randomness). A training loop then has to keep the state, draw a new key each step
and remember which method needs which: ``Weighter`` does that bookkeeping and nothing else.
Every step is exactly the pure function's call with the held state and the step's key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor

from ._checks import KEY_MAX, check_key, message
from .weightings import REGISTRY, Weighting

__all__ = ["Weighter"]

_MASK64 = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    """One output of the SplitMix64 generator (Steele, Lea and Flood, 2014) for state ``x``."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return x ^ (x >> 31)


def step_key(seed: int, step: int) -> int:
    """The key of step ``step`` in the sequence of ``seed``: in ``[0, 2**63 - 1]``, decorrelated
    across steps and seeds (SplitMix64 of the pair), the same on every machine."""
    return _splitmix64(_splitmix64(seed) ^ step) & KEY_MAX


def _entry(method: Any) -> Weighting:
    if isinstance(method, Weighting):
        return method
    if isinstance(method, str) and method in REGISTRY:
        return REGISTRY[method]
    for entry in REGISTRY.values():
        if entry.fn is method:
            return entry
    raise ValueError(message("method", "a weighting's name in gramweight.WEIGHTINGS, its "
                             "function, or a gramweight.weightings.Weighting record (register "
                             "your own method with Weighting(fn, ...))",
                             repr(getattr(method, "__name__", method))))


class Weighter:
    r"""A weighting with its options, its state, a key per step and the step count.

    ``w = weighter(G, **per_step)`` calls the pure weighting with the options given here, the
    per-step options given there (``losses=...``), the held state (a stateful method's state
    is built with ``<name>_init`` on the first call, for the ``m``, dtype and device of that
    ``G``, and replaced by the new one after each call) and, for a stochastic method, the key
    of the current step (``step_key(seed, step)``: one seed gives the whole sequence).

    Args:
        method: a name of `gramweight.WEIGHTINGS` (``"upgrad"``), the function itself
            (``gw.upgrad``), or a `gramweight.weightings.Weighting` record of your own method.
        seed: the seed of the key sequence (stochastic methods), in ``[0, 2**63 - 1]``.
        init_options: keyword arguments of ``<name>_init`` beyond ``m``, dtype and device
            (``blocks`` is taken from a (K, m, m) ``G`` when ``init`` accepts it).
        **options: the method's options, passed at every call.

    Attributes:
        entry: the method's registry record (kind, init, state class).
        options: the options given here.
        step: the number of calls so far (the index of the next call's key).
        state: the method's current state (None before the first call, and for a
            stateless method).

    Examples:
        >>> import torch, gramweight as gw
        >>> G = torch.tensor([[4.0, -1.0], [-1.0, 1.0]])
        >>> nash = gw.Weighter("nash_mtl")
        >>> w = nash(G)                         # builds nash_mtl_init(2), keeps the new state
        >>> pcgrad = gw.Weighter(gw.pcgrad, seed=7)
        >>> bool(torch.equal(pcgrad(G), gw.pcgrad(G, key=gw.step_key(7, 0))))
        True
        >>> pcgrad.step, sorted(nash.state_dict())
        (1, ['m', 'method', 'seed', 'state', 'step'])
    """

    def __init__(self, method: str | Callable | Weighting, /, *, seed: int = 0,
                 init_options: Mapping[str, Any] | None = None, **options: Any):
        self.entry = _entry(method)
        if "key" in options:
            raise TypeError(message("options", "free of `key` (the Weighter draws one per "
                                    "step from `seed`)", "key"))
        self.seed = check_key(seed, "seed")
        self.options = dict(options)
        self.init_options = dict(init_options or {})
        if self.init_options and not self.entry.stateful:
            raise TypeError(message("init_options", f"empty for {self.entry.name}, which has "
                                    "no state", repr(self.init_options)))
        self.step = 0
        self.state: Any = None
        self._m: int | None = None

    def __repr__(self) -> str:
        options = "".join(f", {k}={v!r}" for k, v in self.options.items())
        return f"Weighter({self.entry.name!r}{options}, step={self.step})"

    @property
    def key(self) -> int:
        """The key the next call passes (stochastic methods)."""
        return step_key(self.seed, self.step)

    def __call__(self, G: Tensor, /, **per_step: Any) -> Tensor:
        """The weights for ``G`` at this step, with ``per_step`` options (``losses=...``)."""
        entry = self.entry
        kwargs = {**self.options, **per_step}
        if "key" in per_step:
            raise TypeError(message("per-step options", "free of `key` (the Weighter draws one "
                                    "per step from `seed`)", "key"))
        missing = [name for name in entry.required if name not in kwargs]
        if missing:
            raise TypeError(message(missing[0], f"given to the Weighter or at each call "
                                    f"({entry.name} requires it)", "none"))
        if entry.stochastic:
            kwargs["key"] = self.key
        if entry.stateful:
            m = int(G.shape[-1])
            if self.state is None:
                self.state, self._m = self._init(G), m
            elif m != self._m:
                raise ValueError(message("G", f"of {self._m} objectives, as the state was built "
                                         "for (call reset() to start over)",
                                         f"{m} objectives"))
            w, self.state = entry.fn(G, self.state, **kwargs)
        else:
            w = entry.fn(G, **kwargs)
        self.step += 1
        return w

    def _init(self, G: Tensor) -> Any:
        import inspect

        options = dict(self.init_options)
        takes = inspect.signature(self.entry.init).parameters
        if G.dim() == 3 and "blocks" in takes and "blocks" not in options:
            options["blocks"] = int(G.shape[0])
        return self.entry.init(int(G.shape[-1]), dtype=G.dtype, device=G.device, **options)

    def reset(self) -> None:
        """Forget the state and the step count (the next call starts over)."""
        self.step, self.state, self._m = 0, None, None

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint needs to continue: method name, seed, step, ``m`` and the state
        (its fields as a dict of tensors; None before the first call or when stateless)."""
        state = None if self.state is None else dict(self.state._asdict())
        return {"method": self.entry.name, "seed": self.seed, "step": self.step,
                "m": self._m, "state": state}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Continue from the output of [`state_dict`][gramweight.Weighter.state_dict] (the same
        method, options kept)."""
        if state_dict.get("method") != self.entry.name:
            raise ValueError(message("state_dict", f"that of a Weighter of {self.entry.name}",
                                     f"one of {state_dict.get('method')!r}"))
        self.seed = check_key(state_dict["seed"], "seed")
        self.step = int(state_dict["step"])
        fields = state_dict["state"]
        if fields is None or not self.entry.stateful:
            self.state, self._m = None, None
        else:
            self.state, self._m = self.entry.state(**fields), int(state_dict["m"])
