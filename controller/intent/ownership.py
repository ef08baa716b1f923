"""Which leaves the controller wrote, and what may be removed when a service no longer needs them.

Real devices hold more than the controller wrote: YANG defaults they fill in (`ipv4/config/enabled`,
an address's `config/type`), configuration operators and other tools add (a route-distinguisher and
BGP under a VRF, other subinterfaces, descriptions). None of that is the controller's: it is never
drift, never replaced and never deleted. What the controller owns is exactly the leaves it wrote for a
service, addressed by full path (list entries by their keys); it records them per device in the
service's status (`status.owned`), so a restarted controller knows them without guessing.

When a service stops needing owned leaves (its spec changed, it moved, it was deleted), they are
removed by *units*: the outermost list entry the controller created that no remaining intent needs
(a subinterface, an address, a scheduler policy, a VRF member), or the bare leaf when its entry stays.
A unit never reaches above a managed entry's root (a physical port is never deleted). A shared
container (a VRF) is removed only when the controller created it and nothing foreign remains in it;
otherwise only the controller's own members inside it go.
"""

from __future__ import annotations

import sys
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any

from .normalise import JsonValue, Observed, SchemaPath, entry_keys, schema_path
from .paths import GPath, PathElem
from .render import ENTRY_ROOTS, SHARED_ROOTS, ServiceKey

OwnedLeaves = Mapping[ServiceKey, Collection[GPath]]


def leaf_paths(path: GPath, value: JsonValue) -> Iterator[GPath]:
    """Every leaf of a normalised `value` found at `path`, list entries addressed by their keys.

    A list whose entries cannot be addressed (unknown keys) and a leaf-list count as one leaf."""
    if isinstance(value, dict):
        where = schema_path(path)
        for name, member in value.items():
            yield from _member_leaves(path, where, name, member)
    else:
        yield path


def _member_leaves(path: GPath, where: SchemaPath, name: str, member: JsonValue) -> Iterator[GPath]:
    if isinstance(member, list) and member and all(isinstance(m, dict) for m in member):
        list_schema = (*where, name)
        keyed = [(entry_keys(list_schema, m), m) for m in member]
        if all(k is not None for k, _ in keyed):
            for keys, entry in keyed:
                try:
                    elem = PathElem(name, keys or ())
                except ValueError:  # a key value no gNMI path can carry: own the list as a whole
                    yield path.child(name)
                    return
                yield from leaf_paths(GPath((*path.elems, elem)), entry)
            return
    if isinstance(member, dict):
        yield from leaf_paths(path.child(name), member)
    else:
        yield path.child(name)


def entry_root(path: GPath) -> GPath | None:
    """The managed entry (subinterface, scheduler policy, QoS interface, VRF, VRF member) `path` lies in:
    the innermost one, so a VRF member is its own entry."""
    names = schema_path(path)  # a prefix's schema path is the same prefix of it: computed once
    for n in range(len(names), 0, -1):
        if names[:n] in ENTRY_ROOTS:
            return GPath(path.elems[:n])
    return None


def is_shared(path: GPath) -> bool:
    return schema_path(path) in SHARED_ROOTS


def shared_root(path: GPath) -> GPath | None:
    """The shared entry (a VRF) `path` is or lies in, else None."""
    names = schema_path(path)
    for n in range(1, len(names) + 1):
        if names[:n] in SHARED_ROOTS:
            return GPath(path.elems[:n])
    return None


def _outer_root(path: GPath) -> GPath | None:
    names = schema_path(path)
    for n in range(1, len(names) + 1):
        if names[:n] in ENTRY_ROOTS:
            return GPath(path.elems[:n])
    return None


def _unit(leaf: GPath, needed: Collection[GPath], floor: int) -> GPath | None:
    """The outermost list entry at or below depth `floor` holding `leaf` that nothing needs, else the
    leaf itself; None when the leaf is still needed."""
    if leaf in needed:
        return None
    for n in range(floor, len(leaf.elems) + 1):
        prefix = GPath(leaf.elems[:n])
        if leaf.elems[n - 1].keys and prefix not in needed:
            return prefix
    return leaf


def retirement(
    needed: Collection[GPath], observed: Observed, retired: OwnedLeaves
) -> dict[GPath, tuple[ServiceKey, ...]]:
    """What to delete, by path, with the services it is deleted for.

    `needed`: every path the remaining intent writes or lies under (`DeviceIntent.needed`);
    `retired`: leaves services owned that may no longer be needed. Only what the device still holds
    is deleted; a shared container with foreign content stays, and only owned members inside it go."""
    owners: dict[GPath, set[ServiceKey]] = {}
    own_leaves: set[GPath] = set()
    for service, leaves in retired.items():
        for leaf in leaves:
            own_leaves.add(leaf)
            root = _outer_root(leaf)
            if root is None:
                continue
            unit = _unit(leaf, needed, len(root.elems))
            if unit is not None:
                owners.setdefault(unit, set()).add(service)
    deletes: dict[GPath, set[ServiceKey]] = {}
    for unit in sorted(owners):
        if any(d.is_prefix_of(unit) for d in deletes):
            continue
        if observed.extract(unit) is None:
            continue
        if is_shared(unit) and _has_foreign(unit, observed, own_leaves):
            # Not ours alone: keep the container; remove only the member entries the services created.
            for inner in _inner_units(unit, retired, needed):
                if observed.extract(inner) is not None:
                    deletes.setdefault(inner, set()).update(owners.get(inner, set()) | owners[unit])
            continue
        deletes.setdefault(unit, set()).update(owners[unit])
    return {path: tuple(sorted(services)) for path, services in sorted(deletes.items())}


def _inner_units(shared: GPath, retired: OwnedLeaves, needed: Collection[GPath]) -> list[GPath]:
    units = set()
    for leaves in retired.values():
        for leaf in leaves:
            root = entry_root(leaf)
            if root is None or root == shared or not shared.is_prefix_of(root):
                continue
            unit = _unit(leaf, needed, len(root.elems))
            if unit is not None:
                units.add(unit)
    return sorted(u for u in units if not any(o != u and o.is_prefix_of(u) for o in units))


def _has_foreign(container: GPath, observed: Observed, own_leaves: Collection[GPath]) -> bool:
    """Whether the device holds anything under `container` that no retired service wrote."""
    value = observed.extract(container)
    return any(leaf not in own_leaves for leaf in leaf_paths(container, value))


# -- status.owned: the record that survives restarts -------------------------------------------------


def to_status(by_device: Mapping[str, Iterable[GPath]]) -> list[dict[str, Any]]:
    """`status.owned`: per device, the owned leaves grouped by managed entry, relative to it."""
    out = []
    for device in sorted(by_device):
        grouped: dict[GPath, list[str]] = {}
        for leaf in by_device[device]:
            root = entry_root(leaf)
            if root is None:
                continue
            # Interned: the same relative leaves (and entries, across devices) recur in every service's status.
            grouped.setdefault(root, []).append(sys.intern(GPath(leaf.elems[len(root.elems) :]).to_string()))
        entries = [
            {"path": sys.intern(root.to_string()), "leaves": sorted(grouped[root])}
            for root in sorted(grouped, key=GPath.sort_key)
        ]
        if entries:
            out.append({"device": device, "entries": entries})
    return out


def from_status(owned: Any) -> dict[str, set[GPath]]:
    """The owned leaves per device that `status.owned` records; malformed items are skipped (the
    record is ours, but a status can be edited by hand)."""
    found: dict[str, set[GPath]] = {}
    for item in owned if isinstance(owned, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("device"), str):
            continue
        leaves = found.setdefault(item["device"], set())
        for entry in item.get("entries") or []:
            try:
                root = GPath.parse(str(entry["path"]))
                leaves.update(root.join(GPath.parse(str(rel))) for rel in entry.get("leaves") or [])
            except (KeyError, TypeError, ValueError):
                continue
    return found
