"""Client-side helpers for the devicesim tests: raw gNMI stub wrappers and path building.

Requests are built here without devicesim's own path code, so the tests exercise the server
through the wire format a real client produces.
"""

from __future__ import annotations

import json
import queue
import re
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
from pygnmi.spec.v080 import gnmi_pb2, gnmi_pb2_grpc

from devicesim import DeviceInfo

_ELEM = re.compile(r"([^/\[]+)((?:\[[^=\]]+=[^\]]*\])*)")
_KEY = re.compile(r"\[([^=\]]+)=([^\]]*)\]")


def path(text: str, origin: str = "", target: str = "") -> gnmi_pb2.Path:
    """``/a/b[k=v]/c`` as a gNMI Path (no escaping: enough for these tests)."""
    p = gnmi_pb2.Path(origin=origin, target=target)
    for m in _ELEM.finditer(text.strip("/")):
        p.elem.add(name=m.group(1), key=dict(_KEY.findall(m.group(2))))
    return p


def path_str(p: gnmi_pb2.Path) -> str:
    out = []
    for e in p.elem:
        out.append(e.name + "".join(f"[{k}={v}]" for k, v in sorted(e.key.items())))
    return "/" + "/".join(out)


def jv(value: Any, ietf: bool = False) -> gnmi_pb2.TypedValue:
    data = json.dumps(value).encode()
    return gnmi_pb2.TypedValue(json_ietf_val=data) if ietf else gnmi_pb2.TypedValue(json_val=data)


def scalar(tv: gnmi_pb2.TypedValue) -> Any:
    which = tv.WhichOneof("value")
    if which in ("json_val", "json_ietf_val"):
        return json.loads(getattr(tv, which))
    return getattr(tv, which)


def code_of(exc: BaseException) -> grpc.StatusCode:
    """The gRPC status of a raw RpcError or of a pygnmi gNMIException wrapping one."""
    inner = getattr(exc, "orig_exc", None) or exc
    assert isinstance(inner, grpc.RpcError), f"not a gRPC error: {exc!r}"
    code: grpc.StatusCode = inner.code()
    return code


def details_of(exc: BaseException) -> str:
    inner: Any = getattr(exc, "orig_exc", None) or exc
    return str(inner.details())


class Stream:
    """A Subscribe RPC over the raw stub: send requests when you like, read with timeouts."""

    def __init__(self, stub: gnmi_pb2_grpc.gNMIStub, first: gnmi_pb2.SubscribeRequest | None,
                 metadata: list[tuple[str, str]]) -> None:
        self._out: queue.Queue[gnmi_pb2.SubscribeRequest | None] = queue.Queue()
        if first is not None:
            self._out.put(first)
        self._in: queue.Queue[Any] = queue.Queue()
        self.call = stub.Subscribe(self._requests(), metadata=metadata)
        self.ended: grpc.RpcError | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _requests(self) -> Iterator[gnmi_pb2.SubscribeRequest]:
        while True:
            item = self._out.get()
            if item is None:
                return
            yield item

    def _read(self) -> None:
        try:
            for resp in self.call:
                self._in.put(resp)
            self._in.put(StopIteration())
        except grpc.RpcError as err:
            self._in.put(err)

    def send(self, req: gnmi_pb2.SubscribeRequest) -> None:
        self._out.put(req)

    def poll(self) -> None:
        self.send(gnmi_pb2.SubscribeRequest(poll=gnmi_pb2.Poll()))

    def next(self, timeout: float = 5.0) -> gnmi_pb2.SubscribeResponse:
        item = self._in.get(timeout=timeout)
        if isinstance(item, grpc.RpcError):
            self.ended = item
            raise item
        if isinstance(item, StopIteration):
            raise item
        assert isinstance(item, gnmi_pb2.SubscribeResponse)
        return item

    def until_sync(self, timeout: float = 5.0) -> list[gnmi_pb2.Notification]:
        out: list[gnmi_pb2.Notification] = []
        while True:
            r = self.next(timeout)
            if r.sync_response:
                return out
            out.append(r.update)

    def quiet(self, seconds: float) -> list[gnmi_pb2.SubscribeResponse]:
        """Everything received within ``seconds`` (usually expected to be nothing)."""
        got = []
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                got.append(self.next(left))
            except queue.Empty:
                break
        return got

    def half_close(self) -> None:
        """End the request stream (the client's WritesDone) without cancelling the RPC."""
        self._out.put(None)

    def close(self) -> None:
        self._out.put(None)
        self.call.cancel()


def leaves(notifications: list[gnmi_pb2.Notification]) -> dict[str, Any]:
    """path -> value of every update (prefix applied)."""
    out = {}
    for n in notifications:
        pre = path_str(n.prefix) if len(n.prefix.elem) else ""
        for u in n.update:
            out[pre + path_str(u.path)] = scalar(u.val)
    return out


def deletes(notifications: list[gnmi_pb2.Notification]) -> list[str]:
    return [path_str(d) for n in notifications for d in n.delete]


class Raw:
    """The generated gNMI stub with credentials and deadlines (pygnmi has no Get/Set deadline)."""

    def __init__(self, channel: grpc.Channel, username: str = "admin", password: str = "admin") -> None:
        self.channel = channel
        self.stub = gnmi_pb2_grpc.gNMIStub(channel)
        self.md = [("username", username), ("password", password)]

    def capabilities(self) -> gnmi_pb2.CapabilityResponse:
        return self.stub.Capabilities(gnmi_pb2.CapabilityRequest(), metadata=self.md, timeout=5)

    def get(self, *paths: str | gnmi_pb2.Path, prefix: gnmi_pb2.Path | None = None, type: int = 0,
            encoding: int = gnmi_pb2.JSON) -> gnmi_pb2.GetResponse:
        req = gnmi_pb2.GetRequest(path=[p if isinstance(p, gnmi_pb2.Path) else path(p) for p in paths],
                                  type=type, encoding=encoding)
        if prefix is not None:
            req.prefix.CopyFrom(prefix)
        return self.stub.Get(req, metadata=self.md, timeout=5)

    def get_val(self, p: str, **kw: Any) -> Any:
        resp = self.get(p, **kw)
        return scalar(resp.notification[0].update[0].val)

    def set(self, delete: list[str] = (), replace: list[tuple[str, Any]] = (),  # type: ignore[assignment]
            update: list[tuple[str, Any]] = (), prefix: gnmi_pb2.Path | None = None,  # type: ignore[assignment]
            ietf: bool = False) -> gnmi_pb2.SetResponse:
        req = gnmi_pb2.SetRequest(
            delete=[path(d) for d in delete],
            replace=[gnmi_pb2.Update(path=path(p), val=v if isinstance(v, gnmi_pb2.TypedValue) else jv(v, ietf))
                     for p, v in replace],
            update=[gnmi_pb2.Update(path=path(p), val=v if isinstance(v, gnmi_pb2.TypedValue) else jv(v, ietf))
                    for p, v in update])
        if prefix is not None:
            req.prefix.CopyFrom(prefix)
        return self.stub.Set(req, metadata=self.md, timeout=10)

    def subscribe(self, *subs: gnmi_pb2.Subscription | str, mode: int = gnmi_pb2.SubscriptionList.STREAM,
                  encoding: int = gnmi_pb2.JSON, updates_only: bool = False,
                  prefix: gnmi_pb2.Path | None = None) -> Stream:
        sl = gnmi_pb2.SubscriptionList(mode=mode, encoding=encoding, updates_only=updates_only)
        if prefix is not None:
            sl.prefix.CopyFrom(prefix)
        for s in subs:
            sl.subscription.append(gnmi_pb2.Subscription(path=path(s), mode=gnmi_pb2.ON_CHANGE)
                                   if isinstance(s, str) else s)
        return Stream(self.stub, gnmi_pb2.SubscribeRequest(subscribe=sl), self.md)


def secure_channel(info: DeviceInfo, ca_path: str) -> grpc.Channel:
    with open(ca_path, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    return grpc.secure_channel(info.address, creds)


def wait_for(predicate: Any, timeout: float = 5.0, interval: float = 0.05) -> Any:
    end = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


