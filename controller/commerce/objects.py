"""Small pure readers of the commercial objects as the watch delivers them (plain dicts).

Shared by the commerce controllers (controller/commerce/*.py); nothing here does I/O.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..api.common import API_VERSION, Condition
from ..api.networkservice import NetworkServiceSpec
from ..conditions import Cond, merge_conditions
from ..times import parse_time

Key = tuple[str, str]  # (namespace, name)


def key_of(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def rv(body: Mapping[str, Any] | None) -> str:
    return str(((body or {}).get("metadata") or {}).get("resourceVersion") or "")


def older(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether `new` is an older version than the one indexed (a late watch event after our own write).

    resourceVersions are opaque in general; the API server's are etcd revisions, so compare them as
    integers when both are, and otherwise take the new one."""
    a, b = rv(old), rv(new)
    return a.isdigit() and b.isdigit() and int(b) < int(a)


def owner(body: Mapping[str, Any]) -> str | None:
    """The name of the Subscription that controls this NetworkService, if any."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "Subscription" and ref.get("controller") and ref.get("apiVersion") == API_VERSION:
            return str(ref.get("name"))
    return None


def owner_uid(body: Mapping[str, Any]) -> str | None:
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "Subscription" and ref.get("controller"):
            return str(ref.get("uid"))
    return None


def _service_default(key: str) -> Any:
    model_field = NetworkServiceSpec.model_fields.get(key)
    return None if model_field is None or model_field.is_required() else model_field.default


def spec_patch(have: Mapping[str, Any], want: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch turning spec `have` into `want`: changed keys, and null for keys we no longer set
    (unless the stored value is just the API default, which the server would put back)."""
    patch = {k: v for k, v in want.items() if have.get(k) != v}
    for k, v in have.items():
        if k not in want and v is not None and v != _service_default(k):
            patch[k] = None
    return patch


def set_condition(
    conditions: list[dict[str, Any]], stored: list[dict[str, Any]] | None, cond: Cond, generation: int, now: datetime
) -> list[dict[str, Any]]:
    """`conditions` with `cond` replaced or appended in place (transition time kept unless it flipped)."""
    merged = next(c for c in merge_conditions(stored, [cond], generation, now) if c["type"] == cond.type)
    out = [c for c in conditions if c.get("type") != cond.type]
    index = next((i for i, c in enumerate(conditions) if c.get("type") == cond.type), len(out))
    out.insert(index, merged)
    return out


def stored_conditions(stored: Mapping[str, Any], kind: str | None = None) -> list[Condition]:
    """The stored conditions that parse (only those of type `kind`, when given)."""
    out = []
    for raw in stored.get("conditions") or []:
        if kind is not None and not (isinstance(raw, Mapping) and raw.get("type") == kind):
            continue
        with contextlib.suppress(ValidationError):
            out.append(Condition.model_validate(raw))
    return out


def billing_of(body: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((body.get("status") or {}).get("billing")) or {}


def start_date(body: Mapping[str, Any]) -> datetime | None:
    return parse_time(((billing_of(body).get("ledger")) or {}).get("startDate"))


def account_of(body: Mapping[str, Any]) -> str:
    """The account a Subscription bills: its BillingAccount's name, or the deprecated inline id."""
    spec = body.get("spec") or {}
    ref = spec.get("billingAccountRef") or {}
    return str(ref.get("name") or (spec.get("billingAccount") or {}).get("id") or "")


def invoice_account(body: Mapping[str, Any]) -> str:
    return str((body.get("spec") or {}).get("billingAccount") or "")


def offering_of(body: Mapping[str, Any]) -> str:
    return str((((body.get("spec") or {}).get("productOffering")) or {}).get("name") or "")


def offerings_of(body: Mapping[str, Any]) -> set[str]:
    """The offering ordered and the one whose version is in force (they differ while a change is pending)."""
    plans = billing_of(body).get("plans") or []
    in_force = (plans[-1] or {}).get("offering") if plans else None
    return {offering_of(body), *([in_force] if in_force else [])}


def state_of(body: Mapping[str, Any]) -> str | None:
    return (body.get("status") or {}).get("state")


def dunning_signature(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What dunning reads of an invoice: a change here may suspend or resume its account."""
    status = body.get("status") or {}
    return (status.get("state"), status.get("overdue"), status.get("paymentDueDate"), status.get("amountDue"))


def label_value(value: str) -> str:
    """`value` as a label value (at most 63 characters of [A-Za-z0-9._-], alphanumeric at both ends)."""
    text = "".join(c if c.isalnum() or c in "._-" else "-" for c in value)[:63]
    return text.strip("._-")
