"""The indexes admission decisions look other objects up in (controller/admission.py's Listing,
ServiceIndex and the claims by endpoint): each agrees with the full scan it replaces, and is built once
per list, however many requests are judged against that list."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from controller.admission import Listing, Request, ServiceIndex, World, _orders_naming, review
from controller.commerce.order import endpoint_claims, order_record
from controller.intent.render import ServiceKey
from tests.unit.test_admission import NOW, endpoint, service, subscription, world

DEVICES = ("pe1", "pe2")
VRFS = (None, "red", "blue")  # None: internetAccess, in the default routing instance


def addresses() -> st.SearchStrategy[str]:
    # few distinct networks and every prefix length, so that nesting, equal blocks and /0 all occur
    return st.builds(
        lambda a, b, length: f"10.{a}.{b}.1/{length}",
        st.integers(0, 3),
        st.integers(0, 3),
        st.integers(0, 32),
    )


def raw_service(n: int, device: str, vrf: str | None, ips: list[str], dry: bool) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "serviceType": "l3vpn" if vrf else "internetAccess",
        "endpoints": [endpoint(vlan=100 + n * 10 + i, ip=ip, device=device) for i, ip in enumerate(ips)],
        "dryRun": dry,
    }
    if vrf:
        spec["vrf"] = vrf
    return service(f"s{n}", "beta", "2027-01-01T00:00:00Z", **spec)


services = st.lists(
    st.tuples(st.sampled_from(DEVICES), st.sampled_from(VRFS), st.lists(addresses(), max_size=3), st.booleans()),
    max_size=12,
).map(lambda specs: [raw_service(n, *spec) for n, spec in enumerate(specs)])


@settings(max_examples=300, deadline=None)
@given(services, st.sampled_from(DEVICES), st.sampled_from(VRFS), addresses())
def test_overlapping_subnets_are_those_a_scan_of_every_service_finds(
    objects: list[dict[str, Any]], device: str, vrf: str | None, address: str
) -> None:
    network = ipaddress.IPv4Interface(address).network
    index = ServiceIndex.of(objects, World({}))
    scan = [
        (f"{o['metadata']['namespace']}/{o['metadata']['name']}", e["ipv4Address"])
        for o in objects
        if not o["spec"]["dryRun"] and o["spec"].get("vrf") == vrf
        for e in o["spec"]["endpoints"]
        if e["device"] == device and ipaddress.IPv4Interface(e["ipv4Address"]).network.overlaps(network)
    ]
    found = [(str(r.key), str(a)) for r, a in index.overlapping(device, vrf, network)]
    assert found == scan


def test_a_subnet_inside_and_one_around_are_both_found_in_list_order() -> None:
    inner = raw_service(0, "pe1", None, ["10.0.0.5/30"], False)
    outer = raw_service(1, "pe1", None, ["10.0.0.1/16"], False)
    apart = raw_service(2, "pe1", None, ["10.1.0.1/24"], False)
    other_device = raw_service(3, "pe2", None, ["10.0.0.1/24"], False)
    index = ServiceIndex.of([inner, outer, apart, other_device], World({}))
    found = index.overlapping("pe1", None, ipaddress.IPv4Network("10.0.0.0/24"))
    assert [(r.key, str(a)) for r, a in found] == [
        (ServiceKey("beta", "s0"), "10.0.0.5/30"),
        (ServiceKey("beta", "s1"), "10.0.0.1/16"),
    ]


orders = st.lists(
    st.tuples(
        st.sampled_from(("acme", "beta")),
        st.integers(0, 5),
        st.sampled_from(("2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z")),
        st.sampled_from((None, "active", "terminated")),
        st.lists(st.integers(1, 4), max_size=3, unique=True),
    ),
    max_size=10,
)


@settings(max_examples=200, deadline=None)
@given(orders, st.lists(st.integers(1, 4), min_size=1, max_size=3, unique=True), st.integers(0, 5))
def test_the_orders_that_can_hold_an_endpoint_decide_as_all_orders_do(
    specs: list[tuple[str, int, str, str | None, list[int]]], vlans: list[int], me: int
) -> None:
    objects = [
        subscription(f"o{n}", ns, created, state, endpoints=[endpoint(vlan=v, ip=None) for v in vs])
        for ns, n, created, state, vs in specs
    ]
    keys = [("pe1", "Ethernet1", v) for v in vlans]
    everyone = endpoint_claims(r for o in objects if (r := order_record(o)).name != f"o{me}" or r.namespace != "acme")
    picked = endpoint_claims(_orders_naming(World({"subscriptions": objects}), keys, ("acme", f"o{me}")))
    assert {k: picked.get(k) for k in keys} == {k: everyone.get(k) for k in keys}


def test_indexes_are_built_once_per_list_and_shared_by_the_worlds_judged_against_it() -> None:
    """What the handler relies on in a burst: one Listing per list call, many requests, one index each."""
    held = service("first", "beta", "2027-01-01T00:00:00Z")
    listing = Listing([held])
    built: list[int] = []

    def build(objects: Any) -> int:
        built.append(len(objects))
        return len(built)

    assert listing.memo("x", build) == listing.memo("x", build) == 1
    assert built == [1]
    base = world()
    worlds = [World({**base.objects, "networkservices": listing}) for _ in range(3)]
    for w in worlds:
        refused = review(Request("networkservices", "CREATE", service(), None, NOW), w)
        assert [p.field for p in refused] == ["spec.endpoints[0]"]
    index = worlds[0].of("networkservices").memo("services", lambda _: None)
    assert isinstance(index, ServiceIndex)
    assert all(w.of("networkservices") is listing for w in worlds)


def test_a_plain_list_gets_an_index_of_its_own_per_world() -> None:
    objects = [service("first", "beta", "2027-01-01T00:00:00Z")]
    one, two = World({"networkservices": objects}), World({"networkservices": objects})
    assert one.of("networkservices") is one.of("networkservices")
    assert one.of("networkservices") is not two.of("networkservices")
    assert one.find("networkservices", "beta", "first") is objects[0]
    assert one.find("networkservices", "acme", "first") is None


vlan_services = st.lists(
    st.tuples(
        st.lists(st.tuples(st.sampled_from(DEVICES), st.integers(1, 4)), min_size=1, max_size=3, unique=True),
        st.sampled_from(("2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z")),
        st.sampled_from((None, "red")),
    ),
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(
    vlan_services, st.lists(st.tuples(st.sampled_from(DEVICES), st.integers(1, 4)), min_size=1, max_size=2, unique=True)
)
def test_the_entangled_services_give_the_candidate_the_outcome_merging_every_service_gives(
    specs: list[tuple[list[tuple[str, int]], str, str | None]], mine: list[tuple[str, int]]
) -> None:
    """merge() over the services the index finds decides the candidate's claims as merge() over every
    stored service on its devices does (chains of services that lost a claim included)."""
    from controller.admission import _entangled_services
    from controller.api.networkservice import NetworkServiceSpec
    from controller.intent.merge import Claim, merge
    from controller.intent.render import render

    def raw(name: str, created: str | None, eps: list[tuple[str, int]], vrf: str | None) -> dict[str, Any]:
        extra: dict[str, Any] = {"serviceType": "l3vpn", "vrf": vrf} if vrf else {"serviceType": "l2vpn"}
        return service(name, "beta", created, endpoints=[endpoint(d, vlan=v, ip=None) for d, v in eps], **extra)

    objects = [raw(f"s{n}", created, eps, vrf) for n, (eps, created, vrf) in enumerate(specs)]
    candidate = raw("new", None, mine, None)
    key, spec = ServiceKey("beta", "new"), NetworkServiceSpec.model_validate(candidate["spec"])
    newest = datetime.max.replace(tzinfo=UTC)
    claim = Claim(key, newest, tuple(render(key, spec)))
    devices = {d for d, _ in mine}
    index = ServiceIndex.of(objects, World({}))
    every = [r for r in index.services.values() if any(e.device in devices for e in r.spec.endpoints)]
    found = _entangled_services(claim, devices, index, lambda r: r.key != key and r in every)

    def lost(device: str, services: list[Any]) -> set[Any]:
        claims = [Claim(r.key, r.created or newest, r.entries) for r in services]
        return {(c.path, c.holder) for c in merge(device, [*claims, claim]).conflicts if c.service == key}

    for device in sorted(devices):
        assert lost(device, found) == lost(device, every)


# --- the watch-fed Store: indexes kept per event equal those built over a list -------------------------

NAMES = ("a", "b", "c", "d", "e")
NAMESPACES = ("acme", "beta")


def _versioned(obj: dict[str, Any], version: int) -> dict[str, Any]:
    obj["metadata"]["resourceVersion"] = str(version)
    return obj


def _store_event(kind: str) -> st.SearchStrategy[tuple[str, str, str, Any]]:
    """(ADDED/MODIFIED or DELETED, namespace, name, spec of the object), for `kind`'s objects."""
    if kind == "networkservices":
        body = st.tuples(
            st.lists(st.tuples(st.sampled_from(DEVICES), st.integers(1, 4)), min_size=1, max_size=2, unique=True),
            st.sampled_from(VRFS),
            addresses(),
            st.booleans(),
        )
    else:
        body = st.tuples(
            st.lists(st.integers(1, 4), max_size=3, unique=True),
            st.sampled_from((None, "active", "terminated")),
            st.sampled_from(("2027-01-01T00:00:00Z", "2027-02-01T00:00:00Z")),
            st.just(False),
        )
    return st.tuples(
        st.sampled_from(("PUT", "PUT", "DELETED")), st.sampled_from(NAMESPACES), st.sampled_from(NAMES), body
    )


def _object(kind: str, namespace: str, name: str, body: Any) -> dict[str, Any]:
    if kind == "networkservices":
        eps, vrf, ip, dry = body
        extra: dict[str, Any] = {"serviceType": "l3vpn", "vrf": vrf} if vrf else {"serviceType": "internetAccess"}
        endpoints = [endpoint(d, vlan=v, ip=ip if i == 0 else None) for i, (d, v) in enumerate(eps)]
        return service(name, namespace, "2027-01-01T00:00:00Z", endpoints=endpoints, dryRun=dry, **extra)
    vlans, state, created, _ = body
    return subscription(name, namespace, created, state, endpoints=[endpoint(vlan=v, ip=None) for v in vlans])


def _fill(kind: str, events: list[tuple[str, str, str, Any]]) -> tuple[Any, list[dict[str, Any]]]:
    from controller.admission import Store

    store = Store(kind)
    alive: dict[tuple[str, str], dict[str, Any]] = {}
    for version, (op, namespace, name, body) in enumerate(events, start=1):
        obj = _versioned(_object(kind, namespace, name, body), version)
        if op == "DELETED":
            store.delete(obj)
            alive.pop((namespace, name), None)
        else:
            store.put(obj)
            alive[(namespace, name)] = obj
    listed = [alive[k] for k in sorted(alive)]  # as a cluster-wide list returns them
    return store, listed


def _candidates() -> st.SearchStrategy[dict[str, Any]]:
    return st.builds(
        lambda eps, ip, plural: (
            service("new", "acme", endpoints=[endpoint(d, vlan=v, ip=ip) for d, v in eps])
            if plural == "networkservices"
            else subscription("new", "acme", endpoints=[endpoint(d, vlan=v, ip=ip) for d, v in eps])
        ),
        st.lists(st.tuples(st.sampled_from(DEVICES), st.integers(1, 4)), min_size=1, max_size=2, unique=True),
        addresses(),
        st.sampled_from(("networkservices", "subscriptions")),
    )


@settings(max_examples=200, deadline=None)
@given(
    st.lists(_store_event("networkservices"), max_size=25),
    st.lists(_store_event("subscriptions"), max_size=25),
    st.lists(_candidates(), min_size=1, max_size=3),
)
def test_a_store_fed_event_by_event_decides_as_a_list_of_what_is_left(
    service_events: list[Any], order_events: list[Any], candidates: list[dict[str, Any]]
) -> None:
    """Adds, changes and deletions applied one by one give the indexes (and so every decision) that a
    rebuild from a list of the surviving objects, in the order the API server lists them, gives."""
    services_store, services_listed = _fill("networkservices", service_events)
    orders_store, orders_listed = _fill("subscriptions", order_events)
    base = world()
    fed = World({**base.objects, "networkservices": services_store, "subscriptions": orders_store})
    rebuilt = World({**base.objects, "networkservices": services_listed, "subscriptions": orders_listed})
    # the indexes themselves, order keys mapped from list positions to (namespace, name)
    fed_index = services_store.services
    built_index = ServiceIndex.of(services_listed, World({}))
    keys = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in services_listed]
    assert {keys[n]: r.key for n, r in built_index.services.items()} == {
        k: r.key for k, r in fed_index.services.items()
    }
    assert {w: {keys[n] for n in ns} for w, ns in built_index.by_path.items()} == fed_index.by_path
    assert {w: sorted(blocks) for w, blocks in built_index.subnets.items()} == fed_index.starts
    assert built_index.starts == fed_index.starts
    order_keys = [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in orders_listed]
    fed_orders = orders_store.orders
    assert orders_store.memo("orders-by-endpoint", lambda _: None) is fed_orders
    from controller.admission import OrderIndex

    built_orders = OrderIndex.of(orders_listed)
    assert {e: {order_keys[n]: r for n, r in held.items()} for e, held in built_orders.by_key.items()} == (
        fed_orders.by_key
    )
    for candidate in candidates:
        plural = "networkservices" if candidate["kind"] == "NetworkService" else "subscriptions"
        request = Request(plural, "CREATE", candidate, None, NOW)
        assert review(request, fed) == review(request, rebuilt)
    assert list(services_store) == [_slim("networkservices", o) for o in services_listed]


def _slim(plural: str, obj: dict[str, Any]) -> dict[str, Any]:
    from controller.admission import slim

    return slim(plural, obj)


def test_a_store_keeps_only_what_decisions_read() -> None:
    from controller.admission import Store

    order = subscription("o", "acme", "2027-01-01T00:00:00Z", "active")
    order["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    order["spec"]["note"] = "x" * 1000
    order["status"]["conditions"] = [{"type": "Ready", "message": "y" * 1000}]
    store = Store("subscriptions")
    store.put(_versioned(order, 5))
    (kept,) = list(store)
    assert kept == {
        "metadata": {
            "namespace": "acme",
            "name": "o",
            "creationTimestamp": "2027-01-01T00:00:00Z",
            "resourceVersion": "5",
        },
        "spec": {"endpoints": order["spec"]["endpoints"]},
        "status": {"state": "active"},
    }


def test_a_relist_re_indexes_only_what_changed_and_drops_what_is_gone() -> None:
    from controller.admission import Store

    store = Store("networkservices")
    a = _versioned(service("a", "acme", "2027-01-01T00:00:00Z", endpoints=[endpoint(vlan=1)]), 1)
    b = _versioned(service("b", "acme", "2027-01-01T00:00:00Z", endpoints=[endpoint(vlan=2, ip="10.0.0.1/30")]), 2)
    store.replace([a, b])
    index = store.services
    assert store.memo("services", lambda _: None) is index
    kept = index.services[("acme", "a")]
    b2 = _versioned(service("b", "acme", "2027-01-01T00:00:00Z", endpoints=[endpoint(vlan=3, ip="10.0.0.1/30")]), 4)
    store.replace([a, b2])
    assert index.services[("acme", "a")] is kept, "an unchanged object is not parsed and rendered again"
    assert [e.vlanId for e in index.services[("acme", "b")].spec.endpoints] == [3]
    store.replace([b2], namespace="acme")
    assert list(index.services) == [("acme", "b")]
    store.replace([], namespace="other")  # another namespace's re-list leaves acme alone
    assert len(store) == 1
