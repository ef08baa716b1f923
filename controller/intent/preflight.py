"""Checks against the observed device before sending, so one bad service does not fail everyone's Set.

A gNMI Set is all or nothing: a subinterface on a port the device lacks would abort the whole batch. The
caller leaves services with problems out of the device's merge and reports the problems on them.
"""

from __future__ import annotations

from collections.abc import Iterable

from .normalise import JsonValue, Observed, normalise, observe, schema_path
from .paths import GPath
from .render import ManagedEntry, ServiceKey


def preflight(
    device: str, entries: Iterable[ManagedEntry], observed_tree: JsonValue | Observed
) -> dict[ServiceKey, list[str]]:
    """Problems of the entries for `device` (others are ignored) against its config tree, by service.

    Run it on the renders before merging, so a service refused here frees its claims for later ones.
    """
    observed = observe(observed_tree)
    problems: dict[ServiceKey, set[str]] = {}
    for entry in entries:
        if entry.device != device:
            continue
        problem = _missing_port(entry, observed) or _vrf_type_clash(entry, observed)
        if problem is not None:
            problems.setdefault(entry.owner, set()).add(problem)
    return {owner: sorted(problems[owner]) for owner in sorted(problems)}


def _missing_port(entry: ManagedEntry, observed: Observed) -> str | None:
    port = GPath(entry.path.elems[:2])
    if [e.name for e in port.elems] != ["interfaces", "interface"] or observed.extract(port) is not None:
        return None
    return f"port {dict(port.elems[1].keys)['name']} does not exist on device {entry.device}"


def _vrf_type_clash(entry: ManagedEntry, observed: Observed) -> str | None:
    """Devices refuse to change the type of a network instance, and it is not ours to change."""
    if schema_path(entry.path) != ("network-instances", "network-instance"):
        return None
    want = normalise(entry.value, entry.path)["config"]["type"]
    have = observed.extract(entry.path)
    found = have.get("config", {}).get("type") if isinstance(have, dict) else None
    if found is None or found == want:
        return None
    name = entry.value["name"]
    return f"network instance {name} exists on device {entry.device} with type {found}, not {want}"
