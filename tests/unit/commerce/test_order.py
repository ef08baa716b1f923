"""The NetworkService an order implies, order validation, and endpoint claims."""

from __future__ import annotations

from datetime import timedelta

import pytest

from controller.api.networkservice import NetworkService
from controller.commerce.order import (
    EndpointConflict,
    OrderError,
    OrderRecord,
    endpoint_claims,
    endpoint_conflicts,
    network_service_for,
    order_record,
    validate_order,
)

from .builders import T0, at, endpoint, iso, offering, subscription

L3 = {"serviceType": "l3vpn", "bandwidthMbps": 200, "peakBandwidthMbps": 400, "driftPolicy": "report"}
L2 = {"serviceType": "l2vpn", "bandwidthMbps": 50}


def test_network_service_body() -> None:
    body = network_service_for("site-a", "team-a", "uid-1", subscription(), offering(), admin_enabled=True)
    assert body == {
        "apiVersion": "telco.intent.dev/v1alpha1",
        "kind": "NetworkService",
        "metadata": {
            "name": "site-a",
            "namespace": "team-a",
            "labels": {"telco.intent.dev/subscription": "site-a", "telco.intent.dev/offering": "fiber-100"},
            "ownerReferences": [
                {
                    "apiVersion": "telco.intent.dev/v1alpha1",
                    "kind": "Subscription",
                    "name": "site-a",
                    "uid": "uid-1",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "serviceType": "internetAccess",
            "endpoints": [{"device": "leaf1", "port": "Ethernet1", "vlanId": 100, "ipv4Address": "192.0.2.1/30"}],
            "bandwidthMbps": 100,
            "adminState": "enabled",
            "driftPolicy": "revert",
        },
    }
    NetworkService.model_validate(body)  # the API model accepts it


def test_l3vpn_body_carries_vrf_rates_and_admin_state() -> None:
    body = network_service_for(
        "site-b", "team-a", "uid-2", subscription(vrf="cust-a"), offering(serviceCandidate=L3), admin_enabled=False
    )
    spec = body["spec"]
    assert spec["vrf"] == "cust-a"
    assert (spec["bandwidthMbps"], spec["peakBandwidthMbps"]) == (200, 400)
    assert spec["adminState"] == "disabled"
    assert spec["driftPolicy"] == "report"
    NetworkService.model_validate(body)


def test_vrf_is_left_out_unless_l3vpn() -> None:
    body = network_service_for(
        "s", "ns", "u", subscription(vrf="cust-a", endpoints=[endpoint(ip=None)]), offering(serviceCandidate=L2), True
    )
    assert "vrf" not in body["spec"]
    assert body["spec"]["endpoints"] == [{"device": "leaf1", "port": "Ethernet1", "vlanId": 100}]


def test_l3vpn_needs_vrf() -> None:
    errors = validate_order("s", subscription(), offering(serviceCandidate=L3))
    assert errors == [OrderError("spec.vrf", errors[0].message)]
    assert "l3vpn" in errors[0].message and "VRF" in errors[0].message
    with pytest.raises(OrderError) as raised:
        network_service_for("s", "ns", "u", subscription(), offering(serviceCandidate=L3), True)
    assert raised.value.field == "spec.vrf"
    assert str(raised.value).startswith("spec.vrf: ")


@pytest.mark.parametrize("service_type", ["internetAccess", "l3vpn"])
def test_addressed_services_need_ipv4_on_every_endpoint(service_type: str) -> None:
    spec = subscription(vrf="v", endpoints=[endpoint(), endpoint(port="Ethernet2", ip=None)])
    errors = validate_order("s", spec, offering(serviceCandidate={"serviceType": service_type, "bandwidthMbps": 10}))
    assert [e.field for e in errors] == ["spec.endpoints[1].ipv4Address"]
    assert service_type in errors[0].message and "192.0.2.1/30" in errors[0].message


def test_l2vpn_needs_no_address() -> None:
    assert validate_order("s", subscription(endpoints=[endpoint(ip=None)]), offering(serviceCandidate=L2)) == []


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("192.0.2.0/30", "network address"),
        ("192.0.2.3/30", "broadcast address"),
        ("10.1.2.0/24", "network address"),
        ("10.0.0.1/0", "prefix length 0"),
    ],
)
def test_unusable_host_addresses(address: str, expected: str) -> None:
    errors = validate_order("s", subscription(endpoints=[endpoint(ip=address)]), offering())
    assert [e.field for e in errors] == ["spec.endpoints[0].ipv4Address"]
    assert expected in errors[0].message


@pytest.mark.parametrize("address", ["192.0.2.0/31", "192.0.2.1/31", "192.0.2.7/32", "192.0.2.2/30"])
def test_usable_host_addresses(address: str) -> None:
    assert validate_order("s", subscription(endpoints=[endpoint(ip=address)]), offering()) == []


def test_overlapping_subnets_on_one_device() -> None:
    spec = subscription(endpoints=[endpoint(ip="192.0.2.1/30"), endpoint(port="Ethernet2", ip="192.0.2.2/29")])
    errors = validate_order("s", spec, offering())
    assert [e.field for e in errors] == ["spec.endpoints[1].ipv4Address"]
    assert "overlaps spec.endpoints[0].ipv4Address" in errors[0].message
    elsewhere = subscription(endpoints=[endpoint(ip="192.0.2.1/30"), endpoint(device="leaf2", ip="192.0.2.2/30")])
    assert validate_order("s", elsewhere, offering()) == []


def test_names_too_long_for_labels() -> None:
    long_name = "a" * 64
    errors = validate_order(long_name, subscription(productOffering={"name": "o" * 70}), offering())
    assert [e.field for e in errors] == ["metadata.name", "spec.productOffering.name"]
    assert "at most 63 characters" in errors[0].message
    assert validate_order("a" * 63, subscription(), offering()) == []


def test_vrf_cannot_change_once_the_service_exists() -> None:
    spec = subscription(vrf="cust-b")
    l3 = offering(serviceCandidate=L3)
    errors = validate_order("s", spec, l3, current_service_spec={"vrf": "cust-a"})
    assert [e.field for e in errors] == ["spec.vrf"]
    assert "cust-a" in errors[0].message and "cust-b" in errors[0].message
    assert validate_order("s", spec, l3, current_service_spec={"vrf": "cust-b"}) == []


def test_every_error_is_reported() -> None:
    spec = subscription(endpoints=[endpoint(ip=None), endpoint(port="Ethernet2", ip=None)])
    errors = validate_order("s", spec, offering(serviceCandidate=L3))
    assert [e.field for e in errors] == ["spec.vrf", "spec.endpoints[0].ipv4Address", "spec.endpoints[1].ipv4Address"]


# --- Claims ----------------------------------------------------------------------------------

KEY = ("leaf1", "Ethernet1", 100)


def record(name: str, minutes: float, state: str | None = None, ns: str = "team-a", endpoints=(KEY,)) -> OrderRecord:
    return OrderRecord(namespace=ns, name=name, created=at(minutes), endpoints=tuple(endpoints), state=state)


def test_earlier_order_keeps_the_endpoint() -> None:
    first, second = record("first", 0), record("second", 5)
    claims = endpoint_claims([second, first])
    assert claims[KEY] == first
    assert endpoint_conflicts(first, claims) == ()
    (conflict,) = endpoint_conflicts(second, claims)
    assert conflict == EndpointConflict(KEY, first)
    assert conflict.message == (
        f"device leaf1 port Ethernet1 vlanId 100 is held by Subscription team-a/first (created {iso(at(0))},"
        " state created)"
    )


def test_same_creation_time_orders_by_namespace_then_name() -> None:
    a_z, b_a, a_a = record("z", 0, ns="a"), record("a", 0, ns="b"), record("a", 0, ns="a")
    assert endpoint_claims([a_z, b_a, a_a])[KEY] == a_a
    assert endpoint_claims([b_a, a_z])[KEY] == a_z


@pytest.mark.parametrize("state", ["terminated", "cancelled", "aborted"])
def test_ended_orders_release_their_endpoints(state: str) -> None:
    old, new = record("old", 0, state), record("new", 5)
    claims = endpoint_claims([old, new])
    assert claims[KEY] == new
    assert endpoint_conflicts(new, claims) == ()


@pytest.mark.parametrize("state", ["pendingActive", "active", "suspended", "pendingTerminate"])
def test_an_accepted_order_keeps_its_endpoint_against_an_earlier_one(state: str) -> None:
    """An aborted order that comes back after a fix does not take the port of one accepted meanwhile."""
    came_back, holder = record("came-back", 0, "created"), record("holder", 5, state)
    claims = endpoint_claims([came_back, holder])
    assert claims[KEY] == holder
    (conflict,) = endpoint_conflicts(came_back, claims)
    assert "team-a/holder" in conflict.message and f"state {state}" in conflict.message


def test_an_order_is_free_against_later_ones_not_in_the_claims() -> None:
    later = record("later", 5)
    candidate = record("candidate", 0, "aborted")  # not holding, not in the claims
    assert endpoint_conflicts(candidate, endpoint_claims([later])) == ()


def test_only_shared_endpoints_conflict() -> None:
    other = ("leaf1", "Ethernet1", 200)
    first = record("first", 0, endpoints=(KEY,))
    second = record("second", 5, endpoints=(other, KEY))
    conflicts = endpoint_conflicts(second, endpoint_claims([first, second]))
    assert [c.endpoint for c in conflicts] == [KEY]


def test_order_record_from_object() -> None:
    obj = {
        "metadata": {"name": "site-a", "namespace": "team-a", "creationTimestamp": iso(T0)},
        "spec": {"endpoints": [{"device": "leaf1", "port": "Ethernet1", "vlanId": 100}]},
        "status": {"state": "active"},
    }
    rec = order_record(obj)
    assert rec == OrderRecord("team-a", "site-a", T0, (KEY,), "active")
    assert rec.accepted and rec.holds_endpoints
    fresh = order_record({**obj, "status": None})
    assert fresh.state is None and not fresh.accepted and fresh.holds_endpoints
    with pytest.raises(ValueError, match="creationTimestamp"):
        order_record({"metadata": {"name": "x"}})


def test_later_creation_loses_even_by_a_second() -> None:
    first, second = record("b-first", 0), OrderRecord("a", "a", at(0) + timedelta(seconds=1), (KEY,))
    assert endpoint_claims([second, first])[KEY] == first


FLEXIBLE = {
    "serviceType": "internetAccess",
    "bandwidthMbps": 100,
    "peakBandwidthMbps": 150,
    "bandwidthOptionsMbps": [50, 200],
}


@pytest.mark.parametrize(
    ("chosen", "rate", "peak"),
    [(None, 100, 150), (100, 100, 150), (50, 50, 150), (200, 200, None)],  # a peak below the rate is dropped
)
def test_the_chosen_rate_is_rendered(chosen: int | None, rate: int, peak: int | None) -> None:
    spec = network_service_for(
        "hq", "acme", "uid-1", subscription(bandwidthMbps=chosen), offering(serviceCandidate=FLEXIBLE), True
    )["spec"]
    assert (spec["bandwidthMbps"], spec.get("peakBandwidthMbps")) == (rate, peak)


def test_a_rate_the_offering_does_not_sell_names_the_field_and_the_choices() -> None:
    errors = validate_order("hq", subscription(bandwidthMbps=300), offering(serviceCandidate=FLEXIBLE))
    assert errors == [
        OrderError("spec.bandwidthMbps", "300 is not a rate offering fiber-100 sells; expected one of 50, 100, 200")
    ]
