"""TMF event notifications (TMF688 style), pure: which events a change of a custom resource makes, with
deterministic ids, and which listener registrations want them.

A change is the pair of versions the watch cache saw (old None: added; new None: deleted). Each
version is rendered to its TMF resources and compared by id: a resource that appears is a
<Type>CreateEvent, one that disappears a <Type>DeleteEvent, one whose state attribute moved a
<Type>StateChangeEvent, one with any other rendered attribute changed an AttributeValueChangeEvent.
The id is a UUIDv5 of the API, the resource id, the event type and the object's resourceVersion: the
same change always gets the same id, so a redelivery after a restart is recognisable as one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .conventions import Filter, TmfError, matches
from .resources import Collection, Resource

EVENT_NAMESPACE = uuid.UUID("0b6c3f0e-6a55-4d0f-9d77-5a7d1f3c9e21")
# The attribute whose change is a state change, per resource type.
STATE_ATTRIBUTE = {
    "productOffering": "lifecycleStatus",
    "product": "status",
    "productOrder": "state",
    "service": "state",
    "billingAccount": "state",
    "customerBill": "state",
    "usage": "status",
}
# The events each resource type's document defines (TMF666 has none for create and delete of a
# billingAccount; TMF678's document defines none: its user guide's CustomerBill events are used).
KINDS_OF_EVENT = {
    "productOffering": ("Create", "AttributeValueChange", "StateChange", "Delete"),
    "productOrder": ("Create", "AttributeValueChange", "StateChange", "Delete"),
    "product": ("Create", "AttributeValueChange", "StateChange", "Delete"),
    "service": ("Create", "AttributeValueChange", "StateChange", "Delete"),
    "billingAccount": ("AttributeValueChange", "StateChange"),
    "customerBill": ("Create", "StateChange"),
    "usage": ("Create", "AttributeValueChange", "StateChange", "Delete"),
}
# Attributes whose change is not news: they are timestamps of the rendering, not of the resource.
QUIET = frozenset({"lastUpdate", "lastModified"})
MAX_CALLBACK = 2048


@dataclass(frozen=True)
class Event:
    id: str
    api: str
    resource_type: str  # e.g. product
    event_type: str  # e.g. ProductStateChangeEvent
    resource: Resource
    namespace: str | None  # where the object lives (who may see the event)
    time: str  # the object's change as the cluster dated it, else the facade's clock (RFC 3339)

    def payload(self) -> dict[str, Any]:
        """The notification body the documents define: eventId, eventTime, eventType, event.<resource>."""
        return {
            "eventId": self.id,
            "eventTime": self.time,
            "eventType": self.event_type,
            "event": {self.resource_type: self.resource},
        }


def event_type(resource_type: str, kind: str) -> str:
    return f"{resource_type[0].upper()}{resource_type[1:]}{kind}Event"


def event_id(api: str, resource_id: str, type_: str, version: str) -> str:
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{api}\n{resource_id}\n{type_}\n{version}"))


def changes(
    collection: Collection,
    old: list[Resource],
    new: list[Resource],
    version: str,
    namespace: str | None,
    time: str,
) -> list[Event]:
    """The events between two renderings of one object (at `version`, the newer object's resourceVersion)."""
    kinds = KINDS_OF_EVENT.get(collection.name, ())
    before = {r["id"]: r for r in old}
    after = {r["id"]: r for r in new}
    state = STATE_ATTRIBUTE.get(collection.name)
    out: list[Event] = []

    def add(kind: str, resource: Resource) -> None:
        if kind in kinds:
            type_ = event_type(collection.name, kind)
            rid = str(resource["id"])
            out.append(
                Event(
                    event_id(collection.api, rid, type_, version),
                    collection.api,
                    collection.name,
                    type_,
                    resource,
                    namespace,
                    time,
                )
            )

    for rid, resource in after.items():
        previous = before.get(rid)
        if previous is None:
            add("Create", resource)
            continue
        if state is not None and previous.get(state) != resource.get(state):
            add("StateChange", resource)
        changed = {k for k in set(previous) | set(resource) if previous.get(k) != resource.get(k)} - QUIET - {state}
        if changed:
            add("AttributeValueChange", resource)
    for rid, resource in before.items():
        if rid not in after:
            add("Delete", resource)
    return out


# -- listener registrations -------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    """A registration: where to POST, which events (eventType and attribute equalities), and who
    registered it (events go only where that user may read)."""

    id: str
    api: str
    callback: str
    query: str
    event_types: frozenset[str]
    filters: tuple[Filter, ...]
    owner: Mapping[str, Any]


def parse_listener(api: str, body: Any, known_types: Iterable[str], attributes: Iterable[str]) -> tuple[str, str]:
    """The (callback, query) of an EventSubscriptionInput, checked; 400 naming the field otherwise."""
    if not isinstance(body, dict):
        raise TmfError(400, "body: expected a JSON object (an EventSubscriptionInput)")
    unknown = set(body) - {"callback", "query", "@type", "@baseType", "@schemaLocation"}
    if unknown:
        raise TmfError(400, f"{', '.join(sorted(unknown))[:200]}: not an attribute of EventSubscriptionInput")
    callback = body.get("callback")
    if not isinstance(callback, str) or len(callback) > MAX_CALLBACK:
        raise TmfError(400, "callback: expected the listener's absolute http(s) URL")
    parts = urlsplit(callback)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise TmfError(400, f"callback: expected an absolute http(s) URL, got {callback[:100]!r}")
    query = body.get("query", "")
    if not isinstance(query, str) or len(query) > 1024:
        raise TmfError(400, "query: expected a string such as eventType=ProductStateChangeEvent")
    listener_filters(query, known_types, attributes)  # refuse now what could never match
    return callback, query


def listener_filters(
    query: str, known_types: Iterable[str], attributes: Iterable[str]
) -> tuple[frozenset[str], tuple[Filter, ...]]:
    """`eventType=A,B&<attribute path>=<value>...` (spaces around = allowed, as TMF688 examples write
    them) as the event types wanted (empty: all) and attribute filters on the event's resource."""
    known = set(known_types)
    wanted: set[str] = set()
    filters: list[Filter] = []
    for name, value in parse_qsl(query.replace(" ", ""), keep_blank_values=True):
        values = tuple(v for v in value.split(",") if v)
        if name == "eventType":
            bad = [v for v in values if v not in known]
            if bad or not values:
                raise TmfError(
                    400,
                    f"query eventType: {', '.join(bad[:3]) or 'empty'}; expected some of {', '.join(sorted(known))}",
                )
            wanted.update(values)
        else:
            path = tuple(name.removeprefix("event.").split("."))
            # the resource's attributes, as "product.status" or plain "status"
            if len(path) > 1 and path[0] not in attributes:
                path = path[1:]
            if not all(path) or path[0] not in set(attributes):
                raise TmfError(400, f"query {name[:60]!r}: not an attribute of this API's resources")
            filters.append(Filter(path, values))
    return frozenset(wanted), tuple(filters)


def wanted_by(listener: Listener, event: Event) -> bool:
    if listener.api != event.api:
        return False
    if listener.event_types and event.event_type not in listener.event_types:
        return False
    return matches(event.resource, listener.filters)
