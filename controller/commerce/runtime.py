"""The commercial layer at runtime: ProductOfferings, Subscriptions, their NetworkServices, billing.

`CommerceController` is the I/O edge around the pure code in `controller.commerce` and
`controller.billing`. Watch events feed in-memory indexes (offerings by name, subscriptions,
owned NetworkServices by owner, invoices by account); every Subscription, Invoice and
ProductOffering is then reconciled level-triggered by a keyed runner: one pass per object at a
time, bursts coalesce, failures retry with backoff, and next_wakeup / period ends schedule re-runs.

A Subscription pass gathers `SubscriptionInputs`, calls `lifecycle.step`, records the ledger
transitions (subscription active; service Ready at its Ready condition's lastTransitionTime),
turns facts and closed billing periods into CloudEvents in `status.billing.outbox`, applies
delivery receipts and usage samples, and writes all of it in ONE status write guarded by the
object's resourceVersion (on Conflict: re-read, redo). That single write is the outbox
invariant: a fact is never recorded without its event, nor an event without its fact. The
NetworkService action (create, patch, delete) follows the write and is idempotent.

Delivery is a background loop: pending events of every outbox go to the sinks (`Deliverer`);
the ids every sink has are handed back to the Subscription's next pass, which removes them from
its outbox in its resourceVersion-checked write. A controller killed in between sends them
again after a restart, under the same ids (at least once; consumers dedupe on source + id).

The billing pass (at start, then every --billing-interval-seconds) re-runs every Subscription
(period close: charge, usage and SLA events), creates each account's onCycle Invoice for the
months that ended (a deterministic name: AlreadyExists means already done), and re-runs every
Invoice (computed while a draft, issued once its period ended, then only payments move it).
Dunning is part of the Subscription pass: an overdue invoice under a suspendOnOverdue offering
sets status.billing.paymentHold, which the lifecycle turns into a suspension.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from .. import metrics
from ..announce import Notice, stalled_notice
from ..api.billingaccount import BillingAccountSpec
from ..api.common import API_VERSION, Condition, LocalObjectReference, validation_message
from ..api.invoice import BillLine, CarriedBalance, InvoiceSpec, InvoiceStatus
from ..api.networkservice import NetworkServiceSpec
from ..api.productoffering import PaymentPolicy, ProductOfferingSpec
from ..api.subscription import PaymentHold, SubscriptionBilling, SubscriptionSpec, SubscriptionStatus
from ..billing import events as ev
from ..billing.account import (
    AccountProblem,
    BillView,
    account_problem,
    account_taxes,
    balances,
    carried_by,
    carried_lines,
    next_draft,
    offering_currency,
    parse_account,
)
from ..billing.clock import Clock
from ..billing.events import BillingEvent, EventError, SubscriptionRef
from ..billing.invoice import (
    ISSUED,
    UNPAID,
    BillingInput,
    InvoiceDraft,
    InvoiceError,
    TaxRule,
    account_currency,
    add_days,
    bill_period,
    catch_up,
    compute_invoice,
    corrections,
    dunning_decision,
    invoice_name,
    issue,
    mark_sent,
    rate_subscription,
    reconcile,
)
from ..billing.invoice_events import INVOICE_TYPE_PREFIX, InvoiceRef, invoice_event_id, transition_events
from ..billing.ledger import Ledger, LedgerError, LedgerFull
from ..billing.money import Money, MoneyError
from ..billing.outbox import MAX_PENDING, Outbox, OutboxFull
from ..billing.periods import Cycle, Period, PeriodError
from ..billing.proof import EXPLANATIONS, Keyring
from ..billing.rating import Meter, RatingError
from ..billing.sinks import Deliverer, HttpSink, JsonlSink, Mode, Sink
from ..conditions import NOT_STALLED, Cond, merge_conditions, stalled
from ..intent.render import counters_path
from ..kube import FINALIZER, Conflict, Kube, NotFound, Ref
from ..settings import Settings
from ..statuswriter import StatusWriter, differs, with_removals
from ..times import parse_time, rfc3339, to_second, utc
from . import changes, lifecycle, order
from .lifecycle import FINAL_STATES, ChildAction, SubscriptionDecision, SubscriptionInputs
from .offering import counts_as_active, next_sellability_change, offering_status
from .release import FORCE_RELEASE, force_release, holding

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (namespace, name)
K = TypeVar("K", bound=Hashable)
ACCOUNT_LABEL = "telco.intent.dev/billing-account"
RELEASE_QUARANTINED = "telco.intent.dev/release-quarantined"  # ids, comma-separated (docs/billing.md)
RUN_TYPE_LABEL = "telco.intent.dev/run-type"
MAX_DELIVERY_BATCH = 2000
DRAFT_DELAY_SECONDS = 5.0
ON_CYCLE_LOOKBACK = 3  # closed months considered per pass (a longer outage catches up over passes)
CLOSE_WAIT = timedelta(minutes=10)  # an onCycle bill waits this long at most for its subscriptions' period close
_BILLING_ERRORS = (InvoiceError, MoneyError, LedgerError, PeriodError, EventError, RatingError)


# --- a keyed, coalescing runner ------------------------------------------------------------------


class KeyedRunner(Generic[K]):
    """Runs `fn(key)` for marked keys: one run per key at a time; marks during a run coalesce into
    one more run; timers keep only the earliest wakeup per key; a failed run retries with backoff.
    Nothing runs before `open()` (the indexes are primed first)."""

    def __init__(
        self,
        name: str,
        fn: Callable[[K], Awaitable[None]],
        concurrency: int = 16,
        retry_initial: float = 0.5,
        retry_max: float = 30.0,
    ) -> None:
        self.name = name
        self._fn = fn
        self._sem = asyncio.Semaphore(concurrency)
        self._gate = asyncio.Event()
        self._running: set[K] = set()
        self._again: set[K] = set()
        self._timers: dict[K, asyncio.TimerHandle] = {}
        self._attempts: dict[K, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._retry_initial = retry_initial
        self._retry_max = retry_max
        self._closed = False

    def open(self) -> None:
        self._gate.set()

    def mark(self, key: K) -> None:
        if self._closed:
            return
        if key in self._running:
            self._again.add(key)
            return
        self._running.add(key)
        task = asyncio.create_task(self._run(key), name=f"{self.name}:{key}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def mark_after(self, key: K, delay: float) -> None:
        """Run `key` again in `delay` seconds (an earlier pending wakeup wins)."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, delay)
        existing = self._timers.get(key)
        if existing is not None and not existing.cancelled() and existing.when() <= when:
            return
        if existing is not None:
            existing.cancel()
        self._timers[key] = loop.call_at(when, self._fire, key)

    def forget(self, key: K) -> None:
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        self._attempts.pop(key, None)

    def _fire(self, key: K) -> None:
        self._timers.pop(key, None)
        self.mark(key)

    async def _run(self, key: K) -> None:
        try:
            await self._gate.wait()
            while True:
                self._again.discard(key)
                async with self._sem:
                    started = time.perf_counter()
                    try:
                        await self._fn(key)
                    except asyncio.CancelledError:
                        raise
                    except Exception:
                        log.exception("%s %s: reconcile failed", self.name, key)
                        metrics.RECONCILES.labels(self.name, "error").inc()
                        attempt = self._attempts[key] = self._attempts.get(key, 0) + 1
                        self.mark_after(key, min(self._retry_max, self._retry_initial * 2 ** (attempt - 1)))
                    else:
                        self._attempts.pop(key, None)
                        metrics.RECONCILES.labels(self.name, "ok").inc()
                    finally:
                        metrics.RECONCILE_SECONDS.labels(self.name).observe(time.perf_counter() - started)
                if key not in self._again:
                    return
        finally:
            self._running.discard(key)

    async def close(self) -> None:
        self._closed = True
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


# --- small pure helpers ------------------------------------------------------------------------


def _key(body: Mapping[str, Any]) -> Key:
    meta = body.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _rv(body: Mapping[str, Any] | None) -> str:
    return str(((body or {}).get("metadata") or {}).get("resourceVersion") or "")


def _older(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether `new` is an older version than the one indexed (a late watch event after our own write).

    resourceVersions are opaque in general; the API server's are etcd revisions, so compare them as
    integers when both are, and otherwise take the new one."""
    a, b = _rv(old), _rv(new)
    return a.isdigit() and b.isdigit() and int(b) < int(a)


def _owner(body: Mapping[str, Any]) -> str | None:
    """The name of the Subscription that controls this NetworkService, if any."""
    for ref in (body.get("metadata") or {}).get("ownerReferences") or []:
        if ref.get("kind") == "Subscription" and ref.get("controller") and ref.get("apiVersion") == API_VERSION:
            return str(ref.get("name"))
    return None


def _owner_uid(body: Mapping[str, Any]) -> str | None:
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


def _set_condition(
    conditions: list[dict[str, Any]], stored: list[dict[str, Any]] | None, cond: Cond, generation: int, now: datetime
) -> list[dict[str, Any]]:
    """`conditions` with `cond` replaced or appended in place (transition time kept unless it flipped)."""
    merged = next(c for c in merge_conditions(stored, [cond], generation, now) if c["type"] == cond.type)
    out = [c for c in conditions if c.get("type") != cond.type]
    index = next((i for i, c in enumerate(conditions) if c.get("type") == cond.type), len(out))
    out.insert(index, merged)
    return out


def _billing_of(body: Mapping[str, Any]) -> Mapping[str, Any]:
    return ((body.get("status") or {}).get("billing")) or {}


def _start_date(body: Mapping[str, Any]) -> datetime | None:
    return parse_time(((_billing_of(body).get("ledger")) or {}).get("startDate"))


def _account(body: Mapping[str, Any]) -> str:
    """The account a Subscription bills: its BillingAccount's name, or the deprecated inline id."""
    spec = body.get("spec") or {}
    ref = spec.get("billingAccountRef") or {}
    return str(ref.get("name") or (spec.get("billingAccount") or {}).get("id") or "")


def _offering_of(body: Mapping[str, Any]) -> str:
    return str((((body.get("spec") or {}).get("productOffering")) or {}).get("name") or "")


def _offerings_of(body: Mapping[str, Any]) -> set[str]:
    """The offering ordered and the one whose version is in force (they differ while a change is pending)."""
    plans = _billing_of(body).get("plans") or []
    in_force = (plans[-1] or {}).get("offering") if plans else None
    return {_offering_of(body), *([in_force] if in_force else [])}


def _state(body: Mapping[str, Any]) -> str | None:
    return (body.get("status") or {}).get("state")


def _dunning_signature(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What dunning reads of an invoice: a change here may suspend or resume its account."""
    status = body.get("status") or {}
    return (status.get("state"), status.get("overdue"), status.get("paymentDueDate"), status.get("amountDue"))


def _transition_time(decision: SubscriptionDecision, now: datetime) -> datetime:
    """When the subscription's active-ness changed in this step: the fact's time, else now."""
    moments = [f.at for f in decision.facts if f.kind in ("activated", "suspended", "resumed")]
    return moments[-1] if moments else now


def _conditions(stored: Mapping[str, Any]) -> list[Condition]:
    out = []
    for raw in stored.get("conditions") or []:
        with contextlib.suppress(ValidationError):
            out.append(Condition.model_validate(raw))
    return out


def build_deliverer(settings: Settings) -> Deliverer | None:
    """The sinks the flags name: HTTP CloudEvents sinks and a JSON Lines file; None without any."""
    sinks: list[Sink] = []
    mode: Mode = "binary" if settings.billing_sink_mode == "binary" else "structured"
    headers = {"Authorization": settings.billing_sink_auth_header} if settings.billing_sink_auth_header else {}
    tls: ssl.SSLContext | bool = True
    if settings.billing_sink_ca_file:
        try:
            tls = ssl.create_default_context(cafile=settings.billing_sink_ca_file)
        except (OSError, ssl.SSLError) as exc:
            message = f"--billing-sink-ca-file {settings.billing_sink_ca_file}: not a readable PEM CA: {exc}"
            raise ValueError(message) from exc
    for url in dict.fromkeys(settings.billing_sink_urls):
        sinks.append(HttpSink(url, mode=mode, headers=headers, ssl=tls))
    if settings.billing_jsonl:
        sinks.append(JsonlSink(settings.billing_jsonl))
    return Deliverer(sinks) if sinks else None


@dataclass
class _Sample:
    octets: int
    at: datetime


# --- the controller --------------------------------------------------------------------------------


class CommerceController:
    """ProductOfferings, Subscriptions (and the NetworkServices they own), Invoices and billing delivery."""

    def __init__(
        self,
        kube: Kube,
        writer: StatusWriter,
        settings: Settings,
        clock: Clock,
        sessions: Callable[[], Mapping[str, Any]] | None = None,
        deliverer: Deliverer | None = None,
    ) -> None:
        self.kube = kube
        self.writer = writer
        self.settings = settings
        self.clock = clock
        self._sessions: Callable[[], Mapping[str, Any]] = sessions or (lambda: {})
        self.deliverer = deliverer if deliverer is not None else build_deliverer(settings)
        self.keyring = Keyring.load(settings.billing_signing_key_file)
        if not self.keyring.enabled:
            log.warning(
                "no --billing-signing-key-file: outbox entries are neither signed nor checked, so a forged"
                " entry in a status would be delivered (docs/billing.md)"
            )
        self.taxes: list[TaxRule] = [TaxRule.of(settings.tax_category, settings.tax_rate)] if settings.tax_rate else []
        # indexes, fed by watch events
        self.offerings: dict[str, dict[str, Any]] = {}
        self.subscriptions: dict[Key, dict[str, Any]] = {}
        self.services: dict[Key, dict[str, Any]] = {}  # owned NetworkServices, by owner (namespace, subscription)
        self.invoices: dict[Key, dict[str, Any]] = {}
        self.accounts: dict[Key, dict[str, Any]] = {}  # BillingAccounts, by (namespace, name)
        self._service_owner: dict[Key, Key] = {}  # NetworkService (namespace, name) -> owner key
        self._orders: dict[Key, order.OrderRecord] = {}
        self._claims: dict[order.EndpointKey, order.OrderRecord] | None = None
        self._by_account: dict[Key, set[Key]] = defaultdict(set)  # (namespace, account) -> subscriptions
        self._by_offering: dict[str, set[Key]] = defaultdict(set)
        self._invoices_by_account: dict[Key, set[Key]] = defaultdict(set)
        # work handed to a Subscription's next pass
        self._delivered: dict[Key, set[str]] = defaultdict(set)  # at every sink, still in the outbox
        self._invoice_delivered: dict[Key, set[str]] = defaultdict(set)  # the same for invoice outboxes
        self._bill_views: dict[Key, tuple[str, BillView]] = {}
        self._account_specs: dict[Key, tuple[str, BillingAccountSpec | None, str | None]] = {}
        self._samples: dict[Key, dict[str, _Sample]] = defaultdict(dict)  # usage samples not yet written
        self._created_invoices: set[Key] = set()
        # Forged status copies (a status write that was not ours) the next write of the object must undo.
        self._forged: dict[tuple[str, Key], dict[str, Any]] = {}
        self._force_refused: set[tuple[Ref, str]] = set()  # force-release annotations refused (reported once)
        self._dunning_view: dict[Key, tuple[str, InvoiceStatus]] = {}
        self._offering_specs: dict[str, tuple[tuple[str, Any], ProductOfferingSpec | None, str | None]] = {}
        retry = (settings.retry_initial_seconds, settings.retry_max_seconds)
        self._subs: KeyedRunner[Key] = KeyedRunner("Subscription", self._reconcile_subscription, 16, *retry)
        self._invs: KeyedRunner[Key] = KeyedRunner("Invoice", self._reconcile_invoice, 8, *retry)
        self._offs: KeyedRunner[str] = KeyedRunner("ProductOffering", self._publish_offering, 4, *retry)
        self._accts: KeyedRunner[Key] = KeyedRunner("BillingAccount", self._publish_account, 4, *retry)
        self._outbox_signal = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._background: set[asyncio.Task[None]] = set()
        self._last_sink_errors: dict[str, str] = {}
        self.passes = 0  # billing passes completed (tests and benchmarks read it)

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._startup(), name="commerce-startup"),
            asyncio.create_task(self._delivery_loop(), name="billing-delivery"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for runner in (self._subs, self._invs, self._offs, self._accts):
            await runner.close()
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.deliverer is not None:
            await self.deliverer.close()

    async def _startup(self) -> None:
        """Prime the indexes with one list per kind, so the first passes see offerings and services
        (a Subscription judged before its NetworkService was seen would record a false outage), then
        run, and start the periodic billing and usage passes."""
        watched = sorted(set(self.settings.namespaces))
        for plural, upsert, namespaced in (
            ("productofferings", self.upsert_offering, False),
            ("billingaccounts", self.upsert_account, True),
            ("networkservices", self.observe_service, True),
            ("invoices", self.upsert_invoice, True),
            ("subscriptions", self.upsert_subscription, True),
        ):
            # With --namespace the chart grants namespaced kinds per namespace only: list each of them.
            for namespace in watched if namespaced and watched else [None]:
                try:
                    bodies = await (self.kube.list_in(plural, namespace) if namespace else self.kube.list_all(plural))
                except Exception as exc:  # an API hiccup: watch events fill in
                    where = f" in {namespace}" if namespace else ""
                    log.warning("could not list %s%s at start (%s); relying on watch events", plural, where, exc)
                    continue
                for body in bodies:
                    upsert(body)
        for runner in (self._offs, self._accts, self._subs, self._invs):
            runner.open()
        self._tasks.append(asyncio.create_task(self._billing_loop(), name="billing-pass"))
        self._tasks.append(asyncio.create_task(self._usage_loop(), name="usage-meter"))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- watch events -------------------------------------------------------------------------------
    def _trusted(self, plural: str, key: Key, body: dict[str, Any], record: bool = True) -> dict[str, Any]:
        """`body` as the controller may act on it. When its status is not the one our last write left (someone
        else wrote it): report that and make the next write undo it. With `record` (a status that is the
        controller's record: state, ledger, outbox) carry on from our own last write instead, so those are
        never taken from a status we did not write; otherwise (a status recomputed from the spec each pass)
        the pass recomputes it against the forged copy, which then differs."""
        ref = Ref(plural, key[1], key[0] or None)
        forged = self.writer.forgery(ref, _rv(body), body.get("status"))
        if not forged:
            return body
        self.writer.report_forgery(body, forged)
        self.writer.distrust(ref, body.get("status"))
        if not record:
            return body
        self._forged[(plural, key)] = dict(body.get("status") or {})
        return {**body, "status": self.writer.ours(ref)}

    def upsert_offering(self, body: dict[str, Any]) -> None:
        name = body["metadata"]["name"]
        old = self.offerings.get(name)
        if old is not None and _older(old, body):
            return
        body = self._trusted("productofferings", ("", name), body, record=False)
        self.offerings[name] = body
        self._offs.mark(name)
        generation = (body.get("metadata") or {}).get("generation")
        if old is None or (old.get("metadata") or {}).get("generation") != generation:
            for key in self._by_offering.get(name, ()):  # a spec change: re-judge its subscriptions
                self._subs.mark(key)

    def remove_offering(self, name: str) -> None:
        self.offerings.pop(name, None)
        self._offs.forget(name)
        self.writer.forget(Ref("productofferings", name))
        for key in self._by_offering.get(name, ()):
            self._subs.mark(key)

    def upsert_subscription(self, body: dict[str, Any]) -> None:
        key = _key(body)
        old = self.subscriptions.get(key)
        if old is not None and _older(old, body):
            return
        if old is not None and _rv(old) == _rv(body) and _rv(body):
            return  # our own write, already indexed
        body = self._trusted("subscriptions", key, body)
        self.subscriptions[key] = body
        if old is not None:
            self._by_account[(key[0], _account(old))].discard(key)
            for name in _offerings_of(old):
                self._by_offering[name].discard(key)
        self._by_account[(key[0], _account(body))].add(key)
        for name in _offerings_of(body):  # an edit of either the ordered or the in-force offering wakes it
            self._by_offering[name].add(key)
        if old is None:
            self._accts.mark((key[0], _account(body)))  # it counts the subscriptions that bill it
        self._update_order(key, body)
        self._subs.mark(key)
        if old is None or _state(old) != _state(body) or _offering_of(old) != _offering_of(body):
            self._offs.mark(_offering_of(body))
            if old is not None and _offering_of(old) != _offering_of(body):
                self._offs.mark(_offering_of(old))

    def remove_subscription(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        old = self.subscriptions.pop(key, None)
        if old is not None:
            self._by_account[(namespace, _account(old))].discard(key)
            for offering_name in _offerings_of(old):
                self._by_offering[offering_name].discard(key)
            self._offs.mark(_offering_of(old))
            self._accts.mark((namespace, _account(old)))
        if self._orders.pop(key, None) is not None:
            self._claims = None
            self._wake_waiting_orders(key)
        self._delivered.pop(key, None)
        self._samples.pop(key, None)
        self._subs.forget(key)
        self._forged.pop(("subscriptions", key), None)
        self.writer.forget(Ref("subscriptions", name, namespace))

    def observe_service(self, body: dict[str, Any]) -> None:
        """A NetworkService event (from runtime.Controller): index it under its owning Subscription."""
        svc_key = _key(body)
        owner_name = _owner(body)
        previous = self._service_owner.get(svc_key)
        if owner_name is None:
            if previous is not None:
                self.services.pop(previous, None)
                self._service_owner.pop(svc_key, None)
                self._subs.mark(previous)
            return
        owner = (svc_key[0], owner_name)
        old = self.services.get(owner)
        if old is not None and _older(old, body):
            return
        if old is not None and _rv(old) == _rv(body) and _rv(body):
            return
        self.services[owner] = body
        self._service_owner[svc_key] = owner
        self._subs.mark(owner)

    def forget_service(self, namespace: str, name: str) -> None:
        owner = self._service_owner.pop((namespace, name), None)
        if owner is not None:
            self.services.pop(owner, None)
            self._subs.mark(owner)

    def upsert_invoice(self, body: dict[str, Any]) -> None:
        key = _key(body)
        old = self.invoices.get(key)
        if old is not None and _older(old, body):
            return
        if old is not None and _rv(old) == _rv(body) and _rv(body):
            return
        body = self._trusted("invoices", key, body)
        self.invoices[key] = body
        account = str((body.get("spec") or {}).get("billingAccount") or "")
        if old is not None:
            self._invoices_by_account[(key[0], str((old.get("spec") or {}).get("billingAccount") or ""))].discard(key)
        self._invoices_by_account[(key[0], account)].add(key)
        self._invs.mark(key)
        if old is None or _dunning_signature(old) != _dunning_signature(body):
            self._mark_account(key[0], account)  # dunning follows the invoice's payment state
            for other in self._invoices_by_account.get((key[0], account), ()):
                if other != key:  # a credit balance to carry, or carried: the account's other bills see it
                    self._invs.mark(other)

    def remove_invoice(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        old = self.invoices.pop(key, None)
        self._dunning_view.pop(key, None)
        self._bill_views.pop(key, None)
        self._invoice_delivered.pop(key, None)
        self._invs.forget(key)
        self._forged.pop(("invoices", key), None)
        self.writer.forget(Ref("invoices", name, namespace))
        if old is not None:
            account = str((old.get("spec") or {}).get("billingAccount") or "")
            self._invoices_by_account[(namespace, account)].discard(key)
            self._mark_account(namespace, account)

    def _mark_account(self, namespace: str, account: str) -> None:
        for key in self._by_account.get((namespace, account), ()):
            self._subs.mark(key)
        self._accts.mark((namespace, account))

    def upsert_account(self, body: dict[str, Any]) -> None:
        key = _key(body)
        old = self.accounts.get(key)
        if old is not None and _older(old, body):
            return
        self.accounts[key] = body
        self._accts.mark(key)
        if old is None or old.get("spec") != body.get("spec"):
            self._account_changed(key)

    def remove_account(self, namespace: str, name: str) -> None:
        key = (namespace, name)
        self._account_specs.pop(key, None)
        if self.accounts.pop(key, None) is not None:
            self._account_changed(key)
        self._accts.forget(key)
        self.writer.forget(Ref("billingaccounts", name, namespace))

    def _account_spec(self, key: Key) -> tuple[BillingAccountSpec | None, str | None]:
        """The BillingAccount's spec (or why it does not parse), parsed once per resourceVersion: every pass of
        its Subscriptions and Invoices asks."""
        body = self.accounts.get(key)
        if body is None:
            return None, None
        cached = self._account_specs.get(key)
        if cached is None or cached[0] != _rv(body) or not _rv(body):
            cached = self._account_specs[key] = (_rv(body), *parse_account(body))
        return cached[1], cached[2]

    def _account_changed(self, key: Key) -> None:
        """Its subscriptions re-judge it (missing, suspended, currency) and its drafts take its tax and terms."""
        for sub in self._by_account.get(key, ()):
            self._subs.mark(sub)
        for inv in self._invoices_by_account.get(key, ()):
            self._invs.mark(inv)

    def _update_order(self, key: Key, body: Mapping[str, Any]) -> None:
        try:
            record = order.order_record(body)
        except (ValueError, TypeError):
            return
        old = self._orders.get(key)
        if old == record:
            return
        self._orders[key] = record
        self._claims = None
        if old is not None and (old.endpoints != record.endpoints or old.holds_endpoints != record.holds_endpoints):
            self._wake_waiting_orders(key)

    def _wake_waiting_orders(self, changed: Key) -> None:
        """Endpoints were released or moved: orders waiting for one get another look."""
        for key, record in self._orders.items():
            if key != changed and not record.accepted and record.holds_endpoints:
                self._subs.mark(key)

    def claims(self) -> dict[order.EndpointKey, order.OrderRecord]:
        if self._claims is None:
            self._claims = order.endpoint_claims(self._orders.values())
        return self._claims

    # -- ProductOffering --------------------------------------------------------------------------
    async def _publish_offering(self, name: str) -> None:
        body = self.offerings.get(name)
        if body is None:
            return
        now = self.clock.now()
        meta = body.get("metadata") or {}
        spec, invalid = self._parse_offering(body)
        active = sum(
            1
            for key in self._by_offering.get(name, ())
            if key in self.subscriptions and counts_as_active(_state(self.subscriptions[key]))
        )
        status = offering_status(meta.get("generation", 0), body.get("status"), spec, active, now, invalid=invalid)
        self.writer.submit(Ref("productofferings", name), status, body.get("status"))
        if spec is not None:
            change = next_sellability_change(spec, now)
            if change is not None:
                self._offs.mark_after(name, (change - now).total_seconds() + 0.5)

    def _parse_offering(self, body: Mapping[str, Any] | None) -> tuple[ProductOfferingSpec | None, str | None]:
        """The offering's spec (or why it cannot be read), parsed once per generation."""
        if body is None:
            return None, None
        meta = body.get("metadata") or {}
        stamp = (str(meta.get("uid") or ""), meta.get("generation"))
        cached = self._offering_specs.get(str(meta.get("name")))
        if cached is not None and cached[0] == stamp and stamp[1] is not None:
            return cached[1], cached[2]
        try:
            spec, invalid = ProductOfferingSpec.model_validate(body.get("spec") or {}), None
        except ValidationError as exc:
            spec, invalid = None, validation_message(exc)
        self._offering_specs[str(meta.get("name"))] = (stamp, spec, invalid)
        return spec, invalid

    # -- BillingAccount ---------------------------------------------------------------------------
    async def _publish_account(self, key: Key) -> None:
        """The account's status: how many subscriptions bill it, its outstanding and credit balances."""
        body = self.accounts.get(key)
        if body is None:
            return
        now = self.clock.now()
        generation = int((body.get("metadata") or {}).get("generation") or 0)
        spec, invalid = self._account_spec(key)
        stored = dict(body.get("status") or {})
        count = sum(1 for k in self._by_account.get(key, ()) if k in self.subscriptions)
        status: dict[str, Any] = {"observedGeneration": generation, "subscriptions": count}
        conds: list[Cond] = []
        if spec is None:
            conds.append(Cond("Ready", "False", "InvalidSpec", invalid or "spec does not parse"))
            conds.append(stalled("InvalidSpec", f"{invalid or 'spec does not parse'}; fix the BillingAccount spec"))
        else:
            bills = [b.status for b in self._account_bills(*key) if b.status is not None]
            owed = balances(bills, spec.currency)
            status["accountBalance"] = [
                {"balanceType": "outstanding", "amount": owed.outstanding.to_api()},
                {"balanceType": "credit", "amount": owed.credit.to_api()},
            ]
            takes = {"Active": "takes new orders", "Suspended": "keeps existing service, takes no new orders"}
            conds.append(Cond("Ready", "True", spec.state, f"{spec.state}: {takes.get(spec.state, 'takes no orders')}"))
            if spec.creditLimit is not None:
                limit = Money.from_api(spec.creditLimit, "spec.creditLimit")
                if limit.currency != spec.currency:
                    message = f"spec.creditLimit.unit: {limit.currency} is not the account's {spec.currency}"
                    conds.append(Cond("CreditLimit", "False", "CurrencyMismatch", message))
                elif owed.outstanding.amount > limit.amount:
                    message = f"outstanding {owed.outstanding} exceeds spec.creditLimit {limit}"
                    conds.append(Cond("CreditLimit", "False", "Exceeded", message))
                else:
                    conds.append(Cond("CreditLimit", "True", "Within", f"outstanding {owed.outstanding} of {limit}"))
            over = next((c for c in conds if c.type == "CreditLimit" and c.status == "False"), None)
            # A person must act (collect a payment, raise the limit, fix its currency); orders are not blocked.
            conds.append(
                stalled(f"CreditLimit{over.reason}", f"{over.message}; record a payment or raise spec.creditLimit")
                if over is not None
                else NOT_STALLED
            )
        status["conditions"] = merge_conditions(stored.get("conditions"), conds, generation, now)
        self.writer.submit(Ref("billingaccounts", key[1], key[0]), status, stored)

    # -- Subscription -----------------------------------------------------------------------------
    async def _reconcile_subscription(self, key: Key) -> None:
        for _ in range(6):
            body = self.subscriptions.get(key)
            if body is None:
                return
            try:
                await self._subscription_pass(key, body)
                return
            except (Conflict, NotFound):  # changed or gone since we read it: take it as it is now
                await self._reread(Ref("subscriptions", key[1], key[0]))
        raise RuntimeError(f"subscription {key[0]}/{key[1]} kept changing under every write")

    async def _reread(self, ref: Ref) -> None:
        """After a Conflict: take the object as it is now and redo the pass on it."""
        try:
            fresh = await self.kube.get(ref)
        except NotFound:
            if ref.plural == "subscriptions":
                self.remove_subscription(ref.namespace or "", ref.name)
            elif ref.plural == "invoices":
                self.remove_invoice(ref.namespace or "", ref.name)
            return
        key = (ref.namespace or "", ref.name)
        if ref.plural == "subscriptions":
            self.subscriptions.pop(key, None)  # accept the fresh read whatever its resourceVersion
            self.upsert_subscription(fresh)
        else:
            self.invoices.pop(key, None)
            self.upsert_invoice(fresh)

    async def _subscription_pass(self, key: Key, body: dict[str, Any]) -> None:
        ns, name = key
        ref = Ref("subscriptions", name, ns)
        meta = body["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        deleting = bool(meta.get("deletionTimestamp"))
        if deleting and FINALIZER not in finalizers:
            return  # nothing of ours holds it: it is going away
        now = self.clock.now()
        generation = int(meta.get("generation") or 0)
        stored: dict[str, Any] = dict(body.get("status") or {})
        try:
            spec = SubscriptionSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            self._report_invalid_spec(ref, body, generation, exc, now)
            return
        uid = str(meta.get("uid") or "")
        billing = SubscriptionBilling.model_validate(stored.get("billing") or {})
        tz, recorded_zone = self._subscription_zone(ns, spec, billing)
        plan = self._plan_step(spec, stored, billing, now, tz)
        # From here on the order is the version in force: its offering, template, prices and rate.
        spec, offering = self._in_force(spec, plan)
        problem = self._account_problem(ns, spec, offering, stored.get("state") not in (None, "created"))
        svc_body = self.services.get(key)
        if svc_body is not None and _owner_uid(svc_body) not in (None, uid):
            svc_body = None  # a NetworkService of an earlier Subscription by this name, not ours
        current_svc_spec = (svc_body or {}).get("spec")
        errors: tuple[order.OrderError, ...] = ()
        desired_spec: dict[str, Any] | None = None
        if offering is not None:
            errors = tuple(order.validate_order(name, spec, offering, current_svc_spec))
            if problem is not None and stored.get("state") in (None, "created"):
                errors += (order.OrderError(problem.field, problem.message),)  # no new order for a bad account
            if not errors:
                desired_spec = order.network_service_for(name, ns, uid, spec, offering, True, current_svc_spec)["spec"]
        record = self._orders.get(key)
        conflicts = order.endpoint_conflicts(record, self.claims()) if record is not None else ()
        hold = self._payment_hold(ns, spec, offering, billing, stored.get("state"), now, tz)
        inputs = SubscriptionInputs(
            name=name,
            generation=generation,
            spec=spec,
            now=now,
            status=stored,
            offering=offering,
            order_errors=errors,
            endpoint_conflicts=conflicts,
            service=lifecycle.observe_service(svc_body, desired_spec),
            payment_hold=hold is not None,
            deleting=deleting,
        )
        decision = lifecycle.step(inputs)
        account_ref = SubscriptionRef(ns, name, uid, spec.account_id, self.settings.cluster_identity or "")
        result = self._billing(
            key, account_ref, spec, offering, billing, hold, inputs, decision, now, tz, recorded_zone, problem, plan
        )
        status, box, released, applied_samples = result
        forced = not released and self._force_release(ref, body, deleting, box)
        released = released or forced
        if status is not None:
            status["pendingChange"] = plan.pending.model_dump(mode="json", exclude_none=True) if plan.pending else None
            status["templateRollout"] = (
                plan.rollout.model_dump(mode="json", exclude_none=True) if plan.rollout else None
            )

        if not deleting and FINALIZER not in finalizers and not released:
            # Our finalizer first: a deletion then always goes through pendingTerminate and the terminated fact.
            updated = await self.kube.set_finalizers(ref, [*finalizers, FINALIZER], _rv(body))
            self.upsert_subscription(updated)
            return

        current = body
        forged = self._forged.get(("subscriptions", key))
        if status is not None and (differs(status, stored) or forged is not None):
            current = await self._guarded_status_write(ref, key, with_removals(status, forged), _rv(body))
            self._after_subscription_write(key, body, current, decision, box, applied_samples)
            for change in plan.changes:
                reason = {"upgrade": "Upgraded", "downgrade": "Downgraded"}.get(change.direction, "OfferingRevised")
                before, after = change.previous, change.current
                message = (
                    f"{before.offering} ({changes.rate_of(before)} Mbit/s) -> {after.offering}"
                    f" ({changes.rate_of(after)} Mbit/s, revision {after.revision}) at {rfc3339(change.at)}"
                    f" ({change.policy})"
                )
                self._spawn(self.kube.event(current, "Normal", reason, message))
        if status is None and not forced:
            return  # blocked (outbox or ledger full): nothing else moves until delivery frees room
        await self._apply_child(key, uid, spec, offering, decision.child, svc_body)
        if released and FINALIZER in finalizers:
            remaining = [f for f in finalizers if f != FINALIZER]
            current = await self.kube.set_finalizers(ref, remaining, _rv(current))
            self.upsert_subscription(current)
        self._schedule(key, inputs, spec, decision, now, tz)

    async def _guarded_status_write(
        self, ref: Ref, key: Key, status: dict[str, Any], resource_version: str
    ) -> dict[str, Any]:
        """The one resourceVersion-guarded status write of a Subscription or Invoice pass; announced to the
        status writer first, so its watch event, arriving before this returns, is not taken for a forgery."""
        self.writer.writing(ref, status)
        try:
            after = await self.kube.patch_status(ref, status, resource_version)
        except BaseException:
            self.writer.landed(ref, None)
            raise
        self._forged.pop((ref.plural, key), None)
        return after

    def _force_release(self, ref: Ref, body: Mapping[str, Any], deleting: bool, box: Outbox) -> bool:
        """Whether an operator's force-release annotation ends this terminating Subscription's hold now; the
        step is audited: a Warning Event and a log line with the reason and every event it abandons."""
        meta = body.get("metadata") or {}
        verdict = force_release(meta.get("annotations"), deleting)
        if verdict is None:
            return False
        if not verdict.honoured:
            if (ref, _rv(body)) not in self._force_refused:  # once per version, not every pass
                self._force_refused.add((ref, _rv(body)))
                log.warning("%s: %s", ref, verdict.refused)
                self._spawn(self.kube.event(dict(body), "Warning", "ForceReleaseRefused", str(verdict.refused)))
            return False
        abandoned = [e.event for e in box.pending] + [q.entry.event for q in box.quarantined]
        message = (
            f"finalizer removed by {FORCE_RELEASE} ({verdict.reason!r}) before billing finished:"
            f" {len(box.pending)} pending and {len(box.quarantined)} quarantined outbox entries abandoned"
            f"{' (' + ', '.join(e.id for e in abandoned) + ')' if abandoned else ''}; periods not closed are not billed"
        )
        log.warning("%s: %s", ref, message)
        for event in abandoned:  # the log keeps them whole: the object that held them is going
            log.warning("%s: abandoned billing event %s", ref, event.to_json())
        self._spawn(self.kube.event(dict(body), "Warning", "ForceReleased", message))
        return True

    def _plan_step(
        self, spec: SubscriptionSpec, stored: Mapping[str, Any], billing: SubscriptionBilling, now: datetime, tz: str
    ) -> changes.PlanOutcome:
        """The offering versions after this pass: the order's changes and the offerings' edits (see changes)."""
        if billing.plans and stored.get("state") in FINAL_STATES:
            return changes.PlanOutcome(tuple(billing.plans))  # ended: its versions are history
        requested, _ = self._parse_offering(self.offerings.get(spec.productOffering.name))
        current = billing.plans[-1].offering if billing.plans else spec.productOffering.name
        current_offering, _ = self._parse_offering(self.offerings.get(current))
        try:
            status = SubscriptionStatus.model_validate(
                {k: stored.get(k) for k in ("pendingChange", "templateRollout") if stored.get(k)}
            )
        except ValidationError:  # written by another version: decided afresh (a scheduled time is re-derived)
            status = SubscriptionStatus()
        return changes.plan_step(
            billing.plans,
            requested=spec.productOffering.name,
            requested_offering=requested,
            bandwidth=spec.bandwidthMbps,
            current_offering=current_offering,
            stored_pending=status.pendingChange,
            stored_rollout=status.templateRollout,
            billing_started=billing.ledger.startDate is not None,
            now=now,
            period_end=bill_period(tz, now).end,
        )

    def _in_force(
        self, spec: SubscriptionSpec, plan: changes.PlanOutcome
    ) -> tuple[SubscriptionSpec, ProductOfferingSpec | None]:
        """The order as the version in force sells it: its offering and rate, and that offering's spec with
        the version's prices and template (the version alone when the offering was deleted)."""
        current = plan.current
        if current is None:
            offering, _ = self._parse_offering(self.offerings.get(spec.productOffering.name))
            return spec, offering
        live, _ = self._parse_offering(self.offerings.get(current.offering))
        in_force = spec.model_copy(
            update={
                "productOffering": LocalObjectReference(name=current.offering),
                "bandwidthMbps": current.bandwidthMbps,
            }
        )
        return in_force, changes.as_offering(current, live)

    def _subscription_zone(
        self, namespace: str, spec: SubscriptionSpec, billing: SubscriptionBilling
    ) -> tuple[str, str | None]:
        """The time zone the subscription's periods are cut in, and the one to record in its status: the
        inline account's (not recorded), else the one recorded when billing started (so a BillingAccount
        deleted later cannot move the periods), else its BillingAccount's, else UTC while it is missing."""
        if spec.inline_time_zone is not None:
            return spec.inline_time_zone, None
        if billing.timeZone:
            return billing.timeZone, billing.timeZone
        account, _ = self._account_spec((namespace, spec.account_id))
        return (account.timeZone, account.timeZone) if account is not None else ("UTC", None)

    def _account_problem(
        self, namespace: str, spec: SubscriptionSpec, offering: ProductOfferingSpec | None, accepted: bool
    ) -> AccountProblem | None:
        """Why the Subscription cannot bill its BillingAccount (None for the deprecated inline account)."""
        if spec.billingAccountRef is None:
            return None
        name = spec.billingAccountRef.name
        account, invalid = self._account_spec((namespace, name))
        return account_problem(
            "spec.billingAccountRef.name", name, account, invalid, offering_currency(offering), accepted
        )

    def _billing(
        self,
        key: Key,
        ref: SubscriptionRef,
        spec: SubscriptionSpec,
        offering: ProductOfferingSpec | None,
        billing: SubscriptionBilling,
        hold: PaymentHold | None,
        inputs: SubscriptionInputs,
        decision: SubscriptionDecision,
        now: datetime,
        tz: str,
        recorded_zone: str | None,
        problem: AccountProblem | None,
        plan: changes.PlanOutcome,
    ) -> tuple[dict[str, Any] | None, Outbox, bool, dict[str, _Sample]]:
        """The whole status to write: the lifecycle's, with the ledger, outbox, usage, period close and
        payment hold of this pass. None when the transition cannot be recorded now (outbox or ledger
        full): then only the BillingDelivered condition is written, by the caller's status writer.
        Also whether the finalizer may go (final state, last period closed, every event delivered)."""
        stored = dict(inputs.status)
        generation = inputs.generation
        box = self._checked_outbox(billing.outbox, self._delivered.get(key, ()), self.subscriptions.get(key) or {}, now)
        ledger = Ledger.from_status(billing.ledger)
        meter = Meter.from_status(billing.usage)
        svc = inputs.service
        live = svc.exists and not svc.deleting
        service_ready = live and svc.ready == "True"
        # The Ready condition's lastTransitionTime dates a transition it reports; a NetworkService being
        # deleted or gone stopped being delivered when we learn of it.
        ready_at = (svc.ready_since if live and svc.ready in ("True", "False", "Unknown") else None) or now
        blocked: Cond | None = None
        try:
            ledger = ledger.record(min(ready_at, now), service_ready=service_ready)
            ledger = ledger.record(_transition_time(decision, now), subscription_active=decision.state == "active")
        except LedgerFull as exc:
            blocked = Cond("BillingDelivered", "False", "LedgerFull", str(exc))
        facts = [
            e
            for f in decision.facts
            if (e := ev.for_fact(ref, f.kind, f.at, f.detail, offering=spec.productOffering.name)) is not None
        ]
        facts += [
            ev.changed(
                ref,
                c.at,
                c.direction,
                c.policy,
                (c.previous.offering, c.previous.revision, changes.rate_of(c.previous)),
                (c.current.offering, c.current.revision, changes.rate_of(c.current)),
            )
            for c in plan.changes
        ]
        try:
            box = box.add(facts, now)
        except OutboxFull as exc:
            blocked = Cond("BillingDelivered", "False", "OutboxFull", str(exc))
        if blocked is not None:
            # Neither the transition nor its events are recorded; the pass is redone when room is made.
            log.warning("subscription %s/%s: %s", key[0], key[1], blocked.message)
            conds = _set_condition(
                list(stored.get("conditions") or []), stored.get("conditions"), blocked, generation, now
            )
            self.writer.submit(Ref("subscriptions", key[1], key[0]), {"conditions": conds}, stored)
            self._outbox_signal.set()
            return None, box, False, {}

        samples = dict(self._samples.get(key, {}))
        applied: dict[str, _Sample] = {}
        if samples and decision.state == "active":
            cycle = Cycle.of("month", 1, tz)
            # A month whose usage.rated fact was emitted (chargedThrough) takes no more octets: what is
            # sampled after its close goes to the open month, so the bill and the event say the same.
            usage_closed = [t for t in (ledger.billed_through, billing.chargedThrough) if t is not None]
            for counter, sample in sorted(samples.items()):
                try:
                    meter = meter.observe(counter, sample.octets, sample.at, cycle, max(usage_closed, default=None))
                except (RatingError, PeriodError) as exc:
                    log.warning("subscription %s/%s: usage sample %s dropped: %s", key[0], key[1], counter, exc)
                applied[counter] = sample
        elif samples:
            applied = samples  # not active any more: the samples are moot

        charged = billing.chargedThrough
        plans = plan.plans
        final = decision.state in FINAL_STATES
        closed = True  # every period that can be charged has its events in the outbox
        billing_error: str | None = None
        if offering is not None and ledger.start_date is not None:
            horizon = ended = now
            if final:
                # The final period is closed at termination: nothing can be added to it any more.
                ended = min(now, parse_time(decision.status.get("terminationDate")) or now)
                horizon = max(now, bill_period(tz, ended).end)
            try:
                inp = BillingInput(ref, spec.productOffering.name, offering, ledger, meter, tz, plan.plans)
                catch = catch_up(inp, to_second(charged) if charged else None, horizon)
                # CloudEvents `time` is when the fact occurred: a final period rated ahead occurred when
                # the subscription ended; its coverage is in the data.
                closing = [ev.occurred_by(e, ended) for e in catch.events]
                if closing or catch.charged_through != charged:
                    if box.would_fit(closing):
                        box = box.add(closing, now)
                        charged = catch.charged_through
                    else:
                        closed = False  # waits until delivery makes room
                if catch.more:  # more ended periods than one pass closes: the next ones soon
                    closed = False
                    self._subs.mark_after(key, 1.0)
            except _BILLING_ERRORS as exc:
                closed = False
                billing_error = f"{type(exc).__name__}: {exc}"
                log.warning("subscription %s/%s: period close failed: %s", key[0], key[1], exc)
            through = self._invoiced_through(key[0], spec.account_id, charged)
            if through is not None and (ledger.billed_through is None or through > ledger.billed_through):
                ledger = ledger.compact(through)
                meter = meter.compact(through)
                plans = changes.compact_plans(plans, through)
        elif final and ledger.start_date is not None:
            log.warning(
                "subscription %s/%s: ProductOffering %s is gone, its final period cannot be rated",
                key[0],
                key[1],
                spec.productOffering.name,
            )

        new_billing = SubscriptionBilling(
            ledger=ledger.to_status(),
            outbox=box.to_status(),
            usage=meter.to_status(),
            chargedThrough=charged,
            paymentHold=hold,
            timeZone=recorded_zone if ledger.start_date is not None else None,  # fixed once billing started
            plans=list(plans),
        ).model_dump(mode="json", exclude_none=True)
        new_billing.setdefault("paymentHold", None)
        status = dict(decision.status)
        status["billing"] = new_billing
        status["nextBillDate"] = (
            rfc3339(bill_period(tz, now).end) if not final and ledger.start_date is not None else None
        )
        delivered_cond = self._delivered_condition(box, stored, generation, now)
        status["conditions"] = _set_condition(
            list(status.get("conditions") or []), stored.get("conditions"), delivered_cond, generation, now
        )
        if spec.billingAccountRef is not None:
            account_cond = (
                Cond("BillingAccount", "False", problem.reason, f"{problem.field}: {problem.message}")
                if problem is not None
                else Cond("BillingAccount", "True", "Active", f"bills BillingAccount {spec.billingAccountRef.name}")
            )
            status["conditions"] = _set_condition(
                status["conditions"], stored.get("conditions"), account_cond, generation, now
            )
        # Quarantined entries hold a deletion too: they may be genuine (docs/billing.md), and go with the object.
        drained = (box.depth == 0 and not box.quarantined) or self.deliverer is None
        released = decision.finished and closed and drained
        if inputs.deleting and not released:
            # Never a silent hang: say what holds the finalizer, and how an operator can end it.
            reason, message = holding(closed, drained, len(box.quarantined), billing_error)
            status["conditions"] = _set_condition(
                status["conditions"],
                stored.get("conditions"),
                Cond("Released", "False", reason, message),
                generation,
                now,
            )
        return status, box, released, applied

    def _checked_outbox(self, raw: Any, delivered: Iterable[str], body: Mapping[str, Any], now: datetime) -> Outbox:
        """The object's outbox as this pass may use it: delivered ids removed, the quarantined entries an
        operator released (annotation) signed and pending again, and every pending entry without a valid
        proof of origin moved to quarantine, each reported (log, metric, Warning Event)."""
        box = Outbox.from_status(raw, self.keyring).mark_delivered(delivered)
        meta = body.get("metadata") or {}
        what = f"{body.get('kind') or 'object'} {meta.get('namespace')}/{meta.get('name')}"
        asked = str((meta.get("annotations") or {}).get(RELEASE_QUARANTINED) or "")
        if asked and box.quarantined:
            box, released = box.release(i.strip() for i in asked.split(",") if i.strip())
            if released:
                message = f"released from quarantine by annotation {RELEASE_QUARANTINED}: {', '.join(released)}"
                log.warning("%s: %s", what, message)
                self._spawn(self.kube.event(dict(body), "Warning", "QuarantineReleased", message))
        box, moved = box.quarantine(now)
        for q in moved:
            event = q.entry.event
            message = (
                f"outbox entry {event.id} ({event.type}, source {event.source}) quarantined, not delivered:"
                f" {EXPLANATIONS[q.reason]}"
            )
            log.warning("%s: %s; data %s", what, message, dict(event.data))
            metrics.BILLING_QUARANTINED.inc()
            self._spawn(self.kube.event(dict(body), "Warning", "EventQuarantined", message))
        return box

    def _delivered_condition(self, box: Outbox, stored: Mapping[str, Any], generation: int, now: datetime) -> Cond:
        if box.pending and self.deliverer is None:
            oldest = box.oldest_queued_at()
            since = f" since {rfc3339(oldest)}" if oldest else ""
            return Cond(
                "BillingDelivered",
                "False",
                "NoSinkConfigured",
                f"{box.depth} billing events pending{since}; the controller has no --billing-sink-url or"
                " --billing-jsonl, they stay in the outbox",
            )
        cond = box.condition(now, _conditions(stored), generation)
        return Cond(cond.type, cond.status, cond.reason, cond.message)

    def _after_subscription_write(
        self,
        key: Key,
        before: dict[str, Any],
        after: dict[str, Any],
        decision: SubscriptionDecision,
        box: Outbox,
        applied: Mapping[str, _Sample],
    ) -> None:
        ref = Ref("subscriptions", key[1], key[0])
        self.writer.forget(ref)  # its memory of our last write is stale
        self.writer.landed(ref, after)  # what a newer copy must still show, or it was forged
        pending = set(box.ids)
        delivered = self._delivered.get(key)
        if delivered:
            delivered &= pending  # those left the outbox in this write
        samples = self._samples.get(key)
        if samples:
            for counter, sample in applied.items():
                if samples.get(counter) is sample:
                    del samples[counter]
        self.upsert_subscription(after)
        if box.pending:
            self._outbox_signal.set()
        stalled = stalled_notice(before.get("status"), after.get("status"))
        for fact in decision.facts:
            reason = fact.kind.capitalize()
            detail = ", ".join(f"{k}={v}" for k, v in sorted(fact.detail.items()) if v)
            message = f"{fact.kind} at {rfc3339(fact.at)}" + (f" ({detail})" if detail else "")
            if fact.kind == "aborted":
                # A failed provisioning needs a person: one Warning, saying what failed and what to do.
                message = f"{message}: {stalled.message}" if stalled else message
                stalled = Notice("Warning", reason, message)
                continue
            self._spawn(self.kube.event(after, "Normal", reason, message))
        if self.writer.announcer is not None:
            self.writer.announcer.post(after, stalled)
        account = _account(after)
        for inv_key in self._invoices_by_account.get((key[0], account), ()):
            inv = self.invoices.get(inv_key)
            if inv is not None and ((inv.get("status") or {}).get("state") or "new") not in ISSUED:
                # A draft follows its subscriptions' ledgers, at most every few seconds: recomputing a
                # large account after each of its subscriptions' writes would be quadratic.
                self._invs.mark_after(inv_key, DRAFT_DELAY_SECONDS)

    def _report_invalid_spec(
        self, ref: Ref, body: Mapping[str, Any], generation: int, exc: ValidationError, now: datetime
    ) -> None:
        """A spec that does not parse (Subscription or Invoice): Ready=False InvalidSpec naming the bad fields."""
        stored = dict(body.get("status") or {})
        message = validation_message(exc)
        kind = "Subscription" if ref.plural == "subscriptions" else "Invoice"
        desired = [
            Cond("Ready", "False", "InvalidSpec", message),
            stalled("InvalidSpec", f"{message}; fix the {kind} spec"),
        ]
        conds = merge_conditions(stored.get("conditions"), desired, generation, now)
        self.writer.submit(ref, {"observedGeneration": generation, "conditions": conds}, stored)

    def _payment_hold(
        self,
        namespace: str,
        spec: SubscriptionSpec,
        offering: ProductOfferingSpec | None,
        billing: SubscriptionBilling,
        state: str | None,
        now: datetime,
        tz: str,
    ) -> PaymentHold | None:
        """Dunning: the payment hold after this pass, from the account's invoices and the offering's policy."""
        current = billing.paymentHold
        if offering is None:
            return current
        invoices = self._account_invoice_statuses(namespace, spec.account_id)
        decision = dunning_decision(invoices, offering.paymentPolicy, current is not None, now, tz)
        if decision.action == "suspend" and state not in FINAL_STATES:
            return PaymentHold(since=to_second(now), invoices=list(decision.invoices)[:16])
        if decision.action == "resume":
            return None
        return current

    def _account_invoice_statuses(self, namespace: str, account: str) -> dict[str, InvoiceStatus]:
        """The account's issued, unpaid invoices (only those can be overdue), without their lines:
        parsed once per resourceVersion, since every Subscription pass of the account asks."""
        out: dict[str, InvoiceStatus] = {}
        for key in self._invoices_by_account.get((namespace, account), ()):
            body = self.invoices.get(key) or {}
            raw = body.get("status") or {}
            if raw.get("state") not in UNPAID:
                continue
            cached = self._dunning_view.get(key)
            if cached is None or cached[0] != _rv(body):
                try:
                    view = InvoiceStatus.model_validate({k: v for k, v in raw.items() if k != "lines"})
                except ValidationError:
                    continue
                cached = self._dunning_view[key] = (_rv(body), view)
            out[key[1]] = cached[1]
        return out

    def _periods_closed(self, namespace: str, account: str, period: Period, now: datetime) -> bool:
        """Whether every subscription of the account served in `period` has closed it (chargedThrough at
        or after its end: its last samples and transitions are recorded, its period events emitted), so
        the onCycle bill says what those events say. After CLOSE_WAIT past the end the bill is issued
        anyway (what comes later lands as corrections on the next bill)."""
        if now >= period.end + CLOSE_WAIT:
            return True
        for key in self._by_account.get((namespace, account), ()):
            sub = self.subscriptions.get(key) or {}
            start = _start_date(sub)
            ended = parse_time((sub.get("status") or {}).get("terminationDate"))
            if start is None or start >= period.end or (ended is not None and ended <= period.start):
                continue
            charged = parse_time(_billing_of(sub).get("chargedThrough"))
            if charged is None or charged < period.end:
                return False
        return True

    def _invoiced_through(self, namespace: str, account: str, charged: datetime | None) -> datetime | None:
        """End of the latest issued onCycle invoice's period whose charges are recorded and whose corrections
        window closed (a later bill of the account, which carries its late corrections, is issued too):
        ledger history before it can no longer change any bill and is compacted away."""
        if charged is None:
            return None
        issued: list[tuple[str | None, datetime, datetime]] = []
        for key in self._invoices_by_account.get((namespace, account), ()):
            inv = self.invoices.get(key) or {}
            spec = inv.get("spec") or {}
            if ((inv.get("status") or {}).get("state")) not in ISSUED:
                continue
            bounds = spec.get("billingPeriod") or {}
            start, end = parse_time(bounds.get("startDateTime")), parse_time(bounds.get("endDateTime"))
            if start is not None and end is not None:
                issued.append((spec.get("runType"), start, end))
        latest: datetime | None = None
        for run_type, _, end in issued:
            if run_type != "onCycle" or end > utc(charged) or (latest is not None and end <= latest):
                continue
            if any(later_start >= end for _, later_start, _ in issued):
                latest = end
        return latest

    async def _apply_child(
        self,
        key: Key,
        uid: str,
        spec: SubscriptionSpec,
        offering: ProductOfferingSpec | None,
        action: ChildAction,
        svc_body: dict[str, Any] | None,
    ) -> None:
        ns, name = key
        ref = Ref("networkservices", name, ns)
        if action.verb == "apply" and offering is not None:
            current_spec = (svc_body or {}).get("spec")
            desired = order.network_service_for(name, ns, uid, spec, offering, action.admin_enabled, current_spec)
            if svc_body is None:
                try:
                    created = await self.kube.create(desired, "networkservices", ns)
                except Conflict:
                    log.info("NetworkService %s/%s exists but is not indexed yet (or not ours)", ns, name)
                    return
                self.observe_service(created)
                return
            patch: dict[str, Any] = {}
            spec_changes = spec_patch(current_spec or {}, desired["spec"])
            if spec_changes:
                patch["spec"] = spec_changes
            labels = (svc_body.get("metadata") or {}).get("labels") or {}
            want_labels = desired["metadata"]["labels"]
            if any(labels.get(k) != v for k, v in want_labels.items()):
                patch["metadata"] = {"labels": want_labels}
            if patch:
                try:
                    self.observe_service(await self.kube.patch(ref, patch))
                except NotFound:
                    self.forget_service(ns, name)
        elif action.verb == "set_admin" and svc_body is not None:
            wanted = "enabled" if action.admin_enabled else "disabled"
            if (svc_body.get("spec") or {}).get("adminState", "enabled") != wanted:
                with contextlib.suppress(NotFound):
                    self.observe_service(await self.kube.patch(ref, {"spec": {"adminState": wanted}}))
        elif (
            action.verb == "delete"
            and svc_body is not None
            and not (svc_body.get("metadata") or {}).get("deletionTimestamp")
        ):
            await self.kube.delete(ref)

    def _schedule(
        self,
        key: Key,
        inputs: SubscriptionInputs,
        spec: SubscriptionSpec,
        decision: SubscriptionDecision,
        now: datetime,
        tz: str,
    ) -> None:
        moments: list[datetime] = []
        # next_wakeup only knows requested dates and, for orders not yet accepted, the offering's validFor
        if spec.requestedStartDate or spec.requestedTerminationDate or decision.state == "created":
            wake = lifecycle.next_wakeup(inputs)
            if wake is not None:
                moments.append(wake)
        if decision.state not in FINAL_STATES:
            with contextlib.suppress(PeriodError):
                moments.append(bill_period(tz, now).end)
        if moments:
            self._subs.mark_after(key, (min(moments) - now).total_seconds() + 1.0)

    # -- Invoice ------------------------------------------------------------------------------------
    async def _reconcile_invoice(self, key: Key) -> None:
        for _ in range(6):
            body = self.invoices.get(key)
            if body is None:
                return
            try:
                await self._invoice_pass(key, body)
                return
            except (Conflict, NotFound):
                await self._reread(Ref("invoices", key[1], key[0]))
        raise RuntimeError(f"invoice {key[0]}/{key[1]} kept changing under every write")

    def account_inputs(self, namespace: str, account: str) -> tuple[list[BillingInput], str, list[str]]:
        """The account's subscriptions as billing inputs, its time zone (its BillingAccount's, else its first
        subscription's), and what could not be used."""
        inputs: list[BillingInput] = []
        problems: list[str] = []
        zones: list[str] = []
        account_spec, _ = self._account_spec((namespace, account))
        for key in sorted(self._by_account.get((namespace, account), ())):
            sub = self.subscriptions.get(key)
            if sub is None:
                continue
            zone = self._zone_of(namespace, sub)
            zones.append(zone)
            offering = self.offerings.get(_offering_of(sub))
            if offering is None and not _billing_of(sub).get("plans"):
                if _start_date(sub) is not None:
                    problems.append(f"subscription {key[1]}: ProductOffering {_offering_of(sub)} not found")
                continue
            try:
                inputs.append(BillingInput.from_objects(sub, offering, zone))
            except (ValidationError, *_BILLING_ERRORS) as exc:
                problems.append(f"subscription {key[1]}: {exc}")
        if account_spec is not None:
            return inputs, account_spec.timeZone, problems
        return inputs, (zones[0] if zones else "UTC"), problems

    def _zone_of(self, namespace: str, sub: Mapping[str, Any]) -> str:
        """A Subscription's billing time zone from its object (see `_subscription_zone`)."""
        spec = sub.get("spec") or {}
        inline = spec.get("billingAccount")
        if inline:
            return str(inline.get("timeZone") or "UTC")
        recorded = _billing_of(sub).get("timeZone")
        if recorded:
            return str(recorded)
        account, _ = self._account_spec((namespace, _account(sub)))
        return account.timeZone if account is not None else "UTC"

    def _account_bills(self, namespace: str, account: str) -> list[BillView]:
        """The account's invoices as carrying balances and corrections need them (parsed once per resourceVersion)."""
        out: list[BillView] = []
        for key in sorted(self._invoices_by_account.get((namespace, account), ())):
            body = self.invoices.get(key)
            if body is None:
                continue
            bounds = (body.get("spec") or {}).get("billingPeriod") or {}
            start, end = parse_time(bounds.get("startDateTime")), parse_time(bounds.get("endDateTime"))
            if start is None or end is None or end <= start:
                continue
            cached = self._bill_views.get(key)
            if cached is None or cached[0] != _rv(body):
                status: InvoiceStatus | None = None
                with contextlib.suppress(ValidationError):
                    status = InvoiceStatus.model_validate(body.get("status") or {}) if body.get("status") else None
                uid = str((body.get("metadata") or {}).get("uid") or "")
                cached = self._bill_views[key] = (_rv(body), BillView(key[1], uid, Period(start, end), status))
            out.append(cached[1])
        return out

    def _corrections(
        self, target: BillView, bills: list[BillView], inputs: list[BillingInput], now: datetime
    ) -> list[BillLine]:
        """Late corrections for the account's next draft: every issued bill before it is re-rated from the
        subscriptions' ledgers as they are now; differences become credit or debit lines. Bills whose history
        was compacted can no longer change and are skipped; lines of subscriptions that are gone are left alone."""
        uid_of = {sub.ref.qualified_name: sub.ref.uid for sub in inputs}
        issued: list[InvoiceStatus] = []
        recomputed: list[BillLine] = []
        for bill in bills:
            status = bill.status
            if status is None or (status.state or "new") not in ISSUED or bill.period.end > target.period.start:
                continue
            try:
                lines = [ln for sub in inputs for ln in rate_subscription(sub, bill.period, now).lines]
            except _BILLING_ERRORS:
                continue  # compacted: that history is final
            recomputed += lines
            own = [ln for ln in status.lines if ln.subscription in uid_of]
            issued.append(status.model_copy(update={"lines": own}))
        if not issued:
            return []
        return corrections(issued, recomputed, target.period, uid_of)

    async def _invoice_pass(self, key: Key, body: dict[str, Any]) -> None:
        ns, name = key
        ref = Ref("invoices", name, ns)
        now = self.clock.now()
        meta = body["metadata"]
        generation = int(meta.get("generation") or 0)
        stored_raw: dict[str, Any] = dict(body.get("status") or {})
        try:
            spec = InvoiceSpec.model_validate(body.get("spec") or {})
        except ValidationError as exc:
            self._report_invalid_spec(ref, body, generation, exc, now)
            return
        account = spec.billingAccount
        stored: InvoiceStatus | None = None
        if stored_raw:
            with contextlib.suppress(ValidationError):
                stored = InvoiceStatus.model_validate(stored_raw)
        account_spec, account_invalid = self._account_spec((ns, account))
        inputs, tz, problems = self.account_inputs(ns, account)
        grace = max((i.payment_policy.gracePeriodDays for i in inputs), default=PaymentPolicy().gracePeriodDays)
        payments = list(spec.payments)
        box = self._checked_outbox(stored.outbox if stored else None, self._invoice_delivered.get(key, ()), body, now)
        new: InvoiceStatus
        period: Period | None = None
        try:
            start, end = spec.billingPeriod.startDateTime, spec.billingPeriod.endDateTime
            if start is None or end is None:
                raise InvoiceError("spec.billingPeriod: needs startDateTime and endDateTime")
            period = Period(to_second(start), to_second(end))
            event_ref = InvoiceRef.from_object(body)
            bills = self._account_bills(ns, account)
            me = BillView(name, event_ref.uid, period, stored)
            if stored is not None and (stored.state or "new") in ISSUED:
                base = stored
                if base.sentDate is None and invoice_event_id(event_ref.uid, "issued") in box.recent:
                    base = mark_sent(base, now)  # the issued bill reached every billing sink
                carrier = carried_by(me, bills)
                carried = Money.from_api(carrier[1], "carriedForward", signed=True) if carrier else None
                draft_view = _issued_draft(name, account, period, base)
                new = reconcile(base, draft_view, payments, now, grace, tz, carried=carried)
                balance = CarriedBalance(invoice=carrier[0], amount=carrier[1]) if carrier else None
                new = new.model_copy(update={"carriedForward": balance})
            else:
                if account_invalid is not None:
                    raise InvoiceError(f"BillingAccount {account}: {account_invalid}")
                if problems:
                    raise InvoiceError("; ".join(problems))
                currency = account_spec.currency if account_spec is not None else None
                if currency is None and not inputs:
                    currency = self._fallback_currency(ns, account)
                code = account_currency(account, inputs, currency)
                if currency is not None and code != currency:
                    raise InvoiceError(
                        f"BillingAccount {account} bills in {currency}; its subscriptions are priced in {code}"
                    )
                extra: list[BillLine] = []
                if next_draft([*[b for b in bills if b.name != name], me]) == name:
                    extra = carried_lines(me, bills, code) + self._corrections(me, bills, inputs, now)
                terms = account_spec.paymentPlan if account_spec is not None else None
                draft = compute_invoice(
                    account,
                    period,
                    inputs,
                    now,
                    account_taxes(account_spec, self.taxes, period),
                    payments,
                    extra_lines=extra,
                    time_zone=tz,
                    currency=code,
                    payment_term_days=terms.paymentTermDays if terms is not None else None,
                )
                new = reconcile(stored, draft, payments, now, grace, tz, on_hold=spec.onHold)
                closing = spec.runType == "onCycle" and not self._periods_closed(ns, account, period, now)
                if now >= period.end and not spec.onHold and not closing:
                    new = reconcile(issue(new, draft, now, tz, bill_no=name), draft, payments, now, grace, tz)
                    due = rfc3339(new.paymentDueDate) if new.paymentDueDate else "on receipt"
                    self._spawn(self.kube.event(body, "Normal", "Issued", f"issued: {draft.tax_included}, due {due}"))
            overdue_at = add_days(new.paymentDueDate, grace, tz) if new.paymentDueDate else None
            events = transition_events(event_ref, stored, new, payments, overdue_at)
            new = new.model_copy(update={"recordedPayments": [p.id for p in payments]})
            box = box.add(events, now)  # recorded in the same resourceVersion-checked write as the change
            new = new.model_copy(update={"outbox": box.to_status()})
            cond = _invoice_ready(new, period, tz, spec.onHold)
        except OutboxFull as exc:
            new = (stored or InvoiceStatus()).model_copy(update={"outbox": box.to_status()})
            cond = Cond("Ready", "False", "OutboxFull", str(exc))
            self._outbox_signal.set()
        except (ValidationError, *_BILLING_ERRORS) as exc:
            new = (stored or InvoiceStatus()).model_copy(update={"outbox": box.to_status()})
            cond = Cond("Ready", "False", type(exc).__name__, str(exc)[:4000])
            period = None
        out = new.model_dump(mode="json", exclude_none=True)
        out["observedGeneration"] = generation
        out["conditions"] = merge_conditions(stored_raw.get("conditions"), [cond], generation, now)
        for field_name in stored_raw:
            out.setdefault(field_name, None)
        forged = self._forged.get(("invoices", key))
        if differs(out, stored_raw) or forged is not None:
            after = await self._guarded_status_write(ref, key, with_removals(out, forged), _rv(body))
            self.writer.forget(ref)
            self.writer.landed(ref, after)
            delivered = self._invoice_delivered.get(key)
            if delivered:
                delivered &= set(box.ids)  # those left the outbox in this write
            if box.pending:
                self._outbox_signal.set()
            if stored is not None and stored.state != new.state and new.state == "settled":
                self._spawn(self.kube.event(after, "Normal", "Settled", f"settled on {rfc3339(now)}"))
            self.upsert_invoice(after)
        self._schedule_invoice(key, new, period, grace, tz, now)

    def _fallback_currency(self, namespace: str, account: str) -> str | None:
        for key in self._by_account.get((namespace, account), ()):
            sub = self.subscriptions.get(key)
            offering, _ = self._parse_offering(self.offerings.get(_offering_of(sub or {})))
            for price in offering.productOfferingPrice if offering else []:
                if price.price is not None:
                    return price.price.unit
        return None

    def _schedule_invoice(
        self, key: Key, status: InvoiceStatus, period: Period | None, grace: int, tz: str, now: datetime
    ) -> None:
        if period is None:
            return
        state = status.state or "new"
        if state not in ISSUED:
            self._invs.mark_after(key, max(0.0, (period.end - now).total_seconds()) + 0.5)
        elif state in UNPAID and status.paymentDueDate is not None and not status.overdue:
            with contextlib.suppress(PeriodError):
                overdue_at = add_days(status.paymentDueDate, grace, tz)
                self._invs.mark_after(key, max(0.0, (overdue_at - now).total_seconds()) + 0.5)

    # -- the billing pass: period close, onCycle invoices, dunning ------------------------------------
    async def _billing_loop(self) -> None:
        while True:
            try:
                await self.billing_pass()
            except Exception:
                log.exception("billing pass failed")
            await asyncio.sleep(self.settings.billing_interval_seconds)

    async def billing_pass(self) -> None:
        now = self.clock.now()
        for key in list(self.subscriptions):
            self._subs.mark(key)  # closes ended periods, re-judges payment holds
        for key in list(self.invoices):
            self._invs.mark(key)  # issues drafts whose period ended, flags overdue bills
        created = 0
        for (ns, account), keys in list(self._by_account.items()):
            if not keys:
                continue
            try:
                created += await self._on_cycle_invoices(ns, account, now)
            except Exception as exc:  # e.g. Forbidden in a namespace being deleted: the other accounts go on
                log.warning("billing pass: onCycle invoices of %s/%s failed: %s", ns, account, str(exc)[:300])
        self.passes += 1
        log.info(
            "billing pass %d: %d subscriptions, %d invoices, %d onCycle invoices created",
            self.passes,
            len(self.subscriptions),
            len(self.invoices),
            created,
        )

    async def _on_cycle_invoices(self, namespace: str, account: str, now: datetime) -> int:
        """Create the account's onCycle Invoice for each of the last months that ended and had service."""
        subs = [
            self.subscriptions[k] for k in sorted(self._by_account[(namespace, account)]) if k in self.subscriptions
        ]
        served: list[tuple[datetime, datetime | None]] = []
        for sub in subs:
            start = _start_date(sub)
            if start is not None:
                served.append((start, parse_time((sub.get("status") or {}).get("terminationDate"))))
        if not served:
            return 0
        _, tz, _ = self.account_inputs(namespace, account)
        try:
            cycle = Cycle.of("month", 1, tz)
        except PeriodError:
            return 0
        period = cycle.previous(cycle.period_containing(now))
        created = 0
        for _ in range(ON_CYCLE_LOOKBACK):
            if all(period.end <= start for start, _ in served):
                break
            if any(start < period.end and (end is None or end > period.start) for start, end in served):
                created += await self._ensure_on_cycle(namespace, account, period, tz)
            period = cycle.previous(period)
        return created

    async def _ensure_on_cycle(self, namespace: str, account: str, period: Period, tz: str) -> int:
        name = invoice_name(account, period, tz)
        key = (namespace, name)
        if key in self.invoices or key in self._created_invoices:
            return 0
        for other in self._invoices_by_account.get((namespace, account), ()):
            bounds = ((self.invoices.get(other) or {}).get("spec") or {}).get("billingPeriod") or {}
            if (
                parse_time(bounds.get("startDateTime")) == period.start
                and parse_time(bounds.get("endDateTime")) == period.end
            ):
                return 0  # this account and period already have a bill (an offCycle one, under another name)
        body = {
            "apiVersion": API_VERSION,
            "kind": "Invoice",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": {ACCOUNT_LABEL: _label(account), RUN_TYPE_LABEL: "onCycle"},
            },
            "spec": {
                "billingAccount": account,
                "billingPeriod": {"startDateTime": rfc3339(period.start), "endDateTime": rfc3339(period.end)},
                "runType": "onCycle",
            },
        }
        try:
            created = await self.kube.create(body, "invoices", namespace)
        except Conflict:
            self._created_invoices.add(key)  # AlreadyExists: already done
            return 0
        self._created_invoices.add(key)
        self.upsert_invoice(created)
        log.info("created onCycle invoice %s/%s", namespace, name)
        return 1

    # -- delivery -----------------------------------------------------------------------------------
    async def _delivery_loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox_signal.wait(), timeout=self.settings.billing_retry_seconds)
            self._outbox_signal.clear()
            try:
                await self.deliver_once()
            except Exception:
                log.exception("billing delivery pass failed")

    def pending_events(self) -> list[tuple[datetime, Key, BillingEvent]]:
        """Every outbox event not yet known to be at every sink, oldest first."""
        out: list[tuple[datetime, Key, BillingEvent]] = []
        for key, body in list(self.subscriptions.items()):
            raw = (_billing_of(body).get("outbox") or {}).get("pending")
            if not raw:
                continue
            try:
                box = Outbox.from_status(_billing_of(body).get("outbox"), self.keyring)
            except (ValidationError, *_BILLING_ERRORS):
                continue
            done = self._delivered.get(key, set())
            out += [(e.queued_at, key, e.event) for e in box.deliverable() if e.event.id not in done]
        out += self._pending_invoice_events()
        out.sort(key=lambda item: item[0])
        return out

    def _pending_invoice_events(self) -> list[tuple[datetime, Key, BillingEvent]]:
        out: list[tuple[datetime, Key, BillingEvent]] = []
        for key, body in list(self.invoices.items()):
            raw = ((body.get("status") or {}).get("outbox")) or {}
            if not raw.get("pending"):
                continue
            try:
                box = Outbox.from_status(raw, self.keyring)
            except (ValidationError, *_BILLING_ERRORS):
                continue
            done = self._invoice_delivered.get(key, set())
            out += [(e.queued_at, key, e.event) for e in box.deliverable() if e.event.id not in done]
        return out

    def _outbox_metrics(self, pending: list[tuple[datetime, Key, BillingEvent]]) -> None:
        metrics.OUTBOX_DEPTH.set(len(pending))
        oldest = pending[0][0] if pending else None
        age = (self.clock.now() - oldest).total_seconds() if oldest is not None else 0.0
        metrics.OUTBOX_OLDEST_SECONDS.set(max(0.0, age))

    async def deliver_once(self) -> int:
        """One delivery pass; returns how many events reached every sink."""
        pending = self.pending_events()
        self._outbox_metrics(pending)
        if not pending or self.deliverer is None:
            return 0
        batch = pending[:MAX_DELIVERY_BATCH]
        before = self.deliverer.metrics.delivered
        report = await self.deliverer.deliver([event for _, _, event in batch])
        metrics.BILLING_DELIVERED.inc(self.deliverer.metrics.delivered - before)
        done = set(report.delivered)
        touched: set[Key] = set()
        touched_invoices: set[Key] = set()
        for _, key, event in batch:
            if event.id not in done:
                continue
            if event.type.startswith(INVOICE_TYPE_PREFIX):
                self._invoice_delivered[key].add(event.id)
                touched_invoices.add(key)
            else:
                self._delivered[key].add(event.id)
                touched.add(key)
        for key in touched:
            self._subs.mark(key)  # its next write removes them from the outbox
        for key in touched_invoices:
            self._invs.mark(key)  # the same, and an issued bill delivered becomes sent
        if report.errors != self._last_sink_errors:
            for sink, error in report.errors.items():
                log.warning("billing sink %s: %s (%d events stay pending)", sink, error, len(report.pending))
            self._last_sink_errors = dict(report.errors)
        self._outbox_metrics([p for p in pending if p[2].id not in done])
        return len(done)

    # -- usage metering -----------------------------------------------------------------------------
    async def _usage_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.usage_interval_seconds)
            try:
                await self.sample_usage()
            except Exception:
                log.exception("usage sampling failed")

    async def sample_usage(self) -> int:
        """Read the subinterface octet counters of every active, usage-priced subscription; the samples
        go into its next status write (rating.Meter). Returns how many counters were read."""
        sessions = self._sessions()
        now = self.clock.now()
        jobs: list[tuple[Key, str, Any, Any]] = []
        for key, body in list(self.subscriptions.items()):
            if _state(body) != "active":
                continue
            offering, _ = self._parse_offering(self.offerings.get(_offering_of(body)))
            if offering is None or not any(p.priceType == "usage" for p in offering.productOfferingPrice):
                continue
            for endpoint in (body.get("spec") or {}).get("endpoints") or []:
                session = sessions.get(endpoint.get("device"))
                if session is None or not getattr(session, "connected", False):
                    continue
                port, vlan = endpoint.get("port"), endpoint.get("vlanId")
                if not isinstance(port, str) or not isinstance(vlan, int):
                    continue  # a malformed endpoint: its Subscription's status says so
                path = counters_path(port, vlan)
                jobs.append((key, f"{endpoint.get('device')}/{port}/{vlan}", session, path.to_proto()))
        limit = asyncio.Semaphore(16)

        async def read(job: tuple[Key, str, Any, Any]) -> tuple[Key, str, dict[str, int]]:
            key, counter, session, path = job
            async with limit:
                try:
                    # In the encoding negotiated with the device: a JSON_IETF-only router refuses JSON.
                    notifications = await session.client.get([path], "STATE", getattr(session, "encoding", "JSON"))
                except Exception as exc:
                    log.debug("usage sample %s failed: %s", counter, exc)
                    return key, counter, {}
            return key, counter, _octets(notifications)

        read_count = 0
        for key, counter, values in await asyncio.gather(*(read(j) for j in jobs)):
            for direction, octets in values.items():
                self._samples[key][f"{counter}/{direction}"] = _Sample(octets, now)
                read_count += 1
            if values:
                self._subs.mark(key)
        return read_count

    # -- introspection (tests, benchmarks) ------------------------------------------------------------
    def outbox_depth(self) -> int:
        return len(self.pending_events())

    def __repr__(self) -> str:
        return (
            f"CommerceController({len(self.offerings)} offerings, {len(self.subscriptions)} subscriptions,"
            f" {len(self.invoices)} invoices, outbox limit {MAX_PENDING})"
        )


def _octets(notifications: Iterable[Any]) -> dict[str, int]:
    """in/out octets from a Get of .../state/counters (a container value, or its two leaves)."""
    out: dict[str, int] = {}
    for notification in notifications:
        for update in notification.updates:
            value = update.value
            leaf = update.path.elem[-1].name if update.path.elem else ""
            items = {k.split(":")[-1]: v for k, v in value.items()} if isinstance(value, dict) else {leaf: value}
            for name, direction in (("in-octets", "in"), ("out-octets", "out")):
                if name in items:
                    with contextlib.suppress(TypeError, ValueError):
                        out[direction] = int(items[name])
    return out


def _label(value: str) -> str:
    """`value` as a label value (at most 63 characters of [A-Za-z0-9._-], alphanumeric at both ends)."""
    text = "".join(c if c.isalnum() or c in "._-" else "-" for c in value)[:63]
    return text.strip("._-")


def _issued_draft(name: str, account: str, period: Period, stored: InvoiceStatus) -> InvoiceDraft:
    """What `reconcile` needs of a draft for an issued invoice (whose lines never change): its name."""
    currency = (stored.taxIncludedAmount.unit if stored.taxIncludedAmount else None) or "EUR"
    zero = Money.zero(currency)
    return InvoiceDraft(
        name=name,
        account=account,
        period=period,
        currency=currency,
        lines=list(stored.lines),
        tax_items=list(stored.taxItem),
        tax_excluded=zero,
        tax_included=zero,
        amount_paid=zero,
        amount_due=zero,
        events=[],
        payment_term_days=0,
    )


def _invoice_ready(status: InvoiceStatus, period: Period, tz: str, on_hold: bool = False) -> Cond:
    state = status.state or "new"
    total = status.taxIncludedAmount
    amount = f"{total.value} {total.unit}" if total else "nothing"
    if state == "onHold":
        return Cond("Ready", "True", "OnHold", f"draft on hold (spec.onHold): {amount} so far, not issued while held")
    if state not in ISSUED:
        return Cond(
            "Ready",
            "True",
            "Draft",
            f"draft: {amount} so far, recomputed until the period ends at {rfc3339(period.end)}, then issued",
        )
    due = status.amountDue
    due_text = f"{due.value} {due.unit}" if due else "?"
    if state == "settled":
        return Cond("Ready", "True", "Settled", f"settled: {amount} paid in full")
    when = rfc3339(status.paymentDueDate) if status.paymentDueDate else "?"
    if status.overdue:
        return Cond("Ready", "True", "Overdue", f"{due_text} of {amount} overdue (due {when}, grace period over)")
    reason = {"partiallyPaid": "PartiallyPaid", "sent": "Sent"}.get(state, "Issued")
    sent = f", sent {rfc3339(status.sentDate)}" if status.sentDate else ""
    return Cond("Ready", "True", reason, f"issued{sent}: {due_text} of {amount} due by {when}")


__all__ = ["CommerceController", "KeyedRunner", "build_deliverer", "spec_patch"]
