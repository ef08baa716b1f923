"""TMF622 Product Ordering, pure: a productOrder is read into an `OrderRequest` (or refused naming the
field), becomes a new Subscription (add) or a patch of one (modify: its offering or rate; delete: its
termination), and is rendered back with a state that follows the Subscription.

The order itself is recorded on its Subscription (annotation inventory.ORDER_ANNOTATION), so the
cluster stays the one store: `kubectl get subscription -o yaml` shows which orders made it what it is.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from ..api.common import API_VERSION
from ..api.subscription import SubscriptionSpec
from ..times import rfc3339
from . import inventory
from .conventions import TmfError
from .resources import Collection, Resource, compact, object_id, parse_id, ref

BASE = inventory.ORDER_BASE
MAX_RECORDS = 32  # orders kept on one Subscription (an annotation is at most 256 KiB in all)
CHARACTERISTICS = ("endpoints", "vrf", "bandwidthMbps")
Action = Literal["add", "modify", "delete"]


_M = TypeVar("_M", bound=BaseModel)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, str_max_length=1024)
    type_: StrictStr | None = Field(default=None, alias="@type")
    base_type: StrictStr | None = Field(default=None, alias="@baseType")
    schema_location: StrictStr | None = Field(default=None, alias="@schemaLocation")


class _RefIn(BaseModel):
    """A reference: only its id is read (href, name and @referredType are the caller's copy)."""

    model_config = ConfigDict(extra="ignore", str_max_length=1024)
    id: StrictStr = Field(min_length=1)


class _PartyIn(BaseModel):
    model_config = ConfigDict(extra="ignore", str_max_length=256)
    id: StrictStr | None = None
    name: StrictStr | None = None
    role: StrictStr | None = Field(default=None, max_length=64)


class _CharacteristicIn(_Strict):
    id: StrictStr | None = None
    name: StrictStr
    valueType: StrictStr | None = None
    value: Any


class _ProductIn(_Strict):
    id: StrictStr | None = None
    href: StrictStr | None = None
    name: StrictStr | None = None
    description: StrictStr | None = None
    productCharacteristic: list[_CharacteristicIn] = Field(default_factory=list, max_length=16)


class _ItemIn(_Strict):
    id: StrictStr = Field(min_length=1, max_length=64)
    action: Literal["add", "modify", "delete", "noChange"]
    quantity: StrictInt | None = Field(default=None, ge=1, le=1)
    productOffering: _RefIn | None = None
    product: _ProductIn | None = None
    billingAccount: _RefIn | None = None


class _OrderIn(_Strict):
    productOrderItem: list[_ItemIn] = Field(min_length=1, max_length=16)
    billingAccount: _RefIn | None = None
    relatedParty: list[_PartyIn] = Field(default_factory=list, max_length=8)
    externalId: StrictStr | None = Field(default=None, max_length=256)
    description: StrictStr | None = None
    category: StrictStr | None = None
    priority: StrictStr | None = None
    requestedStartDate: datetime | None = None
    requestedCompletionDate: datetime | None = None


class _CancelIn(_Strict):
    productOrder: _RefIn
    cancellationReason: StrictStr | None = Field(default=None, max_length=256)
    requestedCancellationDate: datetime | None = None


def _validated(model: type[_M], body: Any, root: str, what: str) -> _M:
    """`body` read as `model`; 400 naming each bad field (under `root`) otherwise."""
    if not isinstance(body, dict):
        raise TmfError(400, f"body: expected a JSON object (a {what})")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _shape_error(exc, root) from None


def _shape_error(exc: ValidationError, root: str) -> TmfError:
    parts = []
    for e in exc.errors()[:8]:
        where = root + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"])
        what = "not an attribute this API takes" if e["type"] == "extra_forbidden" else e["msg"]
        parts.append(f"{where}: {what}")
    return TmfError(400, "; ".join(parts))


@dataclass(frozen=True)
class OrderRequest:
    action: Action
    namespace: str
    subscription: str | None  # None for an add without product.name: the facade names it
    item_id: str
    offering: str | None = None
    account: str | None = None
    spec_fields: tuple[tuple[str, Any], ...] = ()  # what an add sets beyond offering and account
    bandwidth: int | None = None
    external_id: str | None = None


def _characteristics(product: _ProductIn | None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for i, c in enumerate(product.productCharacteristic if product else []):
        if c.name not in CHARACTERISTICS:
            raise TmfError(
                422,
                f"productOrderItem[0].product.productCharacteristic[{i}].name: {c.name[:64]!r} is not a"
                f" characteristic of these products; expected one of {', '.join(CHARACTERISTICS)}",
            )
        if c.name in found:
            raise TmfError(422, f"productOrderItem[0].product.productCharacteristic: {c.name} given twice")
        found[c.name] = c.value
    return found


def _product_id(item: _ItemIn) -> tuple[str, str]:
    if item.product is None or not item.product.id:
        raise TmfError(422, f"productOrderItem[0].product.id: a {item.action} names the product (id) it changes")
    parsed = parse_id(item.product.id, namespaced=True)
    if parsed is None or parsed.namespace is None:
        raise TmfError(422, f"productOrderItem[0].product.id: {item.product.id[:80]!r} is not a product id")
    return parsed.namespace, parsed.name


def parse_order(body: Any) -> OrderRequest:
    """The request a productOrder makes, or a TmfError: 400 for a body of the wrong shape, 422 for one
    this API cannot carry out (naming the field either way)."""
    order = _validated(_OrderIn, body, "productOrder", "ProductOrder_Create")
    if len(order.productOrderItem) != 1:
        raise TmfError(422, "productOrderItem: this API takes one item per order (one product per order)")
    item = order.productOrderItem[0]
    if item.action == "noChange":
        raise TmfError(422, "productOrderItem[0].action: noChange asks for nothing; expected add, modify or delete")
    wanted = _characteristics(item.product)
    if item.action == "add":
        return _add(order, item, wanted)
    namespace, name = _product_id(item)
    if item.action == "delete":
        if wanted or item.productOffering is not None:
            raise TmfError(422, "productOrderItem[0]: a delete takes only product.id")
        return OrderRequest("delete", namespace, name, item.id, external_id=order.externalId)
    extra = set(wanted) - {"bandwidthMbps"}
    if extra:
        raise TmfError(
            422, f"productOrderItem[0].product.productCharacteristic: a modify changes the offering or bandwidthMbps"
            f" only, not {', '.join(sorted(extra))}",
        )  # fmt: skip
    bandwidth = wanted.get("bandwidthMbps")
    if bandwidth is not None and (not isinstance(bandwidth, int) or isinstance(bandwidth, bool)):
        raise TmfError(422, "productOrderItem[0].product.productCharacteristic bandwidthMbps: expected a whole number")
    if item.productOffering is None and bandwidth is None:
        raise TmfError(422, "productOrderItem[0]: a modify names a productOffering.id or a bandwidthMbps to change to")
    offering = item.productOffering.id if item.productOffering else None
    if offering is not None and parse_id(offering, namespaced=False) is None:
        raise TmfError(422, f"productOrderItem[0].productOffering.id: {offering[:80]!r} is not a productOffering id")
    return OrderRequest(
        "modify", namespace, name, item.id, offering=offering, bandwidth=bandwidth, external_id=order.externalId
    )


def _add(order: _OrderIn, item: _ItemIn, wanted: dict[str, Any]) -> OrderRequest:
    if item.productOffering is None:
        raise TmfError(422, "productOrderItem[0].productOffering.id: an add names the productOffering ordered")
    offering = item.productOffering.id
    if parse_id(offering, namespaced=False) is None:
        raise TmfError(422, f"productOrderItem[0].productOffering.id: {offering[:80]!r} is not a productOffering id")
    account_ref = item.billingAccount or order.billingAccount
    if account_ref is None:
        raise TmfError(
            422, "billingAccount.id: an add names the billingAccount that pays (its namespace is the customer's)"
        )
    account = parse_id(account_ref.id, namespaced=True)
    if account is None or account.namespace is None:
        raise TmfError(422, f"billingAccount.id: {account_ref.id[:80]!r} is not a billingAccount id")
    if "endpoints" not in wanted:
        raise TmfError(
            422, "productOrderItem[0].product.productCharacteristic: an add needs the endpoints characteristic"
            " (a list of {device, port, vlanId, ipv4Address})",
        )  # fmt: skip
    name = item.product.name if item.product else None
    if name is not None and parse_id(name, namespaced=False) is None:
        raise TmfError(422, f"productOrderItem[0].product.name: {name[:80]!r} is not a DNS-1123 name")
    fields: dict[str, Any] = dict(wanted)
    if order.relatedParty:
        fields["relatedParty"] = [
            {"role": p.role or "customer", "name": p.name or p.id or ""} for p in order.relatedParty
        ]
    if order.requestedStartDate is not None:
        fields["requestedStartDate"] = rfc3339(order.requestedStartDate)
    return OrderRequest(
        "add",
        account.namespace,
        name,
        item.id,
        offering=offering,
        account=account.name,
        spec_fields=tuple(sorted(fields.items())),
        external_id=order.externalId,
    )


def _record(request: OrderRequest, n: int, now: datetime) -> dict[str, Any]:
    record: dict[str, Any] = {"n": n, "action": request.action, "item": request.item_id, "orderDate": rfc3339(now)}
    for key, value in (
        ("offering", request.offering),
        ("bandwidthMbps", request.bandwidth),
        ("externalId", request.external_id),
    ):
        if value is not None:
            record[key] = value
    return record


def new_subscription(request: OrderRequest, name: str, now: datetime) -> dict[str, Any]:
    """The Subscription an add order creates, checked against the API model first (nothing is sent that
    the API server would refuse for its shape); 422 naming the field otherwise."""
    spec: dict[str, Any] = {
        "productOffering": {"name": request.offering},
        "billingAccountRef": {"name": request.account},
        **dict(request.spec_fields),
    }
    try:
        SubscriptionSpec.model_validate(spec)
    except ValidationError as exc:
        raise TmfError(422, _spec_problem(exc)) from None
    record = _record(request, 1, now)
    return {
        "apiVersion": API_VERSION,
        "kind": "Subscription",
        "metadata": {
            "name": name,
            "namespace": request.namespace,
            "annotations": {inventory.ORDER_ANNOTATION: json.dumps([record], separators=(",", ":"))},
        },
        "spec": spec,
    }


def _spec_problem(exc: ValidationError) -> str:
    names = {"productOffering": "productOffering.id", "billingAccountRef": "billingAccount.id"}
    parts = []
    for e in exc.errors()[:8]:
        loc = [str(p) for p in e["loc"]]
        head = names.get(loc[0]) if loc else None
        where = head or f"productCharacteristic {'.'.join(loc)}"
        parts.append(f"{where}: {e['msg']}")
    return "; ".join(parts)


def change_patch(request: OrderRequest, obj: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """The merge patch a modify or delete order makes of its Subscription (resourceVersion-checked)."""
    records = inventory.order_records(obj)
    if len(records) >= MAX_RECORDS:
        raise TmfError(409, f"product {object_id(obj)}: {MAX_RECORDS} orders recorded already; no more fit on it")
    state = (obj.get("status") or {}).get("state")
    spec_now = obj.get("spec") or {}
    if spec_now.get("desiredState") == "terminated" or state in ("terminated", "cancelled"):
        raise TmfError(409, f"product {object_id(obj)}: terminated already; a terminated product cannot change")
    spec: dict[str, Any]
    if request.action == "delete":
        spec = {"desiredState": "terminated"}
    else:
        spec = {}
        if request.offering is not None:
            spec["productOffering"] = {"name": request.offering}
        if request.bandwidth is not None:
            spec["bandwidthMbps"] = request.bandwidth
    n = max((r["n"] for r in records), default=0) + 1
    annotation = json.dumps([*records, _record(request, n, now)], separators=(",", ":"))
    return {
        "metadata": {
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "annotations": {inventory.ORDER_ANNOTATION: annotation},
        },
        "spec": spec,
    }


def cancel_patch(obj: Mapping[str, Any], n: int, now: datetime) -> dict[str, Any]:
    """Cancelling an add order not yet completed: the Subscription is terminated before activation (it
    becomes cancelled) and the order is marked cancelled. 409 when the order is past cancelling."""
    records = inventory.order_records(obj)
    record = next((r for r in records if r["n"] == n), None)
    if record is None:
        raise TmfError(422, "productOrder.id: no such productOrder")
    state = order_state(obj, record)
    if record["action"] != "add" or state not in ("acknowledged", "inProgress"):
        raise TmfError(
            409, f"productOrder {inventory.order_id(object_id(obj), record)}: a {state} {record['action']} order"
            " cannot be cancelled; only an add order not yet completed can",
        )  # fmt: skip
    marked = [{**r, "cancelled": rfc3339(now)} if r["n"] == n else r for r in records]
    return {
        "metadata": {
            "resourceVersion": obj["metadata"]["resourceVersion"],
            "annotations": {inventory.ORDER_ANNOTATION: json.dumps(marked, separators=(",", ":"))},
        },
        "spec": {"desiredState": "terminated"},
    }


ADD_STATES = {
    None: "acknowledged",
    "created": "acknowledged",
    "pendingActive": "inProgress",
    "aborted": "failed",
    "cancelled": "cancelled",
}


def order_state(obj: Mapping[str, Any], record: Mapping[str, Any]) -> str:
    """The TMF622 state of an order, from its Subscription as it is now."""
    status = obj.get("status") or {}
    state = status.get("state")
    if record.get("cancelled"):
        return "cancelled" if state in ("cancelled", "terminated") else "pendingCancellation"
    if record["action"] == "add":
        return ADD_STATES.get(state, "completed")
    if record["action"] == "delete":
        return "completed" if state in ("terminated", "cancelled") else "inProgress"
    plans = (status.get("billing") or {}).get("plans") or []
    current = plans[-1] if plans else None
    target = record.get("offering") or (obj.get("spec") or {}).get("productOffering", {}).get("name")
    pending = status.get("pendingChange")
    if pending and pending.get("offering") == target and pending.get("state") == "refused":
        return "failed"
    if (
        current
        and current.get("offering") == target
        and (record.get("bandwidthMbps") is None or current.get("bandwidthMbps") == record["bandwidthMbps"])
    ):
        return "completed"
    if state in ("terminated", "cancelled", "aborted"):
        return "failed"
    return "inProgress"


def product_order(obj: Mapping[str, Any], record: Mapping[str, Any]) -> Resource:
    meta = obj["metadata"]
    status = obj.get("status") or {}
    spec = obj.get("spec") or {}
    pid = object_id(obj)
    oid = inventory.order_id(pid, record)
    state = order_state(obj, record)
    offering = record.get("offering")
    completion = None
    if state == "completed":
        completion = status.get("startDate") if record["action"] == "add" else status.get("terminationDate")
    item = compact(
        {
            "id": record.get("item") or "1",
            "action": record["action"],
            "state": state,
            "quantity": 1,
            "productOffering": ref(f"{inventory.catalog.BASE}/productOffering", offering, "ProductOffering", offering)
            if offering
            else None,
            "product": ref(f"{inventory.PRODUCT_BASE}/product", pid, "Product", meta["name"]),
            "@type": "ProductOrderItem",
        }
    )
    return compact(
        {
            "id": oid,
            "href": f"{BASE}/productOrder/{oid}",
            "orderDate": record.get("orderDate"),
            "completionDate": completion if record["action"] != "modify" else None,
            "cancellationDate": record.get("cancelled"),
            "externalId": record.get("externalId"),
            "state": state,
            "productOrderItem": [item],
            "billingAccount": inventory.billing_account_ref(meta["namespace"], spec),
            "relatedParty": inventory.related_parties(meta["namespace"], spec),
            "@type": "ProductOrder",
        }
    )


def product_orders(obj: Mapping[str, Any]) -> list[Resource]:
    return [product_order(obj, r) for r in inventory.order_records(obj)]


@dataclass(frozen=True)
class CancelRequest:
    namespace: str
    subscription: str
    n: int  # the order's number on its Subscription
    reason: str | None


def parse_cancel(body: Any) -> CancelRequest:
    """The order a cancelProductOrder names (422 when its id cannot name one), and why."""
    cancel = _validated(_CancelIn, body, "cancelProductOrder", "CancelProductOrder_Create")
    parsed = parse_id(cancel.productOrder.id, namespaced=True, part=True)
    if parsed is None or parsed.part is None or not parsed.part.isdigit() or len(parsed.part) > 6:
        raise TmfError(422, "productOrder.id: no such productOrder")
    assert parsed.namespace is not None
    return CancelRequest(parsed.namespace, parsed.name, int(parsed.part), cancel.cancellationReason)


PRODUCT_ORDER = Collection(
    api="TMF622",
    base=BASE,
    name="productOrder",
    plural="subscriptions",
    namespaced=True,
    render=product_orders,
    attributes=frozenset(
        {
            "id", "href", "orderDate", "completionDate", "cancellationDate", "externalId", "state",
            "productOrderItem", "billingAccount", "relatedParty", "@type",
        }
    ),
)  # fmt: skip
COLLECTIONS = (PRODUCT_ORDER,)
