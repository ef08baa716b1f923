"""An asyncio gNMI client on grpc.aio with the gNMI protobufs that pygnmi ships.

Why not pygnmi's gNMIclient for the controller (it stays the independent client in
the tests): its Get and Set have no RPC deadline, so a hung device blocks a thread
for ever; it verifies TLS against a CA only when the CA is passed as `path_cert`
(`path_root` alone falls back to trusting whatever certificate the target presents);
and it is synchronous, one thread per subscription. grpc.aio gives deadlines on
every call, cancellation, and one event loop for a whole fleet.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
from pygnmi.spec.v080 import gnmi_pb2, gnmi_pb2_grpc

from .. import metrics

# The generated protobuf classes carry no type information; name what a value is.
Path = Any  # gnmi_pb2.Path

# Codes after which the same request may succeed later without any change.
TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
    }
)


class GnmiError(Exception):
    """A failed gNMI RPC: its canonical code, the device's message, and whether to retry."""

    def __init__(self, rpc: str, code: grpc.StatusCode, message: str) -> None:
        super().__init__(f"{rpc}: {code.name}: {message}")
        self.rpc = rpc
        self.code = code
        self.message = message

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT

    @property
    def unauthenticated(self) -> bool:
        return self.code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED)


@dataclass(frozen=True)
class Target:
    """How to reach one device. Credentials are kept out of repr so they never reach a log."""

    address: str
    port: int
    username: str = field(repr=False)
    password: str = field(repr=False)
    insecure: bool = False
    ca_pem: bytes | None = field(default=None, repr=False)
    server_name: str | None = None
    timeout: float = 5.0
    encoding: str = "auto"  # auto (negotiated from Capabilities), JSON or JSON_IETF
    reports_oper_status: bool = True

    @property
    def endpoint(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Capabilities:
    gnmi_version: str
    encodings: list[str]
    models: list[tuple[str, str, str]]  # (name, organization, version)


@dataclass(frozen=True)
class Update:
    """One update of a notification: the full path (prefix joined) and its decoded value."""

    path: Path
    value: Any


@dataclass(frozen=True)
class Notification:
    timestamp: int
    updates: list[Update]
    deletes: list[Path]
    sync: bool = False


def join(prefix: Path, path: Path) -> Path:
    out = gnmi_pb2.Path()
    out.CopyFrom(prefix)
    out.elem.extend(path.elem)
    out.target = ""
    if path.origin:
        out.origin = path.origin
    return out


def decode(value: gnmi_pb2.TypedValue) -> Any:
    kind = value.WhichOneof("value")
    if kind in ("json_val", "json_ietf_val"):
        return json.loads(getattr(value, kind))
    if kind is None:
        return None
    if kind == "leaflist_val":
        return [decode(v) for v in value.leaflist_val.element]
    if kind == "decimal_val":
        return value.decimal_val.digits / (10**value.decimal_val.precision)
    return getattr(value, kind)


def json_value(value: Any, encoding: str = "JSON") -> gnmi_pb2.TypedValue:
    """A value as `json_val`, or as `json_ietf_val` (the value must already be in RFC 7951 form)."""
    data = json.dumps(value, separators=(",", ":")).encode()
    return gnmi_pb2.TypedValue(json_ietf_val=data) if encoding == "JSON_IETF" else gnmi_pb2.TypedValue(json_val=data)


class GnmiClient:
    """One long-lived channel to one device; every RPC carries the credentials and a deadline."""

    def __init__(
        self,
        target: Target,
        name: str | None = None,
        set_guard: Callable[[], Sequence[tuple[str, str]]] | None = None,
    ) -> None:
        self.target = target
        self.name = name or target.endpoint
        # Called right before every Set (sharding): raises when this replica may not write to the device,
        # else returns the metadata that names the writer (x-telco-replica, x-telco-tenure).
        self._set_guard = set_guard
        options: list[tuple[str, Any]] = [
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
            # Reconnect quickly after a device restart; our own backoff paces the retries.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 5_000),
        ]
        if target.insecure:
            self._channel = grpc.aio.insecure_channel(target.endpoint, options=options)
        else:
            if target.server_name:
                options.append(("grpc.ssl_target_name_override", target.server_name))
            credentials = grpc.ssl_channel_credentials(root_certificates=target.ca_pem)
            self._channel = grpc.aio.secure_channel(target.endpoint, credentials, options=options)
        self._stub = gnmi_pb2_grpc.gNMIStub(self._channel)
        self._metadata = (("username", target.username), ("password", target.password))

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, rpc: str, request: Any, metadata: Sequence[tuple[str, str]] = ()) -> Any:
        method = getattr(self._stub, rpc)
        started = time.perf_counter()
        try:
            return await method(request, metadata=(*self._metadata, *metadata), timeout=self.target.timeout)
        except grpc.aio.AioRpcError as exc:
            metrics.GNMI_ERRORS.labels(self.name, rpc, exc.code().name).inc()
            raise GnmiError(rpc, exc.code(), exc.details() or "") from None
        finally:
            metrics.GNMI_SECONDS.labels(self.name, rpc).observe(time.perf_counter() - started)

    async def capabilities(self) -> Capabilities:
        resp = await self._call("Capabilities", gnmi_pb2.CapabilityRequest())
        return Capabilities(
            gnmi_version=resp.gNMI_version,
            encodings=[gnmi_pb2.Encoding.Name(e) for e in resp.supported_encodings],
            models=[(m.name, m.organization, m.version) for m in resp.supported_models],
        )

    async def get(self, paths: Sequence[Path], data_type: str = "CONFIG", encoding: str = "JSON") -> list[Notification]:
        request = gnmi_pb2.GetRequest(
            path=list(paths),
            type=gnmi_pb2.GetRequest.DataType.Value(data_type),
            encoding=gnmi_pb2.Encoding.Value(encoding),
        )
        resp = await self._call("Get", request)
        return [_notification(n) for n in resp.notification]

    async def set(
        self,
        deletes: Sequence[Path] = (),
        replaces: Sequence[tuple[Path, Any]] = (),
        updates: Sequence[tuple[Path, Any]] = (),
        encoding: str = "JSON",
    ) -> int:
        """Send one transactional SetRequest; returns the device's timestamp of the commit. Values go as
        `json_ietf_val` with encoding JSON_IETF (already in RFC 7951 form), else as `json_val`."""
        request = gnmi_pb2.SetRequest(
            delete=list(deletes),
            replace=[gnmi_pb2.Update(path=p, val=json_value(v, encoding)) for p, v in replaces],
            update=[gnmi_pb2.Update(path=p, val=json_value(v, encoding)) for p, v in updates],
        )
        identity = self._set_guard() if self._set_guard is not None else ()
        resp = await self._call("Set", request, identity)
        metrics.GNMI_SET_OPERATIONS.labels(self.name).inc(len(deletes) + len(replaces) + len(updates))
        return int(resp.timestamp or time.time_ns())

    async def subscribe(self, paths: Sequence[Path], encoding: str = "JSON") -> AsyncIterator[Notification]:
        """ON_CHANGE stream over `paths`: the initial state, a sync marker, then changes.

        No deadline here (a stream lives long); keepalives detect a dead peer.
        """
        request = gnmi_pb2.SubscribeRequest(
            subscribe=gnmi_pb2.SubscriptionList(
                subscription=[gnmi_pb2.Subscription(path=p, mode=gnmi_pb2.ON_CHANGE) for p in paths],
                mode=gnmi_pb2.SubscriptionList.STREAM,
                encoding=gnmi_pb2.Encoding.Value(encoding),
            )
        )
        # Write the request on the open call and never half-close our side: some targets end a
        # STREAM subscription when the client half-closes.
        call = self._stub.Subscribe(metadata=self._metadata)
        try:
            await call.write(request)
            async for resp in call:
                if resp.HasField("sync_response"):
                    yield Notification(timestamp=time.time_ns(), updates=[], deletes=[], sync=True)
                elif resp.HasField("update"):
                    yield _notification(resp.update)
        except grpc.aio.AioRpcError as exc:
            raise GnmiError("Subscribe", exc.code(), exc.details() or "") from None
        finally:
            call.cancel()


def _notification(n: gnmi_pb2.Notification) -> Notification:
    return Notification(
        timestamp=n.timestamp,
        updates=[Update(join(n.prefix, u.path), decode(u.val)) for u in n.update],
        deletes=[join(n.prefix, d) for d in n.delete],
    )
