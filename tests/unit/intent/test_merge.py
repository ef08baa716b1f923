from __future__ import annotations

import itertools
from datetime import datetime, timedelta

import pytest

from controller.intent import Claim, GPath, ManagedEntry, ServiceKey, merge, render

from .helpers import CREATED, make_spec, service

SUB_E1_100 = GPath.parse("interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=100]")
VRF_BLUE = GPath.parse("network-instances/network-instance[name=blue]")


def test_a_single_service_is_admitted_whole() -> None:
    svc = service("a", make_spec())
    result = merge("pe1", [svc])
    assert result.conflicts == ()
    assert list(result.intent.entries) == sorted(e.path for e in svc.entries)
    assert result.intent.values == {e.path: e.value for e in svc.entries}
    assert set(result.intent.owners.values()) == {(svc.key,)}
    assert result.intent.services == {svc.key}


def test_the_earlier_service_keeps_a_contested_subinterface_whatever_the_input_order() -> None:
    first = service("zeta", make_spec(bandwidthMbps=10), created=CREATED)
    later = service("alpha", make_spec(bandwidthMbps=20), created=CREATED + timedelta(seconds=1))
    for services in itertools.permutations([first, later]):
        result = merge("pe1", services)
        assert result.intent.services == {first.key}
        assert result.intent.values == {e.path: e.value for e in first.entries}
        (conflict,) = result.conflicts
        assert (conflict.service, conflict.holder, conflict.path, conflict.device) == (
            later.key,
            first.key,
            SUB_E1_100,
            "pe1",
        )
        assert "already claimed by NetworkService acme/zeta" in conflict.message
        assert "acme/alpha is not configured on pe1" in conflict.message
        assert str(SUB_E1_100) in conflict.message


def test_same_second_ties_go_by_namespace_then_name() -> None:
    b = service("b", make_spec(), namespace="x")
    a = service("a", make_spec(), namespace="y")
    c = service("a", make_spec(), namespace="x")
    result = merge("pe1", [a, b, c])
    assert result.intent.services == {ServiceKey("x", "a")}
    assert [(c.service, c.holder) for c in result.conflicts] == [
        (ServiceKey("x", "b"), ServiceKey("x", "a")),
        (ServiceKey("y", "a"), ServiceKey("x", "a")),
    ]


def test_a_refused_service_contributes_nothing_on_that_device_but_keeps_other_devices() -> None:
    holder = service("a", make_spec())
    both = service(
        "b",
        make_spec(
            endpoints=[
                {"device": "pe1", "port": "Ethernet1", "vlanId": 100, "ipv4Address": "192.0.2.5/30"},
                {"device": "pe1", "port": "Ethernet2", "vlanId": 200, "ipv4Address": "192.0.2.9/30"},
                {"device": "pe2", "port": "Ethernet1", "vlanId": 100, "ipv4Address": "192.0.2.13/30"},
            ]
        ),
        created=CREATED + timedelta(minutes=1),
    )
    results = {device: merge(device, [both, holder]) for device in ("pe1", "pe2")}
    assert results["pe1"].intent.services == {holder.key}
    assert not any("Ethernet2" in str(p) for p in results["pe1"].intent.entries)
    assert [c.service for c in results["pe1"].conflicts] == [both.key]
    assert results["pe2"].intent.services == {both.key}
    assert results["pe2"].conflicts == ()


def test_one_conflict_per_holder() -> None:
    a = service("a", make_spec())
    b = service(
        "b",
        make_spec(endpoints=[{"device": "pe1", "port": "Ethernet2", "vlanId": 5, "ipv4Address": "192.0.2.5/30"}]),
    )
    c = service(
        "c",
        make_spec(
            endpoints=[
                {"device": "pe1", "port": "Ethernet1", "vlanId": 100, "ipv4Address": "192.0.2.9/30"},
                {"device": "pe1", "port": "Ethernet2", "vlanId": 5, "ipv4Address": "192.0.2.13/30"},
            ]
        ),
        created=CREATED + timedelta(hours=1),
    )
    result = merge("pe1", [c, b, a])
    assert result.intent.services == {a.key, b.key}
    assert [(x.service, x.holder) for x in result.conflicts] == [(c.key, a.key), (c.key, b.key)]


def test_a_shared_vrf_has_every_user_as_owner() -> None:
    spec_a = make_spec(serviceType="l3vpn", vrf="blue")
    spec_b = make_spec(
        serviceType="l3vpn",
        vrf="blue",
        endpoints=[{"device": "pe1", "port": "Ethernet2", "vlanId": 100, "ipv4Address": "192.0.2.5/30"}],
    )
    a = service("a", spec_a)
    b = service("b", spec_b, created=CREATED + timedelta(seconds=5))
    result = merge("pe1", [b, a])
    assert result.conflicts == ()
    assert result.intent.owners[VRF_BLUE] == (a.key, b.key)
    assert result.intent.entries[VRF_BLUE].delegated == ("interfaces",)
    member_b = VRF_BLUE.child("interfaces").child("interface", {"id": "Ethernet2.100"})
    assert result.intent.owners[member_b] == (b.key,)
    # Once a is gone the VRF stays for b.
    assert merge("pe1", [b]).intent.owners[VRF_BLUE] == (b.key,)


def test_shared_entries_with_different_values_conflict() -> None:
    key_a, key_b = ServiceKey("ns", "a"), ServiceKey("ns", "b")
    vrf = {"name": "blue", "config": {"name": "blue", "type": "L3VRF", "enabled": True}}
    other = {"name": "blue", "config": {"name": "blue", "type": "L3VRF", "enabled": False}}
    a = Claim(key_a, CREATED, (ManagedEntry("pe1", VRF_BLUE, vrf, key_a, shared=True),))
    b = Claim(key_b, CREATED, (ManagedEntry("pe1", VRF_BLUE, other, key_b, shared=True),))
    result = merge("pe1", [b, a])
    assert result.intent.owners[VRF_BLUE] == (key_a,)
    assert [(c.service, c.holder) for c in result.conflicts] == [(key_b, key_a)]


def test_creation_time_must_be_timezone_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Claim(ServiceKey("ns", "a"), datetime(2024, 1, 1), ())


def test_needed_holds_every_leaf_the_intent_writes_and_every_path_above_one() -> None:
    intent = merge("pe1", [service("a", make_spec(serviceType="l3vpn", vrf="blue"))]).intent
    assert VRF_BLUE in intent.needed and VRF_BLUE.child("config").child("type") in intent.needed
    assert GPath.parse("network-instances") in intent.needed
    sub = GPath.parse("interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=100]")
    assert sub.join(GPath.parse("ipv4/addresses/address[ip=192.0.2.1]/config/prefix-length")) in intent.needed
    assert sub.join(GPath.parse("ipv4/addresses/address[ip=192.0.2.9]")) not in intent.needed
    assert sub.join(GPath.parse("ipv4/config/enabled")) not in intent.needed, "a default the device fills in"
    assert VRF_BLUE.child("interfaces").child("interface", {"id": "Ethernet9.9"}) not in intent.needed
    assert GPath.parse("qos/interfaces/interface[interface-id=Ethernet9.9]") not in intent.needed


def test_needed_is_built_only_when_asked_and_not_kept_with_the_intent() -> None:
    key = ServiceKey("ns", "a")
    entries = tuple(render(key, make_spec()))
    intent, _ = merge("pe1", [Claim(key, CREATED, entries)])
    first = intent.needed
    assert first._paths is None, "nothing built until a retirement asks"
    assert entries[0].path in first and first._paths is not None
    assert intent.needed is not first and intent.needed._paths is None, "the intent holds no copy"
    assert set(intent.needed) == set(first) and len(intent.needed) == len(first)
