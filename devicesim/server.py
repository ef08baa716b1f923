"""The gNMI service of one device (grpc.aio), and its Subscribe sessions."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import grpc
from pygnmi.spec.v080 import gnmi_pb2, gnmi_pb2_grpc

from devicesim import official as O
from devicesim import paths as P
from devicesim import schema as S
from devicesim import tree as T
from devicesim.device import Device, OpLabel, SetFailed, SetOp, SetRecord
from devicesim.errors import GnmiError, UnknownMember

log = logging.getLogger("devicesim")

GNMI_VERSION = "0.8.0"
OFFICIAL_ORIGINS = ("", "openconfig")  # gNMI 2.7.1: an unset origin means openconfig
MIN_INTERVAL_NS = 100_000_000  # the fastest SAMPLE / heartbeat interval this target supports
MAX_UPDATES_PER_NOTIFICATION = 2000
MAX_QUEUED = 20_000  # a subscriber this far behind is disconnected (RESOURCE_EXHAUSTED)

INVALID = grpc.StatusCode.INVALID_ARGUMENT
_OP = {"delete": gnmi_pb2.UpdateResult.DELETE, "replace": gnmi_pb2.UpdateResult.REPLACE,
       "update": gnmi_pb2.UpdateResult.UPDATE}

SERVER_OPTIONS = [
    # refuse to share a port with another process (grpc enables SO_REUSEPORT by default)
    ("grpc.so_reuseport", 0),
    # long-lived subscriptions: let clients keep idle connections alive with pings
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 1000),
    ("grpc.http2.max_ping_strikes", 0),
]


def _encoding_ok(enc: int, device: Device) -> None:
    """gNMI 3.3.1: an encoding the target does not support is answered with UNIMPLEMENTED."""
    name = gnmi_pb2.Encoding.Name(enc) if enc in gnmi_pb2.Encoding.values() else str(enc)
    if name not in device.spec.encodings:
        raise GnmiError(grpc.StatusCode.UNIMPLEMENTED,
                        f"encoding {name} is not supported; supported encodings: {', '.join(device.spec.encodings)}")


def _origin_ok(device: Device, *paths: gnmi_pb2.Path | None) -> None:
    """Strict devices serve the openconfig origin only (unset = openconfig, gNMI 2.7.1)."""
    if not device.spec.strict:
        return  # lenient: also a module name as origin (what pygnmi makes of "module:path")
    for p in paths:
        if p is not None and p.origin not in OFFICIAL_ORIGINS:
            raise GnmiError(INVALID, f"origin {p.origin!r} is not supported by this target; it serves "
                                     f"'openconfig' (an unset origin means openconfig)")


def _official_only(device: Device, pats: list[P.Pattern], path: gnmi_pb2.Path) -> list[P.Pattern]:
    """Strict: the schema positions the official models hold (a removed leaf is not served)."""
    official = device.official
    if official is None:
        return pats
    kept = [p for p in pats if not p.segs or official.has(T.names_of(p.segs))]
    if not kept:
        raise GnmiError(grpc.StatusCode.UNIMPLEMENTED,
                        f"{P.proto_text(path)} is not in the OpenConfig models this target implements")
    return kept


def _has_wildcards(path: gnmi_pb2.Path) -> bool:
    return any(e.name in ("*", "...") or "*" in e.key.values() for e in path.elem)


def response_prefix(prefix: gnmi_pb2.Path | None) -> tuple[gnmi_pb2.Path | None, int]:
    """The prefix to put in responses and the number of leading elements it stands for.

    The request prefix is echoed as given (so ``target`` appears only if the client set it),
    unless it has wildcards, which never appear in responses: then only origin/target are kept.
    """
    if prefix is None:
        return None, 0
    if _has_wildcards(prefix):
        return gnmi_pb2.Path(origin=prefix.origin, target=prefix.target), 0
    return prefix, len(prefix.elem)


_resolved: dict[tuple[bytes, bytes, str, bool], list[P.Pattern]] = {}


def resolve(prefix: gnmi_pb2.Path | None, path: gnmi_pb2.Path, list_end: str = "wild",
            allow_wild: bool = True, prefix_key: bytes | None = None) -> list[P.Pattern]:
    """P.join + P.resolve, memoised on the serialised paths: clients repeat the same paths."""
    if prefix_key is None:
        prefix_key = prefix.SerializeToString(deterministic=True) if prefix is not None else b""
    key = (prefix_key, path.SerializeToString(deterministic=True), list_end, allow_wild)
    hit = _resolved.get(key)
    if hit is None:
        elems, _ = P.join(prefix, path)
        hit = P.resolve(elems, list_end=list_end, allow_wild=allow_wild)
        if len(_resolved) >= 50_000:
            _resolved.clear()
        _resolved[key] = hit
    return hit


def resolve_read(prefix: gnmi_pb2.Path | None, path: gnmi_pb2.Path, device: Device) -> list[P.Pattern]:
    """Resolve a Get/Subscribe path; schema-unknown paths are UNIMPLEMENTED (spec 3.3.4)."""
    _origin_ok(device, prefix, path)
    try:
        return _official_only(device, resolve(prefix, path), path)
    except GnmiError as err:
        if err.code == grpc.StatusCode.NOT_FOUND:
            raise GnmiError(grpc.StatusCode.UNIMPLEMENTED,
                            f"{err.message} (not in the modelled OpenConfig subset)") from None
        raise


def rel_path(segs: P.Segs, skip: int, origin: str = "") -> gnmi_pb2.Path:
    return P.elems_proto(P.segs_to_elems(segs)[skip:], origin=origin)


_leaf_cache: dict[tuple[str, ...], S.Leaf] = {}


def leaf_of(segs: P.Segs) -> S.Leaf:
    shape = tuple(s if type(s) is str else "[]" for s in segs)
    leaf = _leaf_cache.get(shape)
    if leaf is None:
        node = P.node_at(segs)
        assert isinstance(node, S.Leaf)
        leaf = _leaf_cache[shape] = node
    return leaf


def typed_value(leaf: S.Leaf, value: Any, ietf: bool) -> gnmi_pb2.TypedValue:
    """Telemetry carries scalar leaves in the typed TypedValue fields (what pygnmi parses)."""
    k = leaf.type.kind
    if k == "bool":
        return gnmi_pb2.TypedValue(bool_val=value)
    if k == "uint":
        return gnmi_pb2.TypedValue(uint_val=value)
    if k == "identity" and ietf:
        return gnmi_pb2.TypedValue(string_val=f"{leaf.type.identity_module}:{value}")
    return gnmi_pb2.TypedValue(string_val=str(value))


_json_decode = json.JSONDecoder().decode


def decode_value(val: gnmi_pb2.TypedValue, path: gnmi_pb2.Path,
                 encodings: Sequence[str] = ("JSON", "JSON_IETF")) -> tuple[Any, bool]:
    """A Set payload as a Python value, and whether it is JSON_IETF."""
    which = val.WhichOneof("value")
    if which == "json_val" or which == "json_ietf_val":
        enc = "JSON" if which == "json_val" else "JSON_IETF"
        if enc not in encodings:
            raise GnmiError(grpc.StatusCode.UNIMPLEMENTED,
                            f"{P.proto_text(path)}: encoding {enc} ({which}) is not supported; supported "
                            f"encodings: {', '.join(encodings)}")
        raw = getattr(val, which)
        try:
            return _json_decode(raw.decode()), which == "json_ietf_val"
        except (ValueError, UnicodeDecodeError):
            shown = raw[:60].decode("utf-8", "replace")
            raise GnmiError(INVALID, f"{P.proto_text(path)}: value is not valid JSON: {shown!r} (a JSON "
                                     f"string needs quotes)") from None
    if which in ("string_val", "uint_val", "int_val", "bool_val"):
        return getattr(val, which), False
    if which is None:
        raise GnmiError(INVALID, f"{P.proto_text(path)}: update without a value")
    raise GnmiError(grpc.StatusCode.UNIMPLEMENTED, f"{P.proto_text(path)}: value encoding {which} is not "
                                                   f"supported; use json_val or json_ietf_val")


# ---------------------------------------------------------------------------------------------
# Subscribe sessions


@dataclass
class Entry:
    """One Subscription of a SubscriptionList."""

    patterns: list[P.Pattern]
    mode: int  # SubscriptionMode for STREAM; ON_CHANGE for ONCE/POLL
    sample_ns: int = 0
    suppress: bool = False
    heartbeat_ns: int = 0
    volatile_ok: bool = True  # receives tick-driven counter changes
    last: dict[P.Segs, Any] = field(default_factory=dict)
    next_sample: float = 0.0
    next_heartbeat: float = 0.0

    def covers(self, segs: P.Segs) -> bool:
        return any(P.match_prefix(p.segs, segs) for p in self.patterns)


def _names_volatile(pat: P.Pattern) -> bool:
    node: S.SchemaNode = S.ROOT
    for s in pat.segs:
        if type(s) is tuple:
            continue
        assert isinstance(node, (S.Container, S.ListNode))
        node = node.children[s]
        if (isinstance(node, S.Container) and node.volatile) or (isinstance(node, S.Leaf) and node.volatile):
            return True
    return False


class Session:
    """State of one Subscribe RPC. Commits are turned into notifications by ``on_commit``."""

    def __init__(self, device: Device, sl: gnmi_pb2.SubscriptionList) -> None:
        self.device = device
        self.mode = sl.mode
        self.ietf = sl.encoding == gnmi_pb2.JSON_IETF
        self.updates_only = sl.updates_only
        prefix = sl.prefix if sl.HasField("prefix") else None
        self.prefix, self.skip = response_prefix(prefix)
        self.entries: list[Entry] = []
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = False
        if not len(sl.subscription):
            raise GnmiError(INVALID, "SubscriptionList without subscriptions")
        now = time.monotonic()
        for sub in sl.subscription:
            pats = resolve_read(prefix, sub.path, device)
            mode = sub.mode if self.mode == gnmi_pb2.SubscriptionList.STREAM else gnmi_pb2.ON_CHANGE
            e = Entry(pats, mode, suppress=sub.suppress_redundant)
            if self.mode == gnmi_pb2.SubscriptionList.STREAM:
                if mode == gnmi_pb2.SAMPLE:
                    e.sample_ns = sub.sample_interval or MIN_INTERVAL_NS
                    if e.sample_ns < MIN_INTERVAL_NS:
                        raise GnmiError(INVALID, f"sample_interval {sub.sample_interval} ns is below the "
                                                 f"minimum this target supports ({MIN_INTERVAL_NS} ns)")
                    e.next_sample = now + e.sample_ns / 1e9
                elif mode == gnmi_pb2.TARGET_DEFINED and sub.sample_interval:
                    raise GnmiError(INVALID, "sample_interval must not be set for TARGET_DEFINED")
                if sub.heartbeat_interval:
                    if sub.heartbeat_interval < MIN_INTERVAL_NS:
                        raise GnmiError(INVALID, f"heartbeat_interval {sub.heartbeat_interval} ns is below "
                                                 f"the minimum ({MIN_INTERVAL_NS} ns)")
                    e.heartbeat_ns = sub.heartbeat_interval
                    e.next_heartbeat = now + e.heartbeat_ns / 1e9
                # ON_CHANGE gets counter ticks only when it asks for counters explicitly
                e.volatile_ok = mode == gnmi_pb2.TARGET_DEFINED or any(_names_volatile(p) for p in pats)
            self.entries.append(e)

    # -- building notifications ------------------------------------------------------------------

    def _notifications(self, ts: int, updates: Sequence[tuple[P.Segs, Any]],
                       deletes: Iterable[P.Segs] = ()) -> list[gnmi_pb2.SubscribeResponse]:
        out = []
        dels = [rel_path(d, self.skip) for d in deletes]
        ups = updates
        first = True
        while first or ups:
            chunk, ups = ups[:MAX_UPDATES_PER_NOTIFICATION], ups[MAX_UPDATES_PER_NOTIFICATION:]
            if not chunk and not dels:
                break
            n = gnmi_pb2.Notification(timestamp=ts, delete=dels if first else ())
            if self.prefix is not None:
                n.prefix.CopyFrom(self.prefix)
            for segs, v in chunk:
                n.update.append(gnmi_pb2.Update(path=rel_path(segs, self.skip),
                                                val=typed_value(leaf_of(segs), v, self.ietf)))
            out.append(gnmi_pb2.SubscribeResponse(update=n))
            first = False
        return out

    def snapshot(self, entries: Sequence[Entry] | None = None) -> list[tuple[P.Segs, Any]]:
        """Current leaves matched by ``entries`` (default: all), deduplicated, in tree order."""
        seen: dict[P.Segs, Any] = {}
        root = self.device.root
        for e in self.entries if entries is None else entries:
            for pat in e.patterns:
                for segs, value in T.expand(root, pat.segs):
                    for lsegs, lv in T.iter_leaves(segs, value):
                        seen[lsegs] = lv
        return list(seen.items())

    def initial(self) -> list[gnmi_pb2.SubscribeResponse]:
        out: list[gnmi_pb2.SubscribeResponse] = []
        if not self.updates_only:
            out = self._notifications(time.time_ns(), self.snapshot())
        for e in self.entries:
            if e.mode == gnmi_pb2.SAMPLE and e.suppress:
                e.last = dict(self.snapshot([e]))
        out.append(gnmi_pb2.SubscribeResponse(sync_response=True))
        return out

    def _put(self, item: Any) -> None:
        if self.closed:
            return
        if self.queue.qsize() >= MAX_QUEUED:
            self.closed = True
            self.queue.put_nowait(GnmiError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                            "subscriber too slow: notification queue overflow"))
            return
        self.queue.put_nowait(item)

    # -- Listener protocol (called by Device.commit, synchronously after the commit) -------------

    def on_commit(self, diff: T.Diff, timestamp: int, tick: bool) -> None:
        live = [e for e in self.entries if e.mode != gnmi_pb2.SAMPLE and (not tick or e.volatile_ok)]
        if not live:
            return
        ups = [(segs, v) for segs, v in diff.updates if any(e.covers(segs) for e in live)]
        dels: dict[P.Segs, None] = {}
        for dsegs, old in diff.deletes:
            for e in live:
                for pat in e.patterns:
                    if P.match_prefix(pat.segs, dsegs):
                        dels[dsegs] = None
                    elif len(dsegs) < len(pat.segs) and P.match_prefix(pat.segs[: len(dsegs)], dsegs):
                        # the subscribed node was inside what was removed
                        for rel, v in T.expand(old, pat.segs[len(dsegs):]):
                            if T.has_leaf(v):
                                dels[(*dsegs, *rel)] = None
        if ups or dels:
            for msg in self._notifications(timestamp, ups, dels):
                self._put(msg)

    def drop(self, error: GnmiError) -> None:
        self.queue.put_nowait(error)

    # -- timers: SAMPLE and heartbeats ------------------------------------------------------------

    def has_timers(self) -> bool:
        return any(e.sample_ns or e.heartbeat_ns for e in self.entries)

    async def timers(self) -> None:
        while True:
            now = time.monotonic()
            due = [t for e in self.entries for t in (e.next_sample, e.next_heartbeat) if t]
            await asyncio.sleep(max(0.0, min(due) - now))
            now = time.monotonic()
            ts = time.time_ns()
            for e in self.entries:
                beat = bool(e.next_heartbeat) and now >= e.next_heartbeat
                if beat:
                    e.next_heartbeat = now + e.heartbeat_ns / 1e9
                if e.next_sample and now >= e.next_sample:
                    e.next_sample = now + e.sample_ns / 1e9
                    self._sample(e, ts, full=beat or not e.suppress)
                elif beat:
                    self._sample(e, ts, full=True)

    def _sample(self, e: Entry, ts: int, full: bool) -> None:
        cur = dict(self.snapshot([e]))
        ups = list(cur.items()) if full else [(s, v) for s, v in cur.items()
                                              if e.last.get(s, T.MISSING) != v]
        gone = [s for s in e.last if s not in cur] if e.last else []
        if e.suppress or e.mode == gnmi_pb2.SAMPLE:
            e.last = cur
        if ups or gone:
            for msg in self._notifications(ts, ups, gone):
                self._put(msg)


# ---------------------------------------------------------------------------------------------
# The servicer


class GnmiServicer(gnmi_pb2_grpc.gNMIServicer):
    def __init__(self, device: Device) -> None:
        self.device = device

    async def _auth(self, context: grpc.aio.ServicerContext) -> None:
        md = {m.key: m.value for m in context.invocation_metadata() or ()}
        spec = self.device.spec
        if md.get("username") != spec.username or md.get("password") != spec.password:
            self.device.stats.auth_failures += 1
            who = md.get("username")
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                f"authentication failed for user {who!r}" if who else
                                "authentication required: send username and password metadata")

    async def Capabilities(self, request: gnmi_pb2.CapabilityRequest,
                           context: grpc.aio.ServicerContext) -> gnmi_pb2.CapabilityResponse:
        await self._auth(context)
        self.device.stats.capabilities_rpcs += 1
        spec = self.device.spec
        if spec.strict:  # the modules and revisions the official-model validator really holds
            models = [gnmi_pb2.ModelData(name=name, organization="OpenConfig working group", version=rev)
                      for name, rev in O.served_models()]
        else:
            models = [gnmi_pb2.ModelData(name=m.name, organization=m.organization, version=m.version)
                      for m in S.MODELS]
        return gnmi_pb2.CapabilityResponse(
            supported_models=models,
            supported_encodings=[gnmi_pb2.Encoding.Value(e) for e in spec.encodings],
            gNMI_version=GNMI_VERSION,
        )

    async def Get(self, request: gnmi_pb2.GetRequest,
                  context: grpc.aio.ServicerContext) -> gnmi_pb2.GetResponse:
        await self._auth(context)
        self.device.stats.get_rpcs += 1
        try:
            return self._get(request)
        except GnmiError as err:
            await context.abort(err.code, err.message)
            raise  # unreachable: abort raises

    def _get(self, request: gnmi_pb2.GetRequest) -> gnmi_pb2.GetResponse:
        _encoding_ok(request.encoding, self.device)
        ietf = request.encoding == gnmi_pb2.JSON_IETF
        dtype = gnmi_pb2.GetRequest.DataType.Name(request.type)
        prefix = request.prefix if request.HasField("prefix") else None
        resp_prefix, skip = response_prefix(prefix)
        root = self.device.root  # one consistent snapshot for the whole request
        out = gnmi_pb2.GetResponse()
        for path in request.path or [gnmi_pb2.Path()]:
            pats = resolve_read(prefix, path, self.device)
            matches = [(segs, value, pat.node) for pat in pats for segs, value in T.expand(root, pat.segs)]
            if not matches:
                raise GnmiError(grpc.StatusCode.NOT_FOUND,
                                f"no data at {P.proto_text(path)}"
                                + (f" (prefix {P.proto_text(prefix)})" if prefix is not None and len(prefix.elem)
                                   else ""))
            n = out.notification.add(timestamp=time.time_ns())
            if resp_prefix is not None:
                n.prefix.CopyFrom(resp_prefix)
            for segs, value, node in matches:
                entry = bool(segs) and type(segs[-1]) is tuple
                enc = T.encode(node, value, entry=entry, dtype=dtype, ietf=ietf)
                if enc is None:
                    continue  # the data exists but the type filter (CONFIG/STATE/...) drops it
                data = json.dumps(enc, separators=(",", ":")).encode()
                val = gnmi_pb2.TypedValue(json_ietf_val=data) if ietf else gnmi_pb2.TypedValue(json_val=data)
                n.update.append(gnmi_pb2.Update(path=rel_path(segs, skip, origin=path.origin), val=val))
        return out

    async def Set(self, request: gnmi_pb2.SetRequest,
                  context: grpc.aio.ServicerContext) -> gnmi_pb2.SetResponse:
        await self._auth(context)
        md = {m.key: m.value for m in context.invocation_metadata() or ()}
        received = time.time_ns()
        ok = False
        try:
            response = await self._set(request, context)
            ok = True
            return response
        finally:  # an aborted Set is recorded too: it reached the device
            self.device.set_log.append(SetRecord(
                received=received, finished=time.time_ns(), replica=str(md.get("x-telco-replica", "")),
                tenure=str(md.get("x-telco-tenure", "")), peer=str(context.peer() or ""), ok=ok))

    async def _set(self, request: gnmi_pb2.SetRequest,
                   context: grpc.aio.ServicerContext) -> gnmi_pb2.SetResponse:
        dev = self.device
        dev.stats.set_rpcs += 1
        injected = dev.take_injected_failure()
        if injected is not None:
            dev.stats.set_failed += 1
            await context.abort(injected.code, injected.message)
        if dev.levers.set_latency > 0:
            await asyncio.sleep(dev.levers.set_latency)
        dev.stats.set_deletes += len(request.delete)
        dev.stats.set_replaces += len(request.replace)
        dev.stats.set_updates += len(request.update)
        try:
            ops = build_ops(request, dev)
            ts = dev.apply(ops)
        except SetFailed as failed:
            dev.stats.set_failed += 1
            if dev.spec.strict:
                # the failing operation's own code (gNMI 3.4.7): a payload the models reject is
                # INVALID_ARGUMENT, also when it names an unknown member
                err = failed.error
                code = INVALID if isinstance(err, UnknownMember) else err.code
                await context.abort(code, f"{failed.label}: {err.message} (no change applied)")
            await context.abort(grpc.StatusCode.ABORTED,
                                f"{failed.label} failed: {failed.error.code.name}: {failed.error.message}"
                                f" (no change applied)")
            raise  # unreachable
        resp = gnmi_pb2.SetResponse(timestamp=ts)
        if request.HasField("prefix"):
            resp.prefix.CopyFrom(request.prefix)
        for kind, path in _op_paths(request):
            result = resp.response.add(op=_OP[kind])
            result.path.CopyFrom(path)
        return resp

    async def Subscribe(self, request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        await self._auth(context)
        dev = self.device
        dev.stats.subscribe_rpcs += 1
        first = await context.read()
        if first is grpc.aio.EOF or not first.HasField("subscribe"):
            await context.abort(INVALID, "the first SubscribeRequest must carry a SubscriptionList "
                                         "(poll or aliases on a stream with no subscription)")
        sl = first.subscribe
        try:
            _encoding_ok(sl.encoding, dev)
            session = Session(dev, sl)
        except GnmiError as err:
            await context.abort(err.code, err.message)
            raise  # unreachable
        if sl.mode == gnmi_pb2.SubscriptionList.ONCE:
            for msg in session.initial():
                await context.write(msg)
            return
        if sl.mode == gnmi_pb2.SubscriptionList.POLL:
            await self._poll(session, context)
            return
        await self._stream(session, context)

    async def _poll(self, session: Session, context: grpc.aio.ServicerContext) -> None:
        for msg in session.initial():
            await context.write(msg)
        session.updates_only = False
        while True:
            req = await context.read()
            if req is grpc.aio.EOF:
                return
            if not req.HasField("poll"):
                await context.abort(INVALID, "only Poll messages are allowed on a POLL subscription")
            for msg in session.initial():
                await context.write(msg)
                self.device.stats.notifications += 1

    async def _stream(self, session: Session, context: grpc.aio.ServicerContext) -> None:
        dev = self.device
        # snapshot and registration happen without an await in between, so no commit can fall
        # between the initial state and the first change notification
        for msg in session.initial():
            session.queue.put_nowait(msg)
        dev.listeners.add(session)
        tasks = [asyncio.ensure_future(self._read_rest(session, context))]
        if session.has_timers():
            tasks.append(asyncio.ensure_future(session.timers()))
        try:
            while True:
                item = await session.queue.get()
                if item is None:
                    return
                if isinstance(item, GnmiError):
                    await context.abort(item.code, item.message)
                await context.write(item)
                dev.stats.notifications += 1
        finally:
            session.closed = True
            dev.listeners.discard(session)
            for t in tasks:
                t.cancel()

    @staticmethod
    async def _read_rest(session: Session, context: grpc.aio.ServicerContext) -> None:
        try:
            while True:
                req = await context.read()
                if req is grpc.aio.EOF:
                    # a half-close only ends the client's requests: the subscription lives until
                    # the client cancels the RPC (gNMI spec 3.5.1), as the reference target does
                    return
                if req.HasField("subscribe"):
                    session.drop(GnmiError(INVALID, "a SubscriptionList was already received on this "
                                                    "stream; open a new Subscribe RPC"))
                    return
                if req.HasField("poll"):
                    session.drop(GnmiError(INVALID, "Poll is only valid on a POLL subscription"))
                    return
        except (asyncio.CancelledError, grpc.RpcError):
            return
        except Exception as err:  # the call ended under us; nothing to report to
            log.debug("%s: subscribe reader ended: %r", session.device.name, err)


def _op_paths(request: gnmi_pb2.SetRequest) -> Iterable[tuple[str, gnmi_pb2.Path]]:
    for p in request.delete:
        yield "delete", p
    for u in request.replace:
        yield "replace", u.path
    for u in request.update:
        yield "update", u.path


def build_ops(request: gnmi_pb2.SetRequest, device: Device) -> list[SetOp]:
    """Resolve a SetRequest into operations; errors name the operation (raised as SetFailed)."""
    prefix = request.prefix if request.HasField("prefix") else None
    encodings = device.spec.encodings
    pkey = prefix.SerializeToString(deterministic=True) if prefix is not None else b""
    ops: list[SetOp] = []
    for i, path in enumerate(request.delete):
        label = OpLabel("delete", i, partial(P.proto_text, path))
        try:
            _origin_ok(device, prefix, path)
            ops.append(SetOp("delete", resolve(prefix, path, prefix_key=pkey), label=label))
        except GnmiError as err:
            raise SetFailed(str(label), err) from None
    for kind, updates in (("replace", request.replace), ("update", request.update)):
        for i, upd in enumerate(updates):
            label = OpLabel(kind, i, partial(P.proto_text, upd.path))
            try:
                _origin_ok(device, prefix, upd.path)
                pats = resolve(prefix, upd.path, "node", False, prefix_key=pkey)
                value, ietf = decode_value(upd.val, upd.path, encodings)
                ops.append(SetOp(kind, pats, value, ietf, label))
            except GnmiError as err:
                raise SetFailed(str(label), err) from None
    return ops


async def start_server(device: Device, credentials: grpc.ServerCredentials | None,
                       host: str = "127.0.0.1") -> grpc.aio.Server:
    """Serve ``device`` on its port (0 = pick one, then remembered for restarts)."""
    server = grpc.aio.server(options=SERVER_OPTIONS)
    gnmi_pb2_grpc.add_gNMIServicer_to_server(GnmiServicer(device), server)
    addr = f"{host}:{device.port}"
    try:
        port = (server.add_insecure_port(addr) if credentials is None
                else server.add_secure_port(addr, credentials))
    except RuntimeError as err:
        raise OSError(f"{device.name}: cannot listen on {addr}: {err}") from None
    if not port:
        raise OSError(f"{device.name}: cannot listen on {addr} (port in use?)")
    device.port = port
    await server.start()
    device.serving = True
    return server
