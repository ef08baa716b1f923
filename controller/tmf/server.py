"""The TM Forum Open API facade over HTTPS (aiohttp): routes, authorization and the Kubernetes writes.

Reads come from the watch cache (controller/tmf/cache.py), rendered by the pure per-API modules; writes
(TMF622 productOrder) go through the Kubernetes API, so admission webhooks, RBAC and GitOps see them
like any kubectl apply. Every refusal is a TMF630 Error body with a 4xx status naming the field.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import kubernetes
from aiohttp import web
from kubernetes.client import ApiException

from ..api import GROUP, VERSION
from ..times import rfc3339
from . import account, bill, catalog, events, inventory, ordering, usage
from .auth import Authorizer, User
from .cache import WatchCache
from .conventions import TmfError, error_body, page, parse_query, select
from .hubs import Hubs
from .resources import Collection, Resource, parse_id
from .tls import CertReloader, server_context

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024  # a productOrder is a few KB; anything larger is refused before it is parsed
JSON = "application/json"
READ_COLLECTIONS: tuple[Collection, ...] = (
    catalog.PRODUCT_OFFERING,
    inventory.PRODUCT,
    inventory.SERVICE,
    account.BILLING_ACCOUNT,
    bill.CUSTOMER_BILL,
    bill.APPLIED_RATE,
    ordering.PRODUCT_ORDER,
    usage.USAGE,
)
Clock = Callable[[], dt.datetime]
# Each API's hub: the kind whose RBAC decides who may register (verb watch), its event types and the
# attributes a listener's query may filter on.
APIS: dict[str, tuple[Collection, ...]] = {}
for _c in READ_COLLECTIONS:
    APIS.setdefault(_c.api, tuple(c for c in READ_COLLECTIONS if c.api == _c.api))
BASES = {cs[0].api: cs[0].base for cs in APIS.values()}


def _known(api: str) -> tuple[frozenset[str], frozenset[str]]:
    collections = APIS[api]
    types = {events.event_type(c.name, k) for c in collections for k in events.KINDS_OF_EVENT.get(c.name, ())}
    return frozenset(types), frozenset().union(*(c.attributes for c in collections))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _reply(status: int, body: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=json.dumps(body, separators=(",", ":")), content_type=JSON, headers=headers)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def read_json(request: web.Request) -> Any:
    """The request's JSON body; 415, 413 or 400 naming what is wrong."""
    if request.content_type != JSON:
        raise TmfError(415, f"Content-Type: expected {JSON}, got {request.content_type or 'none'}")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise TmfError(413, f"body: larger than {MAX_BODY} bytes") from None
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError) as exc:
        raise TmfError(400, f"body: not valid JSON ({str(exc)[:120]})") from None
    except RecursionError:
        raise TmfError(400, "body: JSON nested too deeply") from None


@dataclass
class Facade:
    """The application state: the cache, the authorizer and a client for the writes."""

    api_client: kubernetes.client.ApiClient
    clock: Clock = _now
    delivers: Callable[[], bool] = lambda: True  # whether this replica sends the hubs' events (hubs.py)

    def __post_init__(self) -> None:
        plurals = {c.plural for c in READ_COLLECTIONS}
        self.cache = WatchCache(self.api_client, sorted(plurals), on_change=self._changed)
        self.auth = Authorizer(self.api_client)
        self.hubs = Hubs(self.api_client, self.auth.allowed, {api: _known(api) for api in APIS}, delivers=self.delivers)
        self.custom = kubernetes.client.CustomObjectsApi(self.api_client)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="tmf-write")
        # Rendered resources per (collection, object), reused while the object's resourceVersion holds.
        self._rendered: dict[tuple[str, str | None, str], tuple[str, list[Resource]]] = {}

    async def start(self) -> None:
        await self.hubs.start()
        self.cache.start()
        await self.cache.synced()

    async def close(self) -> None:
        self.cache.stop()
        await self.hubs.close()
        self.auth.close()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _changed(self, plural: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """A change the cache saw, as events for the hubs (not the first list: that is no change)."""
        current = new if new is not None else old
        assert current is not None
        meta = current["metadata"]
        if new is None:  # its renderings go with it
            for collection in READ_COLLECTIONS:
                if collection.plural == plural:
                    self._rendered.pop((collection.name, meta.get("namespace"), meta["name"]), None)
        if not self.cache.is_synced(plural):
            return
        version = str(meta.get("resourceVersion"))
        if new is None:  # deleted: the deletion is its own version
            version = f"deleted-{meta.get('uid')}"
        stamp = rfc3339(self.clock())
        for collection in READ_COLLECTIONS:
            if collection.plural != plural or collection.name not in events.KINDS_OF_EVENT:
                continue
            before = collection.render(old) if old is not None else []
            after = self.render(collection, new) if new is not None else []
            found = events.changes(collection, before, after, version, meta.get("namespace"), stamp)
            if found:
                self.hubs.publish(found)

    # -- reads ----------------------------------------------------------------------------------

    def render(self, collection: Collection, obj: Mapping[str, Any]) -> list[Resource]:
        meta = obj["metadata"]
        key = (collection.name, meta.get("namespace"), meta["name"])
        version = str(meta.get("resourceVersion"))
        cached = self._rendered.get(key)
        if cached is not None and cached[0] == version:
            return cached[1]
        resources = collection.render(obj)
        self._rendered[key] = (version, resources)
        return resources

    async def visible_namespaces(self, user: User, plural: str) -> set[str] | None:
        """None when the user may list the kind cluster-wide; else the namespaces they may list it in
        (403 when none). The candidates are the namespaces holding any kind served: a customer's
        namespace with an account but no product yet lists as empty, not as refused."""
        if await self.auth.allowed(user, "list", plural, None):
            return None
        namespaces = sorted(self.cache.namespaces())
        decisions = await asyncio.gather(*(self.auth.allowed(user, "list", plural, ns) for ns in namespaces))
        allowed = {ns for ns, ok in zip(namespaces, decisions, strict=True) if ok}
        if not allowed:
            raise TmfError(403, f"{user.username} may not list {plural}.{GROUP} in any namespace")
        return allowed

    async def list(self, request: web.Request, collection: Collection) -> web.Response:
        user = await self.auth.authenticate(request.headers.get("Authorization"))
        query = parse_query(request.query.items(), collection.attributes)
        if collection.namespaced:
            namespaces = await self.visible_namespaces(user, collection.plural)
        else:
            await self.auth.require(user, "list", collection.plural, None)
            namespaces = None
        resources = [r for obj in self.cache.items(collection.plural, namespaces) for r in self.render(collection, obj)]
        result = page(resources, query)
        return _reply(200, result.items, result.headers)

    async def retrieve(self, request: web.Request, collection: Collection) -> web.Response:
        user = await self.auth.authenticate(request.headers.get("Authorization"))
        query = parse_query(request.query.items(), collection.attributes, listing=False)
        resource_id = request.match_info["id"]
        part = collection in (bill.APPLIED_RATE, ordering.PRODUCT_ORDER, usage.USAGE)
        parsed = parse_id(resource_id, namespaced=collection.namespaced, part=part)
        if parsed is None:
            raise TmfError(404, f"{collection.name} {resource_id[:80]!r}: no such {collection.name}")
        await self.auth.require(user, "get", collection.plural, parsed.namespace)
        obj = self.cache.get(collection.plural, parsed.namespace, parsed.name)
        found = [r for r in self.render(collection, obj) if r["id"] == resource_id] if obj is not None else []
        if not found:
            raise TmfError(404, f"{collection.name} {resource_id[:80]!r}: no such {collection.name}")
        return _reply(200, select(found[0], query.fields))

    # -- writes (TMF622) ------------------------------------------------------------------------

    async def _kube(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        try:
            return dict(await loop.run_in_executor(self._pool, lambda: fn(*args)))
        except ApiException as exc:
            raise _kube_error(exc) from None

    async def create_order(self, request: web.Request) -> web.Response:
        user = await self.auth.authenticate(request.headers.get("Authorization"))
        order = ordering.parse_order(await read_json(request))
        plural = "subscriptions"
        if order.action == "add":
            await self.auth.require(user, "create", plural, order.namespace)
            name = order.subscription or f"po-{secrets.token_hex(5)}"
            body = ordering.new_subscription(order, name, self.clock())
            created = await self._kube(
                self.custom.create_namespaced_custom_object, GROUP, VERSION, order.namespace, plural, body
            )
            self.cache.put(plural, created)
            return _reply(201, ordering.product_orders(created)[-1])
        assert order.subscription is not None
        await self.auth.require(user, "patch", plural, order.namespace)
        try:
            changed = await self._patch_with_retry(
                order.namespace, order.subscription, lambda obj: ordering.change_patch(order, obj, self.clock())
            )
        except TmfError as exc:
            if exc.status == 404:  # a create names what it changes: a missing one makes it undoable, not absent
                raise TmfError(
                    422, f"productOrderItem[0].product.id: no such product {order.namespace}.{order.subscription}"
                ) from None
            raise
        return _reply(201, ordering.product_orders(changed)[-1])

    async def _patch_with_retry(
        self, namespace: str, name: str, patch_of: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> dict[str, Any]:
        """Read the Subscription, patch it checked against the version read; once more on a conflict."""
        for attempt in range(2):
            obj = await self._kube(
                self.custom.get_namespaced_custom_object, GROUP, VERSION, namespace, "subscriptions", name
            )
            try:
                patched = await self._kube(
                    self.custom.patch_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    namespace,
                    "subscriptions",
                    name,
                    patch_of(obj),
                )
            except TmfError as exc:
                if exc.status == 409 and "modified" in exc.message and attempt == 0:
                    continue
                raise
            self.cache.put("subscriptions", patched)
            return patched
        raise AssertionError("unreachable")

    async def cancel_order(self, request: web.Request) -> web.Response:
        user = await self.auth.authenticate(request.headers.get("Authorization"))
        cancel = ordering.parse_cancel(await read_json(request))
        await self.auth.require(user, "patch", "subscriptions", cancel.namespace)
        now = self.clock()
        try:
            patched = await self._patch_with_retry(
                cancel.namespace, cancel.subscription, lambda obj: ordering.cancel_patch(obj, cancel.n, now)
            )
        except TmfError as exc:
            if exc.status == 404:
                raise TmfError(422, "productOrder.id: no such productOrder") from None
            raise
        order = next(o for o in ordering.product_orders(patched) if o["id"].endswith(f"~{cancel.n}"))
        body = {
            "id": f"{order['id']}~cancel",
            "href": f"{ordering.BASE}/cancelProductOrder/{order['id']}~cancel",
            "state": "done",
            "effectiveCancellationDate": order.get("cancellationDate"),
            "productOrder": {"id": order["id"], "href": order["href"], "@referredType": "ProductOrder"},
            "@type": "CancelProductOrder",
        }
        if cancel.reason:
            body["cancellationReason"] = cancel.reason
        return _reply(201, body)

    # -- the application ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY, middlewares=[_errors])
        for collection in READ_COLLECTIONS:
            app.router.add_get(collection.path, _bind(self.list, collection), allow_head=False)
            app.router.add_get(f"{collection.path}/{{id}}", _bind(self.retrieve, collection), allow_head=False)
        for api, base in BASES.items():
            app.router.add_post(f"{base}/hub", _bind_api(self.register, api))
            app.router.add_delete(f"{base}/hub/{{id}}", _bind_api(self.unregister, api))
        app.router.add_post(ordering.PRODUCT_ORDER.path, self.create_order)
        app.router.add_post(f"{ordering.BASE}/cancelProductOrder", self.cancel_order)
        app.router.add_get("/healthz", self.healthz)
        return app

    # -- hubs ---------------------------------------------------------------------------------------

    async def register(self, request: web.Request, api: str) -> web.Response:
        """POST {api}/hub: anyone who may watch the API's kind somewhere registers; each event then goes
        only where they may read it."""
        user = await self.auth.authenticate(request.headers.get("Authorization"))
        plural = APIS[api][0].plural
        namespaced = APIS[api][0].namespaced
        if not await self.auth.allowed(user, "watch", plural, None):
            spots = sorted(self.cache.namespaces()) if namespaced else []
            decisions = await asyncio.gather(*(self.auth.allowed(user, "watch", plural, ns) for ns in spots))
            if not any(decisions):
                raise TmfError(403, f"{user.username} may not watch {plural}.{GROUP}")
        types, attributes = _known(api)
        callback, query = events.parse_listener(api, await read_json(request), types, attributes)
        listener = await self.hubs.register(api, callback, query, user)
        return _reply(201, {"id": listener.id, "callback": listener.callback, "query": listener.query})

    async def unregister(self, request: web.Request, api: str) -> web.Response:
        user = await self.auth.authenticate(request.headers.get("Authorization"))
        listener = await self.hubs.listener(request.match_info["id"])  # registered on any replica
        if listener is None or listener.api != api:
            raise TmfError(404, "hub: no such listener")
        if listener.owner.get("username") != user.username:
            raise TmfError(403, f"{user.username} did not register this listener")
        await self.hubs.unregister(listener.id)
        return web.Response(status=204)

    async def healthz(self, request: web.Request) -> web.Response:
        if not self.cache.is_synced():
            return _reply(503, error_body(503, "the watch cache has not listed every kind yet"))
        return web.Response(text="ok")


def _bind(
    handler: Callable[[web.Request, Collection], Awaitable[web.Response]], collection: Collection
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def bound(request: web.Request) -> web.Response:
        return await handler(request, collection)

    return bound


def _bind_api(
    handler: Callable[[web.Request, str], Awaitable[web.Response]], api: str
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def bound(request: web.Request) -> web.Response:
        return await handler(request, api)

    return bound


def _kube_error(exc: ApiException) -> TmfError:
    """What a refused Kubernetes write means to the TMF caller."""
    try:
        status = json.loads(exc.body or "{}")
    except ValueError:
        status = {}
    message = str(status.get("message") or exc.reason or "refused")[:2000]
    if exc.status == 404:
        return TmfError(404, f"product: no such product ({message})")
    if exc.status == 409:
        return TmfError(409, message)
    if exc.status in (400, 422):
        return TmfError(422, message)  # the CRD schema, CEL rules or the admission webhook refused it
    if exc.status == 403:
        log.warning("tmf: the facade's own identity may not write: %s", message)
        return TmfError(503, "the facade is not allowed to write this (its own RBAC); ask the operator")
    return TmfError(503, f"the Kubernetes API answered {exc.status}: {message}")


@web.middleware
async def _errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> Any:
    try:
        return await handler(request)
    except TmfError as exc:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _reply(exc.status, exc.body(), headers)
    except web.HTTPException as exc:  # the router's 404 and 405, aiohttp's 413
        if exc.status == 405:
            message = f"{request.method} is not served on {request.path[:200]}"
        elif exc.status == 404:
            message = f"{request.path[:200]}: no such resource in the APIs served here"
        else:
            message = exc.reason
        return _reply(exc.status, error_body(exc.status, message))
    except Exception:
        log.exception("tmf: %s %s failed", request.method, request.path[:200])
        return _reply(500, error_body(500, "the facade failed on this request; see its log"))


CERT_CHECK_SECONDS = 10.0


@dataclass
class Running:
    facade: Facade
    runner: web.AppRunner
    port: int
    self_signed_pem: bytes | None
    reloader: asyncio.Task[None] | None = None

    async def close(self) -> None:
        if self.reloader is not None:
            self.reloader.cancel()
        await self.runner.cleanup()
        await self.facade.close()


async def _reload_certificates(reloader: CertReloader) -> None:
    while True:
        await asyncio.sleep(CERT_CHECK_SECONDS)
        if reloader.check():
            log.info("tmf: serving the renewed certificate of %s", reloader.directory)


async def serve(
    api_client: kubernetes.client.ApiClient,
    port: int,
    address: str = "127.0.0.1",
    cert_dir: str | None = None,
    clock: Clock = _now,
    delivers: Callable[[], bool] = lambda: True,
) -> Running:
    """Start the facade: list every kind, then listen on address:port over HTTPS (port 0: a free one).
    `delivers`: whether this replica is the one that sends the hubs' events (controller/tmf/hubs.py)."""
    context, self_signed_pem = server_context(cert_dir)
    facade = Facade(api_client, clock, delivers)
    await facade.start()
    runner = web.AppRunner(facade.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, address, port, ssl_context=context)
    await site.start()
    sockets = getattr(site._server, "sockets", None) or []  # port 0: the one the system chose
    bound = sockets[0].getsockname()[1] if sockets else port
    log.info("tmf: TM Forum Open APIs on https://%s:%d (%s)", address, bound, cert_dir or "self-signed")
    reloader = asyncio.create_task(_reload_certificates(CertReloader(context, cert_dir))) if cert_dir else None
    return Running(facade, runner, int(bound), self_signed_pem, reloader)
