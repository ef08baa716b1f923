"""What every TMF resource the facade renders shares: ids, hrefs, references, money and time, pure.

Ids are the Kubernetes names, so that kubectl and the API name the same thing the same way: a
cluster-scoped object's id is its name; a namespaced one's is `<namespace>.<name>` (a namespace is a DNS
label, without dots, so the first dot splits it). A part of an object (a bill line) appends `~<key>`
(`~` cannot occur in a name). The namespace is therefore known from the id alone: a request is
authorized before anything is looked up, and a refusal says nothing about whether the object exists.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..api.common import DNS_LABEL, DNS_SUBDOMAIN

Resource = dict[str, Any]
_LABEL = re.compile(DNS_LABEL)
_SUBDOMAIN = re.compile(DNS_SUBDOMAIN)
PART = "~"


@dataclass(frozen=True)
class Collection:
    """One TMF resource type served under an API's base path, backed by one kind of custom resource."""

    api: str  # e.g. TMF637
    base: str  # the published base path, e.g. /tmf-api/productInventory/v4
    name: str  # the resource path segment and @type's stem, e.g. product
    plural: str  # the custom resource's plural, e.g. subscriptions
    namespaced: bool
    render: Callable[[Mapping[str, Any]], list[Resource]]  # one object -> its TMF resources
    attributes: frozenset[str]  # top-level attributes a resource may carry (for fields= and filters)

    @property
    def path(self) -> str:
        return f"{self.base}/{self.name}"


def object_id(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}.{meta['name']}" if meta.get("namespace") else str(meta["name"])


def namespaced_id(namespace: str, name: str) -> str:
    return f"{namespace}.{name}"


@dataclass(frozen=True)
class ParsedId:
    namespace: str | None
    name: str
    part: str | None = None


def parse_id(text: str, *, namespaced: bool, part: bool = False) -> ParsedId | None:
    """The namespace, name (and part key) an id names; None when it cannot name anything."""
    key: str | None = None
    if part:
        text, sep, key = text.rpartition(PART)
        if not sep or not key or len(key) > 253:
            return None
    namespace: str | None = None
    if namespaced:
        namespace, sep, text = text.partition(".")
        if not sep or len(namespace) > 63 or not _LABEL.match(namespace):
            return None
    if not text or len(text) > 253 or not _SUBDOMAIN.match(text):
        return None
    return ParsedId(namespace, text, key)


def ref(base_path: str, resource_id: str, referred: str, name: str | None = None) -> Resource:
    """A TMF entity reference (id, href, @referredType, and name when known)."""
    out: Resource = {"id": resource_id, "href": f"{base_path}/{resource_id}", "@referredType": referred}
    if name is not None:
        out["name"] = name
    return out


def money(value: Mapping[str, Any] | None) -> Resource | None:
    """TMF Money: the documents type value as a number; the custom resources keep exact decimal strings."""
    if not value:
        return None
    return {"unit": value["unit"], "value": float(Decimal(str(value["value"])))}


def compact(resource: Mapping[str, Any]) -> Resource:
    """The resource without unset attributes (TMF omits what is unknown rather than sending null)."""
    return {k: v for k, v in resource.items() if v is not None and v != []}


def customer(namespace: str) -> Resource:
    """The customer party: one namespace per customer."""
    return {"id": namespace, "name": namespace, "role": "customer", "@referredType": "Organization"}


def characteristic(name: str, value: Any, value_type: str) -> Resource:
    return {"name": name, "valueType": value_type, "value": value}
