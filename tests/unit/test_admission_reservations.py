"""Reservations (controller/admission.py): a port/VLAN this process admitted is held against the requests it
judges next until the Store shows the admitted object, or RESERVATION_SECONDS pass (docs/admission.md)."""

from __future__ import annotations

import asyncio
from typing import Any

import kopf
import pytest

from controller.admission import (
    RESERVATION_SECONDS,
    Request,
    Reservation,
    Reservations,
    Store,
    World,
    reservations,
    review,
)
from controller.billing.clock import OffsetClock
from controller.handlers.admission import Admission
from tests.unit.test_admission import EARLIER, NOW, device, endpoint, offering, service, subscription, world
from tests.unit.test_admission_handler import FakeKube

AT = 1000.0  # monotonic seconds of the first admission


def stored(obj: dict[str, Any], uid: str = "u-1", version: str = "7") -> dict[str, Any]:
    """`obj` as the Store holds it once the API server stored it."""
    meta = {**obj["metadata"], "uid": uid, "resourceVersion": version, "creationTimestamp": EARLIER}
    return {**obj, "metadata": meta}


def admit(plural: str, obj: dict[str, Any], w: World, held: Reservations, at: float = AT) -> list[str]:
    """Judge a CREATE of `obj` as the handler does: refused, or admitted and reserved."""
    request = Request(plural, "CREATE", obj, None, NOW)
    problems = [str(p) for p in review(request, w, held, at)]
    if not problems:
        for mine in reservations(request, w, at):
            held.reserve(mine)
    return problems


# (id, first admitted (plural, object), second (plural, object), seconds later, what the second gets:
#  None admitted, else (field, words))
CASES: list[tuple[str, tuple[str, dict], tuple[str, dict], float, tuple[str, list[str]] | None]] = [
    ("two orders on one port and VLAN", ("subscriptions", subscription("a")), ("subscriptions", subscription("b")),
     0.5, ("spec.endpoints[0]", ["device pe1 port Ethernet1 vlanId 100 is held by Subscription acme/a",
                                 "admitted 0.5 s ago and not stored yet"])),
    ("a service on an order's port and VLAN", ("subscriptions", subscription("a")),
     ("networkservices", service("other")), 0.1, ("spec.endpoints[0]", ["held by Subscription acme/a"])),
    ("an order on a service's port and VLAN", ("networkservices", service("svc")),
     ("subscriptions", subscription("b")), 0.1, ("spec.endpoints[0]", ["held by NetworkService acme/svc"])),
    ("two services", ("networkservices", service("x")),
     ("networkservices", service("y", endpoints=[endpoint(ip="198.51.100.1/30")])), 0.1,
     ("spec.endpoints[0]", ["held by NetworkService acme/x"])),
    ("the second endpoint named", ("subscriptions", subscription("a", endpoints=[endpoint(vlan=7)])),
     ("subscriptions", subscription("b", endpoints=[endpoint(vlan=6, ip="192.0.2.5/30"), endpoint(vlan=7)])),
     0.1, ("spec.endpoints[1]", ["vlanId 7 is held by Subscription acme/a"])),
    ("another VLAN", ("subscriptions", subscription("a")),
     ("subscriptions", subscription("b", endpoints=[endpoint(vlan=101, ip="192.0.2.5/30")])), 0.1, None),
    ("another port", ("subscriptions", subscription("a")),
     ("subscriptions", subscription("b", endpoints=[endpoint(port="Ethernet2", ip="192.0.2.5/30")])), 0.1, None),
    ("another device", ("subscriptions", subscription("a")),
     ("subscriptions", subscription("b", endpoints=[endpoint(device="pe2")])), 0.1, None),
    ("another namespace, same name: another order", ("subscriptions", subscription("a")),
     ("subscriptions", subscription("a", namespace="beta")), 0.1,
     ("spec.endpoints[0]", ["held by Subscription acme/a"])),
    ("the same create sent again (a retry)", ("subscriptions", subscription("a")), ("subscriptions", subscription("a")),
     0.1, None),
    ("the order's own NetworkService (same namespace and name)", ("subscriptions", subscription("a")),
     ("networkservices", service("a")), 0.1, None),
    ("a NetworkService dry run claims nothing: not refused", ("subscriptions", subscription("a")),
     ("networkservices", service("probe", dryRun=True)), 0.1, None),
    ("a NetworkService dry run reserves nothing", ("networkservices", service("probe", dryRun=True)),
     ("subscriptions", subscription("b")), 0.1, None),
    ("just before the bound", ("subscriptions", subscription("a")), ("subscriptions", subscription("b")),
     RESERVATION_SECONDS - 0.01, ("spec.endpoints[0]", ["held by Subscription acme/a"])),
    ("the bound passed: never stored, let go", ("subscriptions", subscription("a")),
     ("subscriptions", subscription("b")), RESERVATION_SECONDS, None),
    ("an overlapping subnet on another VLAN", ("subscriptions", subscription("a")),
     ("subscriptions", subscription("b", endpoints=[endpoint(vlan=101, ip="192.0.2.2/30")])), 0.3,
     ("spec.endpoints[0].ipv4Address", ["192.0.2.2/30 overlaps 192.0.2.1/30 of Subscription acme/a, admitted 0.3 s",
                                        "on device pe1 in the default routing instance"])),
    ("a service's subnet containing an order's", ("subscriptions", subscription("a")),
     ("networkservices", service("wide", endpoints=[endpoint(vlan=102, ip="192.0.2.9/24")])), 0.1,
     ("spec.endpoints[0].ipv4Address", ["192.0.2.9/24 overlaps 192.0.2.1/30 of Subscription acme/a"])),
    ("the same subnet in another routing instance", ("networkservices", service("x")),
     ("networkservices", service("vpn", serviceType="l3vpn", vrf="red", endpoints=[endpoint(vlan=101)])), 0.1, None),
    ("an l3vpn order's subnet in its VRF", ("subscriptions", subscription("a", productOffering={"name": "vpn-50"},
                                                                           vrf="red")),
     ("networkservices", service("vpn", serviceType="l3vpn", vrf="red", endpoints=[endpoint(vlan=101)])), 0.1,
     ("spec.endpoints[0].ipv4Address", ["of Subscription acme/a", "in VRF red"])),
    ("an l3vpn order's subnet, outside its VRF", ("subscriptions", subscription("a", productOffering={"name": "vpn-50"},
                                                                                 vrf="red")),
     ("networkservices", service("plain", endpoints=[endpoint(vlan=101)])), 0.1, None),
    ("the port/VLAN named, not its address too", ("subscriptions", subscription("a")),
     ("networkservices", service("same")), 0.1, ("spec.endpoints[0]", ["held by Subscription acme/a"])),
]  # fmt: skip


@pytest.mark.parametrize(("first", "second", "later", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_claim_admitted_but_not_stored_holds_against_the_next_request(
    first: tuple[str, dict], second: tuple[str, dict], later: float, expected: tuple[str, list[str]] | None
) -> None:
    held = Reservations()
    w = world(subscriptions=[], networkservices=[])  # neither is stored yet
    assert admit(*first, w, held) == []
    problems = admit(*second, w, held, AT + later)
    if expected is None:
        assert problems == []
        return
    field, words = expected
    assert len(problems) == 1 and problems[0].startswith(f"{field}: "), problems
    for word in words:
        assert word in problems[0], (word, problems)


def test_once_the_store_shows_the_object_it_is_the_truth() -> None:
    """Stored, the order holds its endpoint by the controller's precedence (its own message); deleted
    again, nothing holds it: the reservation no longer counts once the Store showed another version."""
    held = Reservations()
    a = subscription("a")
    assert admit("subscriptions", a, world(subscriptions=[]), held) == []
    now_stored = world(subscriptions=[stored(a)])
    problems = admit("subscriptions", subscription("b"), now_stored, held, AT + 1)
    assert len(problems) == 1 and "held by Subscription acme/a (created 2027-01-01T00:00:00Z" in problems[0]
    assert "not stored yet" not in problems[0]
    ended = world(subscriptions=[stored(a, version="9") | {"status": {"state": "terminated"}}])
    c = subscription("c", endpoints=[endpoint(ip="198.51.100.1/30")])  # the subnet is held apart (below)
    assert admit("subscriptions", c, ended, held, AT + 2) == []


def test_an_orders_subnets_are_held_until_its_networkservice_is_stored() -> None:
    """Only NetworkServices' subnets are looked up, and an order's service is made after the order is
    stored: until the Store shows it, the order's subnets stay reserved under the service's name."""
    held = Reservations()
    a = subscription("a")
    assert admit("subscriptions", a, world(subscriptions=[], networkservices=[]), held) == []
    other_vlan = service("rival", endpoints=[endpoint(vlan=101, ip="192.0.2.2/30")])
    order_stored = world(subscriptions=[stored(a)], networkservices=[])
    problems = admit("networkservices", other_vlan, order_stored, held, AT + 1)
    assert len(problems) == 1 and problems[0].startswith("spec.endpoints[0].ipv4Address: "), problems
    assert "overlaps 192.0.2.1/30 of Subscription acme/a, admitted 1.0 s ago" in problems[0]
    assert admit("networkservices", service("a"), order_stored, held, AT + 1) == [], "its own service"
    made = world(subscriptions=[stored(a)], networkservices=[stored(service("a"), uid="u-7", version="8")])
    problems = admit("networkservices", other_vlan, made, held, AT + 2)
    assert len(problems) == 1 and "of NetworkService acme/a on device pe1" in problems[0], problems
    assert "not stored yet" not in problems[0]


def test_an_update_is_held_until_the_store_shows_a_newer_version_of_it() -> None:
    """An update that moves an order onto a port/VLAN: reserved while the Store still shows the version it
    was judged against; the Store showing another version (this update's, or a later one) releases it."""
    held = Reservations()
    before = stored(subscription("a", endpoints=[endpoint(vlan=5)]), version="7")
    after = stored(subscription("a", endpoints=[endpoint(vlan=8)]), version="7")
    w = world(subscriptions=[before])
    assert [str(p) for p in review(Request("subscriptions", "UPDATE", after, before, NOW), w, held, AT)] == []
    mine, subnets = reservations(Request("subscriptions", "UPDATE", after, before, NOW), w, AT)
    assert mine.seen == "7" and mine.endpoints == (("pe1", "Ethernet1", 8),)
    assert subnets.plural == "networkservices" and subnets.seen is None and subnets.endpoints == ()
    held.reserve(mine)
    rival = subscription("b", endpoints=[endpoint(vlan=8, ip="192.0.2.9/30")])
    assert "held by Subscription acme/a, admitted" in admit("subscriptions", rival, w, held, AT + 1)[0]
    moved = world(subscriptions=[stored(subscription("a", endpoints=[endpoint(vlan=8)]), version="8")])
    assert "held by Subscription acme/a (created" in admit("subscriptions", rival, moved, held, AT + 1)[0]
    refused_later = world(subscriptions=[stored(subscription("a", endpoints=[endpoint(vlan=5)]), version="9")])
    assert admit("subscriptions", rival, refused_later, held, AT + 1) == []


def test_an_update_keeping_an_endpoint_someone_reserved_is_not_refused_for_it() -> None:
    """Only what an update newly takes is refused: a stored, ended order that still names the endpoint."""
    held = Reservations()
    assert admit("subscriptions", subscription("a"), world(subscriptions=[]), held) == []
    old = stored(subscription("old", state="terminated"), uid="u-2")
    new = {**old, "spec": {**old["spec"], "requestedTerminationDate": "2027-06-01T00:00:00Z"}}
    w = world(subscriptions=[old])
    assert review(Request("subscriptions", "UPDATE", new, old, NOW), w, held, AT + 1) == []


def test_an_endpoint_a_stored_order_holds_is_named_once() -> None:
    held = Reservations()
    holder = stored(subscription("holder"), uid="u-9")
    w = world(subscriptions=[holder])
    held.reserve(Reservation("subscriptions", "acme", "a", "u-1", (("pe1", "Ethernet1", 100),), None, AT))
    problems = admit("subscriptions", subscription("b"), w, held, AT + 1)
    assert len(problems) == 1 and "held by Subscription acme/holder (created" in problems[0], problems


def test_reservations_expire_in_the_order_admitted_and_a_name_replaces_its_own() -> None:
    held = Reservations(bound=10)
    key = ("pe1", "Ethernet1", 1)
    held.reserve(Reservation("subscriptions", "acme", "a", "", (key,), None, 0.0))
    held.reserve(Reservation("subscriptions", "acme", "b", "", (key,), None, 5.0))
    assert [r.name for r in held.holding(key, 6.0)] == ["a", "b"]
    held.reserve(Reservation("subscriptions", "acme", "a", "", (("pe1", "Ethernet1", 2),), None, 6.0))  # moved
    assert [r.name for r in held.holding(key, 7.0)] == ["b"]
    held.expire(14.0)
    assert len(held) == 2
    held.expire(15.0)
    assert len(held) == 1 and held.holding(key, 15.0) == []
    held.expire(16.0)
    assert len(held) == 0


def test_a_request_with_nothing_to_claim_reserves_nothing() -> None:
    w = world(subscriptions=[], networkservices=[])
    for plural, obj in [
        ("networkservices", service("probe", dryRun=True)),
        ("networkdevices", device("pe9")),
        ("productofferings", offering("fiber-9")),
        ("subscriptions", {**subscription("bad"), "spec": {"endpoints": "not a list"}}),
    ]:
        assert reservations(Request(plural, "CREATE", obj, None, NOW), w, AT) == (), plural


# --- the handler: concurrent requests of one process ---------------------------------------------------


def test_two_concurrent_creates_of_one_port_and_vlan_exactly_one_admitted() -> None:
    """Both read the cluster before either is stored (one shared list): before reservations both were
    admitted. Now the second judged is refused naming the first, and a dry run reserves nothing."""
    kube = FakeKube({"networkdevices": [device("pe1")], "productofferings": [offering()]})
    checker = Admission(kube, OffsetClock(0.0), cache=False)  # type: ignore[arg-type]

    async def attempt(name: str, dryrun: bool = False) -> str:
        try:
            await checker.judge("subscriptions", "CREATE", subscription(name), None, dryrun=dryrun)
        except kopf.AdmissionError as exc:
            return str(exc)
        return "admitted"

    async def main() -> None:
        assert await attempt("dry", dryrun=True) == "admitted"
        outcomes = await asyncio.gather(attempt("a"), attempt("b"), attempt("c"))
        assert outcomes.count("admitted") == 1, outcomes
        winner = "abc"[outcomes.index("admitted")]
        for outcome in outcomes:
            if outcome != "admitted":
                assert outcome.startswith("spec.endpoints[0]: ") and f"Subscription acme/{winner}," in outcome
        assert await attempt(winner) == "admitted", "its retry is not refused by its own reservation"

    asyncio.run(main())


def test_the_store_ends_a_reservation_once_it_shows_the_object_and_a_deletion_does_not_bring_it_back() -> None:
    """Stored, then deleted within the bound: the port is free again (the Store shows the name as it was
    before the create, which alone would look like a reservation still waiting for its object)."""
    held = Reservations()
    orders, services = Store("subscriptions"), Store("networkservices")
    for store in (orders, services):
        store.observers.append(held.observed)
    w = World({**world().objects, "subscriptions": orders, "networkservices": services})
    a = subscription("a")
    assert admit("subscriptions", a, w, held) == []
    services.put(stored(service("a"), uid="u-5"))  # the order's own service: not the reserved name's kind
    services.delete(stored(service("a"), uid="u-5"))
    assert len(held) == 1
    orders.put(stored(a))
    assert len(held) == 0
    orders.delete(stored(a))
    assert admit("subscriptions", subscription("b"), w, held, AT + 1) == []


def test_an_update_reservation_ends_when_the_store_shows_another_version_or_a_deletion() -> None:
    key = ("pe1", "Ethernet1", 8)
    for version, deleted, ends in [("7", False, False), ("8", False, True), ("7", True, True)]:
        held = Reservations()
        held.reserve(Reservation("subscriptions", "acme", "a", "u-1", (key,), "7", AT))
        held.observed("subscriptions", stored(subscription("a"), version=version), deleted)
        assert (len(held) == 0) == ends, (version, deleted)


def test_lists_settle_the_reservations_whose_name_they_show_at_another_version() -> None:
    held = Reservations()
    a = subscription("a")
    assert admit("subscriptions", a, world(subscriptions=[]), held) == []
    assert len(held) == 2  # the order's port/VLAN, and its subnet under its NetworkService's name
    held.settle(world(networkdevices=[]))  # a world without Subscriptions or NetworkServices tells nothing
    assert len(held) == 2
    held.settle(world(subscriptions=[stored(a)]))
    assert len(held) == 1
    held.settle(world(networkservices=[stored(service("a"))]))
    assert len(held) == 0
