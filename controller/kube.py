"""The controller's own Kubernetes writes: status, finalizers, children, Events, Secrets.

Kopf watches and dispatches; writes that happen outside a Kopf handler (a device
reconcile finishing, drift found by a subscription) go through here. The official
client is synchronous, so calls run on a small dedicated pool, never on the loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import threading
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import kubernetes
import orjson
from kubernetes.client import ApiException

from . import metrics
from .api import GROUP, VERSION
from .workqueue import Slots

FINALIZER = f"{GROUP}/cleanup"
MANAGER = "telco-intent-controller"
WATCH_SECONDS = 300  # the server ends a watch after about this long; it is resumed, not re-listed


class Conflict(Exception):
    """The object changed since we read it (resourceVersion mismatch): re-read and retry."""


class NotFound(Exception):
    """The object is gone."""


@dataclass(frozen=True, slots=True)
class Ref:
    """Which object: kind plural, namespace (None for cluster-scoped) and name. Slotted: the status
    writer keys its maps by it, one or more per object."""

    plural: str
    name: str
    namespace: str | None = None

    def __str__(self) -> str:
        return f"{self.plural}/{self.namespace + '/' if self.namespace else ''}{self.name}"


class Kube:
    def __init__(self, api_client: kubernetes.client.ApiClient | None = None, workers: int = 8) -> None:
        if api_client is None:
            try:
                kubernetes.config.load_incluster_config()
            except kubernetes.config.ConfigException:
                kubernetes.config.load_kube_config()
            api_client = kubernetes.client.ApiClient()
        self._client = api_client
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        # No CoreV1Api: importing it builds ~100 generated pydantic models, over a second of CPU before a
        # restarted controller's first device pass (docs/reliability.md, "Start-up time"). The two core/v1
        # calls (Secrets, Events) go by path with JSON bodies (`_core`).
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kube")
        # The calls wait here rather than in the pool's FIFO queue, so an urgent one (a Secret read that
        # a device's session waits for) is let in before a backlog of status writes. Measured in a
        # failover: a new owner's Secret reads queued 3-4 s behind 30-60 status and finalizer writes.
        self._slots = Slots(workers)
        self.writes = 0  # API writes issued, for metrics and benchmarks

    def _count(self, resource: str) -> None:
        self.writes += 1
        metrics.KUBE_WRITES.labels(resource).inc()

    async def _run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await self._call(fn, args, kwargs, urgent=False)

    async def _call(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any], urgent: bool) -> Any:
        loop = asyncio.get_running_loop()
        await self._slots.acquire(urgent)
        try:
            return await loop.run_in_executor(self._pool, lambda: fn(*args, **kwargs))
        except ApiException as exc:
            if exc.status == 409:
                raise Conflict(str(exc.reason)) from None
            if exc.status == 404:
                raise NotFound(str(exc.reason)) from None
            raise
        finally:
            self._slots.release()

    async def get(self, ref: Ref) -> dict[str, Any]:
        if ref.namespace is None:
            return dict(await self._run(self.custom.get_cluster_custom_object, GROUP, VERSION, ref.plural, ref.name))
        return dict(
            await self._run(
                self.custom.get_namespaced_custom_object, GROUP, VERSION, ref.namespace, ref.plural, ref.name
            )
        )

    async def list_all(self, plural: str, timeout: float | None = None, urgent: bool = False) -> list[dict[str, Any]]:
        """Every object of a kind in the cluster (all namespaces); `timeout` bounds the call in seconds."""
        extra = {} if timeout is None else {"_request_timeout": timeout}
        result = await self._call(self.custom.list_cluster_custom_object, (GROUP, VERSION, plural), extra, urgent)
        return [dict(item) for item in result.get("items", [])]

    async def list_in(self, plural: str, namespace: str, timeout: float | None = None) -> list[dict[str, Any]]:
        """Every object of a namespaced kind in `namespace`; `timeout` bounds the call in seconds."""
        extra = {} if timeout is None else {"_request_timeout": timeout}
        fn = self.custom.list_namespaced_custom_object
        result = await self._run(fn, GROUP, VERSION, namespace, plural, **extra)
        return [dict(item) for item in result.get("items", [])]

    async def list_page(
        self, plural: str, namespace: str | None, timeout: float, limit: int | None = None
    ) -> tuple[list[dict[str, Any]], str]:
        """A consistent list (`limit` items at most: limit=1 only reads the collection's current
        resourceVersion) and that resourceVersion; JSON decoded as it is, without the client's model pass."""
        extra: dict[str, Any] = {"_request_timeout": timeout, "_preload_content": False}
        if limit is not None:
            extra["limit"] = limit
        if namespace is None:
            response = await self._run(self.custom.list_cluster_custom_object, GROUP, VERSION, plural, **extra)
        else:
            response = await self._run(
                self.custom.list_namespaced_custom_object, GROUP, VERSION, namespace, plural, **extra
            )
        # orjson: a list of a whole kind is the largest thing the controller decodes (the admission cache's
        # lists were a quarter of its CPU in a profiled burst), and it decodes 1.7 times as fast as json.
        body = orjson.loads(response.data)
        return list(body.get("items") or []), str((body.get("metadata") or {}).get("resourceVersion") or "")

    async def watch(
        self, plural: str, namespace: str | None, resource_version: str, timeout: float, idle: float = 90.0
    ) -> AsyncIterator[dict[str, Any]]:
        """The events of a custom resource after `resource_version`, with bookmarks, read on a thread of
        its own; Gone on 410 (as an HTTP status or an ERROR event), any other failure raised as it is.
        The server ends it after about WATCH_SECONDS; a read silent for `idle` seconds ends it with an
        error (bookmarks come about once a minute)."""
        extra: dict[str, Any] = {
            "watch": True,
            "resource_version": resource_version,
            "allow_watch_bookmarks": True,
            "timeout_seconds": WATCH_SECONDS,
            "_preload_content": False,
            "_request_timeout": (timeout, idle),
        }

        def open_stream() -> Any:
            if namespace is None:
                return self.custom.list_cluster_custom_object(GROUP, VERSION, plural, **extra)
            return self.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural, **extra)

        async with contextlib.aclosing(watch_stream(open_stream, plural)) as events:  # closed with this one
            async for event in events:
                yield event

    async def patch_status(
        self, ref: Ref, status: dict[str, Any], resource_version: str | None = None
    ) -> dict[str, Any]:
        """Merge-patch /status; with `resource_version` the write fails with Conflict if the object moved."""
        body: dict[str, Any] = {"status": status}
        if resource_version:
            body["metadata"] = {"resourceVersion": resource_version}
        self._count(f"{ref.plural}/status")
        if ref.namespace is None:
            cluster = self.custom.patch_cluster_custom_object_status
            return dict(await self._run(cluster, GROUP, VERSION, ref.plural, ref.name, body))
        namespaced = self.custom.patch_namespaced_custom_object_status
        return dict(await self._run(namespaced, GROUP, VERSION, ref.namespace, ref.plural, ref.name, body))

    async def patch(self, ref: Ref, body: dict[str, Any], urgent: bool = False) -> dict[str, Any]:
        self._count(ref.plural)
        if ref.namespace is None:
            cluster = self.custom.patch_cluster_custom_object
            return dict(await self._call(cluster, (GROUP, VERSION, ref.plural, ref.name, body), {}, urgent))
        namespaced = self.custom.patch_namespaced_custom_object
        args = (GROUP, VERSION, ref.namespace, ref.plural, ref.name, body)
        return dict(await self._call(namespaced, args, {}, urgent))

    async def set_finalizers(
        self, ref: Ref, finalizers: list[str], resource_version: str, urgent: bool = False
    ) -> dict[str, Any]:
        body = {"metadata": {"finalizers": finalizers, "resourceVersion": resource_version}}
        return await self.patch(ref, body, urgent)

    async def create(self, body: dict[str, Any], plural: str, namespace: str | None) -> dict[str, Any]:
        self._count(plural)
        if namespace is None:
            return dict(await self._run(self.custom.create_cluster_custom_object, GROUP, VERSION, plural, body))
        fn = self.custom.create_namespaced_custom_object
        return dict(await self._run(fn, GROUP, VERSION, namespace, plural, body))

    async def delete(self, ref: Ref) -> None:
        self._count(ref.plural)
        try:
            if ref.namespace is None:
                await self._run(self.custom.delete_cluster_custom_object, GROUP, VERSION, ref.plural, ref.name)
            else:
                fn = self.custom.delete_namespaced_custom_object
                await self._run(fn, GROUP, VERSION, ref.namespace, ref.plural, ref.name)
        except NotFound:
            pass

    def _core(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """A core/v1 call by `path` (under /api/v1) with the client's credentials; the JSON answer. A status
        outside 2xx raises the ApiException the generated API would (NotFoundException for 404, ...)."""
        client = self._client
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = client.param_serialize(
            method, "/api/v1" + path, header_params=headers, body=body, auth_settings=["BearerToken"]
        )
        response = client.call_api(*request)
        data = response.read()
        if not 200 <= response.status <= 299:
            text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
            raise ApiException.from_response(http_resp=response, body=text, data=None)
        return json.loads(data) if data else {}

    async def read_secret(self, namespace: str, name: str) -> dict[str, bytes]:
        path = f"/namespaces/{quote(namespace, safe='')}/secrets/{quote(name, safe='')}"
        # Urgent: a device's session (its first Set after a take-over) waits for it; a status write can wait.
        secret = await self._call(self._core, ("GET", path), {}, urgent=True)
        return {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}

    async def event(self, obj: dict[str, Any], type_: str, reason: str, message: str) -> None:
        """Post a core/v1 Event about `obj` (what `kubectl describe` shows). Best effort."""
        meta = obj["metadata"]
        # Events about cluster-scoped objects go to the controller's own namespace.
        namespace = meta.get("namespace") or os.environ.get("POD_NAMESPACE", "default")
        now = dt.datetime.now(dt.UTC)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        involved = {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta["name"],
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        }
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:10]}", "namespace": namespace},
            "involvedObject": {k: v for k, v in involved.items() if v is not None},
            "type": type_,
            "reason": reason,
            "message": message[:1024],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "source": {"component": MANAGER},
            "reportingComponent": MANAGER,
        }
        self._count("events")
        with contextlib.suppress(ApiException):  # an Event is best effort, never worth a retry
            await self._run(self._core, "POST", f"/namespaces/{quote(namespace, safe='')}/events", body)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._client.close()


def _close_quietly(resp: Any) -> None:
    with contextlib.suppress(Exception):
        resp.close()


async def watch_stream(open_stream: Callable[[], Any], what: str) -> AsyncGenerator[dict[str, Any], None]:
    """The events of a watch that `open_stream` opens (a list call with watch=True and
    _preload_content=False), read line by line on a thread of its own so the event loop never blocks on
    the socket; Gone on 410 (as an HTTP status or an ERROR event), any other failure raised as it is."""
    from kubernetes.watch.watch import iter_resp_lines

    from .sharding import Gone

    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[Any] = asyncio.Queue()
    end = object()
    opened: list[Any] = []

    def put(item: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is reading
            loop.call_soon_threadsafe(lines.put_nowait, item)

    def read() -> None:
        try:
            resp = open_stream()
            opened.append(resp)
            for line in iter_resp_lines(resp):
                put(line)
        except BaseException as exc:  # handed to the reader, which raises it
            put(exc)
        finally:
            put(end)

    threading.Thread(target=read, name=f"watch-{what}", daemon=True).start()
    try:
        while (item := await lines.get()) is not end:
            if isinstance(item, ApiException) and item.status == 410:
                raise Gone(str(item.reason)) from None
            if isinstance(item, BaseException):
                raise item
            event = orjson.loads(item)
            if event.get("type") == "ERROR":
                status = event.get("object") or {}
                if status.get("code") == 410:
                    raise Gone(str(status.get("message") or "410 Gone"))
                raise RuntimeError(f"{what} watch: {status.get('message') or status}")
            yield event
    finally:
        # Closing unblocks the reading thread, which then ends; on a thread of its own, since closing
        # a TLS connection another thread reads from can block the event loop until that read returns.
        for resp in opened:
            threading.Thread(target=_close_quietly, args=(resp,), name=f"unwatch-{what}", daemon=True).start()


_LeaseItems = list[dict[str, Any]]  # a name of its own: inside KubeLeases, `list` is the method


class KubeLeases:
    """The shard Leases of one namespace (controller/sharding.py), as JSON dicts. A pool of its own:
    a renew must never queue behind a backlog of status writes; every call is bounded by `timeout`.
    The watch reads on a thread of its own; a read silent for `watch_idle` seconds ends it with an
    error (the replicas' renews alone make an event every few seconds)."""

    WATCH_SECONDS = 300  # the server ends a watch after about this long; it is resumed, not re-listed

    def __init__(self, kube: Kube, namespace: str, group: str, timeout: float, watch_idle: float = 30.0) -> None:
        from .sharding import GROUP_LABEL

        self._api = kubernetes.client.CoordinationV1Api(kube._client)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lease")
        self._kube = kube
        self.namespace = namespace
        self._selector = f"{GROUP_LABEL}={group}"
        self._timeout = timeout
        self._watch_idle = watch_idle

    async def _call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, lambda: self._call_blocking(fn, *args, **kwargs))

    def _call_blocking(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        from .sharding import Conflict as LeaseConflict

        try:
            response = fn(*args, _request_timeout=self._timeout, _preload_content=False, **kwargs)
        except ApiException as exc:
            if exc.status in (404, 409):
                raise LeaseConflict(f"{exc.status} {exc.reason}") from None
            raise
        data = response.data
        return json.loads(data) if data else {}

    async def list(self) -> list[dict[str, Any]]:
        return (await self.snapshot())[0]

    async def snapshot(self) -> tuple[_LeaseItems, str]:
        result = await self._call(self._api.list_namespaced_lease, self.namespace, label_selector=self._selector)
        return list(result.get("items") or []), str((result.get("metadata") or {}).get("resourceVersion") or "")

    async def watch(self, resource_version: str) -> AsyncIterator[dict[str, Any]]:
        """The Lease events after `resource_version`, with bookmarks; Gone on 410 (as an HTTP status or
        an ERROR event), any other failure raised as it is."""

        def open_stream() -> Any:
            return self._api.list_namespaced_lease(
                self.namespace,
                label_selector=self._selector,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=self.WATCH_SECONDS,
                _preload_content=False,
                _request_timeout=(self._timeout, self._watch_idle),
            )

        async with contextlib.aclosing(watch_stream(open_stream, "leases")) as events:  # closed with this one
            async for event in events:
                yield event

    async def create(self, body: dict[str, Any]) -> dict[str, Any]:
        self._kube._count("leases")
        return dict(await self._call(self._api.create_namespaced_lease, self.namespace, body))

    async def replace(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """A merge patch carrying the resourceVersion read: refused (409) if the Lease changed since, as an
        update would be, with only the `patch` verb granted."""
        self._kube._count("leases")
        return dict(await self._call(self._api.patch_namespaced_lease, name, self.namespace, body))

    def replace_blocking(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        """replace() on the calling thread: the membership renewer's own (controller/sharding.py), which
        must not wait for the event loop, however starved it is."""
        self._kube._count("leases")
        return dict(self._call_blocking(self._api.patch_namespaced_lease, name, self.namespace, body))

    async def delete(self, name: str) -> None:
        self._kube._count("leases")
        await self._call(self._api.delete_namespaced_lease, name, self.namespace)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
