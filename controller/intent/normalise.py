"""Normalised OpenConfig JSON trees: equal configuration must compare equal, or it looks like drift.

Devices differ from our rendering in form, not substance, and every difference of form is false drift.
`normalise` removes them, on observed trees and on intent alike:

- module prefixes: JSON_IETF (RFC 7951) qualifies member names (`openconfig-interfaces:interfaces`) and
  identity values (`openconfig-network-instance-types:L3VRF`); both lose the module part, identity values
  only on identityref leaves (a port may well be named `openconfig-if:eth1`: names and keys are kept);
- `state` containers are dropped (operational data, never intent), then any container or list left empty;
- numbers: RFC 7951 encodes 64-bit integers as strings (`"cir": "100000000"`), and path keys are always
  strings; leaves take the type the official models give their position (`yang_facts`, generated from
  the models by `yanggen`), identityrefs lose their module;
- defaults the device fills in (`enabled` is true when absent) are filled on both sides;
- list entries are sorted by their keys, leaf-lists by value, so order never matters.

The schema facts cover the OpenConfig nodes that `render` writes; anything else keeps its form.
Trees are JSON values: dicts, lists, str, int, float, bool. Functions return new trees, never mutate.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from .paths import ROOT, GPath
from .yang_facts import FACTS

JsonValue = Any  # a JSON value: dict[str, JsonValue] | list[JsonValue] | str | int | float | bool
JsonObject = dict[str, Any]
SchemaPath = tuple[str, ...]  # member names from the root, without list keys

# Key leaves of each list, by schema path of the list.
LIST_KEYS: dict[SchemaPath, tuple[str, ...]] = {
    ("interfaces", "interface"): ("name",),
    ("interfaces", "interface", "subinterfaces", "subinterface"): ("index",),
    ("interfaces", "interface", "subinterfaces", "subinterface", "ipv4", "addresses", "address"): ("ip",),
    ("network-instances", "network-instance"): ("name",),
    ("network-instances", "network-instance", "interfaces", "interface"): ("id",),
    ("qos", "scheduler-policies", "scheduler-policy"): ("name",),
    ("qos", "scheduler-policies", "scheduler-policy", "schedulers", "scheduler"): ("sequence",),
    ("qos", "interfaces", "interface"): ("interface-id",),
}
# Leaves the device sets when a config container omits them, by schema path of the container.
DEFAULTS: dict[SchemaPath, JsonObject] = {
    ("interfaces", "interface", "config"): {"enabled": True},
    ("interfaces", "interface", "subinterfaces", "subinterface", "config"): {"enabled": True},
}


def strip_module(name: str) -> str:
    """`openconfig-interfaces:interfaces` -> `interfaces`."""
    return name.rpartition(":")[2]


def schema_path(path: GPath) -> SchemaPath:
    return tuple(strip_module(e.name) for e in path.elems)


def key_text(value: JsonValue) -> str:
    """A leaf value as it appears in a path key: `true`, `100`, `Ethernet1`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def entry_keys(list_schema: SchemaPath, entry: JsonObject) -> tuple[tuple[str, str], ...] | None:
    """The path keys of a list entry, or None for a list the schema does not know or an incomplete entry."""
    names = LIST_KEYS.get(list_schema)
    if names is None or any(n not in entry for n in names):
        return None
    return tuple((n, key_text(entry[n])) for n in names)


def normalise(tree: JsonValue, at: GPath = ROOT) -> JsonValue:
    """The canonical form of `tree`, the value found at path `at` (the root by default)."""
    return _normalise(tree, schema_path(at))


def canonical_json(value: JsonValue) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _normalise(value: JsonValue, where: SchemaPath) -> JsonValue:
    if isinstance(value, dict):
        return _normalise_container(value, where)
    if isinstance(value, list):
        return _normalise_list(value, where)
    return _normalise_leaf(value, where)


def _normalise_container(node: JsonObject, where: SchemaPath) -> JsonObject:
    out: JsonObject = {}
    for raw_name, raw_value in node.items():
        name = strip_module(raw_name)
        if name == "state":
            continue
        value = _normalise(raw_value, (*where, name))
        if value == {} or value == []:
            continue
        out[name] = value
    if out:
        for leaf, default in DEFAULTS.get(where, {}).items():
            out.setdefault(leaf, default)
    return out


def _normalise_list(items: list[JsonValue], where: SchemaPath) -> list[JsonValue]:
    values = [_normalise(item, where) for item in items]
    values = [v for v in values if v != {}]
    if all(isinstance(v, dict) for v in values):
        return sorted(values, key=lambda entry: _entry_order(where, entry))
    return sorted(values, key=canonical_json)


def _entry_order(list_schema: SchemaPath, entry: JsonObject) -> tuple[tuple[int, int, str], ...]:
    names = LIST_KEYS.get(list_schema, ())
    # Integers sort numerically and before strings; the full entry breaks ties for unknown lists.
    order = [(0, v, "") if isinstance(v := entry.get(n), int) else (1, 0, key_text(v)) for n in names]
    return (*order, (2, 0, canonical_json(entry)))


def _normalise_leaf(value: JsonValue, where: SchemaPath) -> JsonValue:
    """A leaf in the type the official models give its position (`yang_facts`); unknown positions (what
    the controller never writes) keep their form."""
    found = FACTS.get("/".join(where))
    kind = None if found is None else found.get("kind")
    if kind == "int" and not isinstance(value, bool):
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif kind == "bool" and value in ("true", "false"):
        return value == "true"
    elif kind == "identityref" and isinstance(value, str) and ":" in value:
        return value.rpartition(":")[2]
    return value


def extract(tree: JsonValue, path: GPath) -> JsonValue | None:
    """The subtree of a normalised tree at `path`, selecting list entries by key; None when absent."""
    node = tree
    for elem in path.elems:
        name = strip_module(elem.name)
        if not isinstance(node, dict) or name not in node:
            return None
        node = node[name]
        if elem.keys:
            node = _find_entry(node, elem.keys)
    return node


def _find_entry(items: JsonValue, keys: tuple[tuple[str, str], ...]) -> JsonObject | None:
    if not isinstance(items, list):
        return None
    for entry in items:
        if isinstance(entry, dict) and all(k in entry and key_text(entry[k]) == v for k, v in keys):
            return entry
    return None


class Observed:
    """A device tree normalised once per reconcile, with list entries indexed by key on first use.

    plan, verify and preflight all read the same observed tree; normalising it once and finding
    entries through an index keeps a pass linear in the device's size rather than quadratic.
    """

    def __init__(self, tree: JsonValue) -> None:
        self.tree = normalise(tree)
        self._indexes: dict[int, dict[tuple[tuple[str, str], ...], JsonObject]] = {}

    def extract(self, path: GPath) -> JsonValue | None:
        node = self.tree
        for elem in path.elems:
            name = strip_module(elem.name)
            if not isinstance(node, dict) or name not in node:
                return None
            node = node[name]
            if elem.keys:
                if not isinstance(node, list):
                    return None
                index = self._indexes.get(id(node))
                if index is None:
                    index = self._indexes[id(node)] = {
                        tuple((k, key_text(e[k])) for k, _ in elem.keys if k in e): e
                        for e in node
                        if isinstance(e, dict)
                    }
                node = index.get(elem.keys)
        return node


def observe(tree: JsonValue | Observed) -> Observed:
    """`tree` normalised and indexed (unchanged when it already is)."""
    return tree if isinstance(tree, Observed) else Observed(tree)


Change = tuple[GPath, JsonValue | None]
"""One subscription change: the value now at a path, or None when the path was deleted."""


def build_tree(changes: Iterable[Change], base: JsonObject | None = None) -> JsonObject:
    """Apply changes in order to `base` (default empty) as a gNMI target reports them.

    An update sets the whole value at its path (a leaf from a subscription, or a subtree from a Get),
    creating containers and list entries (with their key leaves) on the way; a None value deletes
    the subtree. Module prefixes in path element names and in values are removed. Normalise the
    result before comparing it.
    """
    root: JsonObject = _strip_names(base or {})
    for path, value in changes:
        if value is None:
            root = _deleted(root, path)
        elif not path.elems:
            if not isinstance(value, dict):
                raise ValueError("a value at the root gNMI path must be a JSON object")
            root = _strip_names(value)
        else:
            _set(root, path, _strip_names(value))
    return root


def _strip_names(value: JsonValue) -> JsonValue:
    if isinstance(value, dict):
        return {strip_module(k): _strip_names(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_strip_names(v) for v in value]
    return value


def _set(root: JsonObject, path: GPath, value: JsonValue) -> None:
    node = root
    *ancestors, last = path.elems
    for elem in ancestors:
        node = _descend(node, strip_module(elem.name), elem.keys)
    name = strip_module(last.name)
    if not last.keys:
        node[name] = value
        return
    if not isinstance(value, dict):
        raise ValueError(f"the value of list entry {path} must be a JSON object")
    entry = _descend(node, name, last.keys)
    entry.clear()
    entry.update(value)
    entry.update(last.keys)


def _descend(node: JsonObject, name: str, keys: tuple[tuple[str, str], ...]) -> JsonObject:
    """The child container or list entry, created when missing (a leaf in the way is replaced)."""
    if not keys:
        child = node.get(name)
        if not isinstance(child, dict):
            child = node[name] = {}
        return child
    items = node.get(name)
    if not isinstance(items, list):
        items = node[name] = []
    entry = _find_entry(items, keys)
    if entry is None:
        entry = dict(keys)
        items.append(entry)
    return entry


def _deleted(root: JsonObject, path: GPath) -> JsonObject:
    if not path.elems:
        return {}
    parent = extract(root, path.parent)
    last = path.elems[-1]
    name = strip_module(last.name)
    if isinstance(parent, dict) and name in parent:
        if not last.keys:
            del parent[name]
        elif isinstance(parent[name], list):
            parent[name] = [e for e in parent[name] if e is not _find_entry(parent[name], last.keys)]
    return root
