"""A watch cache of the custom resources the facade serves: the cluster is the only store.

One thread per kind lists, then watches from the list's resourceVersion (relisting when the API server
says the version is gone); every change is applied on the event loop, so readers never lock. Objects are
kept without managedFields. `on_change(plural, old, new)` (old None: added; new None: deleted) feeds the
event hubs.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

import kubernetes
from kubernetes.client import ApiException

from ..api import GROUP, VERSION

log = logging.getLogger(__name__)
Key = tuple[str | None, str]
Obj = dict[str, Any]
ChangeCallback = Callable[[str, Obj | None, Obj | None], None]
WATCH_SECONDS = 60  # a watch is renewed this often (from the last version seen)
RETRY_SECONDS = 2.0


def _lean(obj: Obj) -> Obj:
    meta = obj.get("metadata") or {}
    return {**obj, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}


def _key(obj: Obj) -> Key:
    meta = obj["metadata"]
    return (meta.get("namespace"), meta["name"])


class WatchCache:
    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        plurals: Iterable[str],
        on_change: ChangeCallback | None = None,
    ) -> None:
        self._custom = kubernetes.client.CustomObjectsApi(api_client)
        self.plurals = tuple(dict.fromkeys(plurals))
        self.objects: dict[str, dict[Key, Obj]] = {p: {} for p in self.plurals}
        self._synced: dict[str, asyncio.Event] = {}
        self._on_change = on_change
        self._stop = threading.Event()
        self._watches: list[kubernetes.watch.Watch] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        for plural in self.plurals:
            self._synced[plural] = asyncio.Event()
            threading.Thread(target=self._run, args=(plural,), name=f"tmf-watch-{plural}", daemon=True).start()

    async def synced(self, timeout: float = 30.0) -> None:
        """Returns once every kind has been listed (a facade answers nothing before)."""
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in self._synced.values())), timeout)

    def is_synced(self, plural: str | None = None) -> bool:
        """Whether every kind (or `plural`) has been listed."""
        if plural is not None:
            return plural in self._synced and self._synced[plural].is_set()
        return bool(self._synced) and all(e.is_set() for e in self._synced.values())

    def stop(self) -> None:
        self._stop.set()
        for w in list(self._watches):
            w.stop()

    def get(self, plural: str, namespace: str | None, name: str) -> Obj | None:
        return self.objects[plural].get((namespace, name))

    def namespaces(self) -> set[str]:
        """Every namespace that holds an object of any kind cached (the customers the facade knows)."""
        return {ns for store in self.objects.values() for ns, _ in store if ns is not None}

    def items(self, plural: str, namespaces: set[str] | None = None) -> list[Obj]:
        """Every cached object of the kind, or those in `namespaces`."""
        objects = self.objects[plural]
        if namespaces is None:
            return list(objects.values())
        return [obj for (ns, _), obj in objects.items() if ns in namespaces]

    def put(self, plural: str, obj: Obj) -> None:
        """Read-your-writes: an object the facade just wrote, ahead of its watch event (a newer one wins)."""
        self._apply(plural, "MODIFIED", _lean(obj))

    # -- on the loop ----------------------------------------------------------------------------

    def _apply(self, plural: str, kind: str, obj: Obj) -> None:
        store = self.objects[plural]
        key = _key(obj)
        old = store.get(key)
        if kind == "DELETED":
            if old is None:
                return
            del store[key]
            new = None
        else:
            if old is not None and _version(old) > _version(obj):
                return  # an older version arriving after a newer one the facade put
            if old is not None and old.get("metadata", {}).get("resourceVersion") == obj["metadata"].get(
                "resourceVersion"
            ):
                return
            store[key] = obj
            new = obj
        if self._on_change is not None:
            try:
                self._on_change(plural, old, new)
            except Exception:  # a hub's bug must not stop the cache
                log.exception("tmf: change callback failed for %s", plural)

    def _replace(self, plural: str, items: list[Obj]) -> None:
        store = self.objects[plural]
        fresh = {_key(obj): obj for obj in items}
        for key in [k for k in store if k not in fresh]:
            self._apply(plural, "DELETED", store[key])
        for obj in items:
            self._apply(plural, "MODIFIED", obj)
        self._synced[plural].set()

    # -- in the watch thread --------------------------------------------------------------------

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: we are shutting down
            self._stop.set()

    def _run(self, plural: str) -> None:
        while not self._stop.is_set():
            try:
                listed = dict(self._custom.list_cluster_custom_object(GROUP, VERSION, plural))  # type: ignore[call-overload]
                version = listed["metadata"]["resourceVersion"]
                self._post(self._replace, plural, [_lean(o) for o in listed.get("items", [])])
                self._watch(plural, version)
            except Exception as exc:
                if self._stop.is_set():
                    return
                log.warning("tmf: watching %s failed (%s); relisting in %.0f s", plural, exc, RETRY_SECONDS)
                self._stop.wait(RETRY_SECONDS)

    def _watch(self, plural: str, version: str) -> None:
        """Watch from `version` until the API server says it is too old (then return to relist)."""
        while not self._stop.is_set():
            w = kubernetes.watch.Watch()
            self._watches.append(w)
            try:
                for event in w.stream(
                    self._custom.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    plural,
                    resource_version=version,
                    timeout_seconds=WATCH_SECONDS,
                    allow_watch_bookmarks=True,
                ):
                    kind = event["type"]
                    obj = event["object"]
                    if kind == "ERROR":
                        if obj.get("code") == 410:
                            return
                        raise RuntimeError(f"watch error: {obj.get('message')}")
                    version = obj["metadata"]["resourceVersion"]
                    if kind != "BOOKMARK":
                        self._post(self._apply, plural, kind, _lean(obj))
            except ApiException as exc:
                if exc.status == 410:
                    return
                raise
            finally:
                self._watches.remove(w)


def _version(obj: Obj) -> int:
    """resourceVersion as a number: etcd's revisions increase (the API treats them as opaque, but a
    facade that put its own write ahead of the watch needs to drop the older event behind it)."""
    text = str(obj.get("metadata", {}).get("resourceVersion") or "0")
    return int(text) if text.isdigit() else 0
