"""gNMI paths as hashable values, and their canonical string and protobuf forms.

The string form is the one gNMI tools print: elems joined by `/`, keys in brackets sorted by key name,
no leading slash and no origin (unset origin means openconfig):
`interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=100]`.
Key values may contain `/` (vendors name ports `ge-0/0/1`); no part may contain `[`, `]`, `=` or `*`,
because those would make the string ambiguous or a wildcard, and managed paths are always concrete.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pygnmi.spec.v080 import gnmi_pb2

_FORBIDDEN_IN_KEY_VALUE = frozenset("[]=*")
_FORBIDDEN_IN_NAME = _FORBIDDEN_IN_KEY_VALUE | {"/"}
_OPENCONFIG_ORIGINS = frozenset({"", "openconfig"})


def _check_name(name: str, what: str) -> None:
    if not name:
        raise ValueError(f"empty {what} in gNMI path")
    bad = _FORBIDDEN_IN_NAME.intersection(name)
    if bad:
        raise ValueError(f"{what} {name!r} contains {''.join(sorted(bad))!r}, not allowed in a gNMI path")


def _check_key_value(key: str, value: str) -> None:
    if not value:
        raise ValueError(f"empty value for key {key!r} in gNMI path")
    bad = _FORBIDDEN_IN_KEY_VALUE.intersection(value)
    if bad:
        raise ValueError(
            f"value {value!r} of key {key!r} contains {''.join(sorted(bad))!r}, not allowed in a gNMI path"
        )


@dataclass(frozen=True, order=True, slots=True)
class PathElem:
    """One step of a path: a node name and, for a list entry, its keys sorted by key name."""

    name: str
    keys: tuple[tuple[str, str], ...] = ()
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_name(self.name, "element name")
        names = [k for k, _ in self.keys]
        if len(set(names)) != len(names):
            raise ValueError(f"element {self.name!r} repeats a key: {names}")
        for key, value in self.keys:
            _check_name(key, "key name")
            _check_key_value(key, value)
        object.__setattr__(self, "keys", tuple(sorted(self.keys)))
        object.__setattr__(self, "_hash", hash((self.name, self.keys)))

    # Paths are dict keys everywhere (merge, plan, the leaf cache): hash once, compare hashes first.
    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, PathElem):
            return NotImplemented
        return self._hash == other._hash and self.name == other.name and self.keys == other.keys

    @classmethod
    def of(cls, name: str, keys: Mapping[str, str] | None = None) -> PathElem:
        """The element, shared with every other path that has it (renders repeat them per service)."""
        return _elem(name, tuple((keys or {}).items()))

    def to_string(self) -> str:
        return self.name + "".join(f"[{k}={v}]" for k, v in self.keys)


@lru_cache(maxsize=65536)
def _elem(name: str, keys: tuple[tuple[str, str], ...]) -> PathElem:
    """Decoded elements, checked once and shared: a device's notifications repeat the same ones (`config`,
    `interface[name=Ethernet1]`) by the hundred thousand, in the subscription cache too."""
    return PathElem(name, keys)


@dataclass(frozen=True, order=True, repr=False, slots=True)
class GPath:
    """A concrete gNMI path. Ordering puts a path right before the paths it is a prefix of.

    Slotted: the controller holds paths by the hundred thousand (renders, owned leaves, the leaf cache)."""

    elems: tuple[PathElem, ...] = ()
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash(self.elems))

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, GPath):
            return NotImplemented
        return self._hash == other._hash and self.elems == other.elems

    @classmethod
    def parse(cls, text: str) -> GPath:
        """Parse the canonical string form; a leading `/` is accepted, `""` and `/` are the root."""
        body = text.removeprefix("/")
        elems: list[PathElem] = []
        pos = 0
        while pos < len(body):
            elem, pos = _parse_elem(body, pos, text)
            elems.append(elem)
            if pos < len(body):
                if body[pos] != "/":
                    raise ValueError(f"expected '/' at offset {pos} of gNMI path {text!r}")
                pos += 1
                if pos == len(body):
                    raise ValueError(f"gNMI path {text!r} ends with '/'")
        return cls(tuple(elems))

    @classmethod
    def from_proto(cls, path: Any, prefix: Any = None) -> GPath:
        """From a gnmi_pb2.Path, optionally under a notification prefix; only the openconfig origin."""
        elems: list[PathElem] = []
        for part in (prefix, path):
            if part is None:
                continue
            if part.origin not in _OPENCONFIG_ORIGINS:
                raise ValueError(f"gNMI path origin {part.origin!r} is not openconfig")
            elems.extend(_elem(e.name, tuple(e.key.items())) for e in part.elem)
        return cls(tuple(elems))

    @classmethod
    def of(cls, *steps: str | tuple[str, Mapping[str, str]]) -> GPath:
        """Build from steps: `GPath.of("interfaces", ("interface", {"name": "Ethernet1"}))`."""
        return cls(tuple(PathElem.of(s) if isinstance(s, str) else PathElem.of(*s) for s in steps))

    def to_string(self) -> str:
        return "/".join(e.to_string() for e in self.elems)

    def sort_key(self) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
        """This path's place in the order of paths, as plain tuples: `sorted(paths, key=GPath.sort_key)`
        orders as `sorted(paths)` does, comparing in C rather than calling `__eq__`/`__lt__` of every
        element (a device's merge sorts thousands of paths per pass)."""
        return tuple((e.name, e.keys) for e in self.elems)

    def to_proto(self) -> Any:
        return gnmi_pb2.Path(elem=[gnmi_pb2.PathElem(name=e.name, key=dict(e.keys)) for e in self.elems])

    def child(self, name: str, keys: Mapping[str, str] | None = None) -> GPath:
        return GPath((*self.elems, PathElem.of(name, keys)))

    def join(self, other: GPath) -> GPath:
        return GPath(self.elems + other.elems)

    @property
    def parent(self) -> GPath:
        if not self.elems:
            raise ValueError("the root gNMI path has no parent")
        return GPath(self.elems[:-1])

    def is_prefix_of(self, other: GPath) -> bool:
        """True when `other` is this path or lies under it."""
        return other.elems[: len(self.elems)] == self.elems

    def __str__(self) -> str:
        return self.to_string()

    def __repr__(self) -> str:
        return f"GPath({self.to_string()!r})"


ROOT = GPath()


def _parse_elem(body: str, pos: int, text: str) -> tuple[PathElem, int]:
    end = pos
    while end < len(body) and body[end] not in "/[":
        end += 1
    name = body[pos:end]
    if not name:
        raise ValueError(f"empty element name at offset {pos} of gNMI path {text!r}")
    keys: list[tuple[str, str]] = []
    while end < len(body) and body[end] == "[":
        close = body.find("]", end)
        if close < 0:
            raise ValueError(f"unclosed '[' at offset {end} of gNMI path {text!r}")
        key, sep, value = body[end + 1 : close].partition("=")
        if not sep:
            raise ValueError(f"key selector {body[end : close + 1]!r} lacks '=' in gNMI path {text!r}")
        keys.append((key, value))
        end = close + 1
    return PathElem(name, tuple(keys)), end
