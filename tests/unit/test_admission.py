"""Every admission decision of controller/admission.py, as tables: object + cluster in, refusal out."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.admission import (
    FINALIZED,
    RERUN_ANNOTATION,
    WEBHOOKS,
    Problem,
    Request,
    World,
    changes_intent,
    finalizer_path,
    finalizers_at_admission,
    listed_ports,
    mutating_webhook_configuration,
    refusal,
    review,
    subscription_problems,
)
from tests.unit.commerce.builders import offering_doc

NOW = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
EARLIER = "2027-01-01T00:00:00Z"
LATER = "2027-02-01T00:00:00Z"
API = "telco.intent.dev/v1alpha1"


def meta(name: str, namespace: str | None = "acme", created: str | None = None, **extra: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"name": name, **extra}
    if namespace is not None:
        m["namespace"] = namespace
    if created is not None:
        m["creationTimestamp"] = created
    return m


def offering(name: str = "fiber-100", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "ProductOffering",
        "metadata": meta(name, None, EARLIER),
        "spec": offering_doc(**spec),
    }


def l3vpn_offering(name: str = "vpn-50") -> dict[str, Any]:
    return offering(name, serviceCandidate={"serviceType": "l3vpn", "bandwidthMbps": 50})


def endpoint(device: str = "pe1", port: str = "Ethernet1", vlan: int = 100, ip: str | None = "192.0.2.1/30") -> dict:
    doc: dict[str, Any] = {"device": device, "port": port, "vlanId": vlan}
    if ip is not None:
        doc["ipv4Address"] = ip
    return doc


def subscription(
    name: str = "hq", namespace: str = "acme", created: str | None = None, state: str | None = None, **spec: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "productOffering": {"name": "fiber-100"},
        "billingAccount": {"id": "acme-1"},
        "endpoints": [endpoint()],
    }
    body.update(spec)
    obj: dict[str, Any] = {"apiVersion": API, "kind": "Subscription", "metadata": meta(name, namespace, created)}
    obj["spec"] = body
    if state is not None:
        obj["status"] = {"state": state}
    return obj


def service(name: str = "svc", namespace: str = "acme", created: str | None = None, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"serviceType": "internetAccess", "bandwidthMbps": 100, "endpoints": [endpoint()]}
    body.update(spec)
    return {"apiVersion": API, "kind": "NetworkService", "metadata": meta(name, namespace, created), "spec": body}


def device(name: str = "pe1", address: str = "10.0.0.1", port: int = 9339, ports: list | None = None) -> dict:
    obj: dict[str, Any] = {
        "apiVersion": API,
        "kind": "NetworkDevice",
        "metadata": meta(name, None, EARLIER),
        "spec": {"address": address, "port": port, "credentialsSecretRef": {"name": "creds", "namespace": "ops"}},
    }
    if ports is not None:
        obj["status"] = {"ports": ports}
    return obj


def invoice(
    name: str = "inv-1", account: str = "acme-1", start: str = EARLIER, end: str = LATER, **extra: Any
) -> dict[str, Any]:
    annotations = extra.pop("annotations", None)
    m = meta(name, "acme", None)
    if annotations:
        m["annotations"] = annotations
    body: dict[str, Any] = {"billingAccount": account, "billingPeriod": {"startDateTime": start, "endDateTime": end}}
    body.update(extra)
    return {"apiVersion": API, "kind": "Invoice", "metadata": m, "spec": body}


def world(**objects: list[dict[str, Any]]) -> World:
    base: dict[str, list[dict[str, Any]]] = {
        "productofferings": [offering(), l3vpn_offering()],
        "networkdevices": [device("pe1"), device("pe2", address="10.0.0.2")],
    }
    base.update(objects)
    return World(base)


def create(plural: str, obj: dict[str, Any], w: World | None = None) -> list[str]:
    return [str(p) for p in review(Request(plural, "CREATE", obj, None, NOW), w or world())]


def update(plural: str, old: dict[str, Any], new: dict[str, Any], w: World | None = None) -> list[str]:
    return [str(p) for p in review(Request(plural, "UPDATE", new, old, NOW), w or world())]


def one(problems: list[str], field: str, *words: str) -> None:
    """Exactly one problem, on `field`, mentioning every word."""
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"{field}: "), problems
    for word in words:
        assert word in problems[0], (word, problems)


# --- Subscription ------------------------------------------------------------------------------

SUBSCRIPTION_REFUSALS = [
    ("missing offering", subscription(productOffering={"name": "gone"}), world(), "spec.productOffering.name",
     ["ProductOffering gone does not exist"]),
    ("retired offering", subscription(), world(productofferings=[offering(lifecycleStatus="Retired")]),
     "spec.productOffering.name", ["takes no new orders", "Retired"]),
    ("not sellable", subscription(), world(productofferings=[offering(isSellable=False)]),
     "spec.productOffering.name", ["isSellable is false"]),
    ("offering expired", subscription(),
     world(productofferings=[offering(validFor={"endDateTime": "2027-02-01T00:00:00Z"})]),
     "spec.productOffering.name", ["validFor ended"]),
    ("offering priced in ZZZ", subscription(),
     world(productofferings=[offering(productOfferingPrice=[{
         "name": "Monthly fee", "priceType": "recurring", "recurringChargePeriodType": "month",
         "price": {"unit": "ZZZ", "value": "1.00"}}])]),
     "spec.productOffering.name", ["currency ZZZ is not supported"]),
    ("unknown device", subscription(endpoints=[endpoint(device="nowhere")]), world(),
     "spec.endpoints[0].device", ["NetworkDevice nowhere does not exist", "known: pe1, pe2"]),
    ("unknown port of a device that lists its ports", subscription(endpoints=[endpoint(port="Ethernet9")]),
     world(networkdevices=[device(ports=["Ethernet1", {"name": "Ethernet2"}])]),
     "spec.endpoints[0].port", ["no port Ethernet9", "Ethernet1, Ethernet2"]),
    ("endpoint held by an accepted Subscription", subscription(),
     world(subscriptions=[subscription("other", "beta", EARLIER, "active")]),
     "spec.endpoints[0]", ["held by Subscription beta/other", "state active"]),
    ("endpoint held by a not yet processed Subscription", subscription(),
     world(subscriptions=[subscription("other", "beta", EARLIER)]),
     "spec.endpoints[0]", ["held by Subscription beta/other", "state created"]),
    ("endpoint held by a plain NetworkService", subscription(),
     world(networkservices=[service("plain", "ops", EARLIER, endpoints=[endpoint(ip="198.51.100.1/30")])]),
     "spec.endpoints[0]", ["held by NetworkService ops/plain", "subinterface[index=100]"]),
    ("subnet overlapping another service on the device", subscription(),
     world(networkservices=[service("plain", "ops", EARLIER, endpoints=[endpoint(vlan=200, ip="192.0.2.2/30")])]),
     "spec.endpoints[0].ipv4Address", ["192.0.2.1/30 overlaps 192.0.2.2/30 of NetworkService ops/plain",
                                       "default routing instance"]),
    ("l3vpn without a vrf (validate_order)", subscription(productOffering={"name": "vpn-50"}), world(),
     "spec.vrf", ["needs a VRF name"]),
    ("time zone not in tzdata", subscription(billingAccount={"id": "a", "timeZone": "Mars/Olympus_Mons"}), world(),
     "spec.billingAccount.timeZone", ["'Mars/Olympus_Mons'", "tzdata"]),
    ("Etc/GMT+13 does not exist", subscription(billingAccount={"id": "a", "timeZone": "Etc/GMT+13"}), world(),
     "spec.billingAccount.timeZone", ["'Etc/GMT+13'"]),
    ("termination past year 9999 in UTC", subscription(requestedTerminationDate="9999-12-31T23:30:00-01:00"),
     world(), "spec.requestedTerminationDate", ["past the year 9999"]),
    ("start too far ahead to bill", subscription(requestedStartDate="9950-01-01T00:00:00Z"), world(),
     "spec.requestedStartDate", ["too far ahead"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("obj", "w", "field", "words"),
    [case[1:] for case in SUBSCRIPTION_REFUSALS],
    ids=[case[0] for case in SUBSCRIPTION_REFUSALS],
)
def test_subscription_refused_naming_the_field(obj: dict, w: World, field: str, words: list[str]) -> None:
    one(create("subscriptions", obj, w), field, *words)


SUBSCRIPTION_ADMITTED = [
    ("sellable offering, free endpoint", subscription(), world()),
    ("EST5EDT is an IANA zone", subscription(billingAccount={"id": "a", "timeZone": "EST5EDT"}), world()),
    ("holder terminated: the endpoint is free",
     subscription(), world(subscriptions=[subscription("old", "beta", EARLIER, "terminated")])),
    ("same port, another VLAN, another subnet",
     subscription(), world(networkservices=[service("plain", "ops", EARLIER,
                                                    endpoints=[endpoint(vlan=200, ip="198.51.100.1/30")])])),
    ("same subnet on another device",
     subscription(), world(networkservices=[service("plain", "ops", EARLIER,
                                                    endpoints=[endpoint(device="pe2", vlan=200)])])),
    ("same subnet in another VRF",
     subscription(productOffering={"name": "vpn-50"}, vrf="red"),
     world(networkservices=[service("blue", "ops", EARLIER, serviceType="l3vpn", vrf="blue",
                                    endpoints=[endpoint(vlan=200)])])),
    ("its own NetworkService holds the endpoint",
     subscription(), world(networkservices=[service("hq", "acme", EARLIER)])),
    ("a device without listed ports: any port", subscription(endpoints=[endpoint(port="Ethernet77")]), world()),
    ("a dry-run service claims nothing",
     subscription(), world(networkservices=[service("plan", "ops", EARLIER, dryRun=True)])),
]  # fmt: skip


@pytest.mark.parametrize(
    ("obj", "w"), [case[1:] for case in SUBSCRIPTION_ADMITTED], ids=[case[0] for case in SUBSCRIPTION_ADMITTED]
)
def test_subscription_admitted(obj: dict, w: World) -> None:
    assert create("subscriptions", obj, w) == []


def test_several_problems_are_all_named() -> None:
    obj = subscription(
        productOffering={"name": "gone"},
        billingAccount={"id": "a", "timeZone": "Mars/Olympus_Mons"},
        endpoints=[endpoint(device="nowhere")],
    )
    fields = [p.split(": ")[0] for p in create("subscriptions", obj)]
    assert fields == ["spec.billingAccount.timeZone", "spec.endpoints[0].device", "spec.productOffering.name"]


# --- UPDATE: only problems the request introduces ---------------------------------------------


def test_update_of_metadata_only_is_admitted_without_reading() -> None:
    old = subscription(created=EARLIER, productOffering={"name": "gone"})
    new = copy.deepcopy(old)
    new["metadata"]["finalizers"] = ["telco.intent.dev/cleanup"]
    request = Request("subscriptions", "UPDATE", new, old, NOW)
    assert not changes_intent(request)
    assert review(request, World({})) == []  # an empty world: nothing was read


def test_update_keeps_a_problem_the_stored_object_already_had() -> None:
    # The offering was retired after the order: changing desiredState must still be possible.
    w = world(productofferings=[offering(lifecycleStatus="Retired")])
    old = subscription(created=EARLIER, state="active")
    new = subscription(created=EARLIER, state="active", desiredState="suspended")
    assert update("subscriptions", old, new, w) == []


def test_update_refuses_a_problem_it_introduces() -> None:
    w = world(subscriptions=[subscription("other", "beta", EARLIER, "active", endpoints=[endpoint(vlan=300)])])
    old = subscription(created=LATER, state="active")
    new = subscription(created=LATER, state="active", endpoints=[endpoint(vlan=300, ip="192.0.2.5/30")])
    one(update("subscriptions", old, new, w), "spec.endpoints[0]", "held by Subscription beta/other")


def test_an_accepted_order_keeps_its_endpoint_against_an_older_unaccepted_one() -> None:
    # Precedence as commerce/order.py decides it: accepted orders first.
    w = world(subscriptions=[subscription("older", "beta", EARLIER)])
    old = subscription(created=LATER, state="active", desiredState="active")
    new = subscription(created=LATER, state="active", desiredState="suspended")
    assert update("subscriptions", old, new, w) == []


def test_an_older_order_may_not_take_a_newer_orders_endpoint() -> None:
    """By precedence the older, accepted order would win and evict the newer one: a change never takes
    what another object holds, whoever was first."""
    w = world(subscriptions=[subscription("newer", "beta", LATER, "pendingActive", endpoints=[endpoint(vlan=300)])])
    old = subscription(created=EARLIER, state="active")
    new = subscription(created=EARLIER, state="active", endpoints=[endpoint(vlan=300, ip="192.0.2.5/30")])
    one(update("subscriptions", old, new, w), "spec.endpoints[0]", "held by Subscription beta/newer")


def test_an_older_service_may_not_take_a_newer_services_subinterface() -> None:
    newer = service("newer", "beta", LATER, endpoints=[endpoint(vlan=300, ip="198.51.100.1/30")])
    old = service("older", "acme", EARLIER)
    new = service("older", "acme", EARLIER, endpoints=[endpoint(vlan=300)])
    one(update("networkservices", old, new, world(networkservices=[newer, old])), "spec.endpoints[0]", "beta/newer")


# --- NetworkService ----------------------------------------------------------------------------

SERVICE_REFUSALS = [
    ("unknown device", service(endpoints=[endpoint(device="ghost")]), world(),
     "spec.endpoints[0].device", ["NetworkDevice ghost does not exist"]),
    ("unknown port", service(endpoints=[endpoint(port="Ethernet5")]),
     world(networkdevices=[device(ports=[{"name": "Ethernet1"}])]),
     "spec.endpoints[0].port", ["no port Ethernet5"]),
    ("port and VLAN held by another NetworkService", service(),
     world(networkservices=[service("first", "beta", EARLIER, endpoints=[endpoint(ip="198.51.100.1/30")])]),
     "spec.endpoints[0]", ["held by NetworkService beta/first"]),
    ("port and VLAN held by a Subscription without its service yet", service(),
     world(subscriptions=[subscription("hq", "beta", EARLIER, "pendingActive")]),
     "spec.endpoints[0]", ["held by Subscription beta/hq"]),
    ("the same IPv4 address on another subinterface of the device (issue 19 case 1)",
     service(endpoints=[endpoint(vlan=101, ip="10.93.10.1/30")]),
     world(networkservices=[service("first", "beta", EARLIER, endpoints=[endpoint(vlan=100, ip="10.93.10.1/30")])]),
     "spec.endpoints[0].ipv4Address", ["10.93.10.1/30 overlaps 10.93.10.1/30 of NetworkService beta/first"]),
    ("a wider subnet containing another service's", service(endpoints=[endpoint(vlan=101, ip="10.93.0.1/16")]),
     world(networkservices=[service("first", "beta", EARLIER, endpoints=[endpoint(vlan=100, ip="10.93.10.1/30")])]),
     "spec.endpoints[0].ipv4Address", ["overlaps"]),
    ("overlap in one VRF", service(serviceType="l3vpn", vrf="red", endpoints=[endpoint(vlan=101)]),
     world(networkservices=[service("first", "beta", EARLIER, serviceType="l3vpn", vrf="red")]),
     "spec.endpoints[0].ipv4Address", ["in VRF red"]),
    ("two endpoints of one service overlapping",
     service(endpoints=[endpoint(vlan=100), endpoint(vlan=101, ip="192.0.2.2/30")]), world(),
     "spec.endpoints[1].ipv4Address", ["overlaps 192.0.2.1/30 of spec.endpoints[0]"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("obj", "w", "field", "words"), [c[1:] for c in SERVICE_REFUSALS], ids=[c[0] for c in SERVICE_REFUSALS]
)
def test_network_service_refused_naming_the_field(obj: dict, w: World, field: str, words: list[str]) -> None:
    one(create("networkservices", obj, w), field, *words)


SERVICE_ADMITTED = [
    ("a free endpoint", service(), world()),
    ("the Subscription that owns it holds the endpoint",
     service("hq"), world(subscriptions=[subscription("hq", "acme", EARLIER, "pendingActive")])),
    ("a shared VRF on the device", service(serviceType="l3vpn", vrf="red", endpoints=[endpoint(vlan=101)]),
     world(networkservices=[service("first", "beta", EARLIER, serviceType="l3vpn", vrf="red",
                                    endpoints=[endpoint(vlan=100, ip="198.51.100.1/30")])])),
    ("a dry run on a taken endpoint: its status shows the conflict", service(dryRun=True),
     world(networkservices=[service("first", "beta", EARLIER)])),
    ("a dry run on an ordered endpoint", service(dryRun=True),
     world(subscriptions=[subscription("hq", "beta", EARLIER, "active")])),
    ("l2vpn without addresses next to an address user",
     service(serviceType="l2vpn", endpoints=[endpoint(vlan=300, ip=None)]),
     world(networkservices=[service("first", "beta", EARLIER)])),
]  # fmt: skip


@pytest.mark.parametrize(("obj", "w"), [c[1:] for c in SERVICE_ADMITTED], ids=[c[0] for c in SERVICE_ADMITTED])
def test_network_service_admitted(obj: dict, w: World) -> None:
    assert create("networkservices", obj, w) == []


def test_a_service_that_lost_its_claim_holds_nothing() -> None:
    """merge() decides: "chain" (vlans 100 and 200) lost vlan 100 to "first", so it holds neither, and
    vlan 200 is free; only the claims entangled with the candidate are merged, with the same outcome."""
    chain = service("chain", "beta", LATER, endpoints=[endpoint(vlan=100, ip=None), endpoint(vlan=200, ip=None)],
                    serviceType="l2vpn")  # fmt: skip
    first = service("first", "beta", EARLIER, serviceType="l2vpn", endpoints=[endpoint(vlan=100, ip=None)])
    candidate = service("new", serviceType="l2vpn", endpoints=[endpoint(vlan=200, ip=None)])
    assert create("networkservices", candidate, world(networkservices=[first, chain])) == []
    one(create("networkservices", candidate, world(networkservices=[chain])), "spec.endpoints[0]", "beta/chain")


def test_renders_are_memoised_by_version() -> None:
    held = service("first", "beta", EARLIER)
    held["metadata"]["resourceVersion"] = "7"
    w = world(networkservices=[held])
    one(create("networkservices", service(), w), "spec.endpoints[0]", "beta/first")
    assert list(w.renders) == [("beta", "first", "7")]
    one(create("networkservices", service(), w), "spec.endpoints[0]", "beta/first")  # from the memo


# --- NetworkDevice -----------------------------------------------------------------------------

DEVICE_CASES = [
    ("another address", device("pe3", address="10.0.0.3"), []),
    ("same address, another port", device("pe3", address="10.0.0.1", port=57400), []),
    ("same address and port as pe1 (issue 19 case 2)", device("pe1-clone", address="10.0.0.1"), ["NetworkDevice pe1"]),
    ("same host name in capitals", device("b", address="PE.Example.NET"), ["NetworkDevice a"]),
    ("one IPv6 address spelled two ways", device("v6b", address="2001:db8:0:0::1"), ["NetworkDevice v6a"]),
]  # fmt: skip


@pytest.mark.parametrize(("obj", "words"), [c[1:] for c in DEVICE_CASES], ids=[c[0] for c in DEVICE_CASES])
def test_network_device_gnmi_target_is_unique(obj: dict, words: list[str]) -> None:
    w = world(
        networkdevices=[
            device("pe1"),
            device("a", address="pe.example.net"),
            device("v6a", address="2001:DB8::1"),
        ]
    )
    problems = create("networkdevices", obj, w)
    if not words:
        assert problems == []
    else:
        one(problems, "spec.address", "already the gNMI target", *words)


def test_updating_a_device_to_its_own_target_is_no_conflict() -> None:
    old = device("pe1")
    new = copy.deepcopy(old)
    new["spec"]["timeoutSeconds"] = 10
    assert update("networkdevices", old, new, world(networkdevices=[old])) == []


# --- ProductOffering ---------------------------------------------------------------------------


def price(name: str = "Monthly fee", unit: str = "EUR", **extra: Any) -> dict[str, Any]:
    return {"name": name, "priceType": "recurring", "recurringChargePeriodType": "month",
            "price": {"unit": unit, "value": "10.00"}, **extra}  # fmt: skip


OFFERING_CASES = [
    ("usable", offering(), None, []),
    ("currency the billing code does not know (issue 19 case 4)", offering(productOfferingPrice=[price(unit="ZZZ")]),
     "spec.productOfferingPrice[0].price.unit", ["currency ZZZ is not supported"]),
    ("two prices with one name (issue 19 case 5)",
     offering(productOfferingPrice=[price(), price(recurringChargePeriodType="year")]),
     "spec.productOfferingPrice[1].name", ["'Monthly fee' is also the name of productOfferingPrice[0]"]),
    ("validFor ending past year 9999 (issue 19 case 6)",
     offering(validFor={"endDateTime": "9999-12-31T23:30:00-01:00"}), "spec.validFor.endDateTime", ["year 9999"]),
    ("a price's validFor too far ahead",
     offering(productOfferingPrice=[price(validFor={"startDateTime": "9901-01-01T00:00:00Z"})]),
     "spec.productOfferingPrice[0].validFor.startDateTime", ["too far ahead"]),
]  # fmt: skip


@pytest.mark.parametrize(("obj", "field", "words"), [c[1:] for c in OFFERING_CASES], ids=[c[0] for c in OFFERING_CASES])
def test_product_offering(obj: dict, field: str | None, words: list[str]) -> None:
    problems = create("productofferings", obj)
    if field is None:
        assert problems == []
    else:
        one(problems, field, *words)


# A price schedule is published in advance (NOW is 2027-03-01T12:00:00Z): an edit may not declare a price
# for time already past, so the bill can follow each price's validFor however late the controller sees it.
PAST, SOON = "2027-03-01T11:00:00Z", "2027-03-01T12:00:15Z"
RUNNING = price()  # no validFor: in force from the beginning
STARTED = price("Promo", validFor={"startDateTime": EARLIER})
FUTURE = price("Next fee", validFor={"startDateTime": SOON})
ENDED = price("Old fee", validFor={"endDateTime": LATER})
SCHEDULE = [RUNNING, STARTED, FUTURE, ENDED]

EDIT_CASES = [
    # admitted
    ("the published revision: the running fee ends soon, the next one starts then",
     [price(validFor={"endDateTime": SOON}), STARTED, FUTURE, ENDED, price("Fee 3", validFor={"startDateTime": SOON})],
     None, []),
    ("a price not yet started changed, moved later, or removed",
     [RUNNING, STARTED, price("Next fee", validFor={"startDateTime": "2027-04-01T00:00:00Z"}), ENDED], None, []),
    ("a price not yet started removed, an ended one removed", [RUNNING, STARTED], None, []),
    ("a price starting right now", [*SCHEDULE, price("Now", validFor={"startDateTime": "2027-03-01T12:00:00Z"})],
     None, []),
    ("nothing changed in the prices", SCHEDULE, None, []),
    # refused
    ("a price added without a start", [*SCHEDULE, price("Extra")],
     "spec.productOfferingPrice[4].validFor.startDateTime", ["no earlier than now", "has none"]),
    ("a price added with a start already past", [*SCHEDULE, price("Extra", validFor={"startDateTime": PAST})],
     "spec.productOfferingPrice[4].validFor.startDateTime", ["no earlier than now", PAST]),
    ("a price not yet started moved into the past",
     [RUNNING, STARTED, price("Next fee", validFor={"startDateTime": PAST}), ENDED],
     "spec.productOfferingPrice[2].validFor.startDateTime", ["'Next fee' cannot start at", PAST]),
    ("a started price's start moved", [RUNNING, price("Promo", validFor={"startDateTime": SOON}), FUTURE, ENDED],
     "spec.productOfferingPrice[1].validFor.startDateTime", ["'Promo' started at", EARLIER]),
    ("a running fee changed in place", [price(price={"unit": "EUR", "value": "12.00"}), STARTED, FUTURE, ENDED],
     "spec.productOfferingPrice[0]", ["'Monthly fee' is in force", "cannot be changed in place"]),
    ("a running fee ended in the past", [price(validFor={"endDateTime": PAST}), STARTED, FUTURE, ENDED],
     "spec.productOfferingPrice[0].validFor.endDateTime", ["cannot end at", PAST]),
    ("an ended price reopened", [RUNNING, STARTED, FUTURE, price("Old fee")],
     "spec.productOfferingPrice[3].validFor.endDateTime", ["ended at", LATER, "cannot be reopened"]),
    ("a running fee removed", [STARTED, FUTURE, ENDED],
     "spec.productOfferingPrice", ["'Monthly fee' is in force and cannot be removed"]),
]  # fmt: skip


@pytest.mark.parametrize(("prices", "field", "words"), [c[1:] for c in EDIT_CASES], ids=[c[0] for c in EDIT_CASES])
def test_a_price_edit_may_not_change_time_already_past(prices: list[dict], field: str | None, words: list[str]) -> None:
    old = offering(productOfferingPrice=SCHEDULE)
    problems = update("productofferings", old, offering(productOfferingPrice=prices))
    if field is None:
        assert problems == []
    else:
        one(problems, field, *words)


def test_a_new_offering_may_carry_prices_that_started_long_ago() -> None:
    # nothing was billed from it yet: its schedule may begin in the past
    assert create("productofferings", offering(productOfferingPrice=SCHEDULE)) == []


# --- Invoice -----------------------------------------------------------------------------------

INVOICE_CASES = [
    ("first offCycle invoice of the period", invoice("new"), [], None),
    ("second offCycle invoice, same account and period (issue 19 case 3)", invoice("new"), [invoice("first")],
     "Invoice first already bills account acme-1"),
    ("the same period written with another offset", invoice("new", start="2027-01-01T01:00:00+01:00"),
     [invoice("first")], "Invoice first"),
    ("a rerun marked as one", invoice("new", annotations={RERUN_ANNOTATION: "tax rate corrected"}),
     [invoice("first")], None),
    ("another account", invoice("new", account="beta-2"), [invoice("first")], None),
    ("another period", invoice("new", start=LATER, end="2027-03-01T00:00:00Z"), [invoice("first")], None),
    ("an onCycle invoice of the period exists", invoice("new"), [invoice("first", runType="onCycle")], None),
    ("an onCycle invoice is not judged", invoice("new", runType="onCycle"), [invoice("first")], None),
]  # fmt: skip


@pytest.mark.parametrize(("obj", "others", "words"), [c[1:] for c in INVOICE_CASES], ids=[c[0] for c in INVOICE_CASES])
def test_off_cycle_invoice_once_per_account_and_period(obj: dict, others: list[dict], words: str | None) -> None:
    problems = create("invoices", obj, world(invoices=others))
    if words is None:
        assert problems == []
    else:
        one(problems, "spec.billingPeriod", words, RERUN_ANNOTATION)


def test_invoice_dates_must_be_computable() -> None:
    obj = invoice("new", end="9999-12-31T23:30:00-01:00")
    one(create("invoices", obj), "spec.billingPeriod.endDateTime", "year 9999")


def test_removing_the_rerun_mark_is_judged_again() -> None:
    old = invoice("new", annotations={RERUN_ANNOTATION: "corrected"})
    new = invoice("new")
    w = world(invoices=[invoice("first"), old])
    assert changes_intent(Request("invoices", "UPDATE", new, old, NOW))
    one(update("invoices", old, new, w), "spec.billingPeriod", "Invoice first")


# --- the table itself --------------------------------------------------------------------------


def test_every_kind_has_a_webhook_at_its_own_path() -> None:
    assert {h.plural: h.path for h in WEBHOOKS.values()} == {
        "subscriptions": "/subscriptions",
        "networkservices": "/networkservices",
        "networkdevices": "/networkdevices",
        "productofferings": "/productofferings",
        "invoices": "/invoices",
    }


def test_a_spec_the_models_refuse_is_refused_naming_the_field() -> None:
    obj = service(endpoints=[{"device": "pe1", "port": "Ethernet1", "vlanId": 5000}])
    problems = create("networkservices", obj)
    assert problems and problems[0].startswith("spec.endpoints.0.vlanId: "), problems


def test_listed_ports_reads_names_or_objects_and_none_when_unlisted() -> None:
    assert listed_ports(device()) is None
    assert listed_ports(device(ports=[])) is None
    assert listed_ports(device(ports=["Ethernet1", {"name": "Ethernet2"}])) == {"Ethernet1", "Ethernet2"}


def test_refusal_joins_the_problems() -> None:
    text = refusal([Problem("spec.a", "is wrong"), Problem("spec.b[0]", "too")])
    assert text == "spec.a: is wrong; spec.b[0]: too"


def account(name: str = "acme-001", namespace: str = "acme", currency: str = "EUR", state: str | None = None) -> dict:
    spec: dict[str, Any] = {"name": "Acme Corp", "currency": currency, "timeZone": "Europe/Paris"}
    if state is not None:
        spec["state"] = state
    return {"apiVersion": API, "kind": "BillingAccount", "metadata": meta(name, namespace, EARLIER), "spec": spec}


def by_account(name: str = "acme-001", **extra: Any) -> dict[str, Any]:
    obj = subscription(**extra)
    del obj["spec"]["billingAccount"]
    obj["spec"]["billingAccountRef"] = {"name": name}
    return obj


@pytest.mark.parametrize(
    ("w", "words"),
    [
        (world(), ["BillingAccount acme-001", "does not exist"]),
        (world(billingaccounts=[account(namespace="globex")]), ["does not exist in this namespace"]),
        (world(billingaccounts=[account(state="Closed")]), ["Closed", "no new orders"]),
        (world(billingaccounts=[account(state="Suspended")]), ["Suspended", "no new orders"]),
        (world(billingaccounts=[account(currency="USD")]), ["bills in USD", "priced in EUR"]),
    ],
)
def test_an_order_its_billing_account_cannot_take_is_refused(w: World, words: list[str]) -> None:
    one(create("subscriptions", by_account(), w), "spec.billingAccountRef.name", *words)


def test_an_order_on_a_good_account_is_admitted_and_a_suspended_one_keeps_an_accepted_order() -> None:
    assert create("subscriptions", by_account(), world(billingaccounts=[account()])) == []
    accepted = by_account(state="active")
    changed = copy.deepcopy(accepted)
    changed["spec"]["endpoints"][0]["vlanId"] = 101
    w = world(billingaccounts=[account(state="Suspended")], subscriptions=[accepted])
    # judged on its own (not only as "nothing new"): the stored order is active, so the account serves it
    assert [str(p) for p in subscription_problems(changed, w, NOW)] == []
    pending = by_account(state="created")
    assert subscription_problems(
        pending, world(billingaccounts=[account(state="Suspended")], subscriptions=[pending]), NOW
    )


# --- the finalizer at admission (mutating) ------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "expected"),
    [
        ({"name": "a"}, ["telco.intent.dev/cleanup"]),
        ({"name": "a", "finalizers": []}, ["telco.intent.dev/cleanup"]),
        ({"name": "a", "finalizers": ["example.com/keep"]}, ["example.com/keep", "telco.intent.dev/cleanup"]),
        ({"name": "a", "finalizers": ["telco.intent.dev/cleanup"]}, None),
        ({"name": "a", "finalizers": ["example.com/keep", "telco.intent.dev/cleanup"]}, None),
        ({"name": "a", "deletionTimestamp": "2026-01-01T00:00:00Z"}, None),
    ],
    ids=["none", "empty", "someone-elses-kept-first", "ours-already", "ours-among-others", "being-deleted"],
)
def test_finalizers_at_admission(metadata: dict[str, Any], expected: list[str] | None) -> None:
    assert finalizers_at_admission({"metadata": metadata}) == expected


def test_the_finalizer_webhook_is_for_creates_of_the_finalized_kinds_and_never_refuses() -> None:
    config = mutating_webhook_configuration("x", "https://127.0.0.1:9443/", b"CA")
    assert config["kind"] == "MutatingWebhookConfiguration"
    hooks = config["webhooks"]
    assert (
        [h["rules"][0]["resources"] for h in hooks]
        == [[p] for p in FINALIZED]
        == [["subscriptions"], ["networkservices"]]
    )
    for hook, plural in zip(hooks, FINALIZED, strict=True):
        assert hook["clientConfig"]["url"] == f"https://127.0.0.1:9443{finalizer_path(plural)}"
        assert hook["rules"][0]["operations"] == ["CREATE"]
        assert (hook["failurePolicy"], hook["reinvocationPolicy"], hook["sideEffects"]) == ("Ignore", "Never", "None")
        assert hook["timeoutSeconds"] <= 2
    # Its paths never collide with the validating webhooks' (Kopf routes each path to one handler).
    assert not {finalizer_path(p) for p in FINALIZED} & {h.path for h in WEBHOOKS.values()}


# --- payments: append-only (besides the CRD's CEL rule), ids unique, reversals of recorded payments ---------


def pay(pid: str, value: str = "10.00", **extra: Any) -> dict[str, Any]:
    return {"id": pid, "amount": {"unit": "EUR", "value": value}, "date": EARLIER, **extra}


REVERSAL = {"reason": "chargeback"}

PAYMENT_UPDATES = [
    ("edited amount", [pay("p1")], [pay("p1", "1.00")], "spec.payments[0]", ["'p1'", "cannot be edited"]),
    ("removed", [pay("p1"), pay("p2")], [pay("p2")], "spec.payments[0]", ["'p1'", "cannot be removed", "reversal"]),
    ("all removed", [pay("p1")], [], "spec.payments[0]", ["'p1'", "cannot be removed"]),
    ("moved and edited", [pay("p1"), pay("p2")], [pay("p2", "2.00"), pay("p1")], "spec.payments[0]",
     ["'p2'", "edited"]),
    ("duplicate id appended", [pay("p1")], [pay("p1"), pay("p1", "5.00")], "spec.payments[1].id", ["'p1'"]),
    ("reversal of an unknown payment", [pay("p1")], [pay("p1"), pay("r1", "-10.00", reverses="p9", **REVERSAL)],
     "spec.payments[1].reverses", ["'p9'"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("before", "after", "field", "words"), [c[1:] for c in PAYMENT_UPDATES], ids=[c[0] for c in PAYMENT_UPDATES]
)
def test_recorded_payments_are_append_only(
    before: list[dict[str, Any]], after: list[dict[str, Any]], field: str, words: list[str]
) -> None:
    old, new = invoice("inv-p", payments=before), invoice("inv-p", payments=after)
    one(update("invoices", old, new, world(invoices=[old])), field, *words)


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ([], [pay("p1")]),
        ([pay("p1")], [pay("p1"), pay("r1", "-10.00", reverses="p1", **REVERSAL)]),
        ([pay("p1"), pay("p2")], [pay("p2"), pay("p1")]),  # the same entries in another order
    ],
    ids=["first-payment", "reversal-appended", "reordered"],
)
def test_appending_payments_is_admitted(before: list[dict[str, Any]], after: list[dict[str, Any]]) -> None:
    old, new = invoice("inv-p", payments=before), invoice("inv-p", payments=after)
    assert update("invoices", old, new, world(invoices=[old])) == []


def test_a_created_invoice_with_a_reversal_before_its_payment_is_refused() -> None:
    obj = invoice("inv-p", payments=[pay("r1", "-10.00", reverses="p1", **REVERSAL), pay("p1")])
    one(create("invoices", obj, world(invoices=[])), "spec.payments[0].reverses", "'p1'")
