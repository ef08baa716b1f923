"""From an order to the network: the NetworkService a Subscription implies, and who holds which endpoint.

Pure: objects and specs come in, an object body, errors or claims come out.

Validation here covers what the CRD's CEL rules cannot see because it spans two objects (the
Subscription and its ProductOffering, or the Subscription and the NetworkService it already owns),
and what the API server or the device would refuse. Every `OrderError` names the Subscription field
and what is expected of it.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..api.common import API_VERSION
from ..api.networkservice import METERED_LABEL
from ..api.productoffering import ProductOfferingSpec
from ..api.subscription import SubscriptionSpec
from ..times import parse_time, rfc3339

SUBSCRIPTION_LABEL = "telco.intent.dev/subscription"
OFFERING_LABEL = "telco.intent.dev/offering"
LABEL_VALUE_MAX = 63
NEEDS_ADDRESS = ("internetAccess", "l3vpn")
# States in which a Subscription no longer holds its endpoints.
RELEASED_STATES = frozenset({"terminated", "cancelled", "aborted"})
# States in which the order was accepted: its endpoints are taken, whatever was ordered later or earlier.
ACCEPTED_STATES = frozenset({"pendingActive", "active", "suspended", "pendingTerminate"})

EndpointKey = tuple[str, str, int]  # (device, port, vlanId)


class OrderError(ValueError):
    """An order the controller cannot fulfil as written: `field` is the Subscription field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, OrderError) and (self.field, self.message) == (other.field, other.message)

    def __hash__(self) -> int:
        return hash((self.field, self.message))

    def __repr__(self) -> str:
        return f"OrderError({self.field!r}, {self.message!r})"


def validate_order(
    subscription_name: str,
    sub_spec: SubscriptionSpec,
    offering_spec: ProductOfferingSpec,
    current_service_spec: Mapping[str, Any] | None = None,
) -> list[OrderError]:
    """Everything wrong with the order against its offering; empty when the NetworkService can be made.

    `current_service_spec` is the spec of the NetworkService the Subscription already owns, if any:
    its vrf cannot change (the NetworkService CRD makes it immutable).
    """
    errors: list[OrderError] = []
    offering_name = sub_spec.productOffering.name
    service_type = offering_spec.serviceCandidate.serviceType
    if len(subscription_name) > LABEL_VALUE_MAX:
        errors.append(
            OrderError(
                "metadata.name",
                f"must be at most {LABEL_VALUE_MAX} characters (it is {len(subscription_name)}): it becomes the"
                f" value of the {SUBSCRIPTION_LABEL} label on its NetworkService",
            )
        )
    if len(offering_name) > LABEL_VALUE_MAX:
        errors.append(
            OrderError(
                "spec.productOffering.name",
                f"must be at most {LABEL_VALUE_MAX} characters (it is {len(offering_name)}): it becomes the value"
                f" of the {OFFERING_LABEL} label on the NetworkService",
            )
        )
    if service_type == "l3vpn" and not sub_spec.vrf:
        errors.append(
            OrderError(
                "spec.vrf",
                f"offering {offering_name} delivers l3vpn, which needs a VRF name (a DNS label, e.g. customer-a)",
            )
        )
    if service_type == "l3vpn" and sub_spec.vrf and current_service_spec is not None:
        existing = current_service_spec.get("vrf")
        if existing and existing != sub_spec.vrf:
            errors.append(
                OrderError(
                    "spec.vrf",
                    f"cannot change from {existing} to {sub_spec.vrf} once the service exists;"
                    " order a new Subscription for another VRF",
                )
            )
    if sub_spec.bandwidthMbps is not None:
        allowed = sorted(
            {offering_spec.serviceCandidate.bandwidthMbps, *offering_spec.serviceCandidate.bandwidthOptionsMbps}
        )
        if sub_spec.bandwidthMbps not in allowed:
            errors.append(
                OrderError(
                    "spec.bandwidthMbps",
                    f"{sub_spec.bandwidthMbps} is not a rate offering {offering_name} sells; expected one of"
                    f" {', '.join(map(str, allowed))}",
                )
            )
    networks: list[tuple[int, str, ipaddress.IPv4Interface]] = []
    for i, endpoint in enumerate(sub_spec.endpoints):
        where = f"spec.endpoints[{i}].ipv4Address"
        if endpoint.ipv4Address is None:
            if service_type in NEEDS_ADDRESS:
                errors.append(
                    OrderError(
                        where,
                        f"offering {offering_name} delivers {service_type}, which needs an IPv4 address with"
                        " prefix length on every endpoint, e.g. 192.0.2.1/30",
                    )
                )
            continue
        interface, error = _parsed_address(endpoint.ipv4Address)
        if error is not None:
            errors.append(OrderError(where, error))
            continue
        for j, device, other in networks:
            if device == endpoint.device and interface.network.overlaps(other.network):
                errors.append(
                    OrderError(
                        where,
                        f"{interface} overlaps spec.endpoints[{j}].ipv4Address {other} on device {device};"
                        " a device cannot hold overlapping subnets in one routing instance",
                    )
                )
                break
        networks.append((i, endpoint.device, interface))
    return errors


def network_service_for(
    subscription_name: str,
    namespace: str,
    subscription_uid: str,
    sub_spec: SubscriptionSpec,
    offering_spec: ProductOfferingSpec,
    admin_enabled: bool,
    current_service_spec: Mapping[str, Any] | None = None,
    metered: bool = False,
) -> dict[str, Any]:
    """The NetworkService object body realizing the Subscription, owned by it (`metered`: labelled so the
    replicas driving its devices read its octet counters).

    Raises the first `OrderError` of `validate_order` rather than build a body the API server or the
    device would reject. The spec takes the offering's serviceCandidate (serviceType, rates, drift
    policy) and the Subscription's endpoints and vrf (only an l3vpn uses a vrf; others leave it out).
    """
    errors = validate_order(subscription_name, sub_spec, offering_spec, current_service_spec)
    if errors:
        raise errors[0]
    candidate = offering_spec.serviceCandidate
    offering_name = sub_spec.productOffering.name
    rate = sub_spec.bandwidthMbps or candidate.bandwidthMbps
    spec: dict[str, Any] = {
        "serviceType": candidate.serviceType,
        "endpoints": [e.model_dump(exclude_none=True) for e in sub_spec.endpoints],
        "bandwidthMbps": rate,
    }
    if candidate.peakBandwidthMbps is not None and candidate.peakBandwidthMbps >= rate:
        spec["peakBandwidthMbps"] = candidate.peakBandwidthMbps
    if candidate.serviceType == "l3vpn":
        spec["vrf"] = sub_spec.vrf
    spec["adminState"] = "enabled" if admin_enabled else "disabled"
    spec["driftPolicy"] = candidate.driftPolicy
    return {
        "apiVersion": API_VERSION,
        "kind": "NetworkService",
        "metadata": {
            "name": subscription_name,
            "namespace": namespace,
            "labels": {
                SUBSCRIPTION_LABEL: subscription_name,
                OFFERING_LABEL: offering_name,
                **({METERED_LABEL: "true"} if metered else {}),
            },
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": "Subscription",
                    "name": subscription_name,
                    "uid": subscription_uid,
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }


# --- Endpoint claims -------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderRecord:
    """What claim bookkeeping needs of one Subscription."""

    namespace: str
    name: str
    created: datetime  # metadata.creationTimestamp
    endpoints: tuple[EndpointKey, ...]
    state: str | None = None  # status.state; None: not processed yet (an order like `created`)

    @property
    def holds_endpoints(self) -> bool:
        return self.state not in RELEASED_STATES

    @property
    def accepted(self) -> bool:
        return self.state in ACCEPTED_STATES

    @property
    def precedence(self) -> tuple[int, datetime, str, str]:
        """Who keeps a contested endpoint: accepted orders first, then by (creationTimestamp, namespace, name)."""
        return (0 if self.accepted else 1, self.created, self.namespace, self.name)

    def same_subscription(self, other: OrderRecord) -> bool:
        return (self.namespace, self.name) == (other.namespace, other.name)

    def __str__(self) -> str:
        return f"Subscription {self.namespace}/{self.name}"


def order_record(obj: Mapping[str, Any]) -> OrderRecord:
    """An `OrderRecord` from a raw Subscription object as the API returns it."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    status = obj.get("status") or {}
    created = parse_time(meta.get("creationTimestamp"))
    if created is None:
        raise ValueError(f"Subscription {meta.get('namespace')}/{meta.get('name')} has no creationTimestamp")
    endpoints = tuple(
        (str(e.get("device", "")), str(e.get("port", "")), int(e.get("vlanId", 0)))
        for e in spec.get("endpoints") or []
        if isinstance(e, Mapping)
    )
    return OrderRecord(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        created=created,
        endpoints=endpoints,
        state=status.get("state"),
    )


def endpoint_key(device: str, port: str, vlan_id: int) -> EndpointKey:
    return (device, port, vlan_id)


def endpoint_claims(subscriptions: Iterable[OrderRecord]) -> dict[EndpointKey, OrderRecord]:
    """Who holds each (device, port, vlanId): of the Subscriptions that have not ended and name it,
    an accepted one before any other, then the earliest by (creationTimestamp, namespace, name)."""
    claims: dict[EndpointKey, OrderRecord] = {}
    for record in subscriptions:
        if not record.holds_endpoints:
            continue
        for key in record.endpoints:
            held = claims.get(key)
            if held is None or record.precedence < held.precedence:
                claims[key] = record
    return claims


@dataclass(frozen=True)
class EndpointConflict:
    """`endpoint` of an order is held by `holder`, another Subscription that comes first."""

    endpoint: EndpointKey
    holder: OrderRecord

    @property
    def message(self) -> str:
        device, port, vlan = self.endpoint
        state = self.holder.state or "created"
        return (
            f"device {device} port {port} vlanId {vlan} is held by {self.holder}"
            f" (created {rfc3339(self.holder.created)}, state {state})"
        )


def endpoint_conflicts(order: OrderRecord, claims: Mapping[EndpointKey, OrderRecord]) -> tuple[EndpointConflict, ...]:
    """The endpoints of `order` held by another Subscription that takes precedence over it."""
    conflicts = []
    for key in order.endpoints:
        holder = claims.get(key)
        if holder is not None and not holder.same_subscription(order) and holder.precedence < order.precedence:
            conflicts.append(EndpointConflict(key, holder))
    return tuple(conflicts)


@functools.lru_cache(maxsize=4096)
def _parsed_address(address: str) -> tuple[ipaddress.IPv4Interface, str | None]:
    """An endpoint's address and what is wrong with it as a host address; parsed once per address (every
    pass of a Subscription validates its order again, some twice)."""
    interface = ipaddress.IPv4Interface(address)  # the API pattern guarantees the syntax
    return interface, _host_address_error(interface)


def _host_address_error(interface: ipaddress.IPv4Interface) -> str | None:
    network = interface.network
    if network.prefixlen == 0:
        return f"{interface} has prefix length 0; use the subnet's real prefix length, e.g. /30"
    if network.prefixlen > 30:
        return None  # /31 and /32 have no network or broadcast address
    example = f"use a host address such as {network[1]}/{network.prefixlen}"
    if interface.ip == network.network_address:
        return f"{interface} is the network address of {network}; {example}"
    if interface.ip == network.broadcast_address:
        return f"{interface} is the broadcast address of {network}; {example}"
    return None
