"""Admission decisions: what the validating webhook refuses, as pure functions of the object and the cluster.

The webhook (controller/handlers/admission.py) reads the objects a decision needs from the API server
(`Webhook.reads`), calls `review` and refuses the request with the problems, each naming its field.
The checks are the controller's own judgement, never a second copy of it: offering usability and
sellability (commerce/offering.py), order validation and endpoint claims (commerce/order.py), device
path conflicts (intent/merge.py over intent/render.py), zones (billing/periods.py) and the range of
computable times (times.py). A port/VLAN or subnet admitted but not stored yet is held against the next
requests (`Reservations`); the controller's conditions stay the second line of defence: two requests admitted at
the same moment by two webhook replicas can still collide, and the controller then decides by precedence.

On UPDATE a request is refused only for problems it introduces: a problem the stored object already
has (its offering was retired since, say) never blocks a finalizer write, a label change or the
deletion that follows. A request that changes neither spec nor the annotations a check reads is
allowed without reading anything.

A Subscription's BillingAccount is judged by billing/account.py's `account_problem` (missing, invalid,
closed or suspended for a new order, another currency than the offering's), as the controller does.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import ipaddress
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast, overload

from pydantic import BaseModel, ValidationError

from .api import GROUP, VERSION
from .api.invoice import InvoiceSpec
from .api.networkdevice import NetworkDeviceSpec
from .api.networkservice import Endpoint, NetworkServiceSpec
from .api.productoffering import ProductOfferingSpec
from .api.subscription import SubscriptionSpec
from .billing.account import account_problem, offering_currency, parse_account
from .billing.periods import is_known_zone
from .commerce.offering import offering_problems, price_edit_problems, sellability
from .commerce.order import (
    EndpointConflict,
    EndpointKey,
    OrderRecord,
    endpoint_claims,
    endpoint_conflicts,
    endpoint_key,
    network_service_for,
    order_record,
    validate_order,
)
from .intent.merge import Claim, merge
from .intent.paths import GPath
from .intent.render import ManagedEntry, ServiceKey, render
from .kube import FINALIZER
from .times import beyond_computable, parse_time, rfc3339

RERUN_ANNOTATION = "telco.intent.dev/rerun"
DEFAULT_INSTANCE = "the default routing instance"
# The object under review competes as the newest of all (an unaccepted order created after every other
# object): what another object holds stays its own, whichever was created first. On UPDATE the stored
# version is judged the same way, so only what the change newly takes is refused.
NEWEST = datetime.max.replace(tzinfo=UTC)
_LISTED = 8  # names listed in a message at most

Obj = Mapping[str, Any]
M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


@dataclass(frozen=True)
class Rendered:
    """A NetworkService as merge() sees it: its key, precedence time, spec and rendered entries."""

    key: ServiceKey
    created: datetime | None
    spec: NetworkServiceSpec
    entries: tuple[ManagedEntry, ...]
    # (endpoint index, its address) of the endpoints with one, parsed once per version like the entries
    addresses: tuple[tuple[int, ipaddress.IPv4Interface], ...] = ()


@dataclass(frozen=True)
class Problem:
    """Why a request is refused: the field at fault (as `spec.a[0].b`) and what is expected of it."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class Listing(Sequence[Obj]):
    """The objects of one plural as one list call returned them, with what decisions look up in them.

    Each index (`memo`) is built once, on first use, and shared by every request judged against this
    list: in a burst, one list serves every request that arrived before it (handlers/admission.py's
    SharedLists), so the work that grows with the number of stored objects is done once per list and a
    request only looks up what its own endpoints touch."""

    def __init__(self, objects: Iterable[Obj]) -> None:
        self._objects = tuple(objects)
        self._memo: dict[str, Any] = {}

    def _items(self) -> tuple[Obj, ...]:
        return self._objects

    def __iter__(self) -> Iterator[Obj]:
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._objects)

    @overload
    def __getitem__(self, index: int) -> Obj: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Obj]: ...
    def __getitem__(self, index: int | slice) -> Obj | Sequence[Obj]:
        return self._items()[index]

    def memo(self, name: str, build: Callable[[Sequence[Obj]], T]) -> T:
        """`build(objects)`, computed once per listing under `name`."""
        if name not in self._memo:
            self._memo[name] = build(self._items())
        return cast(T, self._memo[name])


# What a decision reads of each kind it looks up, kept by the watch-fed Store (handlers/admission.py):
# (spec keys, None for the whole spec; status keys). Anything else of a stored object is dropped.
KEPT: dict[str, tuple[tuple[str, ...] | None, tuple[str, ...]]] = {
    "subscriptions": (("endpoints",), ("state",)),  # order_record, _was_accepted
    "networkservices": (None, ()),  # render(), and the spec an order's own service has
    "networkdevices": (None, ("ports",)),  # the gNMI target, listed_ports
    "productofferings": (None, ()),
    "billingaccounts": (None, ()),
    "invoices": (("runType", "billingAccount", "billingPeriod"), ()),
}
_META = ("namespace", "name", "creationTimestamp", "resourceVersion")


def slim(plural: str, obj: Obj) -> dict[str, Any]:
    """The part of a stored object a decision reads (KEPT): the cache holds this, not whole bodies."""
    spec_keys, status_keys = KEPT.get(plural, (None, ()))
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    kept: dict[str, Any] = {"metadata": {k: meta[k] for k in _META if k in meta}}
    kept["spec"] = dict(spec) if spec_keys is None else {k: spec[k] for k in spec_keys if k in spec}
    if isinstance(status, Mapping) and (found := {k: status[k] for k in status_keys if k in status}):
        kept["status"] = found
    return kept


def order_key(obj: Obj) -> tuple[str, str]:
    """Where an object sorts in the Store: (namespace, name), the order the API server lists them in."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class Store(Listing):
    """The objects of one plural as a watch keeps them (slim), with the indexes decisions look up kept
    up to date per event (`put`, `delete`) instead of rebuilt per list: objects by name, Subscriptions
    by endpoint (OrderIndex), NetworkServices parsed and rendered by device path and subnet
    (ServiceIndex), devices by name. Objects are in (namespace, name) order, as a cluster-wide list
    returns them, so every decision equals the one taken over that list (tests/unit/test_admission_index.py).
    Any other index asked for is built over the objects and kept until the next change."""

    def __init__(self, plural: str) -> None:
        super().__init__(())
        self.plural = plural
        self._by_key: dict[tuple[str, str], Obj] = {}
        self._sorted: tuple[Obj, ...] | None = None
        self._by_name: dict[tuple[Any, Any], Obj] = {}
        self._orders = OrderIndex()
        self._services = ServiceIndex()
        self._devices: dict[Any, Obj] = {}
        # Called with each object put (False) or deleted (True): Reservations.observed ends the reservation
        # of a name once the Store shows it at another version.
        self.observers: list[Callable[[str, Obj, bool], None]] = []
        self._kept: dict[str, Any] = {"by-name": self._by_name}
        if plural == "subscriptions":
            self._kept["orders-by-endpoint"] = self._orders
        elif plural == "networkservices":
            self._kept["services"] = self._services
        elif plural == "networkdevices":
            self._kept["devices"] = self._devices

    @property
    def services(self) -> ServiceIndex:
        return self._services

    @property
    def orders(self) -> OrderIndex:
        return self._orders

    def put(self, obj: Obj) -> None:
        """Add or replace an object (as the API returns it, or already slim)."""
        kept = slim(self.plural, obj)
        key = order_key(kept)
        meta = kept["metadata"]
        self._sorted = None
        self._by_key[key] = kept
        self._by_name[(meta.get("namespace"), meta.get("name"))] = kept
        if self.plural == "subscriptions":
            self._orders.add(key, kept)
        elif self.plural == "networkservices":
            self._services.add(key, render_service(kept))
        elif self.plural == "networkdevices":
            self._devices[meta.get("name")] = kept
        self._memo.clear()
        for observe in self.observers:
            observe(self.plural, kept, False)

    def delete(self, obj: Obj) -> None:
        key = order_key(obj)
        kept = self._by_key.pop(key, None)
        if kept is None:
            return
        meta = kept["metadata"]
        self._sorted = None
        self._by_name.pop((meta.get("namespace"), meta.get("name")), None)
        self._orders.remove(key)
        self._services.remove(key)
        self._devices.pop(meta.get("name"), None)
        self._memo.clear()
        for observe in self.observers:
            observe(self.plural, kept, True)

    def replace(self, objects: Iterable[Obj], namespace: str | None = None) -> None:
        """Make the objects of `namespace` (all, for None) these: a re-list. Only what differs (by
        resourceVersion) is re-indexed."""
        fresh = {order_key(o): o for o in objects}
        for key, old in list(self._by_key.items()):
            if (namespace is None or key[0] == namespace) and key not in fresh:
                self.delete(old)
        for key, obj in fresh.items():
            stored = self._by_key.get(key)
            version = (obj.get("metadata") or {}).get("resourceVersion")
            if stored is None or not version or stored["metadata"].get("resourceVersion") != version:
                self.put(obj)

    def __len__(self) -> int:
        return len(self._by_key)

    def _items(self) -> tuple[Obj, ...]:
        if self._sorted is None:
            self._sorted = tuple(self._by_key[k] for k in sorted(self._by_key))
        return self._sorted

    def memo(self, name: str, build: Callable[[Sequence[Obj]], T]) -> T:
        if name in self._kept:
            return cast(T, self._kept[name])
        return super().memo(name, build)


@dataclass(frozen=True)
class World:
    """The cluster's objects a decision reads, by plural, as the API returns them.

    `renders` memoises each NetworkService's parsed spec and rendered entries by (namespace, name,
    resourceVersion) across requests: a version's render never changes. Pass the same dict to successive
    Worlds to keep it. Pass `Listing`s to share their indexes between Worlds (plain sequences get one each).
    """

    objects: Mapping[str, Sequence[Obj]]
    renders: MutableMapping[tuple[str, str, str], Rendered | None] = field(default_factory=dict)
    _listings: dict[str, Listing] = field(default_factory=dict, init=False, repr=False, compare=False)

    def of(self, plural: str) -> Listing:
        given = self.objects.get(plural, ())
        if isinstance(given, Listing):
            return given
        if plural not in self._listings:
            self._listings[plural] = Listing(given)
        return self._listings[plural]

    def find(self, plural: str, namespace: str | None, name: str) -> Obj | None:
        return self.of(plural).memo("by-name", _by_name).get((namespace, name))


def _by_name(objects: Sequence[Obj]) -> dict[tuple[Any, Any], Obj]:
    found: dict[tuple[Any, Any], Obj] = {}
    for obj in objects:
        meta = obj.get("metadata") or {}
        found.setdefault((meta.get("namespace"), meta.get("name")), obj)  # the first, as a scan would
    return found


@dataclass(frozen=True)
class Request:
    """One admission request: CREATE (old is None) or UPDATE of a main resource (not status)."""

    plural: str
    operation: str
    new: Obj
    old: Obj | None
    now: datetime


Check = Callable[[Obj, World, datetime], list[Problem]]
# (old, new, now): what the change itself may not do (a started price edited, a recorded payment rewritten),
# which no state of the object alone shows.
Edit = Callable[[Obj, Obj, datetime], list[Problem]]


@dataclass(frozen=True)
class Webhook:
    """One webhook of the ValidatingWebhookConfiguration: the kind it judges, with what it reads."""

    plural: str
    reads: tuple[str, ...]
    check: Check
    annotations: tuple[str, ...] = ()  # annotations the check reads: a change of one is re-judged
    edit: Edit | None = None

    @property
    def path(self) -> str:
        """The URL path the API server posts to (Kopf routes it to the handler of that id)."""
        return f"/{self.plural}"

    @property
    def match_condition(self) -> str:
        """CEL the API server evaluates before calling the webhook: only a create, a spec change, or a
        change of whether an annotation the check reads is set reaches it (`changes_intent`, as far as
        the API server can tell). A finalizer or label write never does, so it goes through while no
        replica answers."""
        changed = ["request.operation == 'CREATE'", "object.spec != oldObject.spec"]
        for key in self.annotations:
            changed.append(f"{_annotated('object', key)} != {_annotated('oldObject', key)}")
        return " || ".join(changed)


def _annotated(obj: str, key: str) -> str:
    return f"('annotations' in {obj}.metadata && '{key}' in {obj}.metadata.annotations)"


def changes_intent(request: Request) -> bool:
    """False for an UPDATE of metadata only (a finalizer, a label): admitted without reading anything.
    The registration's match_condition keeps most such requests from reaching the webhook at all."""
    old = request.old
    return not (
        request.operation == "UPDATE" and old is not None and _same_intent(WEBHOOKS[request.plural], old, request.new)
    )


def review(
    request: Request,
    world: World,
    reserved: Reservations | None = None,
    at: float = 0.0,
    claims: Claims | None = None,
) -> list[Problem]:
    """The problems that refuse `request`; empty: admitted. `reserved`: the claims this process admitted
    that `world` does not show stored yet (at monotonic time `at`), which the request may not take either;
    `claims`: the request's own (`claims_of(request.new)`), when the caller has them already."""
    hook = WEBHOOKS[request.plural]
    old = request.old
    if not changes_intent(request):
        return []

    def check(obj: Obj, known: Claims | None = None) -> list[Problem]:
        found = _unique(hook.check(obj, world, request.now))
        if reserved is not None:
            found += reserved_problems(request.plural, obj, world, reserved, at, refused=found, claims=known)
        return found

    problems = check(request.new, claims)
    if request.operation == "UPDATE" and old is not None:
        before = set(check(old))
        problems = [p for p in problems if p not in before]
        if hook.edit is not None:
            problems += hook.edit(old, request.new, request.now)
    return problems


def refusal(problems: Iterable[Problem]) -> str:
    """The message the API server shows the user for a refused request."""
    return "; ".join(str(p) for p in problems)


# --- reservations: claims admitted here that the API server has not stored yet ------------------------

# How long a port/VLAN or subnet this process admitted stays held while its object is not stored. Our answer is not
# the end of the request: the API server still waits for the other validating webhooks it called with
# ours (in parallel, each for at most its timeoutSeconds, which is 30 s at most) and then writes to etcd,
# where a quota, another webhook or the write itself may still refuse it. So within 30 s an admitted
# object is stored or refused, and past them a claim never stored is let go; the Store alone judges.
RESERVATION_SECONDS = 30.0
_KIND = {"subscriptions": "Subscription", "networkservices": "NetworkService"}


@dataclass(frozen=True)
class Reservation:
    """The ports/VLANs (`endpoints`) of an object this process admitted (`at`, monotonic seconds; `uid` as
    the request gave it, for the record), held against other requests until the Store shows that name at
    another resourceVersion than `seen` (what it held under the name when the request was admitted: None
    for nothing), or RESERVATION_SECONDS pass."""

    plural: str
    namespace: str
    name: str
    uid: str
    endpoints: tuple[EndpointKey, ...]
    seen: str | None
    at: float
    # (device, routing instance (None: the default one), address) of each endpoint with an IPv4 address
    addresses: tuple[tuple[str, str | None, ipaddress.IPv4Interface], ...] = ()
    holder: str = ""  # who holds it, when not the object of `plural` (a Subscription, for its service)

    def __str__(self) -> str:
        return self.holder or f"{_KIND.get(self.plural, self.plural)} {self.namespace}/{self.name}"


class Reservations:
    """The reservations in force, by (plural, namespace, name) and by the endpoints they hold. A name admitted
    again replaces its own (a retry, an update). Kept in the order admitted, so expiry trims from the front."""

    def __init__(self, bound: float = RESERVATION_SECONDS) -> None:
        self.bound = bound
        self._held: dict[tuple[str, str, str], Reservation] = {}
        self._by_endpoint: dict[EndpointKey, dict[tuple[str, str, str], Reservation]] = {}
        self._by_instance: dict[tuple[str, str | None], dict[tuple[str, str, str], Reservation]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def holding(self, endpoint: EndpointKey, at: float) -> list[Reservation]:
        """The unexpired reservations of `endpoint`, oldest first."""
        found = self._by_endpoint.get(endpoint, {}).values()
        return sorted((r for r in found if at < r.at + self.bound), key=lambda r: r.at)

    def addresses(self, device: str, instance: str | None, at: float) -> list[Reservation]:
        """The unexpired reservations with an address on `device` in `instance`, oldest first."""
        found = self._by_instance.get((device, instance), {}).values()
        return sorted((r for r in found if at < r.at + self.bound), key=lambda r: r.at)

    def reserve(self, reservation: Reservation) -> None:
        self._drop((reservation.plural, reservation.namespace, reservation.name))
        key = (reservation.plural, reservation.namespace, reservation.name)
        self._held[key] = reservation
        for endpoint in dict.fromkeys(reservation.endpoints):
            self._by_endpoint.setdefault(endpoint, {})[key] = reservation
        for where in dict.fromkeys((device, instance) for device, instance, _ in reservation.addresses):
            self._by_instance.setdefault(where, {})[key] = reservation

    def observed(self, plural: str, obj: Obj, deleted: bool) -> None:
        """A Store of `plural` now holds `obj`, or has deleted it: the reservation of that name is over once
        the Store shows another version than when it was made (or a deletion), for good. (A deletion
        afterwards shows the name as it was before the create, so it must not bring the reservation back.)"""
        namespace, name = _identity(obj)
        key = (plural, namespace, name)
        held = self._held.get(key)
        if held is not None and (deleted or _stored_version(obj) != held.seen):
            self._drop(key)

    def settle(self, world: World) -> None:
        """End the reservations whose name `world` shows at another version (for Worlds of lists, which
        have no Store to tell the reservations; see `observed`)."""
        for key, held in list(self._held.items()):
            if held.plural in world.objects and not _in_force(held, world):
                self._drop(key)

    def expire(self, at: float) -> None:
        while self._held:
            key, first = next(iter(self._held.items()))
            if at < first.at + self.bound:
                return
            self._drop(key)

    def _drop(self, key: tuple[str, str, str]) -> None:
        old = self._held.pop(key, None)
        if old is None:
            return
        for endpoint in dict.fromkeys(old.endpoints):
            _unindex(self._by_endpoint, endpoint, key)
        for where in dict.fromkeys((device, instance) for device, instance, _ in old.addresses):
            _unindex(self._by_instance, where, key)


def _unindex(index: dict[Any, dict[Any, Any]], at: Any, key: Any) -> None:
    held = index.get(at)
    if held is not None:
        held.pop(key, None)
        if not held:
            del index[at]


def _stored_version(obj: Obj | None) -> str | None:
    """The resourceVersion of a stored object (every write, a re-create too, gives a new one); None for none."""
    if obj is None:
        return None
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


_Placed = tuple[int, str, str | None, ipaddress.IPv4Interface]  # (endpoint index, device, instance, address)
Claims = tuple[tuple[EndpointKey, ...], tuple[_Placed, ...]]


def claims_of(plural: str, obj: Obj, world: World) -> Claims:
    """The ports/VLANs an object of `plural` claims, and the addresses of its endpoints per device and routing
    instance: none for a kind without endpoints, a spec that does not parse, or a NetworkService dry run (it
    configures nothing). A Subscription's addresses are those of the NetworkService it makes (its instance
    follows the offering's service type): none while the offering or the order is not valid."""
    service: NetworkServiceSpec | None = None
    if plural == "subscriptions":
        spec = _spec_or_none(SubscriptionSpec, obj)
        if spec is None:
            return (), ()
        service = _service_of(obj, spec, world)
        endpoints = spec.endpoints
    elif plural == "networkservices":
        service = _spec_or_none(NetworkServiceSpec, obj)
        if service is None or service.dryRun:
            return (), ()
        endpoints = service.endpoints
    else:
        return (), ()
    placed: tuple[_Placed, ...] = ()
    if service is not None:
        instance = _instance(service)
        placed = tuple(
            (i, e.device, instance, ipaddress.IPv4Interface(e.ipv4Address))
            for i, e in enumerate(service.endpoints)
            if e.ipv4Address
        )
    return _endpoint_keys(endpoints), placed


def _service_of(obj: Obj, spec: SubscriptionSpec, world: World) -> NetworkServiceSpec | None:
    """The NetworkService spec a Subscription makes, as subscription_problems builds it; None while its
    offering is missing or invalid or the order does not fit it."""
    namespace, name = _identity(obj)
    offering = world.find("productofferings", None, spec.productOffering.name)
    offering_spec = None if offering is None else _spec_or_none(ProductOfferingSpec, offering)
    if offering_spec is None:
        return None
    current = (world.find("networkservices", namespace, name) or {}).get("spec")
    if validate_order(name, spec, offering_spec, current):
        return None
    body = network_service_for(name, namespace, "", spec, offering_spec, True, current)
    return _spec_or_none(NetworkServiceSpec, body)


def reservations(request: Request, world: World, at: float, claims: Claims | None = None) -> tuple[Reservation, ...]:
    """What an admitted request holds until its object is stored; none when it claims no port/VLAN. (The
    caller reserves nothing for a request with dryRun: the API server never stores it.)

    A Subscription's subnets are held until its NetworkService is stored, not the Subscription: a stored
    order is judged by its ports and VLANs, but only a NetworkService's subnets are looked up (an order
    whose service is not made yet holds none), so its subnets are reserved under the name of the
    service the controller makes for it (same namespace and name), at the version the Store shows now."""
    endpoints, placed = claims if claims is not None else claims_of(request.plural, request.new, world)
    if not endpoints:
        return ()
    namespace, name = _identity(request.new)
    uid = str((request.new.get("metadata") or {}).get("uid") or "")
    seen = _stored_version(world.find(request.plural, namespace or None, name))
    addresses = tuple((device, instance, address) for _, device, instance, address in placed)
    if request.plural != "subscriptions" or not addresses:
        return (Reservation(request.plural, namespace, name, uid, endpoints, seen, at, addresses),)
    order = Reservation(request.plural, namespace, name, uid, endpoints, seen, at)
    service_seen = _stored_version(world.find("networkservices", namespace or None, name))
    subnets = Reservation("networkservices", namespace, name, uid, (), service_seen, at, addresses, str(order))
    return order, subnets


def _in_force(held: Reservation, world: World) -> bool:
    """The reserved object is not in `world` yet: the Store still shows what it held when the request was
    admitted. Once it shows another version, the stored object (or its absence) is the truth."""
    stored = world.find(held.plural, held.namespace or None, held.name)
    return _stored_version(stored) == held.seen


def reserved_problems(
    plural: str,
    obj: Obj,
    world: World,
    reserved: Reservations,
    at: float,
    refused: Sequence[Problem] = (),
    claims: Claims | None = None,
) -> list[Problem]:
    """The endpoints of `obj` whose port/VLAN, or whose subnet (overlapping, on the device and routing
    instance), a reservation of another name holds (the same namespace and name is the same order: its
    retry, its update, or the NetworkService a Subscription of that name makes). An endpoint already
    refused (`refused` names `spec.endpoints[i]`, or its address) is not named twice, and the address of
    an endpoint whose port/VLAN is taken is beside the point, as in `_network_problems`."""
    if not len(reserved):
        return []
    namespace, name = _identity(obj)
    taken = {p.field for p in refused}
    endpoints, placed = claims if claims is not None else claims_of(plural, obj, world)

    def others(found: list[Reservation]) -> Iterator[Reservation]:
        return (r for r in found if (r.namespace, r.name) != (namespace, name) and _in_force(r, world))

    def pending(held: Reservation) -> str:
        return (
            f"{held}, admitted {max(at - held.at, 0.0):.1f} s ago and not stored yet (held until it is stored,"
            f" or for {reserved.bound:.0f} s should the API server refuse it after this webhook)"
        )

    problems = []
    for i, endpoint in enumerate(endpoints):
        if f"spec.endpoints[{i}]" in taken:
            continue
        for held in others(reserved.holding(endpoint, at)):
            device, port, vlan = endpoint
            message = f"device {device} port {port} vlanId {vlan} is held by {pending(held)}"
            problems.append(Problem(f"spec.endpoints[{i}]", message))
            taken.add(f"spec.endpoints[{i}]")
            break
    for i, device, instance, mine in placed:
        if f"spec.endpoints[{i}]" in taken or f"spec.endpoints[{i}].ipv4Address" in taken:
            continue
        for held in others(reserved.addresses(device, instance, at)):
            theirs = [
                a for d, n, a in held.addresses if (d, n) == (device, instance) and a.network.overlaps(mine.network)
            ]
            if theirs:
                where = f"VRF {instance}" if instance is not None else DEFAULT_INSTANCE
                problems.append(
                    Problem(
                        f"spec.endpoints[{i}].ipv4Address",
                        f"{mine} overlaps {theirs[0]} of {pending(held)} on device {device} in {where};"
                        " one routing instance of a device cannot hold overlapping subnets",
                    )
                )
                break
    return problems


# --- Subscription ----------------------------------------------------------------------------


def subscription_problems(obj: Obj, world: World, now: datetime) -> list[Problem]:
    namespace, name = _identity(obj)
    spec, problems = _parse(SubscriptionSpec, obj)
    if spec is None:
        return problems
    problems += _time_problems(
        {
            "spec.requestedStartDate": spec.requestedStartDate,
            "spec.requestedTerminationDate": spec.requestedTerminationDate,
        }
    )
    if spec.billingAccount is not None and not is_known_zone(spec.billingAccount.timeZone):
        problems.append(
            Problem(
                "spec.billingAccount.timeZone",
                f"{spec.billingAccount.timeZone!r} is not a zone the time zone database (tzdata) lists;"
                " expected an IANA name such as Europe/Paris, America/New_York or EST5EDT",
            )
        )
    problems += _device_problems(spec.endpoints, world)
    created = NEWEST  # judged as the newest order: a change never takes what another order holds
    me = OrderRecord(namespace, name, created, _endpoint_keys(spec.endpoints))
    others = _orders_naming(world, me.endpoints, (namespace, name))
    held = endpoint_conflicts(me, endpoint_claims([*others, me]))
    problems += _held_by_subscription(spec.endpoints, held)

    offering_name = spec.productOffering.name
    offering = world.find("productofferings", None, offering_name)
    if offering is None:
        problems.append(Problem("spec.productOffering.name", f"ProductOffering {offering_name} does not exist"))
        return problems
    try:
        offering_spec = ProductOfferingSpec.model_validate(offering.get("spec") or {})
    except ValidationError:
        problems.append(
            Problem("spec.productOffering.name", f"ProductOffering {offering_name} has an invalid spec; see its status")
        )
        return problems
    problems += _account_problems(namespace, spec, offering_spec, world, _was_accepted(obj, world))
    verdict = sellability(offering_spec, now)
    if not verdict.sellable:
        problems.append(
            Problem(
                "spec.productOffering.name", f"ProductOffering {offering_name} takes no new orders: {verdict.message}"
            )
        )
    owned = world.find("networkservices", namespace, name)
    current_service = (owned or {}).get("spec")
    order_errors = validate_order(name, spec, offering_spec, current_service)
    problems += [Problem(e.field, e.message) for e in order_errors]
    if not order_errors:
        body = network_service_for(name, namespace, "", spec, offering_spec, True, current_service)
        service = NetworkServiceSpec.model_validate(body["spec"])
        taken = {i for i, _ in _conflicting_endpoints(spec.endpoints, held)}
        problems += _network_problems(ServiceKey(namespace, name), created, service, world, skip=taken)
    return problems


def _was_accepted(obj: Obj, world: World) -> bool:
    """The stored order was accepted already (a Suspended account keeps serving it)."""
    namespace, name = _identity(obj)
    stored = world.find("subscriptions", namespace, name)
    return ((stored or {}).get("status") or {}).get("state") not in (None, "created")


def _account_problems(
    namespace: str | None, spec: SubscriptionSpec, offering: ProductOfferingSpec, world: World, accepted: bool
) -> list[Problem]:
    if spec.billingAccountRef is None:
        return []  # the deprecated inline account: nothing to look up
    name = spec.billingAccountRef.name
    account, invalid = parse_account(world.find("billingaccounts", namespace, name))
    problem = account_problem(
        "spec.billingAccountRef.name", name, account, invalid, offering_currency(offering), accepted
    )
    return [] if problem is None else [Problem(problem.field, problem.message)]


# --- NetworkService --------------------------------------------------------------------------


def network_service_problems(obj: Obj, world: World, now: datetime) -> list[Problem]:
    namespace, name = _identity(obj)
    spec, problems = _parse(NetworkServiceSpec, obj)
    if spec is None:
        return problems
    problems += _device_problems(spec.endpoints, world)
    key = ServiceKey(namespace, name)
    # Held by a Subscription other than the one that owns this service (same namespace and name),
    # which may not have made its own NetworkService yet.
    claims = endpoint_claims(_orders_naming(world, _endpoint_keys(spec.endpoints), (namespace, name)))
    held = tuple(
        EndpointConflict(k, holder) for k in _endpoint_keys(spec.endpoints) if (holder := claims.get(k)) is not None
    )
    if not spec.dryRun:  # a dry run claims nothing; its status shows what it would collide with
        problems += _held_by_subscription(spec.endpoints, held)
        taken = {i for i, _ in _conflicting_endpoints(spec.endpoints, held)}
        problems += _network_problems(key, NEWEST, spec, world, skip=taken)
        problems += _own_overlaps(spec)
    return problems


# --- NetworkDevice ---------------------------------------------------------------------------


def network_device_problems(obj: Obj, world: World, now: datetime) -> list[Problem]:
    _, name = _identity(obj)
    spec, problems = _parse(NetworkDeviceSpec, obj)
    if spec is None:
        return problems
    target = _gnmi_target(spec.address, spec.port)
    for other in world.of("networkdevices"):
        other_name = (other.get("metadata") or {}).get("name")
        if other_name == name:
            continue
        other_spec = _spec_or_none(NetworkDeviceSpec, other)
        if other_spec is not None and _gnmi_target(other_spec.address, other_spec.port) == target:
            problems.append(
                Problem(
                    "spec.address",
                    f"{spec.address}:{spec.port} is already the gNMI target of NetworkDevice {other_name};"
                    " two NetworkDevices for one device would fight over its configuration",
                )
            )
    return problems


# --- ProductOffering -------------------------------------------------------------------------


def product_offering_problems(obj: Obj, world: World, now: datetime) -> list[Problem]:
    spec, problems = _parse(ProductOfferingSpec, obj)
    if spec is None:
        return problems
    for text in offering_problems(spec):  # "productOfferingPrice[0].price.unit: ..." and the like
        where, _, message = text.partition(": ")
        problems.append(Problem(f"spec.{where}", message))
    return problems


def product_offering_edit_problems(old: Obj, new: Obj, now: datetime) -> list[Problem]:
    """A price edit that would change what is billed for time already past (commerce/offering.py)."""
    before, after = _spec_or_none(ProductOfferingSpec, old), _spec_or_none(ProductOfferingSpec, new)
    if before is None or after is None:
        return []  # the spec check says what is wrong with it
    problems = []
    for text in price_edit_problems(before, after, now):
        where, _, message = text.partition(": ")
        problems.append(Problem(f"spec.{where}", message))
    return problems


# --- Invoice ---------------------------------------------------------------------------------


def invoice_problems(obj: Obj, world: World, now: datetime) -> list[Problem]:
    namespace, name = _identity(obj)
    spec, problems = _parse(InvoiceSpec, obj)
    if spec is None:
        return problems
    period = spec.billingPeriod
    times: dict[str, datetime | None] = {
        "spec.billingPeriod.startDateTime": period.startDateTime,
        "spec.billingPeriod.endDateTime": period.endDateTime,
    }
    times |= {f"spec.payments[{i}].date": p.date for i, p in enumerate(spec.payments)}
    far = _time_problems(times)
    if far:
        return problems + far
    problems += _payment_problems(spec.payments)
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    if spec.runType != "offCycle" or annotations.get(RERUN_ANNOTATION):
        return problems
    raw = obj.get("spec") or {}
    mine = _period_key(raw)
    for other in world.of("invoices"):
        meta = other.get("metadata") or {}
        theirs = other.get("spec") or {}
        if (
            meta.get("namespace") == namespace
            and meta.get("name") != name
            and theirs.get("runType", "offCycle") == "offCycle"
            and theirs.get("billingAccount") == raw.get("billingAccount")
            and _period_key(theirs) == mine
        ):
            problems.append(
                Problem(
                    "spec.billingPeriod",
                    f"Invoice {meta.get('name')} already bills account {spec.billingAccount} off-cycle for"
                    f" {rfc3339(period.startDateTime or now)} to {rfc3339(period.endDateTime or now)};"
                    f" a deliberate rerun needs the annotation {RERUN_ANNOTATION}: <reason>",
                )
            )
    return problems


def _payment_problems(payments: Sequence[Any]) -> list[Problem]:
    """Ids unique within the invoice; a reversal names a payment recorded before it."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for i, payment in enumerate(payments):
        if payment.id in seen:
            problems.append(Problem(f"spec.payments[{i}].id", f"{payment.id!r} is the id of an earlier payment"))
        if payment.reverses is not None and payment.reverses not in seen:
            problems.append(
                Problem(
                    f"spec.payments[{i}].reverses",
                    f"{payment.reverses!r} is not the id of a payment recorded before this reversal",
                )
            )
        seen.add(payment.id)
    return problems


def payment_edits(old: Obj, new: Obj, now: datetime) -> list[Problem]:
    """Recorded payments are money that happened: an UPDATE may only append (the CRD's CEL rule says the
    same; this names the entry). A reversal is a new entry with a negative amount and a reason."""
    before = ((old.get("spec") or {}).get("payments")) or []
    after = ((new.get("spec") or {}).get("payments")) or []
    by_id: dict[Any, tuple[int, Any]] = {}
    for i, p in enumerate(after):
        if isinstance(p, dict):
            by_id.setdefault(p.get("id"), (i, p))  # the first entry of an id is the recorded one
    problems: list[Problem] = []
    for i, payment in enumerate(before):
        if not isinstance(payment, dict):
            continue
        found = by_id.get(payment.get("id"))
        if found is None:
            problems.append(
                Problem(
                    f"spec.payments[{i}]",
                    f"payment {payment.get('id')!r} was recorded and cannot be removed; record a reversal instead"
                    " (a new entry with a negative amount, a reason and reverses: <payment id>)",
                )
            )
        elif found[1] != payment:
            problems.append(
                Problem(
                    f"spec.payments[{found[0]}]",
                    f"payment {payment.get('id')!r} was recorded and cannot be edited; record a reversal instead",
                )
            )
    return problems


WEBHOOKS: dict[str, Webhook] = {
    hook.plural: hook
    for hook in (
        Webhook(
            "subscriptions",
            ("productofferings", "subscriptions", "networkservices", "networkdevices", "billingaccounts"),
            subscription_problems,
        ),
        Webhook("networkservices", ("subscriptions", "networkservices", "networkdevices"), network_service_problems),
        Webhook("networkdevices", ("networkdevices",), network_device_problems),
        Webhook("productofferings", (), product_offering_problems, edit=product_offering_edit_problems),
        Webhook("invoices", ("invoices",), invoice_problems, annotations=(RERUN_ANNOTATION,), edit=payment_edits),
    )
}


# --- shared steps ----------------------------------------------------------------------------


def _network_problems(
    key: ServiceKey, created: datetime, spec: NetworkServiceSpec, world: World, skip: set[int]
) -> list[Problem]:
    """Endpoints whose device entries another NetworkService holds (intent/merge.py decides, as the
    reconciler does), and IPv4 subnets overlapping another service's in the same routing instance.

    The other services are looked up in indexes built once per list (`ServiceIndex`): the cost of a
    request follows its own endpoints and what they touch, not the number of stored services."""
    devices = {e.device for e in spec.endpoints}
    index = world.of("networkservices").memo("services", lambda objects: ServiceIndex.of(objects, world))

    def competes(r: Rendered) -> bool:  # another service with an endpoint on one of our devices
        return r.key != key and any(e.device in devices for e in r.spec.endpoints)

    mine = Claim(key, created, tuple(render(key, spec)))
    claims = [
        Claim(r.key, r.created or created, r.entries) for r in _entangled_services(mine, devices, index, competes)
    ]
    problems: list[Problem] = []
    for device in sorted(devices):
        for conflict in merge(device, [*claims, mine]).conflicts:
            if conflict.service != key:
                continue
            i = _endpoint_at(key, spec, device, conflict.path)
            if i not in skip:
                skip = skip | {i}  # its subinterface is someone else's: its address is beside the point
                problems.append(
                    Problem(
                        f"spec.endpoints[{i}]",
                        f"{conflict.path} on device {device} is held by NetworkService {conflict.holder}",
                    )
                )
    instance = _instance(spec)
    for i, endpoint in enumerate(spec.endpoints):
        if endpoint.ipv4Address is None or i in skip:
            continue
        mine_net = ipaddress.IPv4Interface(endpoint.ipv4Address)
        for other, their_net in index.overlapping(endpoint.device, instance, mine_net.network):
            if other.key != key:
                problems.append(_overlap(i, mine_net, their_net, f"NetworkService {other.key}", endpoint, spec))
    return problems


_Address = tuple[Any, int, ipaddress.IPv4Interface]  # (order key of the service, endpoint index, its address)


@dataclass
class ServiceIndex:
    """The NetworkServices that claim anything (parsed, not dry runs), each under an order key (its position
    in a list, or (namespace, name) in the watch-fed Store: the order a list returns them in), indexed by
    the device paths their entries claim and by the IPv4 subnets of their endpoints per device and routing
    instance. Kept up to date per object (`add`, `remove`), so a watch-fed cache never rebuilds it."""

    services: dict[Any, Rendered] = field(default_factory=dict)
    on_device: dict[str, set[Any]] = field(default_factory=dict)  # device -> keys of services with an endpoint on it
    by_path: dict[tuple[str, GPath], set[Any]] = field(default_factory=dict)
    # (device, instance) -> (network address, length) -> {(key, endpoint index): address}
    subnets: dict[tuple[str, str | None], dict[tuple[int, int], dict[tuple[Any, int], ipaddress.IPv4Interface]]] = (
        field(default_factory=dict)
    )
    starts: dict[tuple[str, str | None], list[tuple[int, int]]] = field(default_factory=dict)  # the blocks, sorted

    @classmethod
    def of(cls, objects: Iterable[Obj], world: World) -> ServiceIndex:
        index = cls()
        for n, obj in enumerate(objects):
            index.add(n, _rendered(obj, world))
        return index

    def add(self, key: Any, r: Rendered | None) -> None:
        """Index `r` under `key` (replacing what was there); None or a dry run claims nothing."""
        self.remove(key)
        if r is None or r.spec.dryRun:
            return
        self.services[key] = r
        for device in {e.device for e in r.spec.endpoints}:
            self.on_device.setdefault(device, set()).add(key)
        for entry in r.entries:
            self.by_path.setdefault((entry.device, entry.path), set()).add(key)
        instance = _instance(r.spec)
        for j, address in r.addresses:
            where = (r.spec.endpoints[j].device, instance)
            block = (int(address.network.network_address), address.network.prefixlen)
            blocks = self.subnets.setdefault(where, {})
            if block not in blocks:
                blocks[block] = {}
                bisect.insort(self.starts.setdefault(where, []), block)
            blocks[block][(key, j)] = address

    def remove(self, key: Any) -> None:
        r = self.services.pop(key, None)
        if r is None:
            return
        for device in {e.device for e in r.spec.endpoints}:
            _discard(self.on_device, device, key)
        for entry in r.entries:
            _discard(self.by_path, (entry.device, entry.path), key)
        instance = _instance(r.spec)
        for j, address in r.addresses:
            where = (r.spec.endpoints[j].device, instance)
            block = (int(address.network.network_address), address.network.prefixlen)
            blocks = self.subnets[where]
            blocks[block].pop((key, j), None)
            if not blocks[block]:
                del blocks[block]
                starts = self.starts[where]
                del starts[bisect.bisect_left(starts, block)]
                if not blocks:
                    del self.subnets[where], self.starts[where]

    def sharing(self, devices: Iterable[str], where: tuple[str, GPath]) -> list[Any]:
        """Keys of the services on any of `devices` that claim the entry at `where`."""
        on = [self.on_device.get(d, set()) for d in devices]
        return [k for k in self.by_path.get(where, ()) if any(k in keys for keys in on)]

    def overlapping(
        self, device: str, instance: str | None, network: ipaddress.IPv4Network
    ) -> list[tuple[Rendered, ipaddress.IPv4Interface]]:
        """The endpoint addresses on `device` in `instance` whose subnet overlaps `network`, in key order.
        Two CIDR blocks overlap only when one contains the other: the blocks containing `network` are
        looked up by prefix, the blocks inside it are a range of the sorted network addresses."""
        blocks = self.subnets.get((device, instance))
        if not blocks:
            return []
        first, last, length = int(network.network_address), int(network.broadcast_address), network.prefixlen
        found: list[_Address] = []
        for prefix in range(length + 1):  # containing it, or the same block
            mask = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
            found += [(k, j, a) for (k, j), a in blocks.get((first & mask, prefix), {}).items()]
        starts = self.starts[(device, instance)]
        for block in starts[bisect.bisect_left(starts, (first, length + 1)) :]:
            if block[0] > last:
                break
            if block[1] > length:  # inside it
                found += [(k, j, a) for (k, j), a in blocks[block].items()]
        return [(self.services[k], address) for k, _, address in sorted(found, key=lambda f: (f[0], f[1]))]


def _discard(index: dict[Any, set[Any]], at: Any, key: Any) -> None:
    keys = index.get(at)
    if keys is not None:
        keys.discard(key)
        if not keys:
            del index[at]


def _entangled_services(
    mine: Claim, devices: set[str], index: ServiceIndex, competes: Callable[[Rendered], bool]
) -> list[Rendered]:
    """The competing services whose claims can affect whether merge() admits `mine`: those sharing a path
    with it, those sharing a path with them, and so on, in key order. Whether a claim holds its entries
    depends only on the claims it shares paths with, so merging this part alone gives `mine` the outcome
    merging all of them would. Found through the index of `devices` (a competing service has an endpoint
    on one of them), not by a scan of every service."""
    picked: set[Any] = set()
    frontier = [(e.device, e.path) for e in mine.entries]
    while frontier:
        for n in index.sharing(devices, frontier.pop()):
            if n not in picked and competes(index.services[n]):
                picked.add(n)
                frontier += [(e.device, e.path) for e in index.services[n].entries]
    return [index.services[n] for n in sorted(picked)]


def _rendered(obj: Obj, world: World) -> Rendered | None:
    """The NetworkService parsed and rendered, memoised by version; None for a spec that does not parse."""
    namespace, name = _identity(obj)
    version = str((obj.get("metadata") or {}).get("resourceVersion") or "")
    memo = (namespace, name, version)
    if version and memo in world.renders:
        return world.renders[memo]
    result = render_service(obj)
    if version:
        world.renders[memo] = result
    return result


def render_service(obj: Obj) -> Rendered | None:
    """The NetworkService parsed and rendered; None for a spec that does not parse."""
    namespace, name = _identity(obj)
    meta = obj.get("metadata") or {}
    spec = _spec_or_none(NetworkServiceSpec, obj)
    if spec is None:
        return None
    key = ServiceKey(namespace, name)
    return Rendered(
        key,
        parse_time(meta.get("creationTimestamp")),
        spec,
        tuple(render(key, spec)),
        tuple((j, ipaddress.IPv4Interface(e.ipv4Address)) for j, e in enumerate(spec.endpoints) if e.ipv4Address),
    )


def _own_overlaps(spec: NetworkServiceSpec) -> list[Problem]:
    """Two endpoints of one service with overlapping subnets on one device (commerce/order.py checks the
    same for a Subscription's endpoints, before it becomes a NetworkService)."""
    problems = []
    for i, a in enumerate(spec.endpoints):
        for j, b in enumerate(spec.endpoints[:i]):
            if a.device == b.device and a.ipv4Address and b.ipv4Address:
                mine, theirs = ipaddress.IPv4Interface(a.ipv4Address), ipaddress.IPv4Interface(b.ipv4Address)
                if mine.network.overlaps(theirs.network):
                    problems.append(_overlap(i, mine, theirs, f"spec.endpoints[{j}]", a, spec))
                    break
    return problems


def _overlap(
    i: int,
    mine: ipaddress.IPv4Interface,
    theirs: ipaddress.IPv4Interface,
    holder: str,
    endpoint: Endpoint,
    spec: NetworkServiceSpec,
) -> Problem:
    instance = f"VRF {spec.vrf}" if spec.serviceType == "l3vpn" else DEFAULT_INSTANCE
    return Problem(
        f"spec.endpoints[{i}].ipv4Address",
        f"{mine} overlaps {theirs} of {holder} on device {endpoint.device} in {instance};"
        " one routing instance of a device cannot hold overlapping subnets",
    )


def _instance(spec: NetworkServiceSpec) -> str | None:
    """The routing instance its subinterfaces join: the VRF of an l3vpn, else the default one (None)."""
    return spec.vrf if spec.serviceType == "l3vpn" else None


def _endpoint_at(key: ServiceKey, spec: NetworkServiceSpec, device: str, path: GPath) -> int:
    """The index of the endpoint whose rendered entries include `path` on `device`."""
    for i, endpoint in enumerate(spec.endpoints):
        if endpoint.device == device:
            alone = spec.model_copy(update={"endpoints": [endpoint]})
            if any(e.path == path for e in render(key, alone)):
                return i
    return 0  # not reached: every conflict is on a path some endpoint rendered


def _device_problems(endpoints: Sequence[Endpoint], world: World) -> list[Problem]:
    """Endpoints on a NetworkDevice that does not exist, or on a port the device's status does not list."""
    devices = world.of("networkdevices").memo("devices", _devices_by_name)
    problems = []
    for i, endpoint in enumerate(endpoints):
        device = devices.get(endpoint.device)
        if device is None:
            known = _listing(sorted(str(n) for n in devices if n))
            problems.append(
                Problem(f"spec.endpoints[{i}].device", f"NetworkDevice {endpoint.device} does not exist ({known})")
            )
            continue
        ports = listed_ports(device)
        if ports is not None and endpoint.port not in ports:
            problems.append(
                Problem(
                    f"spec.endpoints[{i}].port",
                    f"device {endpoint.device} has no port {endpoint.port} ({_listing(sorted(ports))})",
                )
            )
    return problems


def _devices_by_name(objects: Sequence[Obj]) -> dict[Any, Obj]:
    return {(d.get("metadata") or {}).get("name"): d for d in objects}


def listed_ports(device: Obj) -> frozenset[str] | None:
    """The port names a NetworkDevice's status lists (`status.ports`: names, or objects with a name),
    or None while it lists none: then no port is refused for being unknown."""
    ports = (device.get("status") or {}).get("ports")
    if not isinstance(ports, list) or not ports:
        return None
    names = {p if isinstance(p, str) else p.get("name") for p in ports if isinstance(p, str | dict)}
    return frozenset(n for n in names if isinstance(n, str))


def _held_by_subscription(endpoints: Sequence[Endpoint], held: Sequence[EndpointConflict]) -> list[Problem]:
    return [Problem(f"spec.endpoints[{i}]", c.message) for i, c in _conflicting_endpoints(endpoints, held)]


def _conflicting_endpoints(
    endpoints: Sequence[Endpoint], held: Sequence[EndpointConflict]
) -> list[tuple[int, EndpointConflict]]:
    by_key = {c.endpoint: c for c in held}
    return [
        (i, by_key[k]) for i, e in enumerate(endpoints) if (k := endpoint_key(e.device, e.port, e.vlanId)) in by_key
    ]


def _endpoint_keys(endpoints: Sequence[Endpoint]) -> tuple[tuple[str, str, int], ...]:
    return tuple(endpoint_key(e.device, e.port, e.vlanId) for e in endpoints)


def _orders_naming(world: World, keys: Iterable[EndpointKey], other_than: tuple[str, str]) -> list[OrderRecord]:
    """The Subscriptions, but `other_than` (namespace, name), naming one of `keys`, in list order: every
    one that can hold them, looked up in an index built once per list (or kept by the watch-fed Store)."""
    index = world.of("subscriptions").memo("orders-by-endpoint", OrderIndex.of)
    picked: dict[Any, OrderRecord] = {}
    for key in keys:
        for n, record in index.by_key.get(key, {}).items():
            if (record.namespace, record.name) != other_than:
                picked[n] = record
    return [picked[n] for n in sorted(picked)]


@dataclass
class OrderIndex:
    """Subscriptions by the (device, port, VLAN) they name, each under an order key (as ServiceIndex),
    kept up to date per object."""

    by_key: dict[EndpointKey, dict[Any, OrderRecord]] = field(default_factory=dict)
    records: dict[Any, OrderRecord] = field(default_factory=dict)

    @classmethod
    def of(cls, objects: Iterable[Obj]) -> OrderIndex:
        index = cls()
        for n, obj in enumerate(objects):
            index.add(n, obj)
        return index

    def add(self, key: Any, obj: Obj) -> None:
        self.remove(key)
        try:
            record = order_record(obj)
        except (ValueError, TypeError):  # no creationTimestamp, or a malformed endpoint: holds nothing
            return
        self.records[key] = record
        for endpoint in dict.fromkeys(record.endpoints):
            self.by_key.setdefault(endpoint, {})[key] = record

    def remove(self, key: Any) -> None:
        record = self.records.pop(key, None)
        if record is None:
            return
        for endpoint in dict.fromkeys(record.endpoints):
            held = self.by_key[endpoint]
            del held[key]
            if not held:
                del self.by_key[endpoint]


def _gnmi_target(address: str, port: int) -> tuple[str, int]:
    """How two NetworkDevices are told to be one device: the address normalised (case, a trailing dot,
    the many spellings of one IPv6 address) and the port. Names are not resolved."""
    host = address.lower().rstrip(".")
    with contextlib.suppress(ValueError):  # a name, not an address
        host = str(ipaddress.ip_address(host))
    return host, port


def _period_key(raw_spec: Obj) -> tuple[datetime | None, datetime | None]:
    period = raw_spec.get("billingPeriod") or {}
    try:
        return parse_time(period.get("startDateTime")), parse_time(period.get("endDateTime"))
    except OverflowError:
        return None, None


def _time_problems(times: Mapping[str, datetime | None]) -> list[Problem]:
    return [
        Problem(field, why)
        for field, moment in times.items()
        if moment is not None and (why := beyond_computable(moment)) is not None
    ]


def _parse(model: type[M], obj: Obj) -> tuple[M | None, list[Problem]]:
    try:
        return model.model_validate(obj.get("spec") or {}), []
    except ValidationError as exc:
        return None, [Problem("spec." + ".".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]


def _spec_or_none(model: type[M], obj: Obj) -> M | None:
    try:
        return model.model_validate(obj.get("spec") or {})
    except ValidationError:
        return None


def _identity(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _same_intent(hook: Webhook, old: Obj, new: Obj) -> bool:
    def annotations(obj: Obj) -> dict[str, Any]:
        given = (obj.get("metadata") or {}).get("annotations") or {}
        return {k: given.get(k) for k in hook.annotations}

    return old.get("spec") == new.get("spec") and annotations(old) == annotations(new)


def _listing(names: Sequence[str]) -> str:
    if not names:
        return "there are none"
    more = f" and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
    return "known: " + ", ".join(names[:_LISTED]) + more


def _unique(problems: Iterable[Problem]) -> list[Problem]:
    return list(dict.fromkeys(problems))


def webhook_configuration(
    name: str,
    base_url: str,
    ca_bundle_pem: bytes,
    *,
    failure_policy: str = "Fail",
    timeout_seconds: int = 5,
    controller_username: str | None = None,
) -> dict[str, Any]:
    """The ValidatingWebhookConfiguration for a controller serving at `base_url` (e.g.
    https://127.0.0.1:9443), as the local control plane registers it; the chart renders the same
    webhooks (templates/validatingwebhook.yaml) but calls them through its Service.

    With `controller_username` (the chart: the controller's ServiceAccount), the controller's own writes
    of a Subscription's NetworkService are not sent (`owned_service_condition`)."""
    ca = base64.b64encode(ca_bundle_pem).decode()

    def conditions(hook: Webhook) -> list[dict[str, str]]:
        found = [{"name": "intent-changed", "expression": hook.match_condition}]
        if controller_username is not None and hook.plural == "networkservices":
            found.append({"name": "not-an-owned-service", "expression": owned_service_condition(controller_username)})
        return found

    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": f"{hook.plural}.validate.telco.intent.dev",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": failure_policy,
                "timeoutSeconds": timeout_seconds,
                "matchPolicy": "Equivalent",
                "clientConfig": {"url": base_url.rstrip("/") + hook.path, "caBundle": ca},
                "matchConditions": conditions(hook),
                "rules": [
                    {
                        "apiGroups": ["telco.intent.dev"],
                        "apiVersions": ["v1alpha1"],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [hook.plural],
                    }
                ],
            }
            for hook in WEBHOOKS.values()
        ],
    }


def owned_service_condition(controller_username: str) -> str:
    """CEL: true unless the request is the controller writing a NetworkService a Subscription owns.

    Such a service is rendered from an order that admission judged already, against the same kinds: the
    Subscription's check renders its NetworkService and judges it as the NetworkService check would
    (`subscription_problems`). Judging it again costs a round of reads per order, for a decision made."""
    owned = (
        "has(object.metadata.ownerReferences) && object.metadata.ownerReferences.exists(r,"
        f" r.apiVersion == '{GROUP}/{VERSION}' && r.kind == 'Subscription' && has(r.controller) && r.controller)"
    )
    return f"!(request.userInfo.username == '{controller_username}' && {owned})"


# -- the finalizer at admission (mutating) ---------------------------------------------------------------

# The kinds whose cleanup the controller guards with its finalizer: a Subscription (its deletion must end
# in the terminated fact) and a NetworkService (its deletion waits for the device cleanup).
FINALIZED: tuple[str, ...] = ("subscriptions", "networkservices")


def finalizer_path(plural: str) -> str:
    """The URL path of the mutating webhook of `plural` (Kopf routes it to the handler of that id)."""
    return f"/{plural}.finalizer"


# CEL the API server evaluates before calling the mutating webhook: a create that already carries our
# finalizer (every NetworkService the controller creates for a Subscription) has nothing to add, so it
# costs no round trip to the webhook. finalizers_at_admission answers the same for those that do reach it.
FINALIZER_MISSING = f"!has(object.metadata.finalizers) || !object.metadata.finalizers.exists(f, f == '{FINALIZER}')"


def finalizers_at_admission(obj: Obj) -> list[str] | None:
    """The finalizers a created object should be stored with: its own plus ours; None when ours is there.

    Adding it here saves the controller the write of its own (docs/admission.md); without this webhook,
    or when it does not answer, the controller adds it as before."""
    meta = obj.get("metadata") or {}
    finalizers = [f for f in meta.get("finalizers") or [] if isinstance(f, str)]
    if FINALIZER in finalizers or meta.get("deletionTimestamp"):
        return None
    return [*finalizers, FINALIZER]


def mutating_webhook_configuration(
    name: str, base_url: str, ca_bundle_pem: bytes, *, timeout_seconds: int = 2
) -> dict[str, Any]:
    """The MutatingWebhookConfiguration that has the API server store Subscriptions and NetworkServices
    with the controller's finalizer (templates/mutatingwebhook.yaml renders the same through the Service).

    failurePolicy Ignore: the mutation only saves a write, so a webhook that does not answer must never
    refuse an order; the controller then adds the finalizer itself. Creates only: an update never needs it."""
    ca = base64.b64encode(ca_bundle_pem).decode()
    return {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [
            {
                "name": f"{plural}.finalizer.telco.intent.dev",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "failurePolicy": "Ignore",
                "reinvocationPolicy": "Never",
                "timeoutSeconds": timeout_seconds,
                "matchPolicy": "Equivalent",
                "clientConfig": {"url": base_url.rstrip("/") + finalizer_path(plural), "caBundle": ca},
                "matchConditions": [{"name": "finalizer-missing", "expression": FINALIZER_MISSING}],
                "rules": [
                    {
                        "apiGroups": ["telco.intent.dev"],
                        "apiVersions": ["v1alpha1"],
                        "operations": ["CREATE"],
                        "resources": [plural],
                    }
                ],
            }
            for plural in FINALIZED
        ],
    }
