"""Properties over random service sets and random device trees.

The device starts from what earlier services left behind, plus unmanaged configuration, plus random
out-of-band edits, in JSON or JSON_IETF form. The controller's flow is preflight, merge, plan; the
reference target in helpers.apply_set applies the plan. Afterwards the intent must verify, a second
plan must be empty, nothing is ever replaced, deletes remove only what earlier services owned, and no
leaf the intent does not write (defaults, operators' edits, even inside managed entries) may have changed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from controller.intent import (
    Claim,
    GPath,
    ServiceKey,
    build_tree,
    extract,
    leaf_paths,
    merge,
    normalise,
    plan,
    preflight,
    render,
    verify,
)

from .helpers import CREATED, apply_set, device_list_keys, device_with_ports, key_text, make_spec, owned_on, port

DEVICES = ["pe1", "pe2"]
PORTS = ["Ethernet1", "Ethernet2", "ge-0/0/1"]
SLOTS = [(d, p, v) for d in DEVICES for p in PORTS for v in (10, 20)]
KEYS = [ServiceKey(ns, name) for ns in ("a", "b") for name in ("s1", "s2", "s3")]
TIMES = [CREATED + timedelta(seconds=s) for s in (0, 0, 1, 2)]

Node = tuple[dict[str, Any], tuple[str, ...], list[Any] | None]
Leaf = tuple[tuple[tuple[str, tuple[tuple[str, str], ...]], ...], Any]


@st.composite
def specs(draw: st.DrawFn) -> Any:
    service_type = draw(st.sampled_from(["internetAccess", "l2vpn", "l3vpn"]))
    endpoints = []
    for device, port_name, vlan in draw(st.lists(st.sampled_from(SLOTS), min_size=1, max_size=3, unique=True)):
        endpoint: dict[str, Any] = {"device": device, "port": port_name, "vlanId": vlan}
        if service_type != "l2vpn" or draw(st.booleans()):
            endpoint["ipv4Address"] = draw(st.sampled_from(["10.0.0.1/30", "10.0.0.5/30", "192.0.2.1/24"]))
        endpoints.append(endpoint)
    bandwidth = draw(st.sampled_from([1, 10, 100]))
    return make_spec(
        serviceType=service_type,
        endpoints=endpoints,
        bandwidthMbps=bandwidth,
        peakBandwidthMbps=draw(st.sampled_from([None, bandwidth, 2 * bandwidth])),
        vrf=draw(st.sampled_from(["blue", "blue", "red"])) if service_type == "l3vpn" else None,
        adminState=draw(st.sampled_from(["enabled", "disabled"])),
    )


@st.composite
def service_sets(draw: st.DrawFn) -> list[Claim]:
    keys = draw(st.lists(st.sampled_from(KEYS), unique=True, max_size=4))
    return [Claim(k, draw(st.sampled_from(TIMES)), tuple(render(k, draw(specs())))) for k in keys]


def unmanaged_base() -> dict[str, Any]:
    tree = device_with_ports(*PORTS)
    tree["interfaces"]["interface"][0] = port("Ethernet1", description="uplink", mtu=9000)
    tree["qos"] = {"scheduler-policies": {"scheduler-policy": [{"name": "manual", "config": {"name": "manual"}}]}}
    tree["network-instances"] = {
        "network-instance": [
            {
                "name": "green",
                "config": {"name": "green", "type": "L3VRF"},
                "interfaces": {"interface": [{"id": "x", "config": {"id": "x"}}]},
            }
        ]
    }
    return tree


def left_behind(device: str, previous: list[Claim]) -> tuple[dict[str, Any], list[GPath]]:
    """What earlier services configured, written the way a target reports it (parents before children),
    with a member nobody manages in every VRF; and the paths of the entries."""
    entries = merge(device, previous).intent.entries
    tree = normalise(build_tree(sorted((path, entry.value) for path, entry in entries.items()), unmanaged_base()))
    for vrf in tree["network-instances"]["network-instance"]:
        members = vrf.setdefault("interfaces", {}).setdefault("interface", [])
        members.append({"id": "foreign.1", "config": {"id": "foreign.1", "interface": "Ethernet2"}})
    return tree, list(entries)


def _entry_nodes(tree: dict[str, Any], path: GPath) -> list[Node]:
    """The list entry at `path` and everything in it."""
    entry = extract(tree, path)
    if entry is None:
        return []
    last = path.elems[-1]
    siblings = extract(tree, path.parent)[last.name]
    return [(entry, tuple(k for k, _ in last.keys), siblings), *_children(entry, tuple(e.name for e in path.elems))]


def _children(tree: dict[str, Any], context: tuple[str, ...]) -> Iterator[Node]:
    """Every container and list entry under `tree`, with its key leaves and, for an entry, its list."""
    for name, member in tree.items():
        if isinstance(member, dict):
            yield member, (), None
            yield from _children(member, (*context, name))
        elif isinstance(member, list):
            keys = device_list_keys(context, name) or ()
            for entry in member:
                if isinstance(entry, dict):
                    yield entry, keys, member
                    yield from _children(entry, (*context, name))


def perturb(tree: dict[str, Any], managed_paths: list[GPath], data: st.DataObject) -> None:
    """Out-of-band edits, half of them inside managed entries: junk leaves and containers, deleted or
    changed leaves, extra list entries."""
    for _ in range(data.draw(st.integers(0, 6))):
        inside = [node for path in managed_paths for node in _entry_nodes(tree, path)]
        anywhere = [(tree, (), None), *_children(tree, ())]
        node, keys, siblings = data.draw(st.sampled_from(inside or anywhere) | st.sampled_from(anywhere))
        others = sorted(k for k in node if k not in keys)
        action = data.draw(st.sampled_from(["junk", "delete", "change", "duplicate"]))
        if action == "junk":
            node[data.draw(st.sampled_from(["description", "junk", "mtu"]))] = data.draw(
                st.one_of(st.integers(0, 3), st.just({"leaf": 1}), st.just(["a", "b"]))
            )
        elif action == "delete" and others:
            del node[data.draw(st.sampled_from(others))]
        elif action == "change":
            scalars = [k for k in others if isinstance(node[k], (str, int))]
            if scalars:
                name = data.draw(st.sampled_from(scalars))
                node[name] = _changed(node[name])
        elif action == "duplicate" and siblings is not None and keys:
            twin = copy.deepcopy(node)
            for key in keys:
                twin[key] = _changed(twin[key])
            if not any(all(e.get(k) == twin[k] for k in keys) for e in siblings):
                siblings.append(twin)


def _changed(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1000
    return f"{value}x"


def json_ietf(value: Any, name: str = "", top: bool = True) -> Any:
    """Module-qualified top-level members and identities, uint64 as strings, lists reversed."""
    if isinstance(value, dict):
        return {(f"openconfig-{k}:{k}" if top else k): json_ietf(v, k, False) for k, v in value.items()}
    if isinstance(value, list):
        return [json_ietf(v, name, False) for v in reversed(value)]
    if name in ("cir", "pir"):
        return str(value)
    if name == "type" and value in ("L3VRF", "TWO_RATE_THREE_COLOR"):
        return f"openconfig-types:{value}"
    return value


def leaves(
    tree: Any, at: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (), context: tuple[str, ...] = ()
) -> set[Leaf]:
    found: set[Leaf] = set()
    for name, member in tree.items():
        if isinstance(member, dict):
            found |= leaves(member, (*at, (name, ())), (*context, name))
        elif isinstance(member, list) and member and all(isinstance(e, dict) for e in member):
            keys = device_list_keys(context, name)
            for entry in member:
                selector = tuple((k, key_text(entry[k])) for k in keys) if keys else (("#", repr(entry)),)
                found |= leaves(entry, (*at, (name, tuple(sorted(selector)))), (*context, name))
        else:
            found.add(((*at, (name, ())), repr(member)))
    return found


def as_leaf_path(path: GPath) -> tuple[tuple[str, tuple[tuple[str, str], ...]], ...]:
    return tuple((e.name, e.keys) for e in path.elems)


def foreign(leaf: Leaf, gone: set[Any]) -> bool:
    """Nothing the intent writes or a delete removes lies at or above the leaf."""
    return not any(leaf[0][:n] in gone for n in range(1, len(leaf[0]) + 1))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(current=service_sets(), data=st.data())
def test_applying_the_plan_reaches_the_intent_and_touches_only_owned_leaves(
    current: list[Claim], data: st.DataObject
) -> None:
    # Often the same services as before with drift only; otherwise services came, went or changed.
    previous = data.draw(st.one_of(st.just(current), service_sets()), label="previous")
    for device in DEVICES:
        before, managed_before = left_behind(device, previous)
        perturb(before, managed_before, data)
        observed = json_ietf(before) if data.draw(st.booleans(), label="JSON_IETF") else before

        mine = [e for s in current for e in s.entries if e.device == device]
        refused = preflight(device, mine, observed).keys()
        intent = merge(device, [s for s in current if s.key not in refused]).intent
        created = {p for p in managed_before if p.elems[0].name == "network-instances" and len(p.elems) == 2}
        retired = owned_on(device, *previous, created=tuple(created))
        result = plan(intent, observed, retired, created)
        for op in result.operations:
            event(f"{op.op} at depth {len(op.path.elems)}")
        event(f"refused by preflight: {bool(refused)}")
        event(f"shared entries: {any(len(owners) > 1 for owners in intent.owners.values())}")
        assert not result.replaces, "the controller never replaces: a replace drops what others wrote"
        assert all(isinstance(op.value, dict) for op in result.updates)

        after = normalise(apply_set(normalise(observed), result))
        assert verify(intent, after, created=created) == []
        assert plan(intent, after, retired, created).is_empty
        # Deletes remove only what earlier services owned and nothing still needs.
        owned_before = {leaf for leaves in retired.values() for leaf in leaves}
        for op in result.deletes:
            assert op.path not in intent.needed
            assert any(op.path.is_prefix_of(leaf) for leaf in owned_before), f"{op.path} was never ours"
        # Every leaf the intent does not write and no delete removed is as it was: defaults, operators'.
        written = {as_leaf_path(leaf) for e in intent.entries.values() for leaf in leaf_paths(e.path, e.value)}
        gone = written | {as_leaf_path(op.path) for op in result.deletes}

        assert {x for x in leaves(after) if foreign(x, gone)} == {
            x for x in leaves(normalise(observed)) if foreign(x, gone)
        }


@settings(max_examples=100, deadline=None)
@given(services=service_sets(), order=st.randoms())
def test_merge_does_not_depend_on_input_order(services: list[Claim], order: Any) -> None:
    shuffled = list(services)
    order.shuffle(shuffled)
    for device in DEVICES:
        a, b = merge(device, services), merge(device, shuffled)
        assert a.intent.owners == b.intent.owners
        assert a.intent.values == b.intent.values
        assert a.conflicts == b.conflicts
