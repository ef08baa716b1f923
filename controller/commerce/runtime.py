"""The commercial layer at runtime: the I/O edge around the pure code in `controller.commerce` and
`controller.billing`, wired from small parts that each read alone:

- `index.CommerceIndex`: every commercial object as its latest watch event showed it, reverse indexes,
  and which work an event implies;
- one controller per kind, each on its own `workqueue.WorkQueue` (one pass per object at a time,
  bursts coalesce, failures retry with backoff, wake-ups keep the earliest):
  `subscriptions.SubscriptionController` (lifecycle, owned NetworkService, billing via the pure
  `billing_step`), `invoices.InvoiceController`, `offerings.OfferingController`,
  `accounts.AccountController`;
- two small loops: `delivery.DeliveryLoop` (outboxes -> sinks) and `usage.UsageSampler` (counters);
- the billing pass here (at start, then every --billing-interval-seconds): every Subscription again
  (period close: charge, usage and SLA events; dunning), each account's onCycle Invoice for the months
  that ended, and every Invoice again (issued once its period ended, overdue once its grace is over).

Subscription and Invoice statuses are written by one path, `StatusWriter.write_checked`: the whole
status of a pass in one resourceVersion-guarded write, so a fact is never recorded without its event
nor an event without its fact (docs/billing.md, the outbox).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from .. import startup
from ..billing.clock import Clock
from ..billing.events import BillingEvent
from ..billing.invoice import TaxRule
from ..billing.outbox import MAX_PENDING
from ..billing.proof import Keyring
from ..billing.sinks import Deliverer
from ..kube import Kube
from ..settings import Settings
from ..statuswriter import StatusWriter
from ..workqueue import WorkQueue
from .accounts import AccountController
from .context import Context
from .delivery import DeliveryLoop, build_deliverer
from .index import CommerceIndex, Queues
from .invoices import InvoiceController
from .objects import Key, spec_patch
from .offerings import OfferingController
from .subscriptions import SubscriptionController
from .usage import UsageSampler, octets

log = logging.getLogger(__name__)
T = TypeVar("T")
OFFERING_DEBOUNCE_SECONDS = 0.5  # a ProductOffering's status pass waits this long for the rest of a burst


async def _cancel(tasks: Sequence[asyncio.Task[Any]]) -> None:
    """Cancel `tasks` and wait until each has ended."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def list_concurrently(calls: Sequence[tuple[str, Callable[[], Awaitable[T]]]]) -> list[T | Exception]:
    """Every call at once (each a list of one kind, named for the logs); the results in the order given, a
    call that failed as its exception, so one failed list never costs the others. A cancellation is not a
    result: it cancels the calls still under way and propagates."""
    results = await asyncio.gather(*(call() for _, call in calls), return_exceptions=True)
    out: list[T | Exception] = []
    for result in results:
        if isinstance(result, BaseException) and not isinstance(result, Exception):
            raise result  # CancelledError, KeyboardInterrupt: not an API hiccup
        out.append(result)
    return out


class CommerceController:
    """ProductOfferings, Subscriptions (and the NetworkServices they own), Invoices, BillingAccounts and
    billing delivery, wired together; the watch handlers call the upsert_/remove_ methods."""

    def __init__(
        self,
        kube: Kube,
        writer: StatusWriter,
        settings: Settings,
        clock: Clock,
        sessions: Callable[[], Mapping[str, Any]] | None = None,
        deliverer: Deliverer | None = None,
        holder_of: Callable[[str], str | None] | None = None,
        device_usage: Callable[[str], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.writer = writer
        keyring = Keyring.load(settings.billing_signing_key_file)
        if not keyring.enabled:
            log.warning(
                "no --billing-signing-key-file: outbox entries are neither signed nor checked, so a forged"
                " entry in a status would be delivered (docs/billing.md)"
            )
        self.taxes: list[TaxRule] = [TaxRule.of(settings.tax_category, settings.tax_rate)] if settings.tax_rate else []

        def queue(
            name: str,
            fn: Callable[[Any], Awaitable[None]],
            concurrency: int,
            debounce: float = 0.0,
            urgent: Callable[[Any], bool] | None = None,
        ) -> WorkQueue[Any]:
            retry = (settings.retry_initial_seconds, settings.retry_max_seconds)
            return WorkQueue(
                name,
                fn,
                concurrency=concurrency,
                retry_initial=retry[0],
                retry_max=retry[1],
                debounce=debounce,
                urgent=urgent,
            )

        # A Subscription whose spec changed since its status was written runs before the rest of a re-list or
        # billing pass (at a restart: an order change made while the controller was down).
        self._subs: WorkQueue[Key] = queue(
            "Subscription", lambda k: self.subscription.reconcile(k), 16, urgent=lambda k: self.index.spec_unhandled(k)
        )
        self._invs: WorkQueue[Key] = queue("Invoice", lambda k: self.invoice.reconcile(k), 8)
        # An offering's status counts its subscriptions: every Subscription state change marks it, so a
        # burst of orders would recount them all (and write the count) once per change without the debounce.
        self._offs: WorkQueue[str] = queue(
            "ProductOffering", lambda k: self.offering.publish(k), 4, debounce=OFFERING_DEBOUNCE_SECONDS
        )
        self._accts: WorkQueue[Key] = queue("BillingAccount", lambda k: self.account.publish(k), 4)
        self.queues = Queues(self._subs, self._invs, self._offs, self._accts)
        self.index = CommerceIndex(writer, self.queues)
        self.deliverer = deliverer if deliverer is not None else build_deliverer(settings)
        self.ctx = Context(
            kube,
            writer,
            settings,
            clock,
            keyring,
            self.deliverer,
            self.index,
            self.queues,
            holder_of=holder_of,
            device_usage=device_usage,
        )
        self.subscription = SubscriptionController(self.ctx, self._subs)
        self.invoice = InvoiceController(self.ctx, self._invs, self.taxes)
        self.offering = OfferingController(self.ctx, self._offs)
        self.account = AccountController(self.ctx, self._accts)
        self.delivery = DeliveryLoop(self.ctx)
        self.usage = UsageSampler(self.ctx, sessions or (lambda: {}))
        self._tasks: list[asyncio.Task[None]] = []
        self._listed = False  # the start-up lists are in the index
        self._resume_lists = False  # suspended before they were: `resume` starts over
        self.passes = 0  # billing passes completed (tests and benchmarks read it)

    # -- the index, as the watch handlers and tests see it ---------------------------------------------
    @property
    def offerings(self) -> dict[str, dict[str, Any]]:
        return self.index.offerings

    @property
    def subscriptions(self) -> dict[Key, dict[str, Any]]:
        return self.index.subscriptions

    @property
    def invoices(self) -> dict[Key, dict[str, Any]]:
        return self.index.invoices

    def upsert_offering(self, body: dict[str, Any]) -> None:
        self.index.upsert_offering(body)

    def remove_offering(self, name: str) -> None:
        self.index.remove_offering(name)

    def upsert_subscription(self, body: dict[str, Any]) -> None:
        self.index.upsert_subscription(body)

    def remove_subscription(self, namespace: str, name: str) -> None:
        self.index.remove_subscription(namespace, name)

    def observe_service(self, body: dict[str, Any]) -> None:
        self.index.observe_service(body)

    def forget_service(self, namespace: str, name: str) -> None:
        self.index.forget_service(namespace, name)

    def observe_device_usage(self, device: str, report: Any) -> None:
        """A NetworkDevice's usage report changed (sharded): the Subscriptions it may sample take it."""
        self.index.observe_device_usage(device, report)

    def upsert_invoice(self, body: dict[str, Any]) -> None:
        self.index.upsert_invoice(body)

    def remove_invoice(self, namespace: str, name: str) -> None:
        self.index.remove_invoice(namespace, name)

    def upsert_account(self, body: dict[str, Any]) -> None:
        self.index.upsert_account(body)

    def remove_account(self, namespace: str, name: str) -> None:
        self.index.remove_account(namespace, name)

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._startup(), name="commerce-startup"),
            asyncio.create_task(self.delivery.run(), name="billing-delivery"),
        ]

    async def suspend(self) -> None:
        """A lapsed fence (docs/sharding.md): stop every pass, loop and delivery, so nothing is written or
        sent, but keep the index, which watch events keep current, so `resume` needs no list."""
        tasks, self._tasks = self._tasks, []
        await _cancel(tasks)
        for queue in self.queues.all():
            await queue.suspend()
        await _cancel(list(self.ctx.background))
        self._resume_lists = not self._listed  # stopped before its start-up lists were in: list again

    def resume(self) -> None:
        """The commerce Lease is still ours at the same tenure: nobody else wrote meanwhile. The stopped
        passes run again and the loops restart; the billing pass marks every Subscription and Invoice."""
        if self._resume_lists:
            self.start()
            return
        for queue in self.queues.all():
            queue.open()
        self._tasks = [
            asyncio.create_task(self.delivery.run(), name="billing-delivery"),
            asyncio.create_task(self._billing_loop(), name="billing-pass"),
            asyncio.create_task(self.usage.run(), name="usage-meter"),
        ]
        log.info("commerce: resumed with the objects it kept (no list)")

    async def close(self) -> None:
        await _cancel(self._tasks)
        for queue in self.queues.all():
            await queue.close()
        await _cancel(list(self.ctx.background))
        if self.deliverer is not None:
            await self.deliverer.close()

    async def _startup(self) -> None:
        """Prime the index with one list per kind, so the first passes see offerings and services
        (a Subscription judged before its NetworkService was seen would record a false outage), then
        open the queues, and start the periodic billing and usage passes. The lists run at once (the
        first passes wait for all of them); their objects go into the index in the order below."""
        index, kube = self.index, self.ctx.kube
        watched = sorted(set(self.settings.namespaces))
        calls: list[tuple[str, Callable[[dict[str, Any]], None], Callable[[], Awaitable[list[dict[str, Any]]]]]] = []
        kinds: list[tuple[str, Callable[[dict[str, Any]], None], bool]] = [
            ("productofferings", index.upsert_offering, False),
            ("billingaccounts", index.upsert_account, True),
            ("networkservices", index.observe_service, True),
            ("invoices", index.upsert_invoice, True),
            ("subscriptions", index.upsert_subscription, True),
        ]
        for plural, upsert, namespaced in kinds:
            # With --namespace the chart grants namespaced kinds per namespace only: list each of them.
            for namespace in watched if namespaced and watched else [None]:
                where = f"{plural} in {namespace}" if namespace else plural
                call = (
                    functools.partial(kube.list_in, plural, namespace)
                    if namespace
                    else functools.partial(kube.list_all, plural)
                )
                calls.append((where, upsert, call))
        listed = await list_concurrently([(where, call) for where, _, call in calls])
        for (where, upsert, _), bodies in zip(calls, listed, strict=True):
            if isinstance(bodies, Exception):  # an API hiccup: watch events fill in
                log.warning("could not list %s at start (%s); relying on watch events", where, bodies)
                continue
            for body in bodies:
                upsert(body)
        startup.mark("commerce start-up lists done")
        log.info("commerce: listed %d objects", sum(len(b) for b in listed if not isinstance(b, Exception)))
        self._listed = True
        for queue in self.queues.all():
            queue.open()
        startup.mark("commerce queues open")
        self._tasks.append(asyncio.create_task(self._billing_loop(), name="billing-pass"))
        self._tasks.append(asyncio.create_task(self.usage.run(), name="usage-meter"))

    # -- the billing pass: period close, onCycle invoices, dunning --------------------------------------
    async def _billing_loop(self) -> None:
        while True:
            try:
                await self.billing_pass()
            except Exception:
                log.exception("billing pass failed")
            await asyncio.sleep(self.settings.billing_interval_seconds)

    async def billing_pass(self) -> None:
        index = self.index
        now = self.ctx.clock.now()
        for key in list(index.subscriptions):
            self._subs.mark(key)  # closes ended periods, re-judges payment holds
        for key in list(index.invoices):
            self._invs.mark(key)  # issues drafts whose period ended, flags overdue bills
        created = 0
        for (ns, account), keys in list(index.by_account.items()):
            if not keys:
                continue
            try:
                created += await self.invoice.create_on_cycle(ns, account, now)
            except Exception as exc:  # e.g. Forbidden in a namespace being deleted: the other accounts go on
                log.warning("billing pass: onCycle invoices of %s/%s failed: %s", ns, account, str(exc)[:300])
        self.passes += 1
        log.info(
            "billing pass %d: %d subscriptions, %d invoices, %d onCycle invoices created",
            self.passes,
            len(index.subscriptions),
            len(index.invoices),
            created,
        )

    # -- delivery and usage, for tests and benchmarks ---------------------------------------------------
    async def deliver_once(self) -> int:
        return await self.delivery.deliver_once()

    def pending_events(self) -> list[tuple[datetime, Key, BillingEvent]]:
        return self.delivery.pending_events()

    def outbox_depth(self) -> int:
        return len(self.delivery.pending_events())

    async def sample_usage(self) -> int:
        return await self.usage.sample()

    def __repr__(self) -> str:
        return (
            f"CommerceController({len(self.offerings)} offerings, {len(self.subscriptions)} subscriptions,"
            f" {len(self.invoices)} invoices, outbox limit {MAX_PENDING})"
        )


__all__ = ["CommerceController", "build_deliverer", "octets", "spec_patch"]
