"""Minimal pytree helpers over tuples, lists, dicts and NamedTuples of tensors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from torch import Tensor


def tree_map(fn: Callable[[Tensor], Any], tree: Any) -> Any:
    """Apply ``fn`` to every tensor leaf, keeping the containers."""
    if isinstance(tree, Tensor):
        return fn(tree)
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(tree_map(fn, x) for x in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(tree_map(fn, x) for x in tree)
    if isinstance(tree, dict):
        return {k: tree_map(fn, v) for k, v in tree.items()}
    return tree


def tree_leaves(tree: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """Yield ``(path, leaf)`` for every leaf (tensors and other objects)."""
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        for field, x in zip(tree._fields, tree):
            yield from tree_leaves(x, f"{path}.{field}")
    elif isinstance(tree, (tuple, list)):
        for i, x in enumerate(tree):
            yield from tree_leaves(x, f"{path}[{i}]")
    elif isinstance(tree, dict):
        for k, v in tree.items():
            yield from tree_leaves(v, f"{path}[{k!r}]")
    else:
        yield path, tree
