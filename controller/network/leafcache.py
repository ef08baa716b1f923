"""The subscription's leaves, by path, in a trie of path elements.

A device with thousands of services reports hundreds of thousands of leaves. The reconciler asks for a
few managed entries at a time (the ones a change touched), so finding a subtree must cost what the
subtree holds, not what the device holds; deleting a subtree likewise.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from ..intent.paths import GPath, PathElem

_VALUE = object()  # the key under which a node keeps its leaf value (never a PathElem)


class LeafCache:
    def __init__(self) -> None:
        self._root: dict[Any, Any] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def set(self, path: GPath, value: Any) -> None:
        node = self._root
        for elem in path.elems:
            node = node.setdefault(elem, {})
        if _VALUE not in node:
            self._count += 1
        node[_VALUE] = value

    def get(self, path: GPath, default: Any = None) -> Any:
        node = self._node(path)
        return default if node is None else node.get(_VALUE, default)

    def __contains__(self, path: object) -> bool:
        if not isinstance(path, GPath):
            return False
        node = self._node(path)
        return node is not None and _VALUE in node

    def delete(self, prefix: GPath) -> None:
        """Drop `prefix` and everything under it (the root: everything)."""
        if not prefix.elems:
            self._root, self._count = {}, 0
            return
        parent = self._node(GPath(prefix.elems[:-1]))
        if parent is None:
            return
        gone = parent.pop(prefix.elems[-1], None)
        if gone is not None:
            self._count -= sum(1 for _ in _values(gone, ()))

    def items_under(self, prefix: GPath) -> Iterator[tuple[GPath, Any]]:
        """Every leaf at or under `prefix`, with its full path."""
        node = self._node(prefix)
        if node is None:
            return iter(())
        return ((GPath(prefix.elems + rel), value) for rel, value in _values(node, ()))

    def items(self) -> Iterator[tuple[GPath, Any]]:
        return self.items_under(GPath())

    def _node(self, path: GPath) -> dict[Any, Any] | None:
        node = self._root
        for elem in path.elems:
            child = node.get(elem)
            if child is None:
                return None
            node = child
        return node


def _values(node: dict[Any, Any], at: tuple[PathElem, ...]) -> Iterable[tuple[tuple[PathElem, ...], Any]]:
    stack = [(node, at)]
    while stack:
        current, where = stack.pop()
        for key, child in current.items():
            if key is _VALUE:
                yield where, child
            else:
                stack.append((child, (*where, key)))
