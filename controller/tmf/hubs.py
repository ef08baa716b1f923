"""Event hubs: listener registrations and at-least-once delivery through an outbox, both kept in the
cluster (ConfigMaps in the facade's namespace), never only in memory.

- Registrations (POST {api}/hub, DELETE {api}/hub/{id}) are entries of ConfigMap HUBS_CONFIGMAP.
- Each event a listener wants, and its owner may read (SubjectAccessReview `get` in the object's
  namespace), is written to ConfigMap OUTBOX_CONFIGMAP before it is sent, and removed once the listener
  answered 2xx; entries left by a facade that stopped are sent by the next one with the same event ids
  (controller/tmf/events.py), so a restart neither loses a queued event nor gives it a second id.
- Delivery: POST {callback}/listener/{eventType}, as the TMF documents' listener paths name them;
  failures are retried with a growing delay (RETRY_INITIAL..RETRY_MAX).

Several replicas (every controller replica serves the facade) share both ConfigMaps:
- Registrations: each replica re-reads HUBS_CONFIGMAP on every hub request (so register, delete and
  the listener count are right on any replica), before routing each batch of changes its cache saw (so
  a registration acknowledged by any replica before a change counts for it, even if that replica then
  stops), and every FOLLOW_SECONDS. Re-reading rather than watching: one GET per batch, no second
  watch to keep alive, and no window in which a registration is known to one replica only.
- Producing: every replica turns what its own watch cache sees into outbox entries. The same change
  gives the same event id on each, so the entry key <event id>.<listener id> is the same; a replica adds
  only keys the outbox does not hold yet, with a patch conditional on the ConfigMap's resourceVersion
  (a conflict: read again). So whichever replica sees a change first queues it, and none loses it
  because another one is slow or gone.
- Delivering: only the replica `delivers()` names (the one holding the `commerce` unit when sharded,
  the active peer with Kopf peering, the only one otherwise; the standalone tmf-api process always).
  It sends every entry in the outbox, whoever wrote it, and replaces a delivered entry with a
  tombstone (its delivery time), kept TOMBSTONE_SECONDS so a replica that saw the change late cannot
  queue it again; it then removes old tombstones. When delivery moves to another replica, that one
  finds the undelivered entries in the outbox and sends them with the same ids.

Changes made while no facade runs are not turned into events (there is no persisted watermark yet).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import kubernetes
from kubernetes.client import ApiException

from .auth import User
from .conventions import TmfError
from .events import Event, Listener, listener_filters, wanted_by

log = logging.getLogger(__name__)

HUBS_CONFIGMAP = "telco-intent-tmf-hubs"
OUTBOX_CONFIGMAP = "telco-intent-tmf-outbox"
MAX_LISTENERS = 256
MAX_PENDING = 2000  # outbox entries kept (a ConfigMap holds at most 1 MiB)
FLUSH_SECONDS = 0.1
FOLLOW_SECONDS = 1.0  # how often the deliverer re-reads the outbox (entries other replicas queued)
TOMBSTONE_SECONDS = 300.0  # how long a delivered entry's key stays, so no late producer queues it again
MAX_TOMBSTONES = 4000  # ~100 bytes each: the oldest go first beyond this, to stay far below 1 MiB
CONFLICT_RETRIES = 8
RETRY_INITIAL, RETRY_MAX = 1.0, 30.0
SEND_TIMEOUT = 5.0

Allowed = Callable[[User, str, str, str | None], Awaitable[bool]]


def _always() -> bool:
    return True


def delivered_at(text: str) -> float | None:
    """The delivery time (epoch seconds) of a tombstone, None for an entry still to send."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    value = data.get("delivered") if isinstance(data, dict) else None
    return float(value) if isinstance(value, int | float) else None


def refused(exc: ApiException, verb: str, name: str, namespace: str) -> TmfError:
    """The facade's own write to its ConfigMap refused: 503 naming the permission or the cause."""
    if exc.status == 403:
        log.warning("tmf: may not %s ConfigMap %s/%s: %s", verb, namespace, name, exc.reason)
        return TmfError(
            503,
            f"the facade may not {verb} configmaps in namespace {namespace} (ConfigMap {name}; its own RBAC);"
            " ask the operator",
        )
    return TmfError(503, f"the Kubernetes API answered {exc.status} to {verb} ConfigMap {namespace}/{name}")


def state_namespace() -> str:
    """Where the hubs' ConfigMaps live: the pod's namespace, else default."""
    return os.environ.get("POD_NAMESPACE") or "default"


def _owner(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "uid": user.uid,
        "groups": list(user.groups),
        "extra": {k: list(v) for k, v in user.extra},
    }


def owner_user(owner: Mapping[str, Any]) -> User:
    return User(
        owner.get("username", ""),
        owner.get("uid", ""),
        tuple(owner.get("groups") or ()),
        tuple(sorted((k, tuple(v)) for k, v in (owner.get("extra") or {}).items())),
    )


@dataclass
class Entry:
    """One event for one listener, as kept in the outbox."""

    key: str  # <event id>.<listener id>: unique, and a valid ConfigMap key
    listener: str
    url: str
    payload: dict[str, Any]
    attempts: int = 0
    due: float = 0.0  # monotonic time of the next attempt (not persisted: a restart sends at once)

    def dump(self) -> str:
        return json.dumps(
            {"listener": self.listener, "url": self.url, "payload": self.payload, "attempts": self.attempts}
        )

    @classmethod
    def load(cls, key: str, text: str) -> Entry | None:
        try:
            data = json.loads(text)
            return cls(
                key, str(data["listener"]), str(data["url"]), dict(data["payload"]), int(data.get("attempts", 0))
            )
        except (ValueError, KeyError, TypeError):
            log.warning("tmf: outbox entry %s unreadable; dropped", key)
            return None


@dataclass
class Hubs:
    api_client: kubernetes.client.ApiClient
    allowed: Allowed
    known: Mapping[str, tuple[frozenset[str], frozenset[str]]]  # api -> (event types, attributes)
    namespace: str = field(default_factory=state_namespace)
    delivers: Callable[[], bool] = _always  # whether this replica sends (the others only queue)

    def __post_init__(self) -> None:
        self.core = kubernetes.client.CoreV1Api(self.api_client)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tmf-hubs")
        self.listeners: dict[str, Listener] = {}
        self.pending: dict[str, Entry] = {}  # persisted entries, not yet acknowledged
        self._unsaved: dict[str, Entry] = {}
        self._removed: set[str] = set()
        # The flush and the follow loop both sync the outbox; two syncs at once would let the older one's
        # stale read put an entry the other just tombstoned back into `pending`: sent twice.
        self._outbox_lock = asyncio.Lock()
        self._events: asyncio.Queue[Event] = asyncio.Queue()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None
        self._hub_texts: dict[str, str] = {}
        self._followed_at = 0.0
        self.delivered = 0

    async def _core(self, fn: Callable[..., Any], *args: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: fn(*args))

    # -- start and stop ---------------------------------------------------------------------------

    async def start(self) -> None:
        for name in (HUBS_CONFIGMAP, OUTBOX_CONFIGMAP):
            with contextlib.suppress(ApiException):  # 409: it exists already
                await self._core(self.core.create_namespaced_config_map, self.namespace, {"metadata": {"name": name}})
        await self.read_listeners()
        if self.delivers():
            await self._sync_outbox({})
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=SEND_TIMEOUT))
        self._tasks = [
            asyncio.create_task(self._route(), name="tmf-hub-route"),
            asyncio.create_task(self._flush_loop(), name="tmf-hub-flush"),
            asyncio.create_task(self._deliver_loop(), name="tmf-hub-deliver"),
            asyncio.create_task(self._follow_loop(), name="tmf-hub-follow"),
        ]
        if self.pending:
            log.info("tmf: %d undelivered events from before the start; sending them", len(self.pending))
            self._wake.set()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(Exception):
            await self._flush()
        if self._session is not None:
            await self._session.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- registrations ------------------------------------------------------------------------------

    def _listener(self, key: str, text: str) -> Listener | None:
        try:
            data = json.loads(text)
            types, attributes = self.known[data["api"]]
            wanted, filters = listener_filters(data.get("query", ""), types, attributes)
            return Listener(key, data["api"], data["callback"], data.get("query", ""), wanted, filters, data["owner"])
        except Exception:
            log.warning("tmf: hub registration %s unreadable; ignored", key)
            return None

    async def read_listeners(self) -> None:
        """The registrations as the ConfigMap holds them now (whichever replica wrote them)."""
        try:
            hubs = await self._core(self.core.read_namespaced_config_map, HUBS_CONFIGMAP, self.namespace)
        except ApiException as exc:
            raise refused(exc, "get", HUBS_CONFIGMAP, self.namespace) from None
        texts = dict(hubs.data or {})
        listeners: dict[str, Listener] = {}
        for key, text in texts.items():
            known = self.listeners.get(key)
            if known is not None and self._hub_texts.get(key) == text:
                listeners[key] = known
            elif (listener := self._listener(key, text)) is not None:
                listeners[key] = listener
        self.listeners, self._hub_texts = listeners, texts

    async def listener(self, key: str) -> Listener | None:
        await self.read_listeners()
        return self.listeners.get(key)

    async def _patch_hubs(self, data: dict[str, str | None]) -> None:
        try:
            await self._core(self.core.patch_namespaced_config_map, HUBS_CONFIGMAP, self.namespace, {"data": data})
        except ApiException as exc:
            raise refused(exc, "patch", HUBS_CONFIGMAP, self.namespace) from None

    async def register(self, api: str, callback: str, query: str, user: User) -> Listener:
        await self.read_listeners()
        if len(self.listeners) >= MAX_LISTENERS:
            raise TmfError(409, f"hub: {MAX_LISTENERS} listeners registered already")
        key = uuid.uuid4().hex
        text = json.dumps({"api": api, "callback": callback, "query": query, "owner": _owner(user)})
        await self._patch_hubs({key: text})
        listener = self._listener(key, text)
        assert listener is not None  # parse_listener checked the query already
        self.listeners[key] = listener
        self._hub_texts[key] = text
        return listener

    async def unregister(self, key: str) -> None:
        await self._patch_hubs({key: None})
        self.listeners.pop(key, None)
        self._hub_texts.pop(key, None)

    # -- events -> outbox -> listeners ------------------------------------------------------------

    def publish(self, events: list[Event]) -> None:
        """From the cache's change callback (on the loop): route later, with the owners' reviews."""
        for event in events:
            self._events.put_nowait(event)

    async def _route(self) -> None:
        while True:
            batch = [await self._events.get()]
            while not self._events.empty():
                batch.append(self._events.get_nowait())
            try:  # registrations as of now: one acknowledged on another replica before this change counts
                await self.read_listeners()
            except Exception as exc:
                log.warning("tmf: re-reading the registrations failed (%s); routing with those known", exc)
            for event in batch:
                await self._route_one(event)

    async def _route_one(self, event: Event) -> None:
        for listener in list(self.listeners.values()):
            if not wanted_by(listener, event):
                continue
            plural = _PLURAL_OF.get(event.resource_type)
            try:
                if plural and not await self.allowed(owner_user(listener.owner), "get", plural, event.namespace):
                    continue
            except Exception as exc:  # a review that cannot be made: not delivered, logged
                log.warning("tmf: could not check %s for listener %s: %s", event.id, listener.id, exc)
                continue
            if len(self.pending) + len(self._unsaved) >= MAX_PENDING:
                log.error("tmf: outbox full (%d); event %s for %s dropped", MAX_PENDING, event.id, listener.id)
                continue
            name = event.event_type[0].lower() + event.event_type[1:]
            url = f"{listener.callback.rstrip('/')}/listener/{name}"
            key = f"{event.id}.{listener.id}"
            self._unsaved[key] = Entry(key, listener.id, url, event.payload())

    async def _flush(self) -> None:
        if self._unsaved or self._removed:
            await self._sync_outbox(dict(self._unsaved))

    async def _sync_outbox(self, adding: dict[str, Entry]) -> None:
        async with self._outbox_lock:
            await self._sync_outbox_now(adding)

    async def _sync_outbox_now(self, adding: dict[str, Entry]) -> None:
        """One conditional patch of the outbox: the entries queued here that it lacks, tombstones for
        those delivered here, and (when delivering) old tombstones removed; then, when delivering, the
        entries to send are whatever it holds undelivered, whoever queued them."""
        delivering = self.delivers()
        removed = set(self._removed)
        for _ in range(CONFLICT_RETRIES):
            outbox = await self._core(self.core.read_namespaced_config_map, OUTBOX_CONFIGMAP, self.namespace)
            held: dict[str, str] = dict(outbox.data or {})
            now = time.time()
            data: dict[str, str | None] = {k: e.dump() for k, e in adding.items() if k not in held}
            for key in removed:
                if key in held and delivered_at(held[key]) is None:
                    data[key] = json.dumps({"delivered": now})
            if delivering:
                data.update({key: None for key in _expired(held, now)})
            if data:
                patch = {"metadata": {"resourceVersion": outbox.metadata.resource_version}, "data": data}
                try:
                    await self._core(self.core.patch_namespaced_config_map, OUTBOX_CONFIGMAP, self.namespace, patch)
                except ApiException as exc:
                    if exc.status == 409:  # another replica wrote meanwhile: judge against its version
                        continue
                    raise
            break
        else:
            raise RuntimeError(f"the outbox changed under {CONFLICT_RETRIES} writes in a row")
        for key in adding:
            self._unsaved.pop(key, None)
        self._removed -= removed
        held.update({k: v for k, v in data.items() if v is not None})
        for key in (k for k, v in data.items() if v is None):
            held.pop(key, None)
        self._followed_at = time.monotonic()
        if not delivering:
            self.pending.clear()
            return
        pending: dict[str, Entry] = {}
        for key, text in held.items():
            if delivered_at(text) is not None or key in self._removed:
                continue
            entry = self.pending.get(key) or adding.get(key) or Entry.load(key, text)
            if entry is not None:
                pending[key] = entry
        self.pending = pending
        self._wake.set()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            try:
                await self._flush()
            except Exception as exc:
                log.warning("tmf: writing the outbox failed (%s); retrying", exc)

    async def _follow_loop(self) -> None:
        """Registrations made on other replicas; for the deliverer, entries other replicas queued."""
        while True:
            await asyncio.sleep(FOLLOW_SECONDS)
            try:
                await self.read_listeners()
                if self.delivers() and time.monotonic() - self._followed_at >= FOLLOW_SECONDS:
                    await self._sync_outbox({})
                elif not self.delivers():
                    self.pending.clear()
            except Exception as exc:
                log.warning("tmf: re-reading the hubs' ConfigMaps failed (%s); again in %.0f s", exc, FOLLOW_SECONDS)

    async def _deliver_loop(self) -> None:
        while True:
            self._wake.clear()
            now = time.monotonic()
            due = [e for e in self.pending.values() if e.due <= now] if self.delivers() else []
            if any(e.listener not in self.listeners for e in due):  # registered on another replica just now?
                with contextlib.suppress(Exception):
                    await self.read_listeners()
            await asyncio.gather(*(self._send(e) for e in due[:64]))
            soonest = min((e.due for e in self.pending.values()), default=now + RETRY_MAX)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.05, soonest - time.monotonic()))

    async def _send(self, entry: Entry) -> None:
        assert self._session is not None
        if entry.listener not in self.listeners:  # unregistered since: nobody to tell
            self._done(entry)
            return
        try:
            async with self._session.post(entry.url, json=entry.payload) as response:
                ok = 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError) as exc:
            ok = False
            log.info("tmf: delivering %s to %s failed: %s", entry.key, entry.url, exc)
        if ok:
            self.delivered += 1
            self._done(entry)
        else:
            entry.attempts += 1
            entry.due = time.monotonic() + min(RETRY_MAX, RETRY_INITIAL * 2 ** min(entry.attempts - 1, 10))

    def _done(self, entry: Entry) -> None:
        self.pending.pop(entry.key, None)
        self._removed.add(entry.key)


def _expired(held: Mapping[str, str], now: float) -> list[str]:
    """The tombstones to remove: older than TOMBSTONE_SECONDS, and the oldest beyond MAX_TOMBSTONES."""
    stones = sorted((at, key) for key, text in held.items() if (at := delivered_at(text)) is not None)
    beyond = max(0, len(stones) - MAX_TOMBSTONES)
    return [key for i, (at, key) in enumerate(stones) if i < beyond or now - at > TOMBSTONE_SECONDS]


_PLURAL_OF = {
    "productOffering": "productofferings",
    "productOrder": "subscriptions",
    "product": "subscriptions",
    "service": "networkservices",
    "billingAccount": "billingaccounts",
    "customerBill": "invoices",
    "usage": "subscriptions",
}
