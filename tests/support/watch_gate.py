"""An HTTPS proxy in front of the API server that can hold back the watch events of one kind.

The controller's watches are separate streams, so a real controller may see the edit of one object
after a later write of another. `WatchGate` makes that ordering happen on purpose: it terminates TLS
with a certificate of its own, forwards every request to the API server with the kubeconfig's client
credentials, and, while `hold()` is in force, keeps the events of `plural`'s watch streams (they are
delivered, in order, on `release()`). Every other request, including a GET or LIST of that kind,
passes straight through. Tests point the controller at `kubeconfig`.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
import threading
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from localcluster.cluster import free_port
from localcluster.webhook import serving_certificate

# Hop-by-hop headers, and what aiohttp sets itself; Accept-Encoding too, so watch streams come as plain lines.
_REQUEST_DROP = {"host", "connection", "content-length", "transfer-encoding", "accept-encoding", "keep-alive"}
_RESPONSE_DROP = {"connection", "content-length", "transfer-encoding", "content-encoding", "keep-alive"}


class WatchGate:
    def __init__(self, kubeconfig: Path, workdir: Path, plural: str) -> None:
        self.plural = plural
        workdir.mkdir(parents=True, exist_ok=True)
        config = yaml.safe_load(kubeconfig.read_text())
        cluster, user = config["clusters"][0]["cluster"], config["users"][0]["user"]
        self.upstream = str(cluster["server"]).rstrip("/")
        files = {
            "upstream-ca.crt": cluster["certificate-authority-data"],
            "client.crt": user["client-certificate-data"],
            "client.key": user["client-key-data"],
        }
        for name, data in files.items():
            (workdir / name).write_bytes(base64.b64decode(data))
            (workdir / name).chmod(0o600)
        self._client_ssl = ssl.create_default_context(cafile=str(workdir / "upstream-ca.crt"))
        self._client_ssl.load_cert_chain(str(workdir / "client.crt"), str(workdir / "client.key"))
        certs = workdir / "gate-certs"
        ca_pem = serving_certificate(certs)
        self._server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._server_ssl.load_cert_chain(str(certs / "tls.crt"), str(certs / "tls.key"))
        self.port = free_port()
        proxied = dict(config)
        proxied["clusters"] = [
            {
                "name": config["clusters"][0]["name"],
                "cluster": {
                    "server": f"https://127.0.0.1:{self.port}",
                    "certificate-authority-data": base64.b64encode(ca_pem).decode(),
                },
            }
        ]
        self.kubeconfig = workdir / "gated.kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump(proxied))
        self.kubeconfig.chmod(0o600)
        self._held = False
        self.waiting = 0  # events read from the API server and not yet passed on
        self.held_events = 0  # events that waited for a release, in all
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    # -- the test's side --------------------------------------------------------------------------
    def __enter__(self) -> WatchGate:
        self._thread.start()
        if not self._started.wait(10):
            raise RuntimeError("the watch gate did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._held = False
        with contextlib.suppress(Exception):  # open watches are cut: the controller is gone by now
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def hold(self) -> None:
        """From now on, events of `plural`'s watches wait (the streams stay open)."""
        self._held = True

    def release(self) -> None:
        """Pass on every event held, in order, and stop holding."""
        self._held = False

    # -- the proxy --------------------------------------------------------------------------------
    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._started.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=5))
        app = web.Application(client_max_size=64 * 2**20)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self._server_ssl).start()

    async def _stop(self) -> None:
        await self._runner.cleanup()
        await self._session.close()

    def _gated(self, request: web.Request) -> bool:
        watch = request.query.get("watch") in ("true", "1") or "/watch/" in request.path
        return watch and request.path.rstrip("/").endswith("/" + self.plural)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _REQUEST_DROP}
        body = await request.read()
        async with self._session.request(
            request.method,
            self.upstream + request.path_qs,
            headers=headers,
            data=body or None,
            ssl=self._client_ssl,
            allow_redirects=False,
            # The Kubernetes client may send a body without a Content-Type (the API server takes it for JSON);
            # aiohttp would call it application/octet-stream, which the API server refuses.
            skip_auto_headers=() if "Content-Type" in request.headers else ("Content-Type",),
        ) as upstream:
            response = web.StreamResponse(
                status=upstream.status,
                headers={k: v for k, v in upstream.headers.items() if k.lower() not in _RESPONSE_DROP},
            )
            await response.prepare(request)
            try:
                if self._gated(request):
                    await self._pass_events(upstream, response)
                else:
                    async for chunk in upstream.content.iter_chunked(65536):
                        await response.write(chunk)
            except (ConnectionError, aiohttp.ClientError, asyncio.CancelledError):
                pass  # either side went away: so does the other
            return response

    async def _pass_events(self, upstream: Any, response: web.StreamResponse) -> None:
        async for line in upstream.content:  # one watch event per line
            if self._held:
                self.waiting += 1
                self.held_events += 1
                while self._held:
                    await asyncio.sleep(0.05)
                self.waiting -= 1
            await response.write(line)
