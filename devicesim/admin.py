"""The operators' lever board: a small JSON-over-HTTP API on 127.0.0.1, and its client.

Stdlib only (asyncio streams on the fleet's own loop), so levers act between two RPCs of the
devices, never in the middle of a Set. Routes (bodies and answers are JSON):

    GET  /healthz                      {"ok": true}
    GET  /devices                      summary of every device
    GET  /devices/NAME                 full dump: config, tree (config+state), links, levers, stats
    GET  /devices/NAME/stats           Set/Get/Subscribe counters
    POST /devices/NAME/config          {"delete": [path], "replace": [{"path", "value"}],
                                        "update": [{"path", "value"}]}  out-of-band change
    POST /devices/NAME/link            {"port": "Ethernet1", "up": false}
    POST /devices/NAME/down | /up      stop / start the device's gNMI server (same port)
    POST /devices/NAME/restart         {"empty": false}  reboot; empty = replaced box
    POST /devices/NAME/latency         {"seconds": 0.5}  added before each Set
    POST /devices/NAME/fail-sets       {"count": 2, "code": "UNAVAILABLE", "message": "..."}
    POST /devices/NAME/drop            abort every open Subscribe stream (UNAVAILABLE)
    POST /devices/NAME/reset           factory config, links up, levers and stats cleared
"""

from __future__ import annotations

import asyncio
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

import grpc

from devicesim import tree as T
from devicesim.device import Levers, Stats
from devicesim.errors import GnmiError

if TYPE_CHECKING:
    from devicesim.fleet import Fleet

log = logging.getLogger("devicesim")

_HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.UNIMPLEMENTED: 501,
}
_REASON = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           409: "Conflict", 500: "Internal Server Error", 501: "Not Implemented"}


class AdminServer:
    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        status, payload = 500, {"error": "internal error"}
        try:
            request = (await reader.readline()).decode("latin-1").split()
            if len(request) < 2:
                raise GnmiError(grpc.StatusCode.INVALID_ARGUMENT, "bad request line")
            method, target = request[0], request[1]
            length = 0
            while True:
                line = (await reader.readline()).decode("latin-1").strip()
                if not line:
                    break
                name, _, value = line.partition(":")
                if name.lower() == "content-length":
                    length = int(value.strip())
            raw = await reader.readexactly(length) if length else b""
            body = json.loads(raw) if raw.strip() else {}
            status, payload = 200, await self.route(method, urllib.parse.urlsplit(target).path, body)
        except GnmiError as err:
            status = _HTTP_STATUS.get(err.code, 400)
            payload = {"error": err.message, "code": err.code.name}
        except (ValueError, KeyError, TypeError) as err:
            status, payload = 400, {"error": f"bad request: {err!r}", "code": "INVALID_ARGUMENT"}
        except Exception as err:
            log.exception("admin request failed")
            payload = {"error": repr(err), "code": "INTERNAL"}
        data = json.dumps(payload).encode()
        head = (f"HTTP/1.1 {status} {_REASON.get(status, 'Error')}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n").encode()
        try:
            writer.write(head + data)
            await writer.drain()
            writer.close()
            await writer.wait_closed()
        except (ConnectionError, OSError):
            pass

    async def route(self, method: str, path: str, body: dict[str, Any]) -> Any:
        fleet = self.fleet
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/") if p]
        if parts == ["healthz"]:
            return {"ok": True}
        if parts == ["devices"] and method == "GET":
            return [_summary(fleet, n) for n in fleet.devices]
        if len(parts) < 2 or parts[0] != "devices":
            raise GnmiError(grpc.StatusCode.NOT_FOUND, f"no route {method} {path}")
        name = parts[1]
        dev = fleet.device(name)
        action = parts[2] if len(parts) > 2 else ""
        if method == "GET":
            if action == "":
                return dev.dump()
            if action == "stats":
                return dev.stats.as_dict()
            if action == "sets":  # who sent each recent Set (sharding tests: one writer at a time)
                return [r.as_dict() for r in dev.set_log]
            raise GnmiError(grpc.StatusCode.NOT_FOUND, f"no route GET {path}")
        if method != "POST":
            raise GnmiError(grpc.StatusCode.NOT_FOUND, f"no route {method} {path}")
        if action == "config":
            return {"timestamp": fleet.out_of_band(name, body)}
        if action == "link":
            dev.set_link(str(body["port"]), bool(body.get("up", True)))
            return {"links": dev.links}
        if action == "down":
            await fleet.device_down(name)
            return {"serving": False}
        if action == "up":
            await fleet.device_up(name)
            return {"serving": True, "port": dev.port}
        if action == "restart":
            await fleet.restart(name, empty=bool(body.get("empty", False)))
            return {"serving": True, "port": dev.port}
        if action == "latency":
            dev.levers.set_latency = float(body.get("seconds", 0.0))
            return dev.levers.as_dict()
        if action == "fail-sets":
            code = str(body.get("code", "UNAVAILABLE")).upper()
            if code not in grpc.StatusCode.__members__ or code == "OK":
                raise GnmiError(grpc.StatusCode.INVALID_ARGUMENT, f"unknown gRPC status code {code!r}")
            dev.levers.fail_sets = int(body.get("count", 1))
            dev.levers.fail_code = code
            if body.get("message"):
                dev.levers.fail_message = str(body["message"])
            return dev.levers.as_dict()
        if action == "drop":
            return {"dropped": dev.drop_streams()}
        if action == "reset":
            await fleet.device_up(name)
            dev.drop_streams("device reset by devicesim operator")
            for port in dev.links:
                dev.links[port] = True
            dev.levers = Levers()
            fresh = dev.factory_root()
            dev.commit(fresh, T.diff_trees(dev.root, fresh))
            dev.stats = Stats()
            dev.set_log.clear()
            if dev.state_dir is not None:
                dev.save()
            return {"reset": True}
        raise GnmiError(grpc.StatusCode.NOT_FOUND, f"no route POST {path}")


def _summary(fleet: Fleet, name: str) -> dict[str, Any]:
    dev = fleet.device(name)
    info = fleet.info(name)
    return {"name": name, "address": info.host, "port": dev.port, "serving": dev.serving,
            "tls": info.tls, "platform": info.platform, "ports": list(info.ports),
            "links": dev.links, "subscriptions": len(dev.listeners), "stats": dev.stats.as_dict()}


# ---------------------------------------------------------------------------------------------
# Client


class AdminError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"HTTP {status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class AdminClient:
    """Blocking client of the admin API (used by ``devicesim admin``, tests and benchmarks)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            try:
                payload = json.loads(err.read())
            except ValueError:
                payload = {}
            raise AdminError(err.code, payload.get("code", ""), payload.get("error", str(err))) from None

    def _dev(self, name: str, action: str = "") -> str:
        return f"/devices/{urllib.parse.quote(name, safe='')}" + (f"/{action}" if action else "")

    def health(self) -> bool:
        return bool(self.request("GET", "/healthz").get("ok"))

    def list_devices(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/devices"))

    def dump(self, name: str) -> dict[str, Any]:
        return dict(self.request("GET", self._dev(name)))

    def stats(self, name: str) -> dict[str, int]:
        return dict(self.request("GET", self._dev(name, "stats")))

    def sets(self, name: str) -> list[dict[str, Any]]:
        """The device's recent Sets: received/finished (ns), replica, tenure, peer, ok."""
        return list(self.request("GET", self._dev(name, "sets")))

    def config(self, name: str, *, delete: list[str] | None = None,
               replace: list[tuple[str, Any]] | None = None,
               update: list[tuple[str, Any]] | None = None) -> int:
        body = {"delete": delete or [],
                "replace": [{"path": p, "value": v} for p, v in replace or []],
                "update": [{"path": p, "value": v} for p, v in update or []]}
        return int(self.request("POST", self._dev(name, "config"), body)["timestamp"])

    def set(self, name: str, path: str, value: Any) -> int:
        return self.config(name, update=[(path, value)])

    def delete(self, name: str, path: str) -> int:
        return self.config(name, delete=[path])

    def link(self, name: str, port: str, up: bool) -> dict[str, bool]:
        return dict(self.request("POST", self._dev(name, "link"), {"port": port, "up": up})["links"])

    def down(self, name: str) -> None:
        self.request("POST", self._dev(name, "down"), {})

    def up(self, name: str) -> None:
        self.request("POST", self._dev(name, "up"), {})

    def restart(self, name: str, empty: bool = False) -> None:
        self.request("POST", self._dev(name, "restart"), {"empty": empty})

    def latency(self, name: str, seconds: float) -> None:
        self.request("POST", self._dev(name, "latency"), {"seconds": seconds})

    def fail_sets(self, name: str, count: int = 1, code: str = "UNAVAILABLE",
                  message: str | None = None) -> None:
        body: dict[str, Any] = {"count": count, "code": code}
        if message:
            body["message"] = message
        self.request("POST", self._dev(name, "fail-sets"), body)

    def drop(self, name: str) -> int:
        return int(self.request("POST", self._dev(name, "drop"), {})["dropped"])

    def reset(self, name: str) -> None:
        self.request("POST", self._dev(name, "reset"), {})
