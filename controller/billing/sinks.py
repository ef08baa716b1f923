"""Delivery of billing events to sinks (the I/O edge; asyncio + aiohttp).

Sinks: `HttpSink` posts each event as a CloudEvent over HTTP(S), in structured mode (the
JSON envelope, `application/cloudevents+json`) or binary mode (`ce-` headers, data as the
body), built with the cloudevents SDK; `JsonlSink` appends one CloudEvents JSON object per
line to a file and flushes + fsyncs before reporting success.

The `Deliverer` sends pending events to every sink, retrying transient failures with
jittered exponential backoff (bounded delay), and reports the ids that every sink now has;
only those may be removed from the outbox. An unreachable sink loses nothing: its events
simply stay pending for the next pass. Counters (delivered, retries, failures) are kept for
metrics.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from ssl import SSLContext
from typing import Literal, Protocol

import aiohttp
from cloudevents.core.bindings.http import to_binary, to_structured
from cloudevents.core.formats.json import JSONFormat

from .events import BillingEvent

Mode = Literal["structured", "binary"]
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


class SinkError(Exception):
    """A sink did not accept an event. `retryable` says whether trying again may help."""

    def __init__(self, sink: str, message: str, retryable: bool = True) -> None:
        self.sink = sink
        self.retryable = retryable
        super().__init__(f"{sink}: {message}")


class Sink(Protocol):
    """Where billing events go."""

    name: str

    async def send(self, event: BillingEvent) -> None:
        """Deliver one event or raise SinkError."""
        ...

    async def close(self) -> None: ...


class HttpSink:
    """POST each event to `url` as a CloudEvent (structured or binary mode)."""

    def __init__(
        self,
        url: str,
        *,
        mode: Mode = "structured",
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
        session: aiohttp.ClientSession | None = None,
        name: str | None = None,
        ssl: SSLContext | bool = True,
    ) -> None:
        if mode not in ("structured", "binary"):
            raise ValueError(f"mode: {mode!r} is not structured or binary")
        self.url = url
        self.mode: Mode = mode
        self.name = name or f"http:{url}"
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._headers = dict(headers or {})
        self._session = session
        self._owns_session = session is None
        self._ssl = ssl
        self._format = JSONFormat()

    def _session_now(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
            self._owns_session = True
        return self._session

    def encode(self, event: BillingEvent) -> tuple[dict[str, str], bytes]:
        """Headers and body of the HTTP request for `event` (SDK to_structured / to_binary)."""
        cloudevent = event.to_cloudevent()
        message = (to_structured if self.mode == "structured" else to_binary)(cloudevent, self._format)
        return {**self._headers, **message.headers}, message.body

    async def send(self, event: BillingEvent) -> None:
        headers, body = self.encode(event)
        try:
            async with self._session_now().post(
                self.url, data=body, headers=headers, timeout=self._timeout, ssl=self._ssl
            ) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return
                raise SinkError(
                    self.name,
                    f"HTTP {response.status} for event {event.id}",
                    retryable=response.status in RETRYABLE_STATUS,
                )
        except SinkError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise SinkError(self.name, f"{type(exc).__name__}: {exc} (event {event.id})") from exc

    async def close(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None


class JsonlSink:
    """Append events as CloudEvents JSON, one per line; flush and fsync before success."""

    def __init__(self, path: Path | str, name: str | None = None) -> None:
        self.path = Path(path)
        self.name = name or f"file:{self.path}"

    def _append(self, lines: Sequence[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write("".join(lines))
            handle.flush()
            os.fsync(handle.fileno())

    async def send(self, event: BillingEvent) -> None:
        line = json.dumps(event.to_json(), sort_keys=True, separators=(",", ":")) + "\n"
        try:
            await asyncio.to_thread(self._append, [line])
        except OSError as exc:
            raise SinkError(self.name, f"{type(exc).__name__}: {exc} (event {event.id})") from exc

    async def close(self) -> None:
        return None


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with equal jitter: attempt n waits d/2 + U(0, d/2), d = min(max, base * 2^(n-1))."""

    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 10.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        ceiling = min(self.max_delay, self.base_delay * 2 ** max(0, attempt - 1))
        return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass
class SinkMetrics:
    sent: int = 0
    retries: int = 0
    failures: int = 0
    last_error: str | None = None


@dataclass
class DeliveryMetrics:
    """Counters since the Deliverer was created (export them as Prometheus counters)."""

    delivered: int = 0  # distinct events now held by every sink
    retries: int = 0  # re-sends after a retryable error
    failures: int = 0  # events a sink gave up on in a pass (they stay pending)
    passes: int = 0
    sinks: dict[str, SinkMetrics] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """Outcome of one pass: `delivered` may be removed from the outbox, `pending` must stay."""

    delivered: list[str]
    pending: list[str]
    errors: dict[str, str]

    @property
    def complete(self) -> bool:
        return not self.pending


class Deliverer:
    """Send events to all sinks; report which ids every sink has."""

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        policy: RetryPolicy | None = None,
        concurrency: int = 1,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
        remember: int = 10_000,
    ) -> None:
        if not sinks:
            raise ValueError("sinks: at least one sink is needed")
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"sinks: names must be unique, got {names}")
        self.sinks = list(sinks)
        self.policy = policy or RetryPolicy()
        self.concurrency = max(1, concurrency)
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._remember = remember
        # Ids each sink accepted in this process: not re-sent to it while other sinks catch up.
        self._accepted: dict[str, OrderedDict[str, None]] = {s.name: OrderedDict() for s in sinks}
        self._complete: OrderedDict[str, None] = OrderedDict()
        self.metrics = DeliveryMetrics(sinks={s.name: SinkMetrics() for s in sinks})

    def _remember_id(self, sink: str, event_id: str) -> None:
        seen = self._accepted[sink]
        seen[event_id] = None
        seen.move_to_end(event_id)
        while len(seen) > self._remember:
            seen.popitem(last=False)

    async def _send_one(self, sink: Sink, event: BillingEvent) -> SinkError | None:
        stats = self.metrics.sinks[sink.name]
        for attempt in range(1, self.policy.attempts + 1):
            try:
                await sink.send(event)
            except SinkError as exc:
                stats.last_error = str(exc)
                if not exc.retryable or attempt == self.policy.attempts:
                    stats.failures += 1
                    self.metrics.failures += 1
                    return exc
                stats.retries += 1
                self.metrics.retries += 1
                await self._sleep(self.policy.delay(attempt, self._rng))
            else:
                stats.sent += 1
                self._remember_id(sink.name, event.id)
                return None
        return None  # pragma: no cover - the loop always returns

    async def _to_sink(self, sink: Sink, events: Sequence[BillingEvent]) -> str | None:
        """Send in order; stop at the first event that exhausted retries on a retryable error
        (the sink is down: the rest stay pending). A refused event (non-retryable) does not block
        the others."""
        todo = [e for e in events if e.id not in self._accepted[sink.name]]
        error: str | None = None
        for start in range(0, len(todo), self.concurrency):
            chunk = todo[start : start + self.concurrency]
            results = await asyncio.gather(*(self._send_one(sink, e) for e in chunk))
            failed = [r for r in results if r is not None]
            if failed:
                error = str(failed[0])
                if any(r.retryable for r in failed):
                    break
        return error

    async def deliver(self, events: Sequence[BillingEvent]) -> DeliveryReport:
        """One delivery pass over `events` (the outbox's pending events, oldest first)."""
        self.metrics.passes += 1
        unique = list({e.id: e for e in events}.values())
        outcomes = await asyncio.gather(*(self._to_sink(s, unique) for s in self.sinks))
        errors = {s.name: err for s, err in zip(self.sinks, outcomes, strict=True) if err}
        delivered = [e.id for e in unique if all(e.id in self._accepted[s.name] for s in self.sinks)]
        done = set(delivered)
        for event_id in delivered:
            if event_id not in self._complete:
                self._complete[event_id] = None
                self.metrics.delivered += 1
        while len(self._complete) > self._remember:
            self._complete.popitem(last=False)
        return DeliveryReport(delivered, [e.id for e in unique if e.id not in done], errors)

    async def close(self) -> None:
        for sink in self.sinks:
            await sink.close()
