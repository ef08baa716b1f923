"""Billing facts as CloudEvents 1.0.

One fact, one id: the id is a UUIDv5 of (subscription uid, fact, occurrence key), so a
retry after a crash re-emits the same id and consumers deduplicate on source + id. The
occurrence key is empty for facts that happen once per subscription (activated,
terminated), the transition instant for suspended/resumed, and the price and period for
periodic facts. `time` is when the fact occurred, never when it was sent.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, get_args

from cloudevents.core.v1.event import CloudEvent

from ..api.common import GROUP, VERSION
from ..api.subscription import OutboxEvent
from ..times import ensure_utc, rfc3339, to_second
from .money import Money
from .periods import Period, stamp

Fact = Literal[
    "activated", "suspended", "resumed", "terminated", "changed", "charge.period", "usage.rated", "sla.credit"
]
FACTS: tuple[Fact, ...] = get_args(Fact)  # the same names, in the same order, from the one list above
TYPE_PREFIX = "dev.intent.telco.subscription."
TYPE_SUFFIX = ".v1"
DATACONTENTTYPE = "application/json"
MAX_DATA_KEYS = 16  # the outbox's bounds (status.billing.outbox.pending[].data)
MAX_VALUE = 512
# Fixed namespaces: changing them would give every past fact a new id.
EVENT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://telco.intent.dev/billing/events")
LINE_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://telco.intent.dev/billing/lines")


class EventError(ValueError):
    """An event that cannot be built; the message names the field."""


def event_type(fact: str) -> str:
    if fact not in FACTS:
        raise EventError(f"fact: {fact!r} is not one of {', '.join(FACTS)}")
    return f"{TYPE_PREFIX}{fact}{TYPE_SUFFIX}"


def fact_of(type_: str) -> str:
    """The fact of an event type (inverse of event_type)."""
    if not (type_.startswith(TYPE_PREFIX) and type_.endswith(TYPE_SUFFIX)):
        raise EventError(f"type: {type_!r} is not a subscription billing event type")
    return type_[len(TYPE_PREFIX) : -len(TYPE_SUFFIX)]


def event_id(uid: str, fact: str, key: str = "") -> str:
    """The id of one billing fact: UUIDv5 of (subscription uid, fact, occurrence key)."""
    if not uid:
        raise EventError("metadata.uid: a billing fact needs the subscription's uid")
    event_type(fact)
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{uid}\n{fact}\n{key}"))


def line_id(uid: str, kind: str, key: str) -> str:
    """The id of one bill line (its own billing fact): UUIDv5 of (subscription uid, kind, key)."""
    if not uid:
        raise EventError("metadata.uid: a bill line needs the subscription's uid")
    return str(uuid.uuid5(LINE_NAMESPACE, f"{uid}\n{kind}\n{key}"))


def period_key(period: Period, price: str | None = None) -> str:
    """Occurrence key of a periodic fact: "<price>/<start>-<end>" or "<start>-<end>"."""
    return f"{price}/{period.key}" if price is not None else period.key


@dataclass(frozen=True, slots=True)
class SubscriptionRef:
    """What events need to know about the subscription."""

    namespace: str
    name: str
    uid: str
    account: str
    cluster: str = ""  # --cluster-identity: an absolute URI naming the cluster, or empty

    @property
    def source(self) -> str:
        """The CloudEvents source: the object's API path, after the cluster's URI when it has one."""
        return f"{self.cluster}/apis/{GROUP}/{VERSION}/namespaces/{self.namespace}/subscriptions/{self.name}"

    @property
    def qualified_name(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_object(cls, obj: Mapping[str, Any], cluster: str = "") -> SubscriptionRef:
        """From a Subscription as the API returns it (dict with metadata and spec)."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        ref = spec.get("billingAccountRef")
        account = (ref or {}).get("name", "") or (spec.get("billingAccount") or {}).get("id", "")
        for name, value in (
            ("metadata.namespace", meta.get("namespace")),
            ("metadata.name", meta.get("name")),
            ("metadata.uid", meta.get("uid")),
            ("spec.billingAccountRef.name" if ref is not None else "spec.billingAccount.id", account),
        ):
            if not value:
                raise EventError(f"{name}: is required to bill the subscription")
        return cls(meta["namespace"], meta["name"], meta["uid"], account, cluster)


@dataclass(frozen=True, slots=True)
class BillingEvent:
    """A billing fact, ready to be stored in the outbox and sent as a CloudEvent."""

    id: str
    type: str
    source: str
    subject: str | None
    time: datetime
    data: Mapping[str, str] = field(default_factory=dict)

    @property
    def fact(self) -> str:
        return fact_of(self.type)

    def to_cloudevent(self) -> CloudEvent:
        attributes: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": self.time,
            "datacontenttype": DATACONTENTTYPE,
        }
        if self.subject:
            attributes["subject"] = self.subject
        return CloudEvent(attributes, dict(self.data))

    @classmethod
    def from_cloudevent(cls, event: Any) -> BillingEvent:
        data = event.get_data() or {}
        if not isinstance(data, dict):
            raise EventError("data: a billing event carries a JSON object")
        time = event.get_time()
        if time is None:
            raise EventError("time: a billing event carries the time of its occurrence")
        return cls(
            event.get_id(),
            event.get_type(),
            event.get_source(),
            event.get_subject(),
            ensure_utc(time),
            {str(k): str(v) for k, v in data.items()},
        )

    def to_json(self) -> dict[str, Any]:
        """The CloudEvents JSON (structured) form as a dict, e.g. for a JSON Lines file."""
        out: dict[str, Any] = {
            "specversion": "1.0",
            "id": self.id,
            "source": self.source,
            "type": self.type,
            "time": rfc3339(self.time),
            "datacontenttype": DATACONTENTTYPE,
        }
        if self.subject:
            out["subject"] = self.subject
        out["data"] = dict(self.data)
        return out

    def to_outbox(self, queued_at: datetime) -> OutboxEvent:
        return OutboxEvent(
            id=self.id,
            type=self.type,
            source=self.source,
            subject=self.subject,
            time=self.time,
            data=dict(self.data),
            queuedAt=to_second(queued_at, "queuedAt"),
        )

    @classmethod
    def from_outbox(cls, item: OutboxEvent) -> BillingEvent:
        return cls(item.id, item.type, item.source, item.subject, ensure_utc(item.time), dict(item.data))


def occurred_by(event: BillingEvent, moment: datetime) -> BillingEvent:
    """`event` dated no later than `moment`: a period fact rated ahead at termination (its period's end
    still in the future) occurred when the subscription ended, not at that end. Its id, which names
    the coverage, and its data (periodStart/End, coverageStart/End) do not change."""
    moment = to_second(moment, "time")
    return event if event.time <= moment else replace(event, time=moment)


def checked_data(payload: dict[str, str]) -> dict[str, str]:
    """An event's data within the outbox's bounds (status.billing.outbox.pending[].data), or EventError."""
    for name, value in payload.items():
        if not isinstance(value, str):
            raise EventError(f"data.{name}: {value!r} must be a string (amounts are decimal strings)")
        if len(value) > MAX_VALUE:
            raise EventError(f"data.{name}: {len(value)} characters, more than {MAX_VALUE}")
    if len(payload) > MAX_DATA_KEYS:
        raise EventError(f"data: {len(payload)} entries, more than {MAX_DATA_KEYS}")
    return payload


def billing_event(
    id_: str, type_: str, source: str, account: str, time: datetime, data: dict[str, str]
) -> BillingEvent:
    """A billing event about `account` (its subject) with checked data, dated to the second: the one
    constructor of subscription and invoice events."""
    return BillingEvent(
        id=id_, type=type_, source=source, subject=account, time=to_second(time, "time"), data=checked_data(data)
    )


def make_event(ref: SubscriptionRef, fact: Fact, key: str, time: datetime, data: Mapping[str, str]) -> BillingEvent:
    """A billing event of `fact` for `ref`, occurrence `key`, that happened at `time`."""
    payload = {"subscription": ref.qualified_name, "billingAccount": ref.account, **data}
    return billing_event(event_id(ref.uid, fact, key), event_type(fact), ref.source, ref.account, time, payload)


def _money(prefix: str, amount: Money) -> dict[str, str]:
    return {prefix: amount.value_string(), "currency": amount.currency}


# -- lifecycle facts ----------------------------------------------------------------------


def activated(ref: SubscriptionRef, at: datetime, offering: str, one_time: Money | None = None) -> BillingEvent:
    """The service was first delivered (startDate); once per subscription."""
    data = {"offering": offering, "startDate": rfc3339(to_second(at))}
    if one_time is not None:
        data |= _money("oneTimeAmount", one_time)
    return make_event(ref, "activated", "", at, data)


def suspended(ref: SubscriptionRef, at: datetime, reason: str) -> BillingEvent:
    """The subscription stopped being active at `at` (customer request or non-payment)."""
    return make_event(ref, "suspended", stamp(at), at, {"reason": reason})


def resumed(ref: SubscriptionRef, at: datetime, reason: str) -> BillingEvent:
    return make_event(ref, "resumed", stamp(at), at, {"reason": reason})


def terminated(ref: SubscriptionRef, at: datetime) -> BillingEvent:
    """The subscription ended; once per subscription."""
    return make_event(ref, "terminated", "", at, {"terminationDate": rfc3339(to_second(at))})


def changed(
    ref: SubscriptionRef,
    at: datetime,
    direction: str,
    policy: str,
    previous: tuple[str, str, int],
    current: tuple[str, str, int],
) -> BillingEvent:
    """A new offering version took effect at `at`: an upgrade, a downgrade or a revision of the offering.
    `previous` and `current` are (offering, revision, Mbit/s); one id per (instant, version)."""
    data = {
        "direction": direction,
        "policy": policy,
        "effective": rfc3339(to_second(at)),
        "fromOffering": previous[0],
        "fromRevision": previous[1],
        "fromBandwidthMbps": str(previous[2]),
        "toOffering": current[0],
        "toRevision": current[1],
        "toBandwidthMbps": str(current[2]),
    }
    return make_event(ref, "changed", f"{stamp(at)}/{current[0]}/{current[1]}", at, data)


# -- periodic facts -----------------------------------------------------------------------


def charge_period_id(ref: SubscriptionRef, price: str, coverage: Period) -> str:
    return event_id(ref.uid, "charge.period", period_key(coverage, price))


def _part_label(label: str | None, since: datetime | None) -> str | None:
    """The occurrence label of one version's part of a period: the part a period starts with (and a period
    without a change) keeps the period's key; a later part adds "from <its start>"."""
    if since is None:
        return label
    return f"{label} from {stamp(since)}" if label is not None else f"from {stamp(since)}"


def usage_rated_id(ref: SubscriptionRef, price: str, period: Period, since: datetime | None = None) -> str:
    label = _part_label(price, since)
    assert label is not None
    return event_id(ref.uid, "usage.rated", period_key(period, label))


def sla_credit_id(ref: SubscriptionRef, period: Period, since: datetime | None = None) -> str:
    return event_id(ref.uid, "sla.credit", period_key(period, _part_label(None, since)))


def _part_data(part: tuple[Period, str] | None) -> dict[str, str]:
    """What a fact of one version's part of a period says about that part (nothing for a whole period)."""
    if part is None:
        return {}
    span, offering = part
    return {"coverageStart": rfc3339(span.start), "coverageEnd": rfc3339(span.end), "offering": offering}


def charge_period(
    ref: SubscriptionRef,
    price: str,
    charge_period: Period,
    coverage: Period,
    amount: Money,
    discount: Money,
    billable_seconds: int,
) -> BillingEvent:
    """The recurring charge of `price` for `coverage` (a charge period, or its part in a bill period)."""
    data = {
        "price": price,
        "periodStart": rfc3339(charge_period.start),
        "periodEnd": rfc3339(charge_period.end),
        "coverageStart": rfc3339(coverage.start),
        "coverageEnd": rfc3339(coverage.end),
        "billableSeconds": str(billable_seconds),
        "periodSeconds": str(charge_period.seconds),
        **_money("amount", amount),
        "discountAmount": discount.value_string(),
        "netAmount": (amount - discount).value_string(),
    }
    return make_event(ref, "charge.period", period_key(coverage, price), coverage.end, data)


def usage_rated(
    ref: SubscriptionRef,
    price: str,
    period: Period,
    octets: int,
    quantity: str,
    unit: str,
    amount: Money,
    part: tuple[Period, str] | None = None,
    since: datetime | None = None,
) -> BillingEvent:
    """The usage of `price` in `period`; in a period where the usage prices changed, of one version's `part`
    (its span and offering), which a later part's `since` (its start) names."""
    label = _part_label(price, since)
    assert label is not None
    data = {
        "price": price,
        "periodStart": rfc3339(period.start),
        "periodEnd": rfc3339(period.end),
        "octets": str(octets),
        "quantity": quantity,
        "unitOfMeasure": unit,
        **_money("amount", amount),
        **_part_data(part),
    }
    return make_event(ref, "usage.rated", period_key(period, label), period.end, data)


def sla_credit(
    ref: SubscriptionRef,
    period: Period,
    availability: str,
    target: str,
    credit_percent: str,
    amount: Money,
    unavailable_seconds: int,
    part: tuple[Period, str] | None = None,
    since: datetime | None = None,
) -> BillingEvent:
    """The SLA credit of `period`; in a period where the SLA changed, of the `part` under one SLA (its span
    and offerings), which a later part's `since` (its start) names."""
    data = {
        "periodStart": rfc3339(period.start),
        "periodEnd": rfc3339(period.end),
        "availability": availability,
        "availabilityTarget": target,
        "unavailableSeconds": str(unavailable_seconds),
        "creditPercent": credit_percent,
        **_money("amount", amount),
        **_part_data(part),
    }
    return make_event(ref, "sla.credit", period_key(period, _part_label(None, since)), period.end, data)


def for_fact(
    ref: SubscriptionRef, kind: str, at: datetime, detail: Mapping[str, Any] | None = None, offering: str = ""
) -> BillingEvent | None:
    """The billing event of a lifecycle fact (controller.commerce.lifecycle.Fact: kind, at, detail);
    None for facts that are not billing facts (cancelled, aborted)."""
    detail = detail or {}
    reason = str(detail.get("reason", ""))
    if kind == "activated":
        return activated(ref, at, offering or str(detail.get("offering", "")))
    if kind == "suspended":
        return suspended(ref, at, reason)
    if kind == "resumed":
        return resumed(ref, at, reason)
    if kind == "terminated":
        return terminated(ref, at)
    return None
