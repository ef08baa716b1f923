"""What the commerce controllers know: every commercial object as its latest watch event showed it.

`CommerceIndex` is fed by watch events (controller/handlers/commerce.py, and the NetworkService
events of runtime.Controller) and by the controllers' own writes; it keeps the reverse indexes the
passes need (subscriptions by account and by offering, invoices by account, owned NetworkServices
by owner, endpoint claims) and marks on the work queues whatever an event may change: an offering's
edit re-judges its subscriptions, an invoice's payment state its account's dunning, and so on.

It also holds what one loop hands to another's next pass: event ids the sinks have (`delivered`),
usage samples not yet written (`samples`).
"""

from __future__ import annotations

import contextlib
import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from ..api.billingaccount import BillingAccountSpec
from ..api.common import validation_message
from ..api.invoice import InvoiceStatus
from ..api.productoffering import ProductOfferingSpec
from ..billing.account import BillView, parse_account
from ..billing.events import EventError
from ..billing.invoice import UNPAID, BillingInput, InvoiceError
from ..billing.ledger import LedgerError
from ..billing.money import MoneyError
from ..billing.periods import Period, PeriodError
from ..billing.rating import RatingError
from ..kube import Ref
from ..statuswriter import StatusWriter
from ..times import parse_time
from ..workqueue import WorkQueue
from . import order
from .objects import (
    Key,
    account_of,
    billing_of,
    dunning_signature,
    invoice_account,
    key_of,
    offering_of,
    offerings_of,
    older,
    owner,
    rv,
    start_date,
    state_of,
)

BILLING_ERRORS = (InvoiceError, MoneyError, LedgerError, PeriodError, EventError, RatingError)


def _outbox_holds_events(raw: Any) -> bool:
    """Whether a stored outbox may hold events to deliver (anything but an outbox without pending ones)."""
    return bool(raw) and (not isinstance(raw, Mapping) or bool(raw.get("pending")))


@dataclass
class Sample:
    """A usage counter read, waiting for its Subscription's next status write."""

    octets: int
    at: datetime


@dataclass
class Queues:
    """The work queues of the commerce controllers, one per kind."""

    subscriptions: WorkQueue[Key]
    invoices: WorkQueue[Key]
    offerings: WorkQueue[str]
    accounts: WorkQueue[Key]

    def all(self) -> tuple[WorkQueue[Any], ...]:
        return (self.offerings, self.accounts, self.subscriptions, self.invoices)


class CommerceIndex:
    def __init__(self, writer: StatusWriter, queues: Queues) -> None:
        self.writer = writer
        self.queues = queues
        self.offerings: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[Key, dict[str, Any]] = {}
        # The Subscriptions whose stored outbox holds events (what a delivery pass reads; scanning every
        # Subscription per pass was quadratic in a burst of activations), and each one's place in
        # `subscriptions` (insertion order), so they are read in the same order as a scan would.
        self.with_outbox: set[Key] = set()
        self._rank: dict[Key, int] = {}
        self._ranks = itertools.count()
        self.services: dict[Key, dict[str, Any]] = {}  # owned NetworkServices, by owner (namespace, subscription)
        self.invoices: dict[Key, dict[str, Any]] = {}
        self.accounts: dict[Key, dict[str, Any]] = {}  # BillingAccounts, by (namespace, name)
        self.by_account: dict[Key, set[Key]] = defaultdict(set)  # (namespace, account) -> subscriptions
        self.by_offering: dict[str, set[Key]] = defaultdict(set)
        self.invoices_by_account: dict[Key, set[Key]] = defaultdict(set)
        self._service_owner: dict[Key, Key] = {}  # NetworkService (namespace, name) -> owner key
        self._orders: dict[Key, order.OrderRecord] = {}
        # Every order naming an endpoint: a pass judges only its own endpoints' claims, so a burst of
        # orders costs each pass the orders sharing its endpoints, not all of them (quadratic otherwise).
        self._naming: dict[order.EndpointKey, dict[Key, order.OrderRecord]] = defaultdict(dict)
        # handed to a Subscription's (or Invoice's) next pass
        self.delivered: dict[Key, set[str]] = defaultdict(set)  # at every sink, still in the outbox
        self.invoice_delivered: dict[Key, set[str]] = defaultdict(set)
        self.samples: dict[Key, dict[str, Sample]] = defaultdict(dict)
        # parsed once per version: every pass of an account's subscriptions and invoices asks
        self._offering_specs: dict[str, tuple[tuple[str, Any], ProductOfferingSpec | None, str | None]] = {}
        self._account_specs: dict[Key, tuple[str, BillingAccountSpec | None, str | None]] = {}
        self._bill_views: dict[Key, tuple[str, BillView]] = {}
        self._dunning_view: dict[Key, tuple[str, InvoiceStatus]] = {}

    # -- watch events ------------------------------------------------------------------------------
    def _trusted(self, plural: str, key: Key, body: dict[str, Any], record: bool = True) -> dict[str, Any]:
        """`body` as the controller may act on it. When its status is not the one our last write left (someone
        else wrote it): report that and make the next write undo it. With `record` (a status that is the
        controller's record: state, ledger, outbox) carry on from our own last write instead, so those are
        never taken from a status we did not write; otherwise (a status recomputed from the spec each pass)
        the pass recomputes it against the forged copy, which then differs."""
        ref = Ref(plural, key[1], key[0] or None)
        forged = self.writer.forgery(ref, rv(body), body.get("status"))
        if not forged:
            return body
        self.writer.report_forgery(body, forged)
        self.writer.distrust(ref, body.get("status"))
        if not record:
            return body
        return {**body, "status": self.writer.ours(ref)}

    def upsert_offering(self, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        old = self.offerings.get(name)
        if old is not None and older(old, body):
            return
        body = self._trusted("productofferings", ("", name), body, record=False)
        self.offerings[name] = body
        self.queues.offerings.mark(name)
        generation = (body.get("metadata") or {}).get("generation")
        if old is None or (old.get("metadata") or {}).get("generation") != generation:
            for key in self.by_offering.get(name, ()):  # a spec change: re-judge its subscriptions
                self.queues.subscriptions.mark(key)

    def remove_offering(self, name: str) -> None:
        self.offerings.pop(name, None)
        self.queues.offerings.forget(name)
        self.writer.forget(Ref("productofferings", name))
        for key in self.by_offering.get(name, ()):
            self.queues.subscriptions.mark(key)

    def spec_unhandled(self, key: Key) -> bool:
        """Whether the Subscription's spec changed since its status was written (an order change, or a new
        order, not handled yet) or it is being deleted: its pass goes before those of a re-list or a
        billing pass, which mostly find nothing to do (controller/workqueue.py, `urgent`)."""
        body = self.subscriptions.get(key)
        if body is None:
            return False
        meta = body.get("metadata") or {}
        status = body.get("status") or {}
        return bool(meta.get("deletionTimestamp")) or status.get("observedGeneration") != meta.get("generation")

    def upsert_subscription(self, body: dict[str, Any], own: bool = False) -> None:
        """A Subscription as a watch event (or a write of ours, `own`: the pass that wrote it already
        decided on everything it shows, so it is not queued again for it) shows it."""
        key = key_of(body)
        old = self.subscriptions.get(key)
        if old is not None and older(old, body):
            return
        if old is not None and rv(old) == rv(body) and rv(body):
            return  # our own write, already indexed
        body = self._trusted("subscriptions", key, body)
        if key not in self.subscriptions:
            self._rank[key] = next(self._ranks)
        self.subscriptions[key] = body
        if _outbox_holds_events(billing_of(body).get("outbox")):
            self.with_outbox.add(key)
        else:
            self.with_outbox.discard(key)
        if old is not None:
            self.by_account[(key[0], account_of(old))].discard(key)
            for name in offerings_of(old):
                self.by_offering[name].discard(key)
        self.by_account[(key[0], account_of(body))].add(key)
        for name in offerings_of(body):  # an edit of either the ordered or the in-force offering wakes it
            self.by_offering[name].add(key)
        if old is None:
            self.queues.accounts.mark((key[0], account_of(body)))  # it counts the subscriptions that bill it
        self._update_order(key, body)
        if not own:
            self.queues.subscriptions.mark(key)
        if old is None or state_of(old) != state_of(body) or offering_of(old) != offering_of(body):
            self.queues.offerings.mark(offering_of(body))
            if old is not None and offering_of(old) != offering_of(body):
                self.queues.offerings.mark(offering_of(old))

    def remove_subscription(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        old = self.subscriptions.pop(key, None)
        self.with_outbox.discard(key)
        self._rank.pop(key, None)
        if old is not None:
            self.by_account[(namespace, account_of(old))].discard(key)
            for offering_name in offerings_of(old):
                self.by_offering[offering_name].discard(key)
            self.queues.offerings.mark(offering_of(old))
            self.queues.accounts.mark((namespace, account_of(old)))
        old_order = self._orders.pop(key, None)
        if old_order is not None:
            self._unname(key, old_order)
            self._wake_waiting_orders(key)
        self.delivered.pop(key, None)
        self.samples.pop(key, None)
        self.queues.subscriptions.forget(key)
        self.writer.forget(Ref("subscriptions", name, namespace))

    def observe_service(self, body: dict[str, Any], own: bool = False) -> None:
        """A NetworkService event (from runtime.Controller): index it under its owning Subscription
        (`own`: one the pass of that Subscription just created and decides on, not queued again for it)."""
        svc_key = key_of(body)
        owner_name = owner(body)
        previous = self._service_owner.get(svc_key)
        if owner_name is None:
            if previous is not None:
                self.services.pop(previous, None)
                self._service_owner.pop(svc_key, None)
                self.queues.subscriptions.mark(previous)
            return
        owner_key = (svc_key[0], owner_name)
        old = self.services.get(owner_key)
        if old is not None and older(old, body):
            return
        if old is not None and rv(old) == rv(body) and rv(body):
            return
        self.services[owner_key] = body
        self._service_owner[svc_key] = owner_key
        if not own:
            self.queues.subscriptions.mark(owner_key)

    def forget_service(self, namespace: str, name: str) -> None:
        owner_key = self._service_owner.pop((namespace, name), None)
        if owner_key is not None:
            self.services.pop(owner_key, None)
            self.queues.subscriptions.mark(owner_key)

    def observe_device_usage(self, device: str, report: Any) -> None:
        """A device's usage report changed: queue the Subscriptions naming an endpoint it lists (through
        the endpoint index, so a report costs its own endpoints, not a scan of every Subscription)."""
        listed = report.get("endpoints") if isinstance(report, Mapping) else None
        for e in listed if isinstance(listed, list) else []:
            try:
                endpoint = order.endpoint_key(device, str(e["port"]), int(e["vlanId"]))
            except (KeyError, TypeError, ValueError):
                continue
            for key in list(self._naming.get(endpoint) or {}):
                self.queues.subscriptions.mark(key)

    def upsert_invoice(self, body: dict[str, Any]) -> None:
        key = key_of(body)
        old = self.invoices.get(key)
        if old is not None and older(old, body):
            return
        if old is not None and rv(old) == rv(body) and rv(body):
            return
        body = self._trusted("invoices", key, body)
        self.invoices[key] = body
        account = invoice_account(body)
        if old is not None:
            self.invoices_by_account[(key[0], invoice_account(old))].discard(key)
        self.invoices_by_account[(key[0], account)].add(key)
        self.queues.invoices.mark(key)
        if old is None or dunning_signature(old) != dunning_signature(body):
            self.mark_account(key[0], account)  # dunning follows the invoice's payment state
            for other in self.invoices_by_account.get((key[0], account), ()):
                if other != key:  # a credit balance to carry, or carried: the account's other bills see it
                    self.queues.invoices.mark(other)

    def remove_invoice(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        old = self.invoices.pop(key, None)
        self._dunning_view.pop(key, None)
        self._bill_views.pop(key, None)
        self.invoice_delivered.pop(key, None)
        self.queues.invoices.forget(key)
        self.writer.forget(Ref("invoices", name, namespace))
        if old is not None:
            account = invoice_account(old)
            self.invoices_by_account[(namespace, account)].discard(key)
            self.mark_account(namespace, account)

    def mark_account(self, namespace: str, account: str) -> None:
        for key in self.by_account.get((namespace, account), ()):
            self.queues.subscriptions.mark(key)
        self.queues.accounts.mark((namespace, account))

    def upsert_account(self, body: dict[str, Any]) -> None:
        key = key_of(body)
        old = self.accounts.get(key)
        if old is not None and older(old, body):
            return
        self.accounts[key] = body
        self.queues.accounts.mark(key)
        if old is None or old.get("spec") != body.get("spec"):
            self._account_changed(key)

    def remove_account(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._account_specs.pop(key, None)
        if self.accounts.pop(key, None) is not None:
            self._account_changed(key)
        self.queues.accounts.forget(key)
        self.writer.forget(Ref("billingaccounts", name, namespace))

    def _account_changed(self, key: Key) -> None:
        """Its subscriptions re-judge it (missing, suspended, currency) and its drafts take its tax and terms."""
        for sub in self.by_account.get(key, ()):
            self.queues.subscriptions.mark(sub)
        for inv in self.invoices_by_account.get(key, ()):
            self.queues.invoices.mark(inv)

    def _update_order(self, key: Key, body: Mapping[str, Any]) -> None:
        try:
            record = order.order_record(body)
        except (ValueError, TypeError):
            return
        old = self._orders.get(key)
        if old == record:
            return
        self._orders[key] = record
        if old is not None:
            self._unname(key, old)
        for endpoint in record.endpoints:
            self._naming[endpoint][key] = record
        if old is not None and (old.endpoints != record.endpoints or old.holds_endpoints != record.holds_endpoints):
            self._wake_waiting_orders(key)

    def _unname(self, key: Key, record: order.OrderRecord) -> None:
        for endpoint in record.endpoints:
            naming = self._naming.get(endpoint)
            if naming is not None:
                naming.pop(key, None)
                if not naming:
                    del self._naming[endpoint]

    def _wake_waiting_orders(self, changed: Key) -> None:
        """Endpoints were released or moved: orders waiting for one get another look."""
        for key, record in self._orders.items():
            if key != changed and not record.accepted and record.holds_endpoints:
                self.queues.subscriptions.mark(key)

    # -- reads the passes share ----------------------------------------------------------------------
    def outboxes(self) -> list[tuple[Key, dict[str, Any]]]:
        """The Subscriptions whose outbox holds events, in the order of `subscriptions`."""
        keys = sorted((k for k in self.with_outbox if k in self.subscriptions), key=lambda k: self._rank.get(k, -1))
        return [(k, self.subscriptions[k]) for k in keys]

    def order_of(self, key: Key) -> order.OrderRecord | None:
        return self._orders.get(key)

    def claims_for(self, endpoints: Iterable[order.EndpointKey]) -> dict[order.EndpointKey, order.OrderRecord]:
        """Who holds each of `endpoints` (order.endpoint_claims over every order, for those endpoints only)."""
        naming = [r for e in set(endpoints) for r in (self._naming.get(e) or {}).values()]
        return order.endpoint_claims(naming)

    def offering(self, name: str) -> tuple[ProductOfferingSpec | None, str | None]:
        """The named offering's spec (or why it cannot be read), parsed once per generation."""
        body = self.offerings.get(name)
        if body is None:
            return None, None
        meta = body.get("metadata") or {}
        stamp = (str(meta.get("uid") or ""), meta.get("generation"))
        cached = self._offering_specs.get(name)
        if cached is not None and cached[0] == stamp and stamp[1] is not None:
            return cached[1], cached[2]
        try:
            spec, invalid = ProductOfferingSpec.model_validate(body.get("spec") or {}), None
        except ValidationError as exc:
            spec, invalid = None, validation_message(exc)
        self._offering_specs[name] = (stamp, spec, invalid)
        return spec, invalid

    def account_spec(self, key: Key) -> tuple[BillingAccountSpec | None, str | None]:
        """The BillingAccount's spec (or why it does not parse), parsed once per resourceVersion."""
        body = self.accounts.get(key)
        if body is None:
            return None, None
        cached = self._account_specs.get(key)
        if cached is None or cached[0] != rv(body) or not rv(body):
            cached = self._account_specs[key] = (rv(body), *parse_account(body))
        return cached[1], cached[2]

    def account_invoice_statuses(self, namespace: str, account: str) -> dict[str, InvoiceStatus]:
        """The account's issued, unpaid invoices (only those can be overdue), without their lines."""
        out: dict[str, InvoiceStatus] = {}
        for key in self.invoices_by_account.get((namespace, account), ()):
            body = self.invoices.get(key) or {}
            raw = body.get("status") or {}
            if raw.get("state") not in UNPAID:
                continue
            cached = self._dunning_view.get(key)
            if cached is None or cached[0] != rv(body):
                try:
                    view = InvoiceStatus.model_validate({k: v for k, v in raw.items() if k != "lines"})
                except ValidationError:
                    continue
                cached = self._dunning_view[key] = (rv(body), view)
            out[key[1]] = cached[1]
        return out

    def zone_of(self, namespace: str, sub: Mapping[str, Any]) -> str:
        """A Subscription's billing time zone from its object: the inline account's, else the one recorded
        when billing started, else its BillingAccount's, else UTC."""
        spec = sub.get("spec") or {}
        inline = spec.get("billingAccount")
        if inline:
            return str(inline.get("timeZone") or "UTC")
        recorded = billing_of(sub).get("timeZone")
        if recorded:
            return str(recorded)
        account, _ = self.account_spec((namespace, account_of(sub)))
        return account.timeZone if account is not None else "UTC"

    def account_inputs(self, namespace: str, account: str) -> tuple[list[BillingInput], str, list[str]]:
        """The account's subscriptions as billing inputs, its time zone (its BillingAccount's, else its first
        subscription's), and what could not be used."""
        inputs: list[BillingInput] = []
        problems: list[str] = []
        zones: list[str] = []
        account_spec, _ = self.account_spec((namespace, account))
        for key in sorted(self.by_account.get((namespace, account), ())):
            sub = self.subscriptions.get(key)
            if sub is None:
                continue
            zone = self.zone_of(namespace, sub)
            zones.append(zone)
            offering = self.offerings.get(offering_of(sub))
            if offering is None and not billing_of(sub).get("plans"):
                if start_date(sub) is not None:
                    problems.append(f"subscription {key[1]}: ProductOffering {offering_of(sub)} not found")
                continue
            try:
                inputs.append(BillingInput.from_objects(sub, offering, zone))
            except (ValidationError, *BILLING_ERRORS) as exc:
                problems.append(f"subscription {key[1]}: {exc}")
        if account_spec is not None:
            return inputs, account_spec.timeZone, problems
        return inputs, (zones[0] if zones else "UTC"), problems

    def account_bills(self, namespace: str, account: str) -> list[BillView]:
        """The account's invoices as carrying balances and corrections need them (parsed once per resourceVersion)."""
        out: list[BillView] = []
        for key in sorted(self.invoices_by_account.get((namespace, account), ())):
            body = self.invoices.get(key)
            if body is None:
                continue
            bounds = (body.get("spec") or {}).get("billingPeriod") or {}
            start, end = parse_time(bounds.get("startDateTime")), parse_time(bounds.get("endDateTime"))
            if start is None or end is None or end <= start:
                continue
            cached = self._bill_views.get(key)
            if cached is None or cached[0] != rv(body):
                status: InvoiceStatus | None = None
                with contextlib.suppress(ValidationError):
                    status = InvoiceStatus.model_validate(body.get("status") or {}) if body.get("status") else None
                uid = str((body.get("metadata") or {}).get("uid") or "")
                cached = self._bill_views[key] = (rv(body), BillView(key[1], uid, Period(start, end), status))
            out.append(cached[1])
        return out

    def fallback_currency(self, namespace: str, account: str) -> str | None:
        """The currency of the first priced offering among the account's subscriptions."""
        for key in self.by_account.get((namespace, account), ()):
            offering, _ = self.offering(offering_of(self.subscriptions.get(key) or {}))
            for price in offering.productOfferingPrice if offering else []:
                if price.price is not None:
                    return price.price.unit
        return None

    def active_count(self, offering: str, counts: Any) -> int:
        """How many of the offering's subscriptions `counts` (a predicate on the state) takes as active."""
        return sum(
            1
            for key in self.by_offering.get(offering, ())
            if key in self.subscriptions and counts(state_of(self.subscriptions[key]))
        )
