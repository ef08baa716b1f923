"""Subscribe: ONCE, POLL, STREAM (ON_CHANGE, SAMPLE, TARGET_DEFINED), options and errors."""

from __future__ import annotations

import time

import grpc
import pytest
from pygnmi.client import gNMIclient
from pygnmi.spec.v080 import gnmi_pb2

from devicesim import DeviceInfo, Fleet
from tests.devicesim.devicesim_testlib import Raw, leaves, path, path_str, wait_for

IF1 = "/interfaces/interface[name=Ethernet1]"
SUB10 = f"{IF1}/subinterfaces/subinterface[index=10]"
SUB10_BODY = {"config": {"description": "cust-A"},
              "vlan": {"match": {"single-tagged": {"config": {"vlan-id": 100}}}}}
STREAM, ONCE, POLL = (gnmi_pb2.SubscriptionList.STREAM, gnmi_pb2.SubscriptionList.ONCE,
                      gnmi_pb2.SubscriptionList.POLL)


def sub(p: str, mode: int = gnmi_pb2.ON_CHANGE, **kw: int | bool) -> gnmi_pb2.Subscription:
    return gnmi_pb2.Subscription(path=path(p), mode=mode, **kw)


def assert_sane(notifications: list[gnmi_pb2.Notification]) -> None:
    """What real targets never send: zero timestamps, wildcards in paths."""
    for n in notifications:
        assert n.timestamp > 1_600_000_000 * 10**9
        for u in n.update:
            assert "*" not in path_str(u.path) and "..." not in path_str(u.path)
            assert u.val.WhichOneof("value") in ("string_val", "uint_val", "bool_val")


def test_first_message_must_be_a_subscription_list(raw: Raw) -> None:
    from tests.devicesim.devicesim_testlib import Stream

    stream = Stream(raw.stub, gnmi_pb2.SubscribeRequest(poll=gnmi_pb2.Poll()), raw.md)
    with pytest.raises(grpc.RpcError) as ei:
        stream.next()
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_once(raw: Raw, gnmi: gNMIclient) -> None:
    raw.set(update=[(SUB10, SUB10_BODY)])
    stream = raw.subscribe(f"{SUB10}/config", f"{IF1}/config/mtu", mode=ONCE)
    got = stream.until_sync()
    assert_sane(got)
    assert leaves(got) == {f"{SUB10}/config/index": 10, f"{SUB10}/config/enabled": True,
                           f"{SUB10}/config/description": "cust-A", f"{IF1}/config/mtu": 1500}
    with pytest.raises(StopIteration):
        stream.next()  # the target closes the RPC after sync_response
    only = raw.subscribe(f"{IF1}/config", mode=ONCE, updates_only=True)
    assert only.next().sync_response
    with pytest.raises(StopIteration):
        only.next()
    # pygnmi's ONCE iterator
    once = gnmi.subscribe2(subscribe={"mode": "once", "subscription": [{"path": f"{IF1}/config/mtu"}]})
    msgs = list(once)
    assert msgs[0]["update"]["update"] == [{"path": "interfaces/interface[name=Ethernet1]/config/mtu", "val": 1500}]
    assert msgs[-1] == {"sync_response": True}
    once.close()


def test_poll(raw: Raw, gnmi: gNMIclient) -> None:
    stream = raw.subscribe(f"{IF1}/config/mtu", mode=POLL)
    assert leaves(stream.until_sync()) == {f"{IF1}/config/mtu": 1500}
    raw.set(update=[(f"{IF1}/config/mtu", 9000)])
    assert stream.quiet(0.2) == []  # POLL sends nothing unprompted
    stream.poll()
    got = stream.until_sync()
    assert_sane(got)
    assert leaves(got) == {f"{IF1}/config/mtu": 9000}
    stream.poll()
    assert leaves(stream.until_sync()) == {f"{IF1}/config/mtu": 9000}
    stream.close()
    poller = gnmi.subscribe2(subscribe={"mode": "poll", "subscription": [{"path": f"{IF1}/config/mtu"}]})
    assert poller.get_update(timeout=5)["update"]["update"][0]["val"] == 9000
    poller.close()


def test_on_change_initial_sync_updates_and_deletes(gnmi: gNMIclient, raw: Raw) -> None:
    raw.set(update=[(SUB10, SUB10_BODY)])
    s = gnmi.subscribe2(subscribe={"mode": "stream", "subscription": [
        {"path": f"{IF1}/subinterfaces/subinterface[index=*]/config", "mode": "on_change"},
        {"path": f"{IF1}/subinterfaces/subinterface[index=*]/state/oper-status", "mode": "on_change"}]})
    first = s.get_update(timeout=5)  # pygnmi coalesces the initial state up to sync_response
    assert first["sync_response"] is True
    initial = {u["path"]: u["val"] for u in first["update"]["update"]}
    base = "interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=10]"
    assert initial[f"{base}/config/description"] == "cust-A"
    assert initial[f"{base}/state/oper-status"] == "UP"
    raw.set(update=[(f"{SUB10}/config/enabled", False)])
    upd = s.get_update(timeout=5)["update"]
    assert upd["timestamp"] > 0
    assert {u["path"]: u["val"] for u in upd["update"]} == {f"{base}/config/enabled": False,
                                                           f"{base}/state/oper-status": "DOWN"}
    raw.set(delete=[f"{SUB10}/config/description"])
    assert s.get_update(timeout=5)["update"]["delete"] == [{"path": f"{base}/config/description"}]
    raw.set(delete=[SUB10])
    gone = s.get_update(timeout=5)["update"]
    assert sorted(d["path"] for d in gone["delete"]) == [f"{base}/config", f"{base}/state/oper-status"]
    s.close()


def test_path_that_does_not_exist_yet_keeps_the_stream_open(raw: Raw) -> None:
    stream = raw.subscribe(f"{SUB10}/vlan")
    assert stream.until_sync() == []
    assert stream.quiet(0.3) == []
    raw.set(update=[(SUB10, SUB10_BODY)])
    got = leaves([stream.next().update])
    assert got == {f"{SUB10}/vlan/match/single-tagged/config/vlan-id": 100}
    stream.close()


def test_updates_only(raw: Raw) -> None:
    stream = raw.subscribe(f"{IF1}/config", updates_only=True)
    assert stream.next().sync_response  # first, with no initial state
    raw.set(update=[(f"{IF1}/config/mtu", 1600)])
    assert leaves([stream.next().update]) == {f"{IF1}/config/mtu": 1600}
    stream.close()


def test_sample_with_suppress_redundant_and_heartbeat(raw: Raw) -> None:
    raw.set(update=[(SUB10, SUB10_BODY)])
    plain = raw.subscribe(sub(f"{SUB10}/config/description", gnmi_pb2.SAMPLE, sample_interval=150_000_000))
    assert leaves(plain.until_sync()) == {f"{SUB10}/config/description": "cust-A"}
    t0 = time.monotonic()
    samples = [plain.next(2).update for _ in range(3)]
    assert time.monotonic() - t0 >= 0.3  # three samples at 150 ms
    assert all(leaves([n]) == {f"{SUB10}/config/description": "cust-A"} for n in samples)
    assert_sane(samples)
    plain.close()
    quiet = raw.subscribe(sub(f"{SUB10}/config", gnmi_pb2.SAMPLE, sample_interval=100_000_000,
                              suppress_redundant=True))
    quiet.until_sync()
    assert quiet.quiet(0.35) == []  # unchanged values are suppressed
    raw.set(update=[(f"{SUB10}/config/description", "changed")])
    assert leaves([quiet.next(2).update]) == {f"{SUB10}/config/description": "changed"}  # only that leaf
    quiet.close()
    beat = raw.subscribe(sub(f"{SUB10}/config/enabled", gnmi_pb2.SAMPLE, sample_interval=100_000_000,
                             suppress_redundant=True, heartbeat_interval=300_000_000))
    beat.until_sync()
    got = beat.next(2).update  # heartbeat: sent although unchanged
    assert leaves([got]) == {f"{SUB10}/config/enabled": True}
    beat.close()


def test_sample_counters_grow(raw: Raw) -> None:
    raw.set(update=[(SUB10, SUB10_BODY)])
    stream = raw.subscribe(sub(f"{SUB10}/state/counters/out-octets", gnmi_pb2.SAMPLE,
                               sample_interval=200_000_000))
    stream.until_sync()
    values = [leaves([stream.next(2).update])[f"{SUB10}/state/counters/out-octets"] for _ in range(4)]
    assert values == sorted(values) and values[-1] > values[0] > 0
    stream.close()


def test_on_change_heartbeat(raw: Raw) -> None:
    stream = raw.subscribe(sub(f"{IF1}/config/mtu", gnmi_pb2.ON_CHANGE, heartbeat_interval=200_000_000))
    stream.until_sync()
    assert leaves([stream.next(2).update]) == {f"{IF1}/config/mtu": 1500}
    assert leaves([stream.next(2).update]) == {f"{IF1}/config/mtu": 1500}
    stream.close()


def test_counters_reach_only_subscribers_that_ask(raw: Raw) -> None:
    raw.set(update=[(SUB10, SUB10_BODY)])
    broad = raw.subscribe("/interfaces")
    explicit = raw.subscribe(f"{SUB10}/state/counters")
    td = raw.subscribe(sub(f"{SUB10}/state", gnmi_pb2.TARGET_DEFINED))
    initial = leaves(broad.until_sync())
    assert f"{SUB10}/state/counters/in-octets" in initial  # initial state includes counters
    explicit.until_sync()
    td.until_sync()
    time.sleep(0.7)  # more than three counter ticks (0.2 s in these tests)
    assert broad.quiet(0.05) == []  # no tick spam for a broad ON_CHANGE subscription
    ticks = explicit.quiet(0.05)
    assert len(ticks) >= 2
    assert set(leaves([t.update for t in ticks])) == {f"{SUB10}/state/counters/in-octets",
                                                       f"{SUB10}/state/counters/out-octets",
                                                       }
    assert len(td.quiet(0.05)) >= 2  # TARGET_DEFINED: like ON_CHANGE, counters sampled on the tick
    raw.set(update=[(f"{IF1}/config/mtu", 9100)])
    got = leaves([broad.next().update])
    assert got[f"{IF1}/config/mtu"] == 9100 and got[f"{IF1}/state/mtu"] == 9100
    for s in (broad, explicit, td):
        s.close()


def test_state_follows_config_in_the_stream(raw: Raw) -> None:
    raw.set(update=[(SUB10, SUB10_BODY)])
    stream = raw.subscribe("/interfaces/interface[name=*]/subinterfaces/subinterface[index=*]/state/oper-status",
                           f"{IF1}/state/admin-status")
    assert leaves(stream.until_sync()) == {f"{SUB10}/state/oper-status": "UP", f"{IF1}/state/admin-status": "UP"}
    raw.set(update=[(f"{IF1}/config/enabled", False)])
    assert leaves([stream.next().update]) == {f"{SUB10}/state/oper-status": "DOWN",
                                              f"{IF1}/state/admin-status": "DOWN"}
    raw.set(update=[(f"{IF1}/config/enabled", True)])
    assert leaves([stream.next().update])[f"{SUB10}/state/oper-status"] == "UP"
    stream.close()


def test_prefix_target_and_json_ietf_values(raw: Raw) -> None:
    raw.set(update=[("/network-instances/network-instance[name=v]/config/type", "L3VRF")])
    stream = raw.subscribe("config/type", prefix=path("/network-instances/network-instance[name=v]",
                                                     target="dev1"),
                           encoding=gnmi_pb2.JSON_IETF)
    n = stream.until_sync()[0]
    assert n.prefix.target == "dev1"
    assert path_str(n.prefix) == "/network-instances/network-instance[name=v]"
    assert path_str(n.update[0].path) == "/config/type"
    assert n.update[0].val.string_val == "openconfig-network-instance-types:L3VRF"
    stream.close()
    plain = raw.subscribe("/network-instances/network-instance[name=*]/config/type")
    n = plain.until_sync()[0]
    assert not n.prefix.target and n.update[0].val.string_val == "L3VRF"
    plain.close()


def test_subscription_errors(raw: Raw) -> None:
    def code(*subs: gnmi_pb2.Subscription | str, **kw: int) -> grpc.StatusCode:
        s = raw.subscribe(*subs, **kw)  # type: ignore[arg-type]
        with pytest.raises(grpc.RpcError) as ei:
            s.next()
        code: grpc.StatusCode = ei.value.code()
        return code

    assert code("/interfaces/interface/config/speed") == grpc.StatusCode.UNIMPLEMENTED
    assert code("/interfaces", encoding=gnmi_pb2.PROTO) == grpc.StatusCode.UNIMPLEMENTED
    assert code(sub("/interfaces", gnmi_pb2.SAMPLE, sample_interval=1_000_000)) == grpc.StatusCode.INVALID_ARGUMENT
    assert code(sub("/interfaces", gnmi_pb2.TARGET_DEFINED, sample_interval=1_000_000_000)) == \
        grpc.StatusCode.INVALID_ARGUMENT
    assert code("/interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=x]") == \
        grpc.StatusCode.INVALID_ARGUMENT
    # a second SubscriptionList on the same stream
    stream = raw.subscribe(f"{IF1}/config/mtu")
    stream.until_sync()
    stream.send(gnmi_pb2.SubscribeRequest(subscribe=gnmi_pb2.SubscriptionList(
        subscription=[gnmi_pb2.Subscription(path=path("/interfaces"))])))
    with pytest.raises(grpc.RpcError) as ei:
        stream.next()
    assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_stream_outlives_a_client_half_close(raw: Raw, fleet: Fleet, dev: DeviceInfo) -> None:
    """Spec 3.5.1: a STREAM subscription ends when the client cancels, not when it half-closes."""
    raw.set(update=[(f"{IF1}/config/description", "uplink")])
    on_change = raw.subscribe(f"{IF1}/config/mtu")
    sample = raw.subscribe(sub(f"{IF1}/config/description", gnmi_pb2.SAMPLE, sample_interval=100_000_000))
    on_change.until_sync()
    sample.until_sync()
    assert fleet.admin.dump(dev.name)["subscriptions"] == 2
    on_change.half_close()
    sample.half_close()
    time.sleep(0.3)  # let the target see the end of both request streams
    raw.set(update=[(f"{IF1}/config/mtu", 9001)])
    assert leaves([on_change.next().update]) == {f"{IF1}/config/mtu": 9001}
    for _ in range(3):  # SAMPLE keeps sampling every 100 ms
        assert leaves([sample.next(2.0).update]) == {f"{IF1}/config/description": "uplink"}
    assert fleet.admin.dump(dev.name)["subscriptions"] == 2
    on_change.call.cancel()
    sample.call.cancel()
    wait_for(lambda: fleet.admin.dump(dev.name)["subscriptions"] == 0)


def test_many_subscribers_each_get_the_change(raw: Raw) -> None:
    streams = [raw.subscribe(f"{IF1}/config/description") for _ in range(5)]
    for s in streams:
        s.until_sync()
    raw.set(update=[(f"{IF1}/config/description", "fan-out")])
    for s in streams:
        assert leaves([s.next().update]) == {f"{IF1}/config/description": "fan-out"}
        s.close()

