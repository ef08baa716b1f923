"""The quick-start scenario as `make demo` applies it: pure functions over the example manifests.

The files in examples/quickstart/ are ordinary manifests a user can apply by hand. The demo
adapts three things to the moment and the machine it runs on, so that it works on any date and
beside another copy of itself:
- the NetworkDevices point at the ports the simulated routers really got (chosen free at run time);
- the on-demand Invoice covers the current month so far (in the account's time zone) plus a
  margin, so the charges of the orders the demo places fall inside it;
- a dated discount is valid around that moment.
It also decides whether what the demo shows at the end is what it should be (`invoice_checks`).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from .billing.periods import Cycle, Period, load_zone
from .times import rfc3339

# The demo's orders become active within a minute or two; the invoice must still be open then.
INVOICE_MARGIN = timedelta(hours=1)
DEMO_ACCOUNT = "acme-001"
DEMO_ACCOUNT_ZONE = "Europe/Paris"


def invoice_period(now: datetime, time_zone: str = DEMO_ACCOUNT_ZONE) -> Period:
    """The month so far in `time_zone`, up to the whole hour after `now` + INVOICE_MARGIN.

    At the last second of a month that is a period reaching a little into the next month: an
    on-demand bill may cover any span, and the demo's charges (made a few seconds after `now`)
    must fall inside it.
    """
    month = Cycle.of("month", 1, time_zone).period_containing(now)
    after = (now + INVOICE_MARGIN).astimezone(UTC)
    end = after.replace(minute=0, second=0, microsecond=0)
    if end < after:
        end += timedelta(hours=1)
    return Period(month.start, end)


def invoice_name(account: str, period: Period, time_zone: str = DEMO_ACCOUNT_ZONE) -> str:
    """`<account>-<YYYY-MM>-adhoc`, from the local month the period starts in."""
    start, _ = period.local_dates(load_zone(time_zone))
    return f"{account}-{start:%Y-%m}-adhoc"


def _device_ports(doc: dict[str, Any], ports: Mapping[str, int]) -> None:
    name = doc["metadata"]["name"]
    if name not in ports:
        raise ValueError(f"NetworkDevice {name}: the fleet has no device of that name (it has {sorted(ports)})")
    doc["spec"]["port"] = ports[name]


def _dated_prices(doc: dict[str, Any], now: datetime) -> None:
    """Dated prices (a launch promotion) valid from the start of this month for a year."""
    month_start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    year_later = month_start.replace(year=month_start.year + 1)
    for price in doc["spec"].get("productOfferingPrice", []):
        if "validFor" in price:
            price["validFor"] = {"startDateTime": rfc3339(month_start), "endDateTime": rfc3339(year_later)}


def _dated_invoice(doc: dict[str, Any], now: datetime) -> None:
    account = doc["spec"]["billingAccount"]
    period = invoice_period(now)
    doc["metadata"]["name"] = invoice_name(account, period)
    doc["spec"]["billingPeriod"] = period.to_api()


def adapt(docs: Iterable[dict[str, Any]], now: datetime, device_ports: Mapping[str, int]) -> list[dict[str, Any]]:
    """The quick-start manifests as the demo applies them at `now` with the fleet's real ports."""
    out = []
    for original in docs:
        if not original:
            continue
        doc = copy.deepcopy(original)
        kind = doc.get("kind")
        if kind == "NetworkDevice":
            _device_ports(doc, device_ports)
        elif kind == "ProductOffering":
            _dated_prices(doc, now)
        elif kind == "Invoice":
            _dated_invoice(doc, now)
        out.append(doc)
    return out


@dataclass(frozen=True)
class Check:
    """One thing the demo verified, and whether it held."""

    what: str
    ok: bool
    detail: str = ""


def _amount(money: Mapping[str, Any] | None) -> Decimal | None:
    try:
        return Decimal(str((money or {})["value"]))
    except (KeyError, InvalidOperation):
        return None


def invoice_checks(invoice: Mapping[str, Any], expected_one_time: str = "Installation") -> list[Check]:
    """What a draft invoice of freshly activated orders must show: lines, the one-time fees,
    a positive total, and lines that add up to it."""
    status = invoice.get("status") or {}
    lines = status.get("lines") or []
    excluded = _amount(status.get("taxExcludedAmount"))
    line_sum = sum((_amount(line.get("taxExcludedAmount")) or Decimal(0) for line in lines), Decimal(0))
    one_time = [line for line in lines if line.get("type") == "oneTimeCharge" and line.get("name") == expected_one_time]
    return [
        Check("the invoice has lines", bool(lines), f"{len(lines)} lines"),
        Check(f"it bills the one-time {expected_one_time} fees", bool(one_time), f"{len(one_time)} such lines"),
        Check("its total is above zero", excluded is not None and excluded > 0, f"before tax {excluded}"),
        Check("its lines add up to its total", excluded == line_sum, f"lines {line_sum}, total {excluded}"),
    ]


# The kinds whose every applied object must end Ready (NetworkServices are mostly made by the subscriptions).
READY_KINDS = {"NetworkDevice": "networkdevices", "Subscription": "subscriptions"}


def ready_checks(applied: Iterable[Mapping[str, Any]], ready: Mapping[str, tuple[int, int]]) -> list[Check]:
    """Every applied object of READY_KINDS is present and Ready; `ready` is (Ready, present) per kind."""
    wanted = {kind: 0 for kind in READY_KINDS}
    for doc in applied:
        if doc.get("kind") in wanted:
            wanted[doc["kind"]] += 1
    checks = []
    for kind, count in wanted.items():
        done, present = ready.get(kind, (0, 0))
        checks.append(
            Check(
                f"every {kind} Ready",
                count > 0 and done == present == count,
                f"{done} Ready of {present}, {count} applied",
            )
        )
    return checks


def event_checks(events: Sequence[Mapping[str, Any]], subscriptions: int) -> list[Check]:
    """Exactly one activation event per subscription, and no event id twice."""
    activations = [e for e in events if str(e.get("type", "")).endswith("subscription.activated.v1")]
    sources = {e.get("source") for e in activations}
    ids = [e.get("id") for e in events]
    return [
        Check(
            "one activation event per subscription",
            len(activations) == subscriptions and len(sources) == subscriptions,
            f"{len(activations)} activations from {len(sources)} subscriptions, {subscriptions} expected",
        ),
        Check("no billing event delivered twice", len(ids) == len(set(ids)), f"{len(ids)} events, {len(set(ids))} ids"),
    ]


def tmf_checks(applied: Iterable[Mapping[str, Any]], products: Sequence[Mapping[str, Any]]) -> list[Check]:
    """Every applied Subscription is a TMF637 product `<namespace>.<name>`, active, through the API."""
    wanted = {
        f"{d['metadata']['namespace']}.{d['metadata']['name']}" for d in applied if d.get("kind") == "Subscription"
    }
    listed = {str(p.get("id")): p.get("status") for p in products}
    missing = sorted(wanted - set(listed))
    inactive = sorted(i for i in wanted & set(listed) if listed[i] != "active")
    return [
        Check(
            "every Subscription an active TMF637 product",
            bool(wanted) and not missing and not inactive,
            f"{len(wanted) - len(missing) - len(inactive)} of {len(wanted)} active"
            + (f"; missing {', '.join(missing[:3])}" if missing else "")
            + (f"; not active {', '.join(inactive[:3])}" if inactive else ""),
        )
    ]


# Refused by the validating webhook: no such offering in examples/quickstart/10-catalog.yaml.
BAD_ORDER: dict[str, Any] = {
    "apiVersion": "telco.intent.dev/v1alpha1",
    "kind": "Subscription",
    "metadata": {"name": "demo-bad-order", "namespace": "acme"},
    "spec": {
        "productOffering": {"name": "business-internet-100g"},
        "billingAccountRef": {"name": DEMO_ACCOUNT},
        "endpoints": [{"device": "pe1", "port": "Ethernet9", "vlanId": 999, "ipv4Address": "192.0.2.253/30"}],
    },
}


def admission_checks(refusal: str) -> list[Check]:
    """The order for an offering the catalog lacks was refused at admission, naming the field."""
    named = "denied the request" in refusal and "spec.productOffering.name" in refusal
    return [Check("an order for a missing offering refused at admission, naming the field", named, refusal[:120])]
