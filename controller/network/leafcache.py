"""The subscription's leaves, by path, in a trie of path elements.

A device with thousands of services reports hundreds of thousands of leaves. The reconciler asks for a
few managed entries at a time (the ones a change touched), so finding a subtree must cost what the
subtree holds, not what the device holds; deleting a subtree likewise.

Memory: most containers hold a handful of children (`config`, `state`, one scheduler), so a container
of up to SMALL children is a flat list (elem, child, elem, child, ...), half a dict's size, made anew at
its exact size when a child is added (grown in place, a list keeps room for more); a larger one (a
port's subinterfaces) is a dict. A leaf's value
sits directly in its parent, and short strings (`UP`, `true`, enum names) and numbers (VLAN ids, rates)
are shared: every service's leaves repeat them.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import Any

from ..intent.paths import GPath, PathElem

SMALL = 8  # children a list container holds before it becomes a dict
_INTERNED_UP_TO = 32  # characters


class _Small(list[Any]):
    """A container of a few children, flat: [elem, child, elem, child, ...]."""

    __slots__ = ()


class _Leaf:
    """A leaf whose value could be taken for a container or for an absent leaf (an object, an array
    as a tuple, null): held in a wrapper. Any other value sits directly in its parent node."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


_INTS: dict[int, int] = {}  # numbers the leaves repeat (VLAN ids and indexes, rates, bursts): one object each
_INTS_UP_TO = 1 << 16  # distinct numbers kept; past that the table starts again


def _stored(value: Any) -> Any:
    if value is None or isinstance(value, dict | tuple):
        return _Leaf(value)
    kind = type(value)
    if kind is str and len(value) <= _INTERNED_UP_TO:
        return sys.intern(value)
    if kind is int:
        if len(_INTS) >= _INTS_UP_TO:
            _INTS.clear()
        return _INTS.setdefault(value, value)
    return value


def _value(held: Any) -> Any:
    return held.value if isinstance(held, _Leaf) else held


def _is_container(held: Any) -> bool:
    return type(held) is dict or type(held) is _Small


def _is_leaf(held: Any) -> bool:
    """Whether a node's child is a leaf (present, not a container)."""
    return held is not None and not _is_container(held)


def _index(node: _Small, elem: PathElem) -> int:
    """Where `elem` sits in a list container (-1: absent). Elements are mostly the shared, cached ones:
    identity first, then the hash, before the full comparison."""
    wanted = elem._hash
    for i in range(0, len(node), 2):
        e = node[i]
        if e is elem or (e._hash == wanted and e == elem):
            return i
    return -1


def _get(node: Any, elem: PathElem) -> Any:
    if type(node) is dict:
        return node.get(elem)
    i = _index(node, elem)
    return None if i < 0 else node[i + 1]


def _put(node: Any, elem: PathElem, child: Any) -> Any:
    """`node` with `elem` set to `child`: changed in place and returned when `elem` was there (or `node` is a
    dict), else a new container (its parent must take it instead): a list one size larger, or a dict once
    it outgrows SMALL."""
    if type(node) is dict:
        node[elem] = child
        return node
    i = _index(node, elem)
    if i >= 0:
        node[i + 1] = child
        return node
    if len(node) // 2 >= SMALL:
        grown = dict(_items(node))
        grown[elem] = child
        return grown
    return _Small((*node, elem, child))  # exactly its size: a list grown in place keeps room for more


def _without(node: Any, elem: PathElem) -> Any:
    """Take `elem` out of `node` (in place): what was there (None: nothing)."""
    if type(node) is dict:
        return node.pop(elem, None)
    i = _index(node, elem)
    if i < 0:
        return None
    gone = node[i + 1]
    del node[i : i + 2]
    return gone


def _items(node: Any) -> Iterator[tuple[PathElem, Any]]:
    if isinstance(node, dict):
        return iter(node.items())
    return ((node[i], node[i + 1]) for i in range(0, len(node), 2))


class LeafCache:
    def __init__(self) -> None:
        self._root: dict[Any, Any] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def set(self, path: GPath, value: Any) -> None:
        elems = path.elems
        if not elems:
            raise ValueError("a leaf cannot sit at the root path")
        chain: list[Any] = [self._root]  # the containers from the root down to the leaf's parent
        node: Any = self._root
        for elem in elems[:-1]:
            child = node.get(elem) if type(node) is dict else _get(node, elem)
            kind = type(child)
            if kind is not dict and kind is not _Small:  # absent, or a leaf where a container now is
                self._count -= child is not None
                child = _Small()
                self._relink(chain, elems, _put(node, elem, child))
            chain.append(child)
            node = child
        held = _get(chain[-1], elems[-1])
        if _is_container(held):  # a container where a leaf now is
            self._count -= sum(1 for _ in _values(held, ()))
        if not _is_leaf(held):
            self._count += 1
        self._relink(chain, elems, _put(chain[-1], elems[-1], _stored(value)))

    def _relink(self, chain: list[Any], elems: tuple[PathElem, ...], node: Any) -> None:
        """`node` is what chain[-1] became: when a new object (a list grown into a dict), put it in its
        parent in its place, and so on up (the root is a dict: changed in place)."""
        depth = len(chain) - 1
        while depth > 0 and node is not chain[depth]:
            chain[depth] = node
            node = _put(chain[depth - 1], elems[depth - 1], node)
            depth -= 1

    def get(self, path: GPath, default: Any = None) -> Any:
        held = self._held(path)
        return _value(held) if _is_leaf(held) else default

    def __contains__(self, path: object) -> bool:
        return isinstance(path, GPath) and _is_leaf(self._held(path))

    def delete(self, prefix: GPath) -> None:
        """Drop `prefix` and everything under it (the root: everything)."""
        elems = prefix.elems
        if not elems:
            self._root, self._count = {}, 0
            return
        chain: list[Any] = [self._root]
        for elem in elems[:-1]:
            child = _get(chain[-1], elem)
            if not _is_container(child):
                return
            chain.append(child)
        gone = _without(chain[-1], elems[-1])
        if gone is not None:
            self._count -= sum(1 for _ in _values(gone, ())) if _is_container(gone) else 1

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

    def children(self, prefix: GPath) -> list[PathElem]:
        """The path elements directly under the container at `prefix` (e.g. each `interface[name=...]` under
        `interfaces`), at a cost of their number, not of the leaves below them."""
        held = self._held(prefix) if prefix.elems else self._root
        if not _is_container(held):
            return []
        return [elem for elem, _ in _items(held)]

    def _held(self, path: GPath) -> Any:
        """What sits at `path`: a container, a leaf's stored value, or None."""
        node: Any = self._root
        for elem in path.elems:
            if not _is_container(node):
                return None
            node = _get(node, elem)
            if node is None:
                return None
        return node


def _values(node: Any, at: tuple[PathElem, ...]) -> Iterable[tuple[tuple[PathElem, ...], Any]]:
    stack = [(node, at)]
    while stack:
        current, where = stack.pop()
        for elem, child in _items(current):
            if _is_container(child):
                stack.append((child, (*where, elem)))
            else:
                yield (*where, elem), _value(child)
