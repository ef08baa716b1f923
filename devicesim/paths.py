"""gNMI paths: text and protobuf forms, resolution against the schema, wildcards.

Internal concrete paths ("segs") are tuples of dict keys into the data tree: a container child
is its name, a list entry is the list name followed by a tuple of typed key values, e.g.
``("interfaces", "interface", ("Ethernet1",), "config", "mtu")``.

A ``Pattern`` is the same with ``WILD`` allowed inside key tuples. The gNMI wildcards are
reduced to that form on the schema: an element named ``*`` becomes one pattern per child name,
``...`` becomes one pattern per schema position it can reach (the schema is small and finite),
a missing key or a ``*`` key becomes ``WILD``. Matching a concrete path then is a positional
comparison, which keeps subscription fan-out cheap.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import grpc
from pygnmi.spec.v080 import gnmi_pb2

from devicesim import schema as S
from devicesim.errors import GnmiError

Seg = Any  # str | tuple[Any, ...]
Segs = tuple[Seg, ...]


class _Wild:
    __slots__ = ()

    def __repr__(self) -> str:
        return "*"


WILD: Any = _Wild()

ACCEPTED_ORIGINS = ("", "openconfig")


@dataclass(frozen=True)
class Elem:
    name: str
    keys: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Pattern:
    segs: Segs
    node: S.SchemaNode
    # True when the pattern ends at a list node itself (only produced with list_end="node")
    list_node: bool = False

    @cached_property
    def parent_segs(self) -> Segs:
        return self.segs[:-1]

    @cached_property
    def key_slot(self) -> tuple[int, int] | None:
        """For a list key leaf (``name`` or ``config/name``): where its value sits in ``segs``."""
        leaf, parent = self.node, self.node.parent
        if not isinstance(leaf, S.Leaf):
            return None
        if isinstance(parent, S.ListNode) and leaf.name in parent.keys:
            return len(self.segs) - 2, parent.keys.index(leaf.name)
        if (isinstance(parent, S.Container) and parent.name == "config"
                and isinstance(parent.parent, S.ListNode) and leaf.name in parent.parent.keys):
            return len(self.segs) - 3, parent.parent.keys.index(leaf.name)
        return None

    @cached_property
    def wild(self) -> bool:
        return any(isinstance(s, tuple) and any(v is WILD for v in s) for s in self.segs)


# ---------------------------------------------------------------------------------------------
# Text form


def parse_text(text: str) -> list[Elem]:
    """Parse ``/a/b[k=v][k2=v2]/c`` (``\\`` escapes ``]``, ``=`` and ``/`` inside keys)."""
    elems: list[Elem] = []
    i, n = 0, len(text)
    if text.startswith("/"):
        i = 1
    while i < n:
        name_chars: list[str] = []
        while i < n and text[i] not in "/[":
            name_chars.append(text[i])
            i += 1
        keys: list[tuple[str, str]] = []
        while i < n and text[i] == "[":
            i += 1
            k: list[str] = []
            while i < n and text[i] != "=":
                k.append(text[i])
                i += 1
            if i >= n:
                raise GnmiError(grpc.StatusCode.INVALID_ARGUMENT, f"path {text!r}: key without '='")
            i += 1
            v: list[str] = []
            while i < n and text[i] != "]":
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                v.append(text[i])
                i += 1
            if i >= n:
                raise GnmiError(grpc.StatusCode.INVALID_ARGUMENT, f"path {text!r}: unterminated '['")
            i += 1
            keys.append(("".join(k), "".join(v)))
        name = "".join(name_chars)
        if not name:
            raise GnmiError(grpc.StatusCode.INVALID_ARGUMENT, f"path {text!r}: empty element")
        elems.append(Elem(name, tuple(keys)))
        if i < n and text[i] == "/":
            i += 1
    return elems


def to_proto(text: str, origin: str = "") -> gnmi_pb2.Path:
    p = gnmi_pb2.Path(origin=origin)
    for e in parse_text(text):
        p.elem.add(name=e.name, key=dict(e.keys))
    return p


def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("]", "\\]")


def elems_text(elems: Iterable[Elem]) -> str:
    out = []
    for e in elems:
        out.append(e.name + "".join(f"[{k}={_esc(v)}]" for k, v in e.keys))
    return "/" + "/".join(out)


def proto_text(path: gnmi_pb2.Path) -> str:
    elems = [Elem(e.name, tuple(sorted(e.key.items()))) for e in path.elem]
    text = elems_text(elems)
    return f"{path.origin}:{text}" if path.origin else text


def segs_text(segs: Segs) -> str:
    """Readable form of an internal path, with key names taken from the schema."""
    return elems_text(segs_to_elems(segs))


# ---------------------------------------------------------------------------------------------
# Protobuf -> elements


def join(prefix: gnmi_pb2.Path | None, path: gnmi_pb2.Path) -> tuple[list[Elem], str]:
    """Concatenate prefix and path, enforcing the origin rules; return elements and origin."""
    for p in (prefix, path):
        if p is not None and len(p.element):
            raise GnmiError(grpc.StatusCode.INVALID_ARGUMENT,
                            "the deprecated Path.element field is not supported; use Path.elem")
    p_origin = prefix.origin if prefix is not None else ""
    if p_origin and path.origin:
        raise GnmiError(grpc.StatusCode.INVALID_ARGUMENT,
                        f"origin set in both prefix ({p_origin!r}) and path ({path.origin!r})")
    origin = p_origin or path.origin
    elems = [Elem(e.name, tuple(e.key.items())) for e in (prefix.elem if prefix is not None else ())]
    elems += [Elem(e.name, tuple(e.key.items())) for e in path.elem]
    if origin not in ACCEPTED_ORIGINS:
        # pygnmi turns "openconfig-interfaces:interfaces" into origin + elem; accept a module
        # name as origin when it qualifies the first element (RFC 7951 style), nothing else.
        first = S.ROOT.children.get(elems[0].name) if elems else None
        if first is None or first.module != origin:
            raise GnmiError(grpc.StatusCode.UNIMPLEMENTED,
                            f"origin {origin!r} is not supported (supported: 'openconfig' or unset)")
    return elems, origin


# ---------------------------------------------------------------------------------------------
# Resolution against the schema


def _strip_module(name: str, child_of: S.Container | S.ListNode, elems: list[Elem]) -> str:
    if ":" not in name:
        return name
    mod, _, bare = name.partition(":")
    child = child_of.children.get(bare)
    if child is None or child.module != mod:
        raise GnmiError(grpc.StatusCode.NOT_FOUND,
                        f"path {elems_text(elems)}: element {name!r} is not in the schema")
    return bare


def resolve(elems: list[Elem], *, list_end: str = "wild", allow_wild: bool = True) -> list[Pattern]:
    """All schema positions that ``elems`` can denote.

    list_end: what a path ending at a list name means: "wild" = every entry (Get, Subscribe,
    delete), "node" = the list itself (update/replace with a JSON array).
    Raises INVALID_ARGUMENT for bad keys and NOT_FOUND when nothing in the schema matches.
    """
    found: dict[Segs, Pattern] = {}

    def emit(node: S.SchemaNode, segs: Segs) -> None:
        if isinstance(node, S.ListNode) and (not segs or not isinstance(segs[-1], tuple)):
            if list_end == "node":
                found.setdefault(segs, Pattern(segs, node, list_node=True))
                return
            segs = (*segs, tuple(WILD for _ in node.keys))
        found.setdefault(segs, Pattern(segs, node))

    def step(node: S.SchemaNode, i: int, segs: Segs) -> None:
        if i == len(elems):
            emit(node, segs)
            return
        if not isinstance(node, (S.Container, S.ListNode)):
            return  # below a leaf: no match on this alternative
        if isinstance(node, S.ListNode) and not isinstance(segs[-1], tuple):
            # a list name followed by more elements without keys: every entry
            segs = (*segs, tuple(WILD for _ in node.keys))
        e = elems[i]
        if e.name == "...":
            if not allow_wild:
                raise GnmiError(grpc.StatusCode.INVALID_ARGUMENT,
                                f"path {elems_text(elems)}: wildcards not allowed here")
            if i == len(elems) - 1:
                emit(node, segs)  # a trailing "..." is the subtree, which a path already means
                return
            step(node, i + 1, segs)
            for child in node.children.values():
                csegs = (*segs, child.name)
                if isinstance(child, S.ListNode):
                    csegs = (*csegs, tuple(WILD for _ in child.keys))
                step(child, i, csegs)
            return
        if e.name == "*":
            if not allow_wild:
                raise GnmiError(grpc.StatusCode.INVALID_ARGUMENT,
                                f"path {elems_text(elems)}: wildcards not allowed here")
            if e.keys:
                raise GnmiError(grpc.StatusCode.INVALID_ARGUMENT, f"path {elems_text(elems)}: keys on a '*' element")
            for child in node.children.values():
                _descend(node, child, e, i, segs)
            return
        name = _strip_module(e.name, node, elems)
        found_child = node.children.get(name)
        if found_child is None:
            if strict:
                raise GnmiError(grpc.StatusCode.NOT_FOUND,
                                f"path {elems_text(elems)}: element {e.name!r} is not in the schema under "
                                f"{node.schema_path}")
            return
        _descend(node, found_child, e, i, segs)

    def _descend(parent: S.SchemaNode, child: S.SchemaNode, e: Elem, i: int, segs: Segs) -> None:
        if isinstance(child, S.ListNode):
            known = set(child.keys)
            for k, _ in e.keys:
                if k not in known:
                    raise GnmiError(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"path {elems_text(elems)}: {k!r} is not a key of list {child.schema_path} "
                                    f"(keys: {', '.join(child.keys)})")
            if not e.keys:
                step(child, i + 1, (*segs, child.name))
                return
            given = dict(e.keys)
            vals = []
            for k, t in zip(child.keys, child.key_types(), strict=True):
                raw = given.get(k)
                if raw is None or raw == "*":
                    if raw == "*" and not allow_wild:
                        raise GnmiError(grpc.StatusCode.INVALID_ARGUMENT,
                                        f"path {elems_text(elems)}: wildcards not allowed here")
                    vals.append(WILD)
                    continue
                try:
                    vals.append(S.parse_key(t, raw))
                except S.ValueError_ as err:
                    raise GnmiError(grpc.StatusCode.INVALID_ARGUMENT,
                                    f"path {elems_text(elems)}: key {k}: {err}") from None
            step(child, i + 1, (*segs, child.name, tuple(vals)))
        else:
            if e.keys:
                raise GnmiError(grpc.StatusCode.INVALID_ARGUMENT,
                                f"path {elems_text(elems)}: {child.schema_path} is not a list and takes no keys")
            step(child, i + 1, (*segs, child.name))

    strict = not any(e.name in ("*", "...") for e in elems)
    step(S.ROOT, 0, ())
    if not found:
        raise GnmiError(grpc.StatusCode.NOT_FOUND, f"path {elems_text(elems)} matches nothing in the schema")
    return list(found.values())


# ---------------------------------------------------------------------------------------------
# Matching and conversion back to protobuf


def match_prefix(pattern: Segs, path: Segs) -> bool:
    """True if ``path`` is at or below a node matched by ``pattern``."""
    if len(pattern) > len(path):
        return False
    for p, s in zip(pattern, path, strict=False):
        if p is s or p == s:
            continue
        if (isinstance(p, tuple) and isinstance(s, tuple) and len(p) == len(s)
                and all(a is WILD or a == b for a, b in zip(p, s, strict=True))):
            continue
        return False
    return True


def node_at(segs: Segs) -> S.SchemaNode:
    """Schema node of a concrete (or pattern) path."""
    node: S.SchemaNode = S.ROOT
    for s in segs:
        if isinstance(s, tuple):
            continue
        assert isinstance(node, (S.Container, S.ListNode))
        node = node.children[s]
    return node


_elem_cache: dict[Segs, tuple[Elem, ...]] = {}


def segs_to_elems(segs: Segs) -> tuple[Elem, ...]:
    cached = _elem_cache.get(segs)
    if cached is not None:
        return cached
    out: list[Elem] = []
    node: S.SchemaNode = S.ROOT
    for s in segs:
        if isinstance(s, tuple):
            assert isinstance(node, S.ListNode)
            last = out[-1]
            out[-1] = Elem(last.name, tuple(
                (k, "*" if v is WILD else S.key_text(v)) for k, v in zip(node.keys, s, strict=True)))
        else:
            assert isinstance(node, (S.Container, S.ListNode))
            node = node.children[s]
            out.append(Elem(s))
    res = tuple(out)
    if len(_elem_cache) > 50_000:  # bounded: paths repeat, but every device has its own keys
        _elem_cache.clear()
    _elem_cache[segs] = res
    return res


def elems_proto(elems: Iterable[Elem], origin: str = "", target: str = "") -> gnmi_pb2.Path:
    p = gnmi_pb2.Path(origin=origin, target=target)
    for e in elems:
        if e.keys:
            p.elem.add(name=e.name, key=dict(e.keys))
        else:
            p.elem.add(name=e.name)
    return p


def iter_leaf_segs(node: S.SchemaNode, segs: Segs = ()) -> Iterator[tuple[Segs, S.Leaf]]:
    """Schema leaves under ``node`` as pattern segs with WILD keys (used by tests and docs)."""
    if isinstance(node, S.Leaf):
        yield segs, node
        return
    for ch in node.children.values():
        c = (*segs, ch.name)
        if isinstance(ch, S.ListNode):
            c = (*c, tuple(WILD for _ in ch.keys))
        yield from iter_leaf_segs(ch, c)
