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
    every = [r for r in index.services if any(e.device in devices for e in r.spec.endpoints)]
    found = _entangled_services(claim, devices, index, lambda r: r.key != key and r in every)

    def lost(device: str, services: list[Any]) -> set[Any]:
        claims = [Claim(r.key, r.created or newest, r.entries) for r in services]
        return {(c.path, c.holder) for c in merge(device, [*claims, claim]).conflicts if c.service == key}

    for device in sorted(devices):
        assert lost(device, found) == lost(device, every)
