"""The minimal gNMI SetRequest that turns a device's observed configuration into its intent.

The controller plans over what it owns only (see `ownership`). Each managed entry is compared with what
the device holds at its path, both normalised, with a JSON patch over trees whose lists are keyed by
their list keys (so a diff names entries, never shifting indices). Only the leaves the intent writes
count: whatever else the device holds there (YANG defaults it fills in, what an operator added) is not
drift and is never replaced. The patch is lifted to gNMI operations:

- entry absent on the device: one `update` of the whole entry;
- owned leaves changed or missing: `update` of the smallest containers (or list entries) holding them,
  carrying only owned leaves (an update merges, so foreign leaves stay); never of a bare leaf, because
  pygnmi sends a Python str unquoted;
- a shared entry (a VRF) the controller did not create is used as it is: created only when absent;
- owned leaves no remaining intent needs (of a departed service, or of a spec that changed): `delete` of
  the outermost list entry the controller created that nothing needs, or of the bare leaf; a VRF only
  when the controller created it and nothing foreign remains in it.

Nothing outside owned leaves is touched. A gNMI Set applies deletes, then replaces, then updates, each
list in the order given; ops are sorted by path so a container comes before what lies under it, and the
same inputs always produce the same request.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import jsonpatch

from .merge import DeviceEntry, DeviceIntent
from .normalise import (
    JsonObject,
    JsonValue,
    Observed,
    SchemaPath,
    canonical_json,
    entry_keys,
    extract,
    normalise,
    observe,
    schema_path,
)
from .ownership import OwnedLeaves, is_shared, retirement
from .paths import GPath, PathElem
from .render import ServiceKey

Operation = Literal["delete", "replace", "update"]
Pointer = tuple[str, ...]  # JSON pointer parts into a keyed tree
_MAX_DESCRIBED = 3


@dataclass(frozen=True)
class SetOp:
    """One operation of a SetRequest; `owners` are the services it is done for."""

    op: Operation
    path: GPath
    value: JsonValue | None = field(hash=False)
    owners: tuple[ServiceKey, ...]

    def value_json(self) -> str | None:
        return None if self.value is None else canonical_json(self.value)


@dataclass(frozen=True)
class SetPlan:
    """A SetRequest for one device, each list sorted by path."""

    device: str
    deletes: tuple[SetOp, ...] = ()
    replaces: tuple[SetOp, ...] = ()
    updates: tuple[SetOp, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (self.deletes or self.replaces or self.updates)

    @property
    def operations(self) -> tuple[SetOp, ...]:
        """All operations in the order a target applies them."""
        return self.deletes + self.replaces + self.updates

    @property
    def owners(self) -> frozenset[ServiceKey]:
        return frozenset(owner for op in self.operations for owner in op.owners)

    def for_owner(self, owner: ServiceKey) -> SetPlan:
        """The part done for one service (an op on a shared entry is done for each of its owners), e.g.
        to show a dry run, or to send services one by one and find which one the device rejects."""
        return self._keeping(lambda op: owner in op.owners)

    def without_owners(self, owners: Collection[ServiceKey]) -> SetPlan:
        """The plan minus ops done only for `owners` (e.g. services whose drift is reported, not reverted)."""
        return self._keeping(lambda op: not set(op.owners) <= set(owners))

    def _keeping(self, wanted: Callable[[SetOp], bool]) -> SetPlan:
        return SetPlan(
            self.device,
            tuple(filter(wanted, self.deletes)),
            tuple(filter(wanted, self.replaces)),
            tuple(filter(wanted, self.updates)),
        )

    def entries_written(self, intent: DeviceIntent) -> list[GPath]:
        """The managed entries of `intent` this plan writes into: what to read back after the Set."""
        found: set[GPath] = set()
        for op in self.operations:
            elems = op.path.elems
            found.update(p for n in range(len(elems) + 1) if (p := GPath(elems[:n])) in intent.entries)
        return sorted(found, key=GPath.sort_key)

    def to_json(self) -> list[dict[str, str | None]]:
        """Shaped like NetworkService status.plan items: op, device, path, value as a JSON string."""
        return [
            {"op": op.op, "device": self.device, "path": op.path.to_string(), "value": op.value_json()}
            for op in self.operations
        ]

    def describe(self) -> str:
        """One line per operation, for people."""
        lines = [" ".join(filter(None, (op.op, self.device, str(op.path), op.value_json()))) for op in self.operations]
        return "\n".join(lines) if lines else f"no change on {self.device}"


@dataclass(frozen=True)
class Drift:
    """A managed entry whose observed configuration differs from the intent."""

    device: str
    path: GPath
    owners: tuple[ServiceKey, ...]
    description: str


@dataclass(frozen=True)
class Assessment:
    """One comparison of a device with its intent: the Set that fixes it and what differs before it."""

    plan: SetPlan
    drifts: tuple[Drift, ...]


def assess(
    intent: DeviceIntent,
    observed_tree: JsonValue | Observed,
    retired: OwnedLeaves | None = None,
    created: Collection[GPath] = (),
    needed: Collection[GPath] | None = None,
) -> Assessment:
    """The minimal SetRequest taking `observed_tree` (the device's config from the root) to `intent`, and
    the drift it repairs, from one diff per managed entry.

    `retired`: leaves services owned that may no longer be needed (departed services, changed specs);
    those no entry of `needed` (default: `intent.needed`; pass the whole device's when `intent` is a
    part of it) still needs are deleted. `created`: the shared entries the controller created on the
    device (others are used as the device has them).
    """
    observed = observe(observed_tree)
    updates: list[SetOp] = []
    drifts: list[Drift] = []
    for entry in intent.entries.values():
        want = normalise(entry.value, entry.path)
        diff = _diff(entry, want, observed, created)
        drift = _drift(intent.device, entry, diff)
        if drift is None:
            continue
        drifts.append(drift)
        updates += _entry_updates(entry, want, diff)
    deletes = [
        SetOp("delete", path, None, owners)
        for path, owners in retirement(intent.needed if needed is None else needed, observed, retired or {}).items()
    ]
    set_plan = SetPlan(intent.device, tuple(deletes), (), tuple(sorted(updates, key=lambda o: o.path.sort_key())))
    return Assessment(set_plan, tuple(drifts))


def plan(
    intent: DeviceIntent,
    observed_tree: JsonValue | Observed,
    retired: OwnedLeaves | None = None,
    created: Collection[GPath] = (),
    needed: Collection[GPath] | None = None,
) -> SetPlan:
    """The minimal SetRequest taking `observed_tree` (the device's config from the root) to `intent`."""
    return assess(intent, observed_tree, retired, created, needed).plan


def verify(
    intent: DeviceIntent,
    observed_tree: JsonValue | Observed,
    only: Iterable[GPath] | None = None,
    created: Collection[GPath] = (),
) -> list[Drift]:
    """The managed entries (all, or those at the paths `only`) whose owned leaves `observed_tree` does not
    hold as intended, in path order."""
    observed = observe(observed_tree)
    entries = (
        intent.entries.values() if only is None else [intent.entries[p] for p in sorted(set(only), key=GPath.sort_key)]
    )
    drifts = []
    for entry in entries:
        diff = _diff(entry, normalise(entry.value, entry.path), observed, created)
        drift = _drift(intent.device, entry, diff)
        if drift is not None:
            drifts.append(drift)
    return drifts


def _drift(device: str, entry: DeviceEntry, diff: _EntryDiff | None) -> Drift | None:
    if diff is None:
        return Drift(device, entry.path, entry.owners, "missing on the device")
    if diff.changed:
        return Drift(device, entry.path, entry.owners, diff.describe())
    return None


class _Keyed(dict[str, Any]):
    """A list as a dict by entry key; `keys_of` gives each entry's path keys (None: not addressable)."""

    keys_of: dict[str, tuple[tuple[str, str], ...] | None]


def _keyed(value: JsonValue, where: SchemaPath) -> JsonValue:
    if isinstance(value, dict):
        return {name: _keyed(member, (*where, name)) for name, member in value.items()}
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        keyed = _Keyed()
        keyed.keys_of = {}
        for entry in value:
            keys = _path_keys(where, entry)
            label = "|".join(f"{k}={v}" for k, v in keys) if keys is not None else canonical_json(entry)
            keyed[label] = _keyed(entry, where)
            keyed.keys_of[label] = keys
        return keyed
    return value


def _path_keys(where: SchemaPath, entry: JsonObject) -> tuple[tuple[str, str], ...] | None:
    keys = entry_keys(where, entry)
    try:
        return None if keys is None else PathElem(where[-1], keys).keys
    except ValueError:
        return None  # a key value no gNMI path can carry: such an entry is reached through its container


def _addressable(tree: JsonValue, pointer: Pointer) -> list[tuple[int, GPath]]:
    """The prefixes of `pointer` that name a container or list entry in `tree`, as (length, relative path)."""
    found = [(0, GPath())]
    node, elems, i = tree, [], 0
    while i < len(pointer) and isinstance(node, dict) and pointer[i] in node:
        name, child = pointer[i], node[pointer[i]]
        if isinstance(child, _Keyed):
            keys = child.keys_of.get(pointer[i + 1]) if i + 1 < len(pointer) else None
            if keys is None:
                break
            elems.append(PathElem(name, keys))
            node, i = child[pointer[i + 1]], i + 2
        elif isinstance(child, dict):
            elems.append(PathElem(name))
            node, i = child, i + 1
        else:
            break
        found.append((i, GPath(tuple(elems))))
    return found


@dataclass(frozen=True)
class _EntryDiff:
    """Where the device's copy of an entry lacks or differs from an owned leaf: pointers into the keyed
    intent."""

    want: JsonValue
    changed: tuple[Pointer, ...]

    def describe(self) -> str:
        """E.g. `differs at two-rate-three-color/config: cir, pir`."""
        groups = [f"differs at {g}" for g in _grouped(self.want, self.changed)]
        shown = "; ".join(groups[:_MAX_DESCRIBED])
        return shown if len(groups) <= _MAX_DESCRIBED else f"{shown}; and {len(groups) - _MAX_DESCRIBED} more"


def _grouped(tree: JsonValue, pointers: Iterable[Pointer]) -> list[str]:
    """Pointers as their nearest container or list entry, followed by the leaves changed in it."""
    leaves: dict[str, list[str]] = {}
    for pointer in pointers:
        length, path = _addressable(tree, pointer)[-1]
        leaves.setdefault(path.to_string(), []).extend(["/".join(pointer[length:])] if length < len(pointer) else [])
    return [
        f"{container}: {', '.join(sorted(names))}" if container and names else container or ", ".join(sorted(names))
        for container, names in sorted(leaves.items())
    ]


def _diff(
    entry: DeviceEntry, want: JsonValue, observed: Observed, created: Collection[GPath] = ()
) -> _EntryDiff | None:
    """How the device's copy differs from `want` (the normalised entry value) in the leaves the intent
    writes; None when it lacks the entry. A shared entry the controller did not create counts as held."""
    have = observed.extract(entry.path)
    if have is None:
        return None
    where = schema_path(entry.path)
    keyed_want = _keyed(want, where)
    if is_shared(entry.path) and entry.path not in created:
        return _EntryDiff(keyed_want, ())
    have = {name: value for name, value in have.items() if name not in entry.delegated}
    keyed_have = _keyed(have, where)
    if _holds(keyed_have, keyed_want):
        return _EntryDiff(keyed_want, ())  # as intended, as most entries are: no patch to build
    changed: list[Pointer] = []
    for op in jsonpatch.make_patch(keyed_have, keyed_want):
        # `remove`: something the intent does not write (a default, a foreign leaf): not ours.
        if op["op"] in ("add", "replace", "move"):
            changed.append(tuple(jsonpatch.JsonPointer(op["path"]).parts))
        elif op["op"] != "remove":
            raise ValueError(f"unexpected JSON patch operation {op['op']!r}")
    return _EntryDiff(keyed_want, tuple(changed))


def _holds(have: JsonValue, want: JsonValue) -> bool:
    """Whether `have` holds every leaf of `want` with the same JSON value (it may hold more, e.g. defaults):
    then the patch from `have` to `want` only removes, and nothing of the intent differs. As strict about
    types as the patch is (1 is not true, nor 1.0)."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(k in have and _holds(have[k], v) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and json.dumps(have) == json.dumps(want)
    return type(have) is type(want) and have == want


def _entry_updates(entry: DeviceEntry, want: JsonValue, diff: _EntryDiff | None) -> list[SetOp]:
    """The updates that put back one managed entry's owned leaves (normalised value `want`)."""
    if diff is None:
        return [SetOp("update", entry.path, want, entry.owners)]
    targets = _outermost({_addressable(diff.want, pointer)[-1][1] for pointer in diff.changed})
    return [
        SetOp("update", entry.path.join(t), extract(want, t), entry.owners) for t in sorted(targets, key=GPath.sort_key)
    ]


def _outermost(paths: set[GPath]) -> set[GPath]:
    return {p for p in paths if not any(q != p and q.is_prefix_of(p) for q in paths)}
