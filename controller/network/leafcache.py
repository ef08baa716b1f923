"""The subscription's leaves, by path, in a trie of path elements.

A device with thousands of services reports hundreds of thousands of leaves. The reconciler asks for a
few managed entries at a time (the ones a change touched), so finding a subtree must cost what the
subtree holds, not what the device holds; deleting a subtree likewise.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ..intent.paths import GPath, PathElem


class _Leaf:
    """A leaf whose value is a JSON object or null, held apart so it is taken for neither a container nor
    an absent leaf. Any other value sits directly in its parent node: a wrapper per leaf would cost more
    than the leaf."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


def _stored(value: Any) -> Any:
    return _Leaf(value) if value is None or isinstance(value, dict) else value


def _value(held: Any) -> Any:
    return held.value if isinstance(held, _Leaf) else held


def _is_leaf(held: Any) -> bool:
    """Whether a node's child is a leaf (present, not a container)."""
    return held is not None and not isinstance(held, dict)


class LeafCache:
    def __init__(self) -> None:
        self._root: dict[Any, Any] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def set(self, path: GPath, value: Any) -> None:
        if not path.elems:
            raise ValueError("a leaf cannot sit at the root path")
        node = self._root
        for elem in path.elems[:-1]:
            child = node.get(elem)
            if not isinstance(child, dict):  # absent, or a leaf where a container now is
                self._count -= _is_leaf(child)
                child = node[elem] = {}
            node = child
        last = path.elems[-1]
        held = node.get(last)
        if isinstance(held, dict):  # a container where a leaf now is
            self._count -= sum(1 for _ in _values(held, ()))
        elif held is None:
            self._count += 1
        node[last] = _stored(value)

    def get(self, path: GPath, default: Any = None) -> Any:
        held = self._held(path)
        return _value(held) if _is_leaf(held) else default

    def __contains__(self, path: object) -> bool:
        return isinstance(path, GPath) and _is_leaf(self._held(path))

    def delete(self, prefix: GPath) -> None:
        """Drop `prefix` and everything under it (the root: everything)."""
        if not prefix.elems:
            self._root, self._count = {}, 0
            return
        parent = self._node(GPath(prefix.elems[:-1]))
        if parent is None:
            return
        gone = parent.pop(prefix.elems[-1], None)
        if isinstance(gone, dict):
            self._count -= sum(1 for _ in _values(gone, ()))
        elif gone is not None:
            self._count -= 1

    def items_under(self, prefix: GPath) -> Iterator[tuple[GPath, Any]]:
        """Every leaf at or under `prefix`, with its full path."""
        held = self._held(prefix) if prefix.elems else self._root
        if _is_leaf(held):
            return iter([(prefix, _value(held))])
        if held is None:
            return iter(())
        return ((GPath(prefix.elems + rel), value) for rel, value in _values(held, ()))

    def items(self) -> Iterator[tuple[GPath, Any]]:
        return self.items_under(GPath())

    def _node(self, path: GPath) -> dict[Any, Any] | None:
        """The container at `path` (None if absent or a leaf)."""
        held = self._held(path) if path.elems else self._root
        return held if isinstance(held, dict) else None

    def _held(self, path: GPath) -> Any:
        """What sits at `path`: a container (a dict), a leaf's stored value, or None."""
        node: Any = self._root
        for elem in path.elems:
            if not isinstance(node, dict):
                return None
            node = node.get(elem)
            if node is None:
                return None
        return node


def _values(node: dict[Any, Any], at: tuple[PathElem, ...]) -> Iterable[tuple[tuple[PathElem, ...], Any]]:
    stack = [(node, at)]
    while stack:
        current, where = stack.pop()
        for elem, child in current.items():
            if isinstance(child, dict):
                stack.append((child, (*where, elem)))
            else:
                yield (*where, elem), _value(child)
