"""The registration: the registry, WEIGHTINGS, the public names and the states agree; what a
Weighting reads from a signature; the malformed entries it refuses, in the one template."""

import dataclasses
import re
from typing import NamedTuple

import pytest
import torch

import gramweight as gw
from gramweight.testing._tree import tree_leaves
from gramweight.weightings import REGISTRY, Weighting
from gramweight.weightings._contract import registry

# Public names of gramweight that are neither a weighting nor one's init or state class.
OTHER_PUBLIC = {"WEIGHTINGS", "Weighting", "autogram", "testing", "visiting_orders"}
OTHER_PUBLIC |= {"loss_weightings"}  # weights on the losses alone: not in the registry
OTHER_PUBLIC |= {"Weighter", "step_key"}  # the stateful convenience over the registry
OTHER_PUBLIC |= {"jacobian", "monitor"}  # helpers from a Jacobian, and what to log

STATEFUL = [name for name, entry in REGISTRY.items() if entry.stateful]


def test_weightings_is_the_registry_by_function():
    assert list(gw.WEIGHTINGS.items()) == [(name, e.fn) for name, e in REGISTRY.items()]
    assert all(name == entry.name for name, entry in REGISTRY.items())


def test_the_public_names_are_the_registered_ones():
    registered = set(REGISTRY)
    inits = {e.init.__name__ for e in REGISTRY.values() if e.stateful}
    states = {e.state.__name__ for e in REGISTRY.values() if e.stateful}
    # a public weighting that is not registered (or an init or state class of no registered
    # weighting) shows up on the left
    public = set(gw.__all__) | set(gw._NOT_STAR_EXPORTED)
    assert public - OTHER_PUBLIC == registered | inits | states
    for entry in REGISTRY.values():
        assert getattr(gw, entry.name) is entry.fn
        if entry.stateful:
            assert getattr(gw, f"{entry.name}_init") is entry.init
            assert getattr(gw, entry.state.__name__) is entry.state


@pytest.mark.parametrize("name", STATEFUL)
def test_every_stateful_weighting_has_its_init_and_state_class(name):
    entry = REGISTRY[name]
    assert entry.state in torch.serialization.get_safe_globals()
    state = entry.init(3)
    assert type(state) is entry.state
    for field, value in zip(state._fields, state):
        # a counter of calls has the same name in every state
        if isinstance(value, torch.Tensor) and value.dtype == torch.int64 and value.dim() == 0:
            assert field == "step", f"{entry.state.__name__}.{field}"
    state = entry.init(3, dtype=torch.float64, device="cpu")
    for path, leaf in tree_leaves(state):
        if isinstance(leaf, torch.Tensor):
            assert leaf.device == torch.device("cpu"), path
            assert leaf.dtype in (torch.float64, torch.int64), path
        else:
            assert leaf is None, path  # (cr_mogm's inner state, when its inner is stateless)


def test_stateless_weightings_have_no_state():
    for entry in REGISTRY.values():
        assert (entry.init is None) == (entry.state is None) == (not entry.stateful)


def test_the_registry_is_read_only():
    with pytest.raises(TypeError):
        REGISTRY["mine"] = REGISTRY["mean"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        REGISTRY["mean"].properties = frozenset()


# Functions for the entries below; their names are what the messages quote.


def toy(G, /, *, weights, alpha=1.0, key):
    return G.diagonal()


class ToyState(NamedTuple):
    step: torch.Tensor


def stepper(G, state, /, **options):
    return G.diagonal(), ToyState(state.step + 1)


def stepper_init(m, blocks=None, *, dtype=None, device=None):
    return ToyState(torch.zeros((), dtype=torch.int64, device=device))


def test_what_a_weighting_reads_from_its_signature():
    entry = Weighting(toy, properties={"scale_invariant"})
    assert (entry.name, entry.stateful, entry.stochastic) == ("toy", False, True)
    assert entry.required == ("weights",)
    assert entry.properties == frozenset({"scale_invariant"})
    entry = Weighting(stepper, init=stepper_init, state=ToyState)
    assert (entry.name, entry.stateful, entry.stochastic, entry.required) == (
        "stepper", True, False, ()
    )
    assert repr(entry) == "Weighting(stepper, init=stepper_init, state=ToyState, properties=set())"
    assert list(registry(entry)) == ["stepper"]
    assert ToyState in torch.serialization.get_safe_globals()


def positional_option(G, /, alpha=1.0):
    return G.diagonal()


def keyword_gramian(G, *, alpha=1.0):
    return G.diagonal()


def default_key(G, /, *, key=0):
    return G.diagonal()


def loose_state(G, state, /):
    return G.diagonal(), state


def bare_init(m):
    return ToyState(torch.zeros((), dtype=torch.int64))


def needy_init(m, inner, *, dtype=None, device=None):
    return ToyState(torch.zeros((), dtype=torch.int64))


MALFORMED = {
    "not callable": (
        lambda: Weighting("upgrad"), TypeError, "`fn` must be a weighting function, got str."
    ),
    "no public name": (
        lambda: Weighting(lambda G, /: G.diagonal()),
        ValueError,
        "`fn.__name__` must be a public lowercase name (gw.<name>), got '<lambda>'.",
    ),
    "positional option": (
        lambda: Weighting(positional_option),
        TypeError,
        "`positional_option` must be callable as `(G, /, **options)`, "
        "got `positional_option(G, /, alpha=1.0)`.",
    ),
    "G not positional-only": (
        lambda: Weighting(keyword_gramian),
        TypeError,
        "`keyword_gramian` must be callable as `(G, /, **options)`, "
        "got `keyword_gramian(G, *, alpha=1.0)`.",
    ),
    "key with a default": (
        lambda: Weighting(default_key),
        TypeError,
        "`key` must be required (no default: the caller passes key=step), "
        "got `default_key(G, /, *, key=0)`.",
    ),
    "state not positional-only": (
        lambda: Weighting(toy, init=stepper_init, state=ToyState),
        TypeError,
        "`toy` must be callable as `(G, state, /, **options)` (it has an `init`), "
        "got `toy(G, /, *, weights, alpha=1.0, key)`.",
    ),
    "init without state": (
        lambda: Weighting(stepper, init=stepper_init),
        TypeError,
        "`state` must be given with `init` (a stateful weighting has both), got None.",
    ),
    "state without init": (
        lambda: Weighting(stepper, state=ToyState),
        TypeError,
        "`init` must be given with `state` (a stateful weighting has both), got None.",
    ),
    "state not a NamedTuple": (
        lambda: Weighting(stepper, init=stepper_init, state=tuple),
        TypeError,
        "`state` must be a NamedTuple class, got <class 'tuple'>.",
    ),
    "init of another name": (
        lambda: Weighting(loose_state, init=stepper_init, state=ToyState),
        ValueError,
        "`init` must be named loose_state_init, got 'stepper_init'.",
    ),
    "unknown property": (
        lambda: Weighting(toy, properties={"fast", "scale_invariant"}),
        ValueError,
        "`properties` must be a subset of ['non_conflicting', 'permutation_equivariant', "
        "'scale_invariant'], got ['fast'].",
    ),
    "properties as one string": (
        lambda: Weighting(toy, properties="scale_invariant"),
        TypeError,
        "`properties` must be a set of property names, got str.",
    ),
    "twice the same name": (
        lambda: registry(Weighting(toy), Weighting(toy)),
        ValueError,
        "`name` must be unique in the registry, got 'toy' twice.",
    ),
    "not an entry": (
        lambda: registry(toy), TypeError, "`entry` must be a Weighting, got function."
    ),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_refuses_a_malformed_entry(case):
    build, error, text = MALFORMED[case]
    with pytest.raises(error, match=f"^{re.escape(text)}$"):
        build()


@pytest.mark.parametrize(
    ("init", "text"),
    [
        (bare_init, "`init` must be callable as `(m, ..., *, dtype=None, device=None, ...)`, "
                    "got `bare_init(m)`."),
        (needy_init, "`init` must be callable as `(m, ..., *, dtype=None, device=None, ...)`, "
                     "got `needy_init(m, inner, *, dtype=None, device=None)`."),
    ],
)
def test_refuses_an_init_off_the_convention(init, text):
    # (renamed so that only the signature is wrong)
    def bare(G, state, /):
        return G.diagonal(), state

    bare.__name__ = init.__name__.removesuffix("_init")
    with pytest.raises(TypeError, match=f"^{re.escape(text)}$"):
        Weighting(bare, init=init, state=ToyState)


def test_a_star_import_shadows_no_builtin():
    # gw.sum and gw.random are methods; `from gramweight import *` used to replace the
    # builtins sum and random by them (issue 15)
    import builtins

    namespace: dict = {}
    exec("from gramweight import *", namespace)
    namespace.pop("__builtins__")
    assert not set(namespace) & set(dir(builtins))
    assert gw.sum is REGISTRY["sum"].fn and gw.random is REGISTRY["random"].fn
    import gramweight.weightings as weightings
    namespace = {}
    exec("from gramweight.weightings import *", namespace)
    namespace.pop("__builtins__")
    assert not set(namespace) & set(dir(builtins))
    assert weightings.sum is gw.sum
