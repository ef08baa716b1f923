"""The compact form of rendered entries: equal subtrees are one shared, read-only object."""

from __future__ import annotations

import copy
import gc
import json

import pytest

from controller.intent import ServiceKey, render
from controller.intent.sharedjson import _TABLE, SharedDict, shared
from tests.unit.intent.helpers import make_spec


def endpoint(device: str, vlan: int = 100, ip: str = "192.0.2.1/30") -> list[dict[str, object]]:
    return [{"device": device, "port": "Ethernet1", "vlanId": vlan, "ipv4Address": ip}]


def by_path(entries: list) -> dict[str, object]:
    return {e.path.to_string(): e.value for e in entries}


def test_the_same_port_and_vlan_on_two_devices_share_their_qos_values_not_their_subinterface() -> None:
    a = by_path(render(ServiceKey("ns", "a"), make_spec(endpoints=endpoint("pe1"))))
    b = by_path(render(ServiceKey("ns", "b"), make_spec(endpoints=endpoint("pe2", ip="192.0.2.5/30"))))
    policy = "qos/scheduler-policies/scheduler-policy[name=Ethernet1.100]"
    qos = "qos/interfaces/interface[interface-id=Ethernet1.100]"
    sub = "interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=100]"
    assert a[policy] is b[policy] and a[qos] is b[qos]
    assert a[sub] is not b[sub], "the descriptions (service names) and addresses differ"
    assert a[sub]["vlan"] is b[sub]["vlan"], "equal parts of different values are shared too"
    assert a[sub]["config"]["description"] == "telco-intent ns/a"


def test_other_rates_or_vlans_are_not_shared() -> None:
    a = by_path(render(ServiceKey("ns", "a"), make_spec(endpoints=endpoint("pe1"))))
    b = by_path(render(ServiceKey("ns", "b"), make_spec(endpoints=endpoint("pe2"), bandwidthMbps=200)))
    c = by_path(render(ServiceKey("ns", "c"), make_spec(endpoints=endpoint("pe3", vlan=101))))
    policy = "qos/scheduler-policies/scheduler-policy[name=Ethernet1.100]"
    assert a[policy] is not b[policy] and a[policy] != b[policy]
    assert "qos/scheduler-policies/scheduler-policy[name=Ethernet1.101]" in c


def test_json_types_stay_apart() -> None:
    assert shared({"x": True}) is not shared({"x": 1})
    assert shared({"x": 1}) is not shared({"x": 1.0})
    assert shared({"x": [1]}) is shared({"x": [1]})
    assert shared("plain") == "plain" and shared(3) == 3


def test_a_shared_value_equals_the_plain_one_and_cannot_be_changed() -> None:
    plain = {"a": {"b": [1, {"c": "d"}]}}
    value = shared(copy.deepcopy(plain))
    assert value == plain and json.dumps(value) == json.dumps(plain)
    with pytest.raises(TypeError, match="read-only"):
        value["a"] = 1
    with pytest.raises(TypeError, match="read-only"):
        value["a"]["b"].append(2)
    with pytest.raises(TypeError, match="read-only"):
        value.update(x=1)
    mutable = copy.deepcopy(value)
    mutable["a"]["b"].append(2)  # a copy is plain and changeable; the shared one is untouched
    assert type(mutable) is dict and value == plain


def test_a_value_no_render_uses_is_freed() -> None:
    value = shared({"only-here": "once"})
    assert isinstance(value, SharedDict) and len([v for v in _TABLE.values() if v == value]) == 1
    del value
    gc.collect()
    assert not any(v == {"only-here": "once"} for v in _TABLE.values())
