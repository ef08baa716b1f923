"""Pure operations on a device's data tree: Set transactions, validation, diff, JSON, state.

No I/O and no asyncio here, so everything is unit-testable in microseconds.

Representation: containers are ``dict`` (child name -> value), lists are ``dict`` (key tuple
-> entry dict), leaves are scalars. Trees are persistent: a committed tree is never mutated.
A ``Txn`` copies only the dicts on the paths it changes (copy-on-write), so a Set costs in
proportion to what it touches, the old tree stays a consistent snapshot for readers, and
rollback is simply dropping the transaction. The diff between old and new tree skips shared
(identical) subtrees, which makes it proportional to the change as well.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from devicesim import schema as S
from devicesim.errors import GnmiError, UnknownMember
from devicesim.official import OfficialModels
from devicesim.paths import WILD, Pattern, Segs, match_prefix, node_at, parse_text, segs_text

INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND

MISSING: Any = object()
_EMPTY: dict[str, Any] = {}  # shared, never mutated

# Traffic model for the counters (see docs/devicesim.md): an UP subinterface sends at the CIR
# of the scheduler policy bound to it on output, or at DEFAULT_RATE_BPS without one, and
# receives at half that rate. The parent interface counts the sum of its subinterfaces.
DEFAULT_RATE_BPS = 1_000_000
PHYSICAL_TYPE = "ethernetCsmacd"
_if_list = node_at(("interfaces", "interface"))
assert isinstance(_if_list, S.ListNode)
IF_LIST: S.ListNode = _if_list


def _invalid(segs: Segs, message: str) -> GnmiError:
    return GnmiError(INVALID, f"{segs_text(segs)}: {message}")


# ---------------------------------------------------------------------------------------------
# Defaults and list entry normalisation

_has_defaults: dict[int, bool] = {}


def _container_has_defaults(node: S.Container | S.ListNode) -> bool:
    got = _has_defaults.get(id(node))
    if got is None:
        got = False
        for ch in node.children.values():
            if not ch.config:
                continue
            if (isinstance(ch, S.Leaf) and ch.default is not None) or (
                    isinstance(ch, S.Container) and _container_has_defaults(ch)):
                got = True
        _has_defaults[id(node)] = got
    return got


def with_defaults(node: S.Container | S.ListNode, d: dict[str, Any]) -> dict[str, Any]:
    """``d`` with missing default leaves filled in (containers, not list entries, are descended).

    Returns ``d`` itself when nothing is missing, so shared subtrees stay shared.
    """
    if not _container_has_defaults(node):
        return d
    out = d
    for ch in node.children.values():
        if not ch.config:
            continue
        name = ch.name
        if isinstance(ch, S.Leaf):
            if ch.default is not None and name not in d:
                if out is d:
                    out = dict(d)
                out[name] = ch.default
        elif isinstance(ch, S.Container):
            sub = d.get(name)
            base = sub if sub is not None else _EMPTY
            new = with_defaults(ch, base)
            if new is not base:
                if out is d:
                    out = dict(d)
                out[name] = new
    return out


def deep_defaults(node: S.Container | S.ListNode, d: dict[str, Any]) -> dict[str, Any]:
    """Like ``with_defaults`` but also into the entries of nested lists (for new subtrees)."""
    out = d
    for ch in node.children.values():
        if not ch.config:
            continue
        name = ch.name
        cur = d.get(name, MISSING)
        if isinstance(ch, S.Leaf):
            if cur is MISSING and ch.default is not None:
                if out is d:
                    out = dict(d)
                out[name] = ch.default
        elif isinstance(ch, S.Container):
            base = cur if cur is not MISSING else _EMPTY
            new = deep_defaults(ch, base)
            if new is not base:
                if out is d:
                    out = dict(d)
                out[name] = new
        elif cur is not MISSING:
            new_l: dict[Any, Any] | None = None
            for k, e in cur.items():
                ne = deep_defaults(ch, e)
                if ne is not e:
                    if new_l is None:
                        new_l = dict(cur)
                    new_l[k] = ne
            if new_l is not None:
                if out is d:
                    out = dict(d)
                out[name] = new_l
    return out


def normalize_entry(lst: S.ListNode, key: tuple[Any, ...], entry: dict[str, Any],
                    defaults: bool = True) -> dict[str, Any]:
    """Key leaves (``name`` and ``config/name``) set from the path key, defaults filled in."""
    out = entry
    for k, v in zip(lst.keys, key, strict=True):
        if out.get(k, MISSING) != v:
            if out is entry:
                out = dict(entry)
            out[k] = v
    cfg_node = lst.children.get("config")
    if isinstance(cfg_node, S.Container):
        cfg = out.get("config")
        fix = {k: v for k, v in zip(lst.keys, key, strict=True)
               if k in cfg_node.children and (cfg is None or cfg.get(k, MISSING) != v)}
        if fix:
            new_cfg = dict(cfg) if cfg is not None else {}
            new_cfg.update(fix)
            if out is entry:
                out = dict(entry)
            out["config"] = new_cfg
    return with_defaults(lst, out) if defaults else out


# ---------------------------------------------------------------------------------------------
# JSON -> internal (validated)


def _member_name(node: S.Container | S.ListNode, name: str, segs: Segs) -> S.SchemaNode:
    bare = name
    if ":" in name:
        mod, _, bare = name.partition(":")
        child = node.children.get(bare)
        if child is None or child.module != mod:
            raise UnknownMember(NOT_FOUND, f"{segs_text(segs)}: unknown element {name!r} "
                                           f"(not in the schema under {node.schema_path or '/'})")
        return child
    child = node.children.get(bare)
    if child is None:
        raise UnknownMember(NOT_FOUND, f"{segs_text(segs)}: unknown element {name!r} "
                                       f"(not in the schema under {node.schema_path or '/'})")
    return child


def decode_leaf(leaf: S.Leaf, value: Any, segs: Segs) -> Any:
    if value is None:
        raise _invalid(segs, "null is not a valid value (use delete to remove a leaf)")
    if isinstance(value, (dict, list)):
        raise _invalid(segs, f"{leaf.name} is a leaf of type {leaf.type.describe()}; got a JSON "
                             f"{'object' if isinstance(value, dict) else 'array'}")
    try:
        return S.check_scalar(leaf.type, value)
    except S.ValueError_ as err:
        msg = str(err) if leaf.type.kind in ("uint", "enum", "identity") else f"{err} ({leaf.type.describe()})"
        raise _invalid(segs, msg) from None


# ---------------------------------------------------------------------------------------------
# Diff


@dataclass
class Diff:
    """Leaf-level changes between two trees.

    updates: (leaf path, new value) for every created or changed leaf.
    deletes: paths of removed leaves and list entries (a removed container is reported as the
    leaves and entries it held, so deletes are always at a leaf or an entry).
    """

    updates: list[tuple[Segs, Any]] = field(default_factory=list)
    deletes: list[tuple[Segs, Any]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.updates or self.deletes)


def iter_leaves(segs: Segs, value: Any) -> Iterator[tuple[Segs, Any]]:
    if type(value) is dict:
        for k, v in value.items():
            yield from iter_leaves((*segs, k), v)
    else:
        yield segs, value


def _removed(segs: Segs, value: Any, out: list[tuple[Segs, Any]]) -> None:
    if type(value) is dict:
        if segs and type(segs[-1]) is tuple:
            out.append((segs, value))
        else:
            for k, v in value.items():
                _removed((*segs, k), v, out)
    else:
        out.append((segs, value))


def diff_trees(old: dict[str, Any], new: dict[str, Any], segs: Segs = (),
               out: Diff | None = None) -> Diff:
    out = Diff() if out is None else out
    if old is new:
        return out
    for k, nv in new.items():
        ov = old.get(k, MISSING)
        if ov is nv:
            continue
        p = (*segs, k)
        if type(nv) is dict:
            if type(ov) is dict:
                diff_trees(ov, nv, p, out)
            else:
                out.updates.extend(iter_leaves(p, nv))
        elif ov is MISSING or ov != nv:
            out.updates.append((p, nv))
    for k in [k for k in old if k not in new]:
        _removed((*segs, k), old[k], out.deletes)
    return out


# ---------------------------------------------------------------------------------------------
# Reading


def lookup(root: dict[str, Any], segs: Segs) -> Any:
    d: Any = root
    for s in segs:
        if type(d) is not dict:
            return MISSING
        d = d.get(s, MISSING)
        if d is MISSING:
            return MISSING
    return d


def expand(root: dict[str, Any], pattern: Segs) -> Iterator[tuple[Segs, Any]]:
    """Existing nodes matching ``pattern`` (WILD keys expanded), as (concrete path, value)."""
    n = len(pattern)

    def rec(d: Any, i: int, segs: Segs) -> Iterator[tuple[Segs, Any]]:
        if i == n:
            yield segs, d
            return
        if type(d) is not dict:
            return
        p = pattern[i]
        if type(p) is tuple and any(v is WILD for v in p):
            for k, v in d.items():
                if all(a is WILD or a == b for a, b in zip(p, k, strict=True)):
                    yield from rec(v, i + 1, (*segs, k))
            return
        v = d.get(p, MISSING)
        if v is not MISSING:
            yield from rec(v, i + 1, (*segs, p))

    yield from rec(root, 0, ())


def has_leaf(value: Any) -> bool:
    if type(value) is not dict:
        return True
    return any(has_leaf(v) for v in value.values())


# ---------------------------------------------------------------------------------------------
# internal -> JSON

DATATYPES = ("ALL", "CONFIG", "STATE", "OPERATIONAL")


def leaf_json(leaf: S.Leaf, value: Any, ietf: bool) -> Any:
    if ietf:
        t = leaf.type
        if t.kind == "identity":
            return f"{t.identity_module}:{value}"
        if t.kind == "uint" and t.bits == 64:
            return str(value)  # RFC 7951: 64-bit integers are JSON strings
    return value


def _keep_leaf(leaf: S.Leaf, dtype: str) -> bool:
    if dtype == "ALL":
        return True
    if dtype == "CONFIG":
        return leaf.config
    if dtype == "STATE":
        return not leaf.config
    return leaf.operational


def encode(node: S.SchemaNode, value: Any, *, entry: bool, dtype: str = "ALL", ietf: bool = False,
           top: bool = True) -> Any:
    """JSON-able form of ``value`` (the data at ``node``), or None if the filter leaves nothing.

    entry: the value is one list entry (rather than the whole list) when ``node`` is a list.
    In JSON_IETF, member names are module-qualified at the top level and where the module
    changes (RFC 7951).
    """
    if isinstance(node, S.Leaf):
        return leaf_json(node, value, ietf) if _keep_leaf(node, dtype) else None
    if isinstance(node, S.ListNode) and not entry:
        items = [encode(node, e, entry=True, dtype=dtype, ietf=ietf, top=False) for e in value.values()]
        kept = [i for i in items if i is not None]
        return kept or None
    assert isinstance(node, (S.Container, S.ListNode))
    keys = node.keys if isinstance(node, S.ListNode) else ()
    keys_count = dtype in ("ALL", "CONFIG")
    out: dict[str, Any] = {}
    content = False
    for name, ch in node.children.items():
        v = value.get(name, MISSING)
        if v is MISSING:
            continue
        enc = encode(ch, v, entry=False, dtype=dtype, ietf=ietf, top=False)
        if enc is None:
            if name in keys and isinstance(ch, S.Leaf):
                enc = leaf_json(ch, v, ietf)
            else:
                continue
        if name not in keys or keys_count:
            content = True
        member = f"{ch.module}:{name}" if ietf and (top or ch.module != node.module) else name
        out[member] = enc
    return out if content else None


# ---------------------------------------------------------------------------------------------
# Strict devices: YANG defaults from the official models, state that mirrors config

IF_SHAPE = ("interfaces", "interface")
_subif = node_at(("interfaces", "interface", (WILD,), "subinterfaces", "subinterface"))
_addr = node_at(("interfaces", "interface", (WILD,), "subinterfaces", "subinterface", (WILD,), "ipv4",
                 "addresses", "address"))
assert isinstance(_subif, S.ListNode) and isinstance(_addr, S.ListNode)
SUBIF_LIST: S.ListNode = _subif
ADDR_LIST: S.ListNode = _addr
SUBIF_SHAPE = ("interfaces", "interface", "subinterfaces", "subinterface")
ADDR_SHAPE = (*SUBIF_SHAPE, "ipv4", "addresses", "address")

_names_cache: dict[Segs, tuple[str, ...]] = {}


def names_of(segs: Segs) -> tuple[str, ...]:
    """The schema position of a concrete path: its names without the list keys."""
    got = _names_cache.get(segs)
    if got is None:
        got = tuple(s for s in segs if type(s) is str)
        if len(_names_cache) >= 50_000:
            _names_cache.clear()
        _names_cache[segs] = got
    return got


_leaves: dict[tuple[str, ...], S.Leaf] = {}


def _leaf_at(segs: Segs) -> S.Leaf:
    names = names_of(segs)
    leaf = _leaves.get(names)
    if leaf is None:
        node = node_at(segs)
        assert isinstance(node, S.Leaf)
        leaf = _leaves[names] = node
    return leaf


def _mirror(cfg: Mapping[str, Any], state: dict[str, Any], names: tuple[str, ...]) -> None:
    for n in names:
        if n in cfg:
            state[n] = cfg[n]


def fill_defaults(node: S.Container | S.ListNode, d: dict[str, Any], shape: tuple[str, ...],
                  official: OfficialModels) -> dict[str, Any]:
    """``d`` with the official YANG default of every missing config leaf of the subset, in the
    containers below ``node`` (list entries below are filled on their own). ``d`` if none is missing."""
    out = d
    for ch in node.children.values():
        if not ch.config or isinstance(ch, S.ListNode):
            continue
        if isinstance(ch, S.Leaf):
            if ch.name not in d:
                dv = official.default((*shape, ch.name))
                if dv is not None:
                    if out is d:
                        out = dict(d)
                    out[ch.name] = dv
            continue
        sub = d.get(ch.name, _EMPTY)
        new = fill_defaults(ch, sub, (*shape, ch.name), official)
        if new is not sub:
            if out is d:
                out = dict(d)
            out[ch.name] = new
    return out


def strict_subinterface(sub: dict[str, Any], official: OfficialModels) -> dict[str, Any]:
    """A subinterface as a real router reports it: defaults filled, ipv4 state mirroring config."""
    sub = fill_defaults(SUBIF_LIST, sub, SUBIF_SHAPE, official)
    ipv4 = sub.get("ipv4")
    if not ipv4:
        return sub
    new = dict(ipv4)
    cfg = ipv4.get("config", _EMPTY)
    new["state"] = dict(cfg)
    pa = ipv4.get("proxy-arp")
    if pa and "config" in pa:
        new["proxy-arp"] = {**pa, "state": dict(pa["config"])}
    addrs = ipv4.get("addresses", _EMPTY).get("address")
    if addrs:
        new_addrs = {}
        for k, a in addrs.items():
            a = fill_defaults(ADDR_LIST, a, ADDR_SHAPE, official)
            new_addrs[k] = {**a, "state": {**a.get("config", _EMPTY), "origin": "STATIC"}}
        new["addresses"] = {**ipv4["addresses"], "address": new_addrs}
    return {**sub, "ipv4": new}


# ---------------------------------------------------------------------------------------------
# Validation rules, compiled from the schema once


@dataclass(frozen=True)
class _RefRule:
    container: S.Container
    ref: S.Reference
    source: Segs  # pattern of the referencing container, all keys WILD
    target: tuple[Any, ...]  # template segs: names, and tuples of field names for keys
    target_shape: tuple[str, ...]


def _shape(segs: Segs) -> tuple[str, ...]:
    return tuple(s if type(s) is str else "[]" for s in segs)


def _pattern_of(node: S.SchemaNode) -> Segs:
    chain: list[S.Node] = []
    cur: S.Node | None = node
    while cur is not None and cur.name:
        chain.append(cur)
        cur = cur.parent
    segs: list[Any] = []
    for n in reversed(chain):
        segs.append(n.name)
        if isinstance(n, S.ListNode):
            segs.append(tuple(WILD for _ in n.keys))
    return tuple(segs)


def _compile_refs() -> list[_RefRule]:
    rules = []
    for node in S.walk():
        if isinstance(node, S.Container):
            for ref in node.refs:
                target: list[Any] = []
                for e in parse_text(ref.target):
                    target.append(e.name)
                    if e.keys:
                        target.append(tuple(v.strip("{}") for _, v in e.keys))
                rules.append(_RefRule(node, ref, _pattern_of(node), tuple(target), _shape(tuple(target))))
    return rules


REF_RULES = _compile_refs()


@dataclass
class _LeafRules:
    refs: list[_RefRule]
    musts: list[S.AtLeast]
    uniques: list[tuple[int, S.ListNode, tuple[str, ...]]]  # (segs to drop, list, rel path)


_leaf_rules: dict[tuple[str, ...], _LeafRules | None] = {}


_rules_by_segs: dict[Segs, _LeafRules | None] = {}


def _rules_for(segs: Segs) -> _LeafRules | None:
    """Validation rules that a change of the leaf at ``segs`` triggers (memoised: hot path)."""
    try:
        return _rules_by_segs[segs]
    except KeyError:
        pass
    rules = _rules_for_shape(segs)
    if len(_rules_by_segs) >= 50_000:  # bounded: concrete paths of every device pass through
        _rules_by_segs.clear()
    _rules_by_segs[segs] = rules
    return rules


def _rules_for_shape(segs: Segs) -> _LeafRules | None:
    shape = _shape(segs)
    if shape in _leaf_rules:
        return _leaf_rules[shape]
    node = node_at(segs)
    rules: _LeafRules | None = None
    if isinstance(node, S.Leaf) and node.config:
        parent = node.parent
        refs = [r for r in REF_RULES if r.container is parent and node.name in r.ref.fields]
        musts = [m for m in (parent.musts if isinstance(parent, S.Container) else ())
                 if node.name in (m.leaf, m.other)]
        uniques = []
        rel: list[str] = [node.name]
        cur = parent
        while cur is not None:
            if isinstance(cur, S.ListNode):
                if tuple(rel) in cur.unique:
                    uniques.append((len(rel) + 1, cur, tuple(rel)))
                break  # uniqueness is scoped to the nearest enclosing list
            rel.insert(0, cur.name)
            cur = cur.parent
        if refs or musts or uniques:
            rules = _LeafRules(refs, musts, uniques)
    _leaf_rules[shape] = rules
    return rules


# ---------------------------------------------------------------------------------------------
# Transactions


@dataclass
class OpRecord:
    label: object  # str() gives e.g. "update[0] /interfaces/interface[name=Ethernet1]/config/mtu"
    segs: Segs


class Txn:
    """A Set (or out-of-band change) being built on a copy-on-write copy of ``root``.

    Call delete/replace/update in gNMI order, then ``finish()`` which restores invariants
    (physical ports, derived state), diffs against the old tree and validates the result.

    Every write to the new tree goes through ``_set``/``_del``: for a dict copied from the old
    tree the written keys are recorded, so the diff visits only those (a Set costs the same on
    a device with 8 subinterfaces as on one with 8000).
    """

    def __init__(self, root: dict[str, Any], ports: Sequence[str], links: Mapping[str, bool],
                 official: OfficialModels | None = None) -> None:
        self.old = root
        # strict devices: checked against the official models, YANG defaults and state filled in
        self.official = official
        # dicts of the new tree that may be mutated in place; holding them keeps ids unique
        self.fresh: dict[int, dict[Any, Any]] = {}
        # id(copy) -> (the old dict it was copied from, keys written since)
        self.origin: dict[int, tuple[dict[Any, Any], set[Any]]] = {}
        self.root: dict[str, Any] = self._copy(root)
        self.ports = tuple(ports)
        self.port_set = frozenset(ports)
        self.links = links
        self.all_interfaces = False
        self.affected: dict[Any, set[Any] | None] = {}
        self.ops: list[OpRecord] = []
        self.current: OpRecord | None = None

    # -- navigation -----------------------------------------------------------------------------

    def _own(self, d: dict[Any, Any]) -> dict[Any, Any]:
        """Mark a dict built during this transaction as mutable in place."""
        self.fresh[id(d)] = d
        return d

    def _copy(self, src: dict[Any, Any]) -> dict[Any, Any]:
        d = self._own(dict(src))
        self.origin[id(d)] = (src, set())
        return d

    def _set(self, d: dict[Any, Any], key: Any, value: Any) -> None:
        d[key] = value
        rec = self.origin.get(id(d))
        if rec is not None:
            rec[1].add(key)

    def _del(self, d: dict[Any, Any], key: Any) -> None:
        del d[key]
        rec = self.origin.get(id(d))
        if rec is not None:
            rec[1].add(key)

    def _mut_child(self, parent: dict[Any, Any], key: Any) -> dict[Any, Any]:
        child = parent[key]
        if id(child) not in self.fresh:
            child = self._copy(child)
            self._set(parent, key, child)
        return child

    def _mut(self, segs: Segs, create: bool) -> dict[Any, Any] | None:
        """The mutable dict at ``segs`` (container, list or entry), copying along the way."""
        d: dict[Any, Any] = self.root
        fresh, origin = self.fresh, self.origin
        for s in segs:  # fast path: everything exists (``_copy`` and ``_set`` inlined: hot)
            child = d.get(s)
            if child is None:
                break
            if id(child) not in fresh:
                src = child
                child = dict(src)
                fresh[id(child)] = child
                origin[id(child)] = (src, set())
                d[s] = child
                rec = origin.get(id(d))
                if rec is not None:
                    rec[1].add(s)
            d = child
        else:
            return d
        return self._mut_slow(segs, create) if create else None

    def _mut_slow(self, segs: Segs, create: bool) -> dict[Any, Any] | None:
        """``_mut`` creating what is missing: new list entries get their keys and defaults."""
        node: S.SchemaNode = S.ROOT
        d: dict[Any, Any] = self.root
        for i, s in enumerate(segs):
            if type(s) is tuple:
                assert isinstance(node, S.ListNode)
                if s in d:
                    d = self._mut_child(d, s)
                elif create:
                    self._check_key_source(node, s, segs[: i + 1])
                    e = self._own(normalize_entry(node, s, {}))
                    self._set(d, s, e)
                    d = e
                else:
                    return None
            else:
                assert isinstance(node, (S.Container, S.ListNode))
                node = node.children[s]
                if s in d:
                    d = self._mut_child(d, s)
                elif create:
                    nd: dict[Any, Any] = self._own({})
                    self._set(d, s, nd)
                    d = nd
                else:
                    return None
        return d

    def _check_key_source(self, lst: S.ListNode, key: tuple[Any, ...], segs: Segs) -> None:
        if lst.key_source == "ports" and key[0] not in self.port_set:
            raise _invalid(segs, f"interface {key[0]!r} is not a physical port of this device; "
                                 f"subinterfaces and config need an existing port "
                                 f"(ports: {', '.join(self.ports)})")

    def _touch(self, segs: Segs) -> None:
        """Remember which interfaces need their derived state recomputed."""
        if not segs:
            self.all_interfaces = True
            return
        if segs[0] != "interfaces":
            return
        if len(segs) < 3 or segs[2][0] is WILD:
            self.all_interfaces = True
            return
        name = segs[2][0]
        if len(segs) >= 6 and segs[3] == "subinterfaces" and segs[5][0] is not WILD:
            subs = self.affected.get(name, MISSING)
            if subs is MISSING:
                self.affected[name] = {segs[5][0]}
            elif subs is not None:
                subs.add(segs[5][0])
        else:
            self.affected[name] = None

    # -- decoding -------------------------------------------------------------------------------

    def _decode_members(self, node: S.Container | S.ListNode, value: Any, segs: Segs, ietf: bool,
                        key: tuple[Any, ...] | None = None) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise _invalid(segs, f"expected a JSON object for {node.schema_path or '/'}, got "
                                 f"{S._show(value)}")
        out: dict[str, Any] = {}
        for name, v in value.items():
            ch = _member_name(node, name, segs)
            if not ch.config:
                raise _invalid((*segs, ch.name), "is read-only state (config false); Set accepts config only")
            csegs = (*segs, ch.name)
            if isinstance(ch, S.Leaf):
                dv = decode_leaf(ch, v, csegs)
                if key is not None and isinstance(node, S.ListNode) and ch.name in node.keys:
                    self._check_key_value(node, key, ch.name, dv, csegs)
                out[ch.name] = dv
            elif isinstance(ch, S.ListNode):
                out[ch.name] = self._decode_list(ch, v, csegs, ietf)
            else:
                sub = self._decode_members(ch, v, csegs, ietf)
                if key is not None and isinstance(node, S.ListNode) and ch.name == "config":
                    for k in node.keys:
                        if k in sub:
                            self._check_key_value(node, key, k, sub[k], (*csegs, k))
                out[ch.name] = sub
        return out

    @staticmethod
    def _check_key_value(lst: S.ListNode, key: tuple[Any, ...], name: str, value: Any, segs: Segs) -> None:
        expected = key[lst.keys.index(name)]
        if value != expected:
            raise _invalid(segs, f"key leaf {name}={S._show(value)} does not match the list key "
                                 f"{name}={S._show(expected)} in the path")

    def _decode_entry(self, lst: S.ListNode, key: tuple[Any, ...], value: Any, segs: Segs,
                      ietf: bool) -> dict[str, Any]:
        self._check_key_source(lst, key, segs)
        d = self._decode_members(lst, value, segs, ietf, key=key)
        return normalize_entry(lst, key, d, defaults=False)

    def _decode_list(self, lst: S.ListNode, value: Any, segs: Segs, ietf: bool) -> dict[Any, Any]:
        if not isinstance(value, list):
            raise _invalid(segs, f"{lst.schema_path} is a list; expected a JSON array of entries")
        out: dict[Any, Any] = {}
        for item in value:
            if not isinstance(item, dict):
                raise _invalid(segs, "list entries must be JSON objects")
            vals = []
            for k, t in zip(lst.keys, lst.key_types(), strict=True):
                raw = item.get(k, MISSING)
                if raw is MISSING:
                    # module-qualified key leaf names are legal in JSON_IETF
                    raw = item.get(f"{lst.module}:{k}", MISSING)
                if raw is MISSING:
                    raise _invalid(segs, f"list entry without its key leaf {k!r}")
                try:
                    vals.append(S.check_scalar(t, raw))
                except S.ValueError_ as err:
                    raise _invalid(segs, f"key {k}: {err}") from None
            key = tuple(vals)
            if key in out:
                raise _invalid(segs, f"duplicate list entry {key!r}")
            esegs = (*segs, key)
            out[key] = self._decode_entry(lst, key, item, esegs, ietf)
        return out

    # -- operations -----------------------------------------------------------------------------

    def _begin(self, label: object, segs: Segs) -> None:
        self.current = OpRecord(label, segs)
        self.ops.append(self.current)

    def _merge(self, target: dict[Any, Any], src: dict[Any, Any], node: S.Container | S.ListNode,
               is_list: bool) -> None:
        """Merge decoded ``src`` into ``target``; only newly created parts get defaults."""
        for k, v in src.items():
            if type(v) is dict:
                child: S.SchemaNode = node if is_list else node.children[k]
                child_is_list = not is_list and isinstance(child, S.ListNode)
                cur = target.get(k)
                if type(cur) is dict:
                    assert not isinstance(child, S.Leaf)
                    self._merge(self._mut_child(target, k), v, child, child_is_list)
                    continue
                assert not isinstance(child, S.Leaf)
                v = ({ek: deep_defaults(child, e) for ek, e in v.items()} if child_is_list
                     else deep_defaults(child, v))
            self._set(target, k, v)

    def _set_leaf(self, pat: Pattern, value: Any) -> None:
        leaf = pat.node
        assert isinstance(leaf, S.Leaf)
        segs = pat.segs
        v = decode_leaf(leaf, value, segs)
        slot = pat.key_slot
        if slot is not None and v != segs[slot[0]][slot[1]]:
            raise _invalid(segs, f"key leaf {leaf.name}={S._show(v)} does not match the list key "
                                 f"{leaf.name}={S._show(segs[slot[0]][slot[1]])} in the path")
        d = self._mut(pat.parent_segs, create=True)
        assert d is not None
        if d.get(leaf.name, MISSING) != v:
            self._set(d, leaf.name, v)

    def _concrete(self, pat: Pattern, op: str) -> None:
        if pat.wild:
            raise _invalid(pat.segs, f"{op} needs a complete path: every list element needs all its "
                                     f"keys and no wildcards (partial key sets are not allowed)")
        if not pat.node.config:
            raise _invalid(pat.segs, "is read-only state (config false)")

    def update(self, pat: Pattern, value: Any, ietf: bool = False, label: object = "update") -> None:
        self._begin(label, pat.segs)
        self._concrete(pat, "update")
        node, segs = pat.node, pat.segs
        self._touch(segs)
        if isinstance(node, S.Leaf):
            self._set_leaf(pat, value)
            return
        if pat.list_node:
            assert isinstance(node, S.ListNode)
            decoded = self._decode_list(node, value, segs, ietf)
            target = self._mut(segs, create=True)
        elif isinstance(node, S.ListNode):
            decoded = self._decode_entry(node, segs[-1], value, segs, ietf)
            target = self._mut(segs, create=True)
        else:
            assert isinstance(node, S.Container)
            decoded = self._decode_members(node, value, segs, ietf)
            target = self._mut(segs, create=True)
        assert target is not None
        self._merge(target, decoded, node, pat.list_node)

    def replace(self, pat: Pattern, value: Any, ietf: bool = False, label: object = "replace") -> None:
        self._begin(label, pat.segs)
        self._concrete(pat, "replace")
        node, segs = pat.node, pat.segs
        self._touch(segs)
        if isinstance(node, S.Leaf):
            self._set_leaf(pat, value)
            return
        if pat.list_node:
            assert isinstance(node, S.ListNode)
            decoded = {k: deep_defaults(node, e)
                       for k, e in self._decode_list(node, value, segs, ietf).items()}
        elif isinstance(node, S.ListNode):
            if value == {}:
                raise _invalid(segs, "replacing a list entry with an empty object would leave it "
                                     "without keys; use delete")
            decoded = deep_defaults(node, self._decode_entry(node, segs[-1], value, segs, ietf))
        else:
            assert isinstance(node, S.Container)
            decoded = deep_defaults(node, self._decode_members(node, value, segs, ietf))
        self._own(decoded)
        if not segs:
            self.root = decoded
            return
        parent = self._mut(segs[:-1], create=True)
        assert parent is not None
        self._set(parent, segs[-1], decoded)
        self._renormalize(segs)

    def _renormalize(self, segs: Segs) -> None:
        """Restore keys/defaults of the entry enclosing ``segs`` after part of it went away."""
        for j in range(len(segs) - 1, 0, -1):
            if type(segs[j]) is tuple:
                if j == len(segs) - 1:
                    return  # the entry itself was replaced/decoded, already normalised
                lst = node_at(segs[:j])
                assert isinstance(lst, S.ListNode)
                parent = self._mut(segs[:j], create=False)
                if parent is None or segs[j] not in parent:
                    return
                entry = parent[segs[j]]
                new = normalize_entry(lst, segs[j], entry)
                if new is not entry:
                    self._set(parent, segs[j], self._own(new))
                return

    def delete(self, pat: Pattern, label: object = "delete") -> None:
        self._begin(label, pat.segs)
        if not pat.node.config:
            raise _invalid(pat.segs, "is read-only state (config false) and cannot be deleted")
        node = pat.node
        if isinstance(node, S.Leaf):
            parent = node.parent
            if (isinstance(parent, S.ListNode) and node.name in parent.keys) or (
                    isinstance(parent, S.Container) and parent.name == "config"
                    and isinstance(parent.parent, S.ListNode) and node.name in parent.parent.keys):
                raise _invalid(pat.segs, "is a list key leaf; delete the list entry instead")
        matches = [segs for segs, _ in expand(self.root, pat.segs)]
        for segs in matches:
            self._touch(segs)
            self._delete_one(segs, node)

    def _delete_one(self, segs: Segs, node: S.SchemaNode) -> None:
        if not segs:
            self.root = self._own({})
            return
        parent = self._mut(segs[:-1], create=False)
        if parent is None or segs[-1] not in parent:
            return
        if isinstance(node, S.Leaf) and node.default is not None:
            self._set(parent, segs[-1], node.default)  # a leaf with a default reverts to it
            return
        self._del(parent, segs[-1])
        self._prune(segs[:-1])
        self._renormalize(segs)

    def _prune(self, segs: Segs) -> None:
        """Drop containers and lists left empty, up to the nearest list entry."""
        while segs and type(segs[-1]) is not tuple:
            d = lookup(self.root, segs)
            if d is MISSING or d:
                return
            parent = self._mut(segs[:-1], create=False)
            assert parent is not None
            self._del(parent, segs[-1])
            segs = segs[:-1]

    # -- commit ---------------------------------------------------------------------------------

    def touch_interface(self, name: str) -> None:
        self.affected[name] = None

    def finish(self, validate: bool = True) -> Diff:
        """Restore invariants, diff against the old tree and validate. Raises GnmiError."""
        names = self.ports if self.all_interfaces else tuple(self.affected)
        if names:
            lst = self._mut(("interfaces", "interface"), create=True)
            assert lst is not None
            for name in names:
                key = (name,)
                entry = lst.get(key)
                if entry is None:
                    # a physical port cannot disappear: deleting it resets its config
                    entry = normalize_entry(IF_LIST, key, {"config": {"type": PHYSICAL_TYPE}})
                    self._set(lst, key, entry)
                elif "type" not in entry.get("config", _EMPTY):
                    e = self._mut_child(lst, key)
                    cfg = self._mut_child(e, "config")
                    self._set(cfg, "type", PHYSICAL_TYPE)
                self._derive(name, None if self.all_interfaces else self.affected.get(name))
        diff = self._diff(self.old, self.root, (), Diff())
        if validate:
            self._validate(diff)
            if self.official is not None:
                self._check_official(diff, self.official)
        return diff

    def _check_official(self, diff: Diff, official: OfficialModels) -> None:
        """Every changed config leaf must exist in the published models and fit its type there."""
        for segs, value in diff.updates:
            leaf = _leaf_at(segs)
            if not leaf.config:
                continue
            t = leaf.type
            reason = official.check(names_of(segs), value, t.identity_module if t.kind == "identity" else "")
            if reason is not None:
                rev = official.revisions.get(leaf.module)
                self._fail(_invalid(segs, f"{reason} [{leaf.module}{'@' + rev if rev else ''}]"), segs)

    def _diff(self, old: dict[Any, Any], new: dict[Any, Any], segs: Segs, out: Diff) -> Diff:
        """``diff_trees`` that looks only at the keys written into dicts copied from ``old``."""
        if old is new:
            return out
        rec = self.origin.get(id(new))
        if rec is None or rec[0] is not old:
            return diff_trees(old, new, segs, out)  # built from scratch: compare everything
        for k in rec[1]:
            nv = new.get(k, MISSING)
            ov = old.get(k, MISSING)
            if ov is nv:
                continue
            p = (*segs, k)
            if nv is MISSING:
                _removed(p, ov, out.deletes)
            elif type(nv) is dict:
                if type(ov) is dict:
                    self._diff(ov, nv, p, out)
                else:
                    out.updates.extend(iter_leaves(p, nv))
            elif ov is MISSING or ov != nv:
                out.updates.append((p, nv))
        return out

    def _old_counters(self, segs: Segs) -> dict[str, int] | None:
        c = lookup(self.old, (*segs, "state", "counters"))
        return None if c is MISSING else c

    def _derive(self, name: str, subs: set[Any] | None) -> None:
        """Recompute config-derived state of one interface and (some of) its subinterfaces."""
        lst = self.root["interfaces"]["interface"]
        key = (name,)
        entry = lst[key]
        isegs = ("interfaces", "interface", key)
        cfg = entry.get("config", _EMPTY)
        enabled = cfg.get("enabled", True)
        link = self.links.get(name, True)
        admin = "UP" if enabled else "DOWN"
        oper = "UP" if enabled and link else "DOWN"
        cur = entry.get("state")
        counters = (cur or _EMPTY).get("counters") or self._old_counters(isegs) or {
            "in-octets": 0, "out-octets": 0}
        state = {"name": name, "oper-status": oper, "admin-status": admin,
                 "mtu": cfg.get("mtu", 1500), "counters": counters}
        official = self.official
        if official is not None:
            _mirror(cfg, state, ("type", "description", "enabled"))
            filled = fill_defaults(IF_LIST, entry, IF_SHAPE, official)
            if filled is not entry:
                self._set(lst, key, self._own(dict(filled)))
                entry = lst[key]
        if cur != state:
            e = self._mut_child(lst, key)
            self._set(e, "state", state)
            entry = e
        subifs = entry.get("subinterfaces", _EMPTY).get("subinterface", _EMPTY)
        for skey in list(subifs) if subs is None else [(i,) for i in subs]:
            sub = subifs.get(skey)
            if sub is None:
                continue
            scfg = sub.get("config", _EMPTY)
            s_en = scfg.get("enabled", True)
            scur = sub.get("state")
            ssegs = (*isegs, "subinterfaces", "subinterface", skey)
            scounters = (scur or _EMPTY).get("counters") or self._old_counters(ssegs) or {
                "in-octets": 0, "out-octets": 0}
            sstate = {"index": skey[0], "oper-status": "UP" if s_en and oper == "UP" else "DOWN",
                      "admin-status": "UP" if s_en else "DOWN", "counters": scounters}
            if official is not None:
                _mirror(scfg, sstate, ("description", "enabled"))
                new_sub = strict_subinterface({**sub, "state": sstate}, official)
                if new_sub != sub:
                    e = self._mut_child(lst, key)
                    subs_c = self._mut_child(e, "subinterfaces")
                    sl = self._mut_child(subs_c, "subinterface")
                    self._set(sl, skey, self._own(new_sub))
            elif scur != sstate:
                e = self._mut_child(lst, key)
                subs_c = self._mut_child(e, "subinterfaces")
                sl = self._mut_child(subs_c, "subinterface")
                se = self._mut_child(sl, skey)
                self._set(se, "state", sstate)

    # -- validation -----------------------------------------------------------------------------

    def _blame(self, segs: Segs) -> OpRecord | None:
        for op in reversed(self.ops):
            if match_prefix(op.segs, segs) or match_prefix(segs, op.segs):
                return op
        return self.ops[-1] if self.ops else None

    def _fail(self, err: GnmiError, segs: Segs) -> None:
        self.current = self._blame(segs)
        raise err

    def _validate(self, diff: Diff) -> None:
        refs: dict[Segs, list[_RefRule]] = {}
        musts: dict[Segs, list[S.AtLeast]] = {}
        uniques: dict[Segs, tuple[S.ListNode, tuple[str, ...]]] = {}
        for segs, _ in diff.updates:
            rules = _rules_for(segs)
            if rules is None:
                continue
            csegs = segs[:-1]
            for r in rules.refs:
                refs.setdefault(csegs, []).append(r)
            for m in rules.musts:
                musts.setdefault(csegs, []).append(m)
            for drop, lst, rel in rules.uniques:
                uniques[segs[:-drop]] = (lst, rel)
        if diff.deletes:
            for dsegs, _ in diff.deletes:
                shape = _shape(dsegs)
                for rule in REF_RULES:
                    if rule.target_shape[: len(shape)] == shape:
                        for csegs, _ in expand(self.root, rule.source):
                            lst_refs = refs.setdefault(csegs, [])
                            if rule not in lst_refs:
                                lst_refs.append(rule)
        for csegs, rules_ in refs.items():
            c = lookup(self.root, csegs)
            if c is MISSING:
                continue
            for rule in rules_:
                self._check_ref(csegs, c, rule, diff)
        for csegs, ms in musts.items():
            c = lookup(self.root, csegs)
            if c is MISSING:
                continue
            for m in ms:
                a, b = c.get(m.leaf), c.get(m.other)
                if a is not None and b is not None and a < b:
                    self._fail(_invalid(csegs, f"{m.leaf} ({a}) must be >= {m.other} ({b})"), csegs)
        for lsegs, (lst, rel) in uniques.items():
            entries = lookup(self.root, lsegs)
            if entries is MISSING:
                continue
            seen: dict[Any, Any] = {}
            for key, e in entries.items():
                v = lookup(e, rel)
                if v is MISSING:
                    continue
                if v in seen:
                    esegs = (*lsegs, key)
                    self._fail(_invalid(
                        (*esegs, *rel),
                        f"{rel[-1]} {v} is already used by {segs_text((*lsegs, seen[v]))} "
                        f"(unique among the entries of {lst.schema_path})"), esegs)
                seen[v] = key

    def _check_ref(self, csegs: Segs, c: dict[str, Any], rule: _RefRule, diff: Diff) -> None:
        ref = rule.ref
        if c.get(ref.fields[0]) is None:
            return  # an unset reference is allowed (nothing to resolve)
        target: list[Any] = []
        for seg in rule.target:
            if type(seg) is tuple:
                vals = [c.get(f) for f in seg]
                if any(v is None for v in vals):
                    missing = [f for f, v in zip(seg, vals, strict=True) if v is None]
                    if all(f in ref.optional for f in missing):
                        while target and type(target[-1]) is not tuple:
                            target.pop()  # cut back to the enclosing entry: reference the parent
                        break
                    self._fail(_invalid(csegs, f"reference needs {', '.join(missing)}"), csegs)
                target.append(tuple(vals))
            else:
                target.append(seg)
        tsegs = tuple(target)
        if lookup(self.root, tsegs) is MISSING:
            blame = csegs
            for dsegs, _ in diff.deletes:
                if match_prefix(dsegs, tsegs):
                    blame = dsegs  # the target went away in this transaction
            self._fail(_invalid(csegs, f"reference to {segs_text(tsegs)} which does not exist "
                                       f"(leafref {ref.target})"), blame)


# ---------------------------------------------------------------------------------------------
# Factory tree, config export, traffic


def factory_root(ports: Sequence[str], links: Mapping[str, bool],
                 official: OfficialModels | None = None) -> dict[str, Any]:
    """A device fresh from the box: every physical port with default config and its state."""
    txn = Txn({}, ports, links, official)
    txn.all_interfaces = True
    txn.finish(validate=False)
    return txn.root


def config_json(root: dict[str, Any]) -> dict[str, Any]:
    return encode(S.ROOT, root, entry=False, dtype="CONFIG") or {}


def traffic_rates(root: dict[str, Any]) -> dict[tuple[str, Any], int]:
    """Output rate (bits/s) per (interface, subinterface index or None) from QoS bindings."""
    qos = root.get("qos", _EMPTY)
    policies = qos.get("scheduler-policies", _EMPTY).get("scheduler-policy", _EMPTY)
    rates: dict[tuple[str, Any], int] = {}
    for entry in qos.get("interfaces", _EMPTY).get("interface", _EMPTY).values():
        ref = entry.get("interface-ref", _EMPTY).get("config", _EMPTY)
        pol = entry.get("output", _EMPTY).get("scheduler-policy", _EMPTY).get("config", _EMPTY).get("name")
        if "interface" not in ref or pol is None:
            continue
        scheds = policies.get((pol,), _EMPTY).get("schedulers", _EMPTY).get("scheduler", _EMPTY)
        for _, sched in sorted(scheds.items()):
            cir = sched.get("two-rate-three-color", _EMPTY).get("config", _EMPTY).get("cir")
            if cir is not None:
                rates[(ref["interface"], ref.get("subinterface"))] = cir
                break
    return rates


def tick_counters(root: dict[str, Any], dt_ns: int, rates: Mapping[tuple[str, Any], int],
                  default_bps: int = DEFAULT_RATE_BPS) -> dict[str, Any]:
    """``root`` with octet counters advanced by ``dt_ns`` of traffic on UP subinterfaces."""
    ifs = root.get("interfaces", _EMPTY).get("interface", _EMPTY)
    new_ifs: dict[Any, Any] | None = None
    for key, entry in ifs.items():
        name = key[0]
        subifs = entry.get("subinterfaces", _EMPTY).get("subinterface", _EMPTY)
        new_subifs: dict[Any, Any] | None = None
        tot_in = tot_out = 0
        for skey, sub in subifs.items():
            st = sub.get("state")
            if st is None or st.get("oper-status") != "UP":
                continue
            bps = rates.get((name, skey[0]), rates.get((name, None), default_bps))
            out_b = bps * dt_ns // 8_000_000_000
            in_b = out_b // 2
            if not out_b:
                continue
            c = st["counters"]
            new_sub = dict(sub)
            new_sub["state"] = {**st, "counters": {"in-octets": c["in-octets"] + in_b,
                                                   "out-octets": c["out-octets"] + out_b}}
            if new_subifs is None:
                new_subifs = dict(subifs)
            new_subifs[skey] = new_sub
            tot_in += in_b
            tot_out += out_b
        if new_subifs is None:
            continue
        st = entry["state"]
        c = st["counters"]
        new_entry = dict(entry)
        new_entry["subinterfaces"] = {**entry["subinterfaces"], "subinterface": new_subifs}
        new_entry["state"] = {**st, "counters": {"in-octets": c["in-octets"] + tot_in,
                                                 "out-octets": c["out-octets"] + tot_out}}
        if new_ifs is None:
            new_ifs = dict(ifs)
        new_ifs[key] = new_entry
    if new_ifs is None:
        return root
    return {**root, "interfaces": {**root["interfaces"], "interface": new_ifs}}


def reset_counters(root: dict[str, Any]) -> dict[str, Any]:
    """``root`` with every octet counter back at zero (a reboot)."""
    ifs = root.get("interfaces", _EMPTY).get("interface", _EMPTY)
    zero = {"in-octets": 0, "out-octets": 0}
    new_ifs = {}
    for key, entry in ifs.items():
        e = dict(entry)
        if "state" in e:
            e["state"] = {**e["state"], "counters": dict(zero)}
        subifs = e.get("subinterfaces", _EMPTY).get("subinterface")
        if subifs:
            e["subinterfaces"] = {**e["subinterfaces"], "subinterface": {
                k: ({**s, "state": {**s["state"], "counters": dict(zero)}} if "state" in s else s)
                for k, s in subifs.items()}}
        new_ifs[key] = e
    if not ifs:
        return root
    return {**root, "interfaces": {**root["interfaces"], "interface": new_ifs}}
