"""The TMF facade run in-process for tests (its own event loop in a thread) and an HTTPS client whose
every answer is checked against the published documents (tests/support/tmf_spec.py)."""

from __future__ import annotations

import asyncio
import http.client
import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes

from controller.tmf.server import Running, serve
from tests.support.tmf_spec import contract


class FacadeThread:
    """controller.tmf.server.serve on 127.0.0.1 (a free port) with the admin kubeconfig's identity;
    `delivers` says whether it is the replica that sends the hubs' events (by default: while `delivering`,
    which a test turns off when another facade of its own must be the only one that sends, as in a cluster)."""

    def __init__(self, kubeconfig: Path, cert_dir: Path | None, delivers: Callable[[], bool] | None = None) -> None:
        self.delivering = True
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tmf-facade", daemon=True)
        self.thread.start()
        client = kubernetes.config.new_client_from_config(str(kubeconfig))
        future = asyncio.run_coroutine_threadsafe(
            serve(client, 0, cert_dir=str(cert_dir) if cert_dir else None, delivers=delivers or self._delivering),
            self.loop,
        )
        self.running: Running = future.result(60)

    def _delivering(self) -> bool:
        return self.delivering

    @property
    def port(self) -> int:
        return self.running.port

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.running.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: Any


class Client:
    """HTTPS to the facade; `call` validates each answer against the documents unless told not to
    (a request to a path no document has, which must still get an Error body)."""

    def __init__(self, port: int, ca_pem: bytes, token: str | None) -> None:
        self.port = port
        self.context = ssl.create_default_context(cadata=ca_pem.decode())
        self.token = token

    def as_(self, token: str | None) -> Client:
        return Client(self.port, b"", token)._with(self.context)

    def _with(self, context: ssl.SSLContext) -> Client:
        self.context = context
        return self

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        raw: bytes | None = None,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
        check: bool = True,
        unavailable_ok: bool = False,
    ) -> Answer:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=30)
        sent = dict(headers or {})
        if self.token is not None:
            sent["Authorization"] = f"Bearer {self.token}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            sent["Content-Type"] = content_type
        try:
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            text = response.read()
            answer_headers = {k: v for k, v in response.getheaders()}
        finally:
            conn.close()
        parsed = (
            json.loads(text) if text and answer_headers.get("Content-Type", "").startswith("application/json") else text
        )
        answer = Answer(response.status, answer_headers, parsed)
        # never a 500; a 503 only where the test makes the facade's own dependency refuse
        assert answer.status < 500 or (unavailable_ok and answer.status == 503), (
            f"{method} {path}: {answer.status} {parsed!r}"
        )
        if check:
            contract().check(method, path.split("?", 1)[0], answer.status, parsed, answer_headers)
        return answer
