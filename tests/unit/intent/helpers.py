"""Builders and a reference gNMI target for the intent tests.

`apply_set` is deliberately independent of the code under test (it has its own list-key schema): it
applies a SetPlan the way the gNMI specification says a target does (deletes, then replaces, then
updates, each in order; replace drops what the value omits; update merges, lists by key).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from controller.api.networkservice import NetworkServiceSpec
from controller.intent import Claim, GPath, ManagedEntry, ServiceKey, SetPlan, leaf_paths, normalise, render

CREATED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

# The device's own knowledge of list keys: by list name and its parent container.
DEVICE_LIST_KEYS = {
    ("interfaces", "interface"): ("name",),
    ("subinterfaces", "subinterface"): ("index",),
    ("addresses", "address"): ("ip",),
    ("network-instances", "network-instance"): ("name",),
    ("scheduler-policies", "scheduler-policy"): ("name",),
    ("schedulers", "scheduler"): ("sequence",),
}
# `interfaces/interface` means three lists depending on where it is.
INTERFACE_KEYS_BY_GRANDPARENT = {"qos": ("interface-id",), "network-instance": ("id",), "": ("name",)}


def make_spec(**fields: Any) -> NetworkServiceSpec:
    base: dict[str, Any] = {
        "serviceType": "internetAccess",
        "bandwidthMbps": 100,
        "endpoints": [{"device": "pe1", "port": "Ethernet1", "vlanId": 100, "ipv4Address": "192.0.2.1/30"}],
    }
    return NetworkServiceSpec.model_validate(base | fields)


def service(name: str, spec: NetworkServiceSpec, *, namespace: str = "acme", created: datetime = CREATED) -> Claim:
    key = ServiceKey(namespace, name)
    return Claim(key, created, tuple(render(key, spec)))


def port(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "config": {"name": name, "type": "iana-if-type:ethernetCsmacd", **extra}}


def device_with_ports(*names: str) -> dict[str, Any]:
    return {"interfaces": {"interface": [port(n) for n in names]}}


# --- reference gNMI target ------------------------------------------------------------------------


def apply_set(tree: dict[str, Any], plan: SetPlan) -> dict[str, Any]:
    """The tree a spec-following target holds after the SetRequest `plan` (on normalised trees)."""
    result = copy.deepcopy(tree)
    for op in plan.deletes:
        _delete(result, op.path)
    for op in plan.replaces:
        _delete(result, op.path)
        _merge_at(result, op.path, op.value)
    for op in plan.updates:
        _merge_at(result, op.path, op.value)
    return result


def device_list_keys(context: tuple[str, ...], name: str) -> tuple[str, ...] | None:
    parent = context[-1] if context else ""
    if (parent, name) == ("interfaces", "interface"):
        grandparent = context[-2] if len(context) > 1 else ""
        return INTERFACE_KEYS_BY_GRANDPARENT.get(grandparent, ("name",))
    return DEVICE_LIST_KEYS.get((parent, name))


def _matches(entry: dict[str, Any], keys: dict[str, str]) -> bool:
    return all(key_text(entry.get(k)) == v for k, v in keys.items())


def key_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _navigate(tree: dict[str, Any], path: GPath, create: bool) -> dict[str, Any] | None:
    node = tree
    for elem in path.elems:
        if elem.keys:
            items = node.get(elem.name)
            if items is None and create:
                items = node[elem.name] = []
            if not isinstance(items, list):
                return None
            keys = dict(elem.keys)
            found = next((e for e in items if _matches(e, keys)), None)
            if found is None and create:
                found = dict(keys)
                items.append(found)
            if found is None:
                return None
            node = found
        else:
            child = node.get(elem.name)
            if child is None and create:
                child = node[elem.name] = {}
            if not isinstance(child, dict):
                return None
            node = child
    return node


def _delete(tree: dict[str, Any], path: GPath) -> None:
    parent = _navigate(tree, path.parent, create=False)
    last = path.elems[-1]
    if parent is None or last.name not in parent:
        return
    if last.keys:
        parent[last.name] = [e for e in parent[last.name] if not _matches(e, dict(last.keys))]
    else:
        del parent[last.name]


def _merge_at(tree: dict[str, Any], path: GPath, value: Any) -> None:
    parent = _navigate(tree, path.parent, create=True)
    assert parent is not None, f"{path} crosses a leaf"
    last = path.elems[-1]
    if last.keys:
        entry = _navigate(parent, GPath((last,)), create=True)
        assert entry is not None
        _merge_into(entry, value, tuple(e.name for e in path.elems))
    elif isinstance(value, dict) and isinstance(parent.get(last.name), dict):
        _merge_into(parent[last.name], value, tuple(e.name for e in path.elems))
    else:
        parent[last.name] = copy.deepcopy(value)


def _merge_into(node: dict[str, Any], value: dict[str, Any], context: tuple[str, ...]) -> None:
    for name, member in value.items():
        keys = device_list_keys(context, name)
        if isinstance(member, dict) and isinstance(node.get(name), dict):
            _merge_into(node[name], member, (*context, name))
        elif isinstance(member, list) and keys and isinstance(node.get(name), list):
            for item in member:
                existing = next((e for e in node[name] if all(e.get(k) == item.get(k) for k in keys)), None)
                if existing is None:
                    node[name].append(copy.deepcopy(item))
                else:
                    _merge_into(existing, item, (*context, name))
        else:
            node[name] = copy.deepcopy(member)


def entries_on(device: str, *services: Claim) -> list[ManagedEntry]:
    return [e for s in services for e in s.entries if e.device == device]


def owned_on(device: str, *services: Claim, created: tuple[GPath, ...] = ()) -> dict[ServiceKey, set[GPath]]:
    """The leaves the services' renders wrote on `device` (a shared VRF's only when in `created`)."""
    return {
        s.key: {
            leaf
            for e in s.entries
            if e.device == device and (not e.shared or e.path in created)
            for leaf in leaf_paths(e.path, normalise(e.value, e.path))
        }
        for s in services
    }
