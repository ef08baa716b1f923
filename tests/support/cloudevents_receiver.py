"""A real CloudEvents HTTP receiver for tests.

An HTTP/1.1 server (stdlib, one thread per connection) on 127.0.0.1 with an ephemeral port.
It accepts structured and binary mode, parses every request with the cloudevents SDK, and
records each accepted event and how often each (source, id) arrived, so tests can tell a
redelivery (same id again) from a second identity for one fact.

Failure switches: `down()` answers 503 (or another status: a 500) for a while, for a number of
requests, or until `up()`; `drop(n)` closes the next n connections without answering; `slow()`
holds each answer back for a while (a sink slower than the sender's timeout, or just slow).

Use as a context manager (`with CloudEventsReceiver() as rx: ... rx.url`) or as the pytest
fixture `cloudevents_receiver` (import it into the test module).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cloudevents.core.bindings.http import HTTPMessage, from_http
from cloudevents.core.formats.json import JSONFormat


@dataclass(frozen=True)
class Received:
    """One accepted event."""

    mode: str  # structured | binary
    event: Any  # the SDK's CloudEvent
    headers: dict[str, str]
    at: float

    @property
    def key(self) -> tuple[str, str]:
        return (self.event.get_source(), self.event.get_id())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        receiver = self.server.receiver
        action = receiver._next_action()
        if action == "drop":
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            event = from_http(HTTPMessage(headers=headers, body=body), JSONFormat())
            mode = "binary" if any(k.startswith("ce-") for k in headers) else "structured"
        except Exception as exc:  # any parse failure is the sender's fault: 400
            receiver._count_status(400, None)
            self._answer(400, f"not a CloudEvent: {exc}".encode())
            return
        key = (event.get_source(), event.get_id())
        if action == "down":
            status = receiver._down_status
            receiver._count_status(status, key)
            self._answer(status, b"receiver is down")
            return
        receiver._hold()
        receiver._accept(Received(mode, event, headers, time.monotonic()))
        self._answer(202, b"")

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, receiver: CloudEventsReceiver) -> None:
        self.receiver = receiver
        super().__init__(("127.0.0.1", 0), _Handler)


class CloudEventsReceiver:
    """Records CloudEvents POSTed to `url`."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self.received: list[Received] = []
        self.deliveries: Counter[tuple[str, str]] = Counter()  # accepted, per (source, id)
        self.attempts: Counter[tuple[str, str]] = Counter()  # every parsed request, per (source, id)
        self.statuses: Counter[int] = Counter()
        self.dropped = 0
        self._down_until: float | None = None
        self._down_requests: int | None = None
        self._down_status = 503
        self._drop = 0
        self._slow_until: float | None = None
        self._delay = 0.0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> CloudEventsReceiver:
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="cloudevents-receiver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> CloudEventsReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "the receiver is not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    # -- switches ------------------------------------------------------------------------
    def down(self, seconds: float | None = None, requests: int | None = None, status: int = 503) -> None:
        """Answer `status` (503) for `seconds`, or for the next `requests` requests, or until up()."""
        with self._lock:
            self._down_status = status
            self._down_until = time.monotonic() + seconds if seconds is not None else float("inf")
            self._down_requests = requests
            if requests is not None and seconds is None:
                self._down_until = float("inf")

    def up(self) -> None:
        with self._lock:
            self._down_until = None
            self._down_requests = None
            self._slow_until = None

    def slow(self, delay: float, seconds: float) -> None:
        """For `seconds`, accept each event only after `delay` seconds (the answer comes late)."""
        with self._lock:
            self._delay = delay
            self._slow_until = time.monotonic() + seconds

    def _hold(self) -> None:
        with self._lock:
            delay = self._delay if self._slow_until is not None and time.monotonic() < self._slow_until else 0.0
        if delay:
            time.sleep(delay)

    def drop(self, connections: int) -> None:
        """Close the next `connections` requests' connections without an answer."""
        with self._lock:
            self._drop += connections

    def _next_action(self) -> str:
        with self._lock:
            if self._drop > 0:
                self._drop -= 1
                self.dropped += 1
                return "drop"
            if self._down_until is not None:
                if time.monotonic() >= self._down_until:
                    self._down_until = self._down_requests = None
                elif self._down_requests is not None:
                    if self._down_requests <= 0:
                        self._down_until = self._down_requests = None
                        return "accept"
                    self._down_requests -= 1
                    return "down"
                else:
                    return "down"
            return "accept"

    # -- recording -----------------------------------------------------------------------
    def _count_status(self, status: int, key: tuple[str, str] | None) -> None:
        with self._lock:
            self.statuses[status] += 1
            if key is not None:
                self.attempts[key] += 1

    def _accept(self, item: Received) -> None:
        with self._arrived:
            self.received.append(item)
            self.deliveries[item.key] += 1
            self.attempts[item.key] += 1
            self.statuses[202] += 1
            self._arrived.notify_all()

    @property
    def events(self) -> list[Any]:
        with self._lock:
            return [r.event for r in self.received]

    @property
    def ids(self) -> set[str]:
        with self._lock:
            return {r.event.get_id() for r in self.received}

    @property
    def redeliveries(self) -> dict[tuple[str, str], int]:
        """(source, id) -> how many extra times it was accepted."""
        with self._lock:
            return {k: n - 1 for k, n in self.deliveries.items() if n > 1}

    def wait_for(self, distinct: int, timeout: float = 10.0) -> bool:
        """Wait until `distinct` different (source, id) were accepted."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.deliveries) < distinct:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._arrived.wait(left)
            return True

    def clear(self) -> None:
        with self._lock:
            self.received.clear()
            self.deliveries.clear()
            self.attempts.clear()
            self.statuses.clear()
            self.dropped = 0


@pytest.fixture
def cloudevents_receiver() -> Iterator[CloudEventsReceiver]:
    """A started receiver, stopped after the test."""
    with CloudEventsReceiver() as receiver:
        yield receiver
