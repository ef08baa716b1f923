"""Merging the renders of every service on one device into that device's intent.

Services are considered in precedence order: creation time, then namespace, then name. A service whose
entries collide with claims already admitted is refused on that device as a whole (half a service is
worse than none) and gets a Conflict naming the holder; the holder keeps its claim whatever order the
inputs come in. Shared entries (a VRF) collide only when their values differ; each sharer becomes an owner.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import NamedTuple

from .normalise import JsonObject, normalise
from .ownership import leaf_paths
from .paths import GPath
from .render import ManagedEntry, ServiceKey


@dataclass(frozen=True)
class Claim:
    """One service's render and what orders it against others: `created` is its creationTimestamp."""

    key: ServiceKey
    created: datetime
    entries: tuple[ManagedEntry, ...]

    def __post_init__(self) -> None:
        if self.created.tzinfo is None:
            raise ValueError(f"creation time of {self.key} must be timezone-aware")

    @property
    def precedence(self) -> tuple[datetime, str, str]:
        return (self.created, self.key.namespace, self.key.name)


@dataclass(frozen=True)
class Conflict:
    """`service` is refused on `device` because `holder` already claims `path`."""

    service: ServiceKey
    device: str
    path: GPath
    holder: ServiceKey
    message: str


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """A managed subtree of the merged intent, with every service that needs it."""

    path: GPath
    value: JsonObject = field(hash=False)
    owners: tuple[ServiceKey, ...]
    delegated: tuple[str, ...] = ()


@dataclass(frozen=True)
class DeviceIntent:
    """Everything the controller manages on one device, by path (in path order)."""

    device: str
    entries: Mapping[GPath, DeviceEntry] = field(hash=False)

    @property
    def values(self) -> dict[GPath, JsonObject]:
        return {path: entry.value for path, entry in self.entries.items()}

    @property
    def owners(self) -> dict[GPath, tuple[ServiceKey, ...]]:
        return {path: entry.owners for path, entry in self.entries.items()}

    @property
    def services(self) -> frozenset[ServiceKey]:
        return frozenset(owner for entry in self.entries.values() for owner in entry.owners)

    @property
    def needed(self) -> NeededPaths:
        """Every leaf the intent writes, and every path one lies under: what no retirement may delete."""
        return NeededPaths(self)


class NeededPaths(Collection[GPath]):
    """`DeviceIntent.needed`, built on first use and held only as long as its user holds it: most
    passes retire nothing and never ask, and kept with the device's intent it would hold a path per
    prefix of every leaf of every service (the largest part of the controller's memory per service)."""

    __slots__ = ("_intent", "_paths")

    def __init__(self, intent: DeviceIntent) -> None:
        self._intent = intent
        self._paths: frozenset[GPath] | None = None

    def _built(self) -> frozenset[GPath]:
        if self._paths is None:
            self._paths = frozenset(
                GPath(leaf.elems[:n])
                for entry in self._intent.entries.values()
                for leaf in leaf_paths(entry.path, normalise(entry.value, entry.path))
                for n in range(len(leaf.elems) + 1)
            )
        return self._paths

    def __contains__(self, path: object) -> bool:
        return path in self._built()

    def __iter__(self) -> Iterator[GPath]:
        return iter(self._built())

    def __len__(self) -> int:
        return len(self._built())


class MergeResult(NamedTuple):
    """Unpacks as `intent, conflicts = merge(...)`."""

    intent: DeviceIntent
    conflicts: tuple[Conflict, ...]


def merge(device: str, claims: Iterable[Claim]) -> MergeResult:
    """The intent of `device` from the claims of all services (entries on other devices are ignored)."""
    admitted: dict[GPath, tuple[ManagedEntry, list[ServiceKey]]] = {}
    conflicts: list[Conflict] = []
    for claim in sorted(claims, key=lambda c: c.precedence):
        mine = [e for e in claim.entries if e.device == device]
        refused_by: dict[ServiceKey, GPath] = {}
        for entry in mine:
            held = admitted.get(entry.path)
            if held is not None and not _can_share(held[0], entry):
                refused_by.setdefault(held[1][0], entry.path)
        if refused_by:
            conflicts += [_conflict(claim.key, device, path, holder) for holder, path in refused_by.items()]
            continue
        for entry in mine:
            _, owners = admitted.setdefault(entry.path, (entry, []))
            if claim.key not in owners:
                owners.append(claim.key)
    entries = {
        path: DeviceEntry(path, entry.value, tuple(owners), entry.delegated)
        for path, (entry, owners) in sorted(admitted.items(), key=lambda item: item[0].sort_key())
    }
    return MergeResult(DeviceIntent(device, MappingProxyType(entries)), tuple(conflicts))


def _can_share(held: ManagedEntry, claim: ManagedEntry) -> bool:
    return held.shared and claim.shared and (held.value, held.delegated) == (claim.value, claim.delegated)


def _conflict(service: ServiceKey, device: str, path: GPath, holder: ServiceKey) -> Conflict:
    message = (
        f"{path} on device {device} is already claimed by NetworkService {holder}, which takes precedence "
        f"(created first; same-second ties go by namespace/name); {service} is not configured on {device}"
    )
    return Conflict(service, device, path, holder, message)
