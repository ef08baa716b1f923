"""A fleet of simulated devices on one asyncio loop, in-process or as a subprocess.

In-process (tests, the controller's integration tests)::

    with devicesim.Fleet(devices=3, workdir=tmp_path) as fleet:
        info = fleet.devices["dev1"]          # .host, .port, .target, .username, .password
        gNMIclient(target=info.target, username="admin", password="admin",
                   path_cert=fleet.ca_path)    # pygnmi verifies against the CA via path_cert
        fleet.admin.link("dev1", "Ethernet1", up=False)

As a subprocess (``python -m devicesim``), waiting for its ready line::

    with devicesim.FleetProcess(["--devices", "3"], workdir=tmp_path) as proc:
        proc.devices["dev1"].port, proc.ca_path, proc.admin.dump("dev1")
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import yaml

from devicesim import paths as P
from devicesim.admin import AdminClient, AdminServer
from devicesim.certs import CertAuthority, load_pair
from devicesim.device import DEFAULT_PORTS, ENCODINGS, PROFILES, Device, DeviceSpec, SetFailed, SetOp
from devicesim.errors import GnmiError
from devicesim.server import start_server

log = logging.getLogger("devicesim")
T_ = TypeVar("T_")

HOST = "127.0.0.1"


@dataclass(frozen=True)
class DeviceInfo:
    """How to reach one device."""

    name: str
    host: str
    port: int
    username: str
    password: str
    platform: str
    ports: tuple[str, ...]
    tls: bool

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def target(self) -> tuple[str, int]:
        """The ``target=`` tuple pygnmi's gNMIclient takes."""
        return (self.host, self.port)


# ---------------------------------------------------------------------------------------------
# Specs


def make_specs(count: int, base_port: int = 0, names: Sequence[str] | None = None,
               ports: Sequence[str] = DEFAULT_PORTS, username: str = "admin", password: str = "admin",
               platform: str = "devicesim-7000", profile: str = "strict",
               encodings: Sequence[str] = ENCODINGS) -> list[DeviceSpec]:
    names = list(names) if names else [f"dev{i}" for i in range(1, count + 1)]
    if count and len(names) != count:
        raise ValueError(f"{count} devices but {len(names)} names")
    return [DeviceSpec(name=n, port=base_port + i if base_port else 0, platform=platform,
                       ports=tuple(ports), username=username, password=password, profile=profile,
                       encodings=tuple(encodings))
            for i, n in enumerate(names)]


_SPEC_KEYS = {"name", "port", "platform", "ports", "port_count", "username", "password",
              "credentials", "tls", "profile", "encodings"}


def _encodings_from(d: dict[str, Any], where: str) -> tuple[str, ...]:
    """``encodings: [JSON_IETF]`` or ``encodings: {JSON: false}`` (each one on or off)."""
    raw = d.get("encodings")
    if raw is None:
        return ENCODINGS
    if isinstance(raw, list) and all(isinstance(e, str) for e in raw):
        return tuple(raw)
    if isinstance(raw, dict) and all(isinstance(v, bool) for v in raw.values()):
        unknown = set(raw) - set(ENCODINGS)
        if unknown:
            raise ValueError(f"{where}: encodings: unknown {', '.join(sorted(unknown))} "
                             f"(expected {', '.join(ENCODINGS)})")
        return tuple(e for e in ENCODINGS if raw.get(e, True))
    raise ValueError(f"{where}: encodings must be a list such as [JSON_IETF] or a mapping such as "
                     f"{{JSON: false}}; got {raw!r}")


def _ports_from(d: dict[str, Any], default: tuple[str, ...]) -> tuple[str, ...]:
    if "ports" in d:
        ports = d["ports"]
        if not isinstance(ports, list) or not all(isinstance(p, str) for p in ports) or not ports:
            raise ValueError("ports must be a non-empty list of interface names")
        return tuple(ports)
    if "port_count" in d:
        return tuple(f"Ethernet{i}" for i in range(1, int(d["port_count"]) + 1))
    return default


def load_fleet_file(path: str | Path, base_port: int = 0) -> list[DeviceSpec]:
    """Read a YAML fleet file (format in docs/devicesim.md)."""
    data = yaml.safe_load(Path(path).read_text())
    if isinstance(data, list):
        data = {"devices": data}
    if not isinstance(data, dict) or not isinstance(data.get("devices"), list):
        raise ValueError(f"{path}: expected a mapping with a 'devices' list")
    defaults = data.get("defaults") or {}
    unknown = set(defaults) - _SPEC_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown keys in defaults: {', '.join(sorted(unknown))}")
    d_ports = _ports_from(defaults, DEFAULT_PORTS)
    specs = []
    for i, d in enumerate(data["devices"]):
        if not isinstance(d, dict) or "name" not in d:
            raise ValueError(f"{path}: device #{i + 1} needs a name")
        unknown = set(d) - _SPEC_KEYS
        if unknown:
            raise ValueError(f"{path}: device {d['name']}: unknown keys {', '.join(sorted(unknown))}")
        merged = {**defaults, **d}
        creds = {**(defaults.get("credentials") or {}), **(d.get("credentials") or {})}
        tls = d.get("tls") or {}
        port = merged.get("port", base_port + i if base_port else 0)
        where = f"{path}: device {d['name']}"
        profile = str(merged.get("profile", "strict"))
        if profile not in PROFILES:
            raise ValueError(f"{where}: profile must be one of {', '.join(PROFILES)}; got {profile!r}")
        specs.append(DeviceSpec(
            name=str(d["name"]),
            port=int(port),
            platform=str(merged.get("platform", "devicesim-7000")),
            ports=_ports_from(d, d_ports),
            username=str(creds.get("username", merged.get("username", "admin"))),
            password=str(creds.get("password", merged.get("password", "admin"))),
            tls_cert=tls.get("cert"),
            tls_key=tls.get("key"),
            profile=profile,
            encodings=_encodings_from(d if "encodings" in d else defaults, where),
        ))
    return specs


# ---------------------------------------------------------------------------------------------
# The fleet


class Fleet:
    """Devices, their gRPC servers, the admin API and the background ticks, on one loop.

    Use ``start()``/``stop()`` (or ``with``) to run it on a background thread with its own
    event loop, or ``await astart()``/``astop()`` on the current loop.

    specs: the devices (default: ``devices`` devices dev1..devN from ``base_port``, 0 = ephemeral
    ports). tls: serve TLS with certificates from a generated CA written to ``ca_out`` (default
    ``workdir/ca.pem``), or from ``tls_cert``/``tls_key`` files. admin_port: the HTTP admin API
    port (0 = ephemeral, None = off). state_dir: persist each device's config there.
    counter_interval: seconds between counter ticks.
    """

    def __init__(self, specs: Sequence[DeviceSpec] | None = None, *, devices: int = 0, base_port: int = 0,
                 tls: bool = True, workdir: str | Path | None = None, ca_out: str | Path | None = None,
                 tls_cert: str | None = None, tls_key: str | None = None, tls_ca: str | None = None,
                 admin_port: int | None = 0, state_dir: str | Path | None = None, empty: bool = False,
                 counter_interval: float = 1.0, host: str = HOST, profile: str = "strict") -> None:
        self.specs = list(specs) if specs is not None else make_specs(devices, base_port, profile=profile)
        names = [s.name for s in self.specs]
        if len(set(names)) != len(names):
            raise ValueError("device names must be unique")
        fixed = [s.port for s in self.specs if s.port]
        if len(set(fixed)) != len(fixed):
            raise ValueError("device ports must be unique")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("tls_cert and tls_key go together")
        self.tls, self.workdir, self.ca_out = tls, workdir, ca_out
        self.tls_cert, self.tls_key, self.tls_ca = tls_cert, tls_key, tls_ca
        self.admin_port = admin_port
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self.empty = empty
        self.counter_interval = counter_interval
        self.host = host
        self.ca_path: str | None = None
        self.admin_url: str | None = None
        self._devices: dict[str, Device] = {}
        self._servers: dict[str, grpc.aio.Server] = {}
        self._creds: dict[str, grpc.ServerCredentials | None] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._admin: AdminServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_event: asyncio.Event | None = None
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

    # -- lifecycle (on the loop) ------------------------------------------------------------------

    async def astart(self) -> Fleet:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        try:
            self._make_credentials()
            for spec in self.specs:
                dev = Device(spec, self.state_dir, self.empty)
                self._devices[spec.name] = dev
                self._servers[spec.name] = await start_server(dev, self._creds[spec.name], self.host)
            if self.admin_port is not None:
                self._admin = AdminServer(self)
                port = await self._admin.start(self.host, self.admin_port)
                self.admin_url = f"http://{self.host}:{port}"
            self._tasks.append(asyncio.ensure_future(self._tick_loop()))
            if self.state_dir is not None:
                self._tasks.append(asyncio.ensure_future(self._save_loop()))
        except BaseException:
            await self.astop()
            raise
        return self

    async def astop(self) -> None:
        for t in self._tasks:
            t.cancel()
        self._tasks.clear()
        if self._admin is not None:
            await self._admin.stop()
            self._admin = None
        servers = list(self._servers.values())
        self._servers.clear()
        await asyncio.gather(*(s.stop(0) for s in servers), return_exceptions=True)
        for dev in self._devices.values():
            dev.serving = False
            dev.listeners.clear()
            if dev.dirty:
                dev.save()
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None

    def request_stop(self) -> None:
        """Ask a running fleet to stop (thread-safe)."""
        if self._loop is not None and self._stop_event is not None:
            self._loop.call_soon_threadsafe(self._stop_event.set)

    async def wait_stopped(self) -> None:
        assert self._stop_event is not None
        await self._stop_event.wait()

    def _make_credentials(self) -> None:
        if not self.tls:
            self._creds = {s.name: None for s in self.specs}
            return
        shared: tuple[bytes, bytes] | None = None
        if self.tls_cert is not None and self.tls_key is not None:
            shared = load_pair(self.tls_cert, self.tls_key)
            self.ca_path = self.tls_ca
        ca: CertAuthority | None = None
        for spec in self.specs:
            if spec.tls_cert and spec.tls_key:
                pair = load_pair(spec.tls_cert, spec.tls_key)
            elif shared is not None:
                pair = shared
            else:
                if ca is None:
                    ca = CertAuthority.generate()
                    self.ca_path = str(ca.write(self._ca_file()))
                pair = ca.issue(spec.name)
            self._creds[spec.name] = grpc.ssl_server_credentials([pair])

    def _ca_file(self) -> Path:
        if self.ca_out is not None:
            return Path(self.ca_out)
        if self.workdir is not None:
            return Path(self.workdir) / "ca.pem"
        self._tmpdir = tempfile.TemporaryDirectory(prefix="devicesim-")
        return Path(self._tmpdir.name) / "ca.pem"

    async def _tick_loop(self) -> None:
        last = time.monotonic_ns()
        while True:
            await asyncio.sleep(self.counter_interval)
            now = time.monotonic_ns()
            dt, last = now - last, now
            for dev in self._devices.values():
                try:
                    dev.tick(dt)
                except Exception:  # a bug in one device must not stop the clock for all
                    log.exception("%s: counter tick failed", dev.name)

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            for dev in self._devices.values():
                if dev.dirty:
                    try:
                        dev.save()
                    except OSError as err:
                        log.warning("%s: cannot save state: %s", dev.name, err)

    # -- lifecycle (background thread) ------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> Fleet:
        """Start on a daemon thread with its own event loop; return once every device serves."""
        if self._thread is not None:
            raise RuntimeError("fleet already started")
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self.astart())
            except BaseException as err:
                failure.append(err)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_until_complete(self.wait_stopped())
            finally:
                loop.run_until_complete(self.astop())
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.close()

        self._thread = threading.Thread(target=run, name="devicesim-fleet", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise RuntimeError(f"devicesim fleet did not start within {timeout}s")
        if failure:
            self._thread = None
            raise RuntimeError(f"devicesim fleet failed to start: {failure[0]}") from failure[0]
        return self

    def stop(self, timeout: float = 30.0) -> None:
        if self._thread is None:
            return
        self.request_stop()
        self._thread.join(timeout)
        self._thread = None

    def __enter__(self) -> Fleet:
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def call(self, coro: Awaitable[T_], timeout: float = 30.0) -> T_:
        """Run a coroutine on the fleet's loop from another thread and return its result."""
        assert self._loop is not None, "fleet not started"
        fut = asyncio.run_coroutine_threadsafe(_as_coro(coro), self._loop)
        return fut.result(timeout)

    # -- views ------------------------------------------------------------------------------------

    @property
    def devices(self) -> dict[str, DeviceInfo]:
        return {name: self.info(name) for name in self._devices}

    def info(self, name: str) -> DeviceInfo:
        dev = self.device(name)
        s = dev.spec
        return DeviceInfo(s.name, self.host, dev.port, s.username, s.password, s.platform, s.ports, self.tls)

    def device(self, name: str) -> Device:
        """The live device model (touch it only from the fleet's loop, e.g. via ``call``)."""
        try:
            return self._devices[name]
        except KeyError:
            raise GnmiError(grpc.StatusCode.NOT_FOUND, f"no device named {name!r}") from None

    @property
    def admin(self) -> AdminClient:
        if self.admin_url is None:
            raise RuntimeError("the admin API is disabled (admin_port=None)")
        return AdminClient(self.admin_url)

    # -- levers (coroutines on the loop; the admin API calls these) ------------------------------

    async def device_down(self, name: str) -> None:
        dev = self.device(name)
        server = self._servers.pop(name, None)
        dev.serving = False
        if server is not None:
            await server.stop(0)
        dev.listeners.clear()

    async def device_up(self, name: str) -> None:
        dev = self.device(name)
        if name in self._servers:
            return
        self._servers[name] = await start_server(dev, self._creds[name], self.host)

    async def restart(self, name: str, empty: bool = False) -> None:
        await self.device_down(name)
        self.device(name).reboot(empty)
        await self.device_up(name)

    def out_of_band(self, name: str, body: dict[str, Any]) -> int:
        """A change typed at the device console: validated and notified, no auth, no levers."""
        dev = self.device(name)
        ops: list[SetOp] = []
        try:
            for kind in ("delete", "replace", "update"):
                for i, item in enumerate(body.get(kind) or ()):
                    if kind == "delete":
                        text, value = str(item), None
                    else:
                        text, value = str(item["path"]), item.get("value")
                    label = f"{kind}[{i}] {text}"
                    try:
                        elems = P.parse_text(text)
                        if kind == "delete":
                            ops.append(SetOp(kind, P.resolve(elems, list_end="wild"), label=label))
                        else:
                            ops.append(SetOp(kind, P.resolve(elems, list_end="node", allow_wild=False),
                                             value, False, label))
                    except GnmiError as err:
                        raise SetFailed(label, err) from None
            return dev.apply(ops, source="console")
        except SetFailed as failed:
            raise GnmiError(failed.error.code, f"{failed.label}: {failed.error.message}") from None


async def _as_coro(aw: Awaitable[T_]) -> T_:
    return await aw


# ---------------------------------------------------------------------------------------------
# Subprocess helper

_KV = re.compile(r"(\w+)=(\S+)")


class FleetProcess:
    """``python -m devicesim ARGS`` as a child process, started and waited for until ready.

    ``devices``, ``ca_path``, ``admin_url`` and ``admin`` are filled from its ready lines.
    The admin API is always enabled (``--admin-port 0`` unless ARGS choose a port).
    """

    def __init__(self, args: Sequence[str] = (), *, workdir: str | Path | None = None,
                 python: str = sys.executable, env: dict[str, str] | None = None,
                 timeout: float = 60.0) -> None:
        self.args = list(args)
        if "--admin-port" not in self.args:
            self.args += ["--admin-port", "0"]
        if workdir is not None and "--workdir" not in self.args:
            self.args += ["--workdir", str(workdir)]
        self.python = python
        self.env = env
        self.timeout = timeout
        self.proc: subprocess.Popen[str] | None = None
        self.devices: dict[str, DeviceInfo] = {}
        self.ca_path: str | None = None
        self.admin_url: str | None = None
        self.output: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader: threading.Thread | None = None

    def start(self) -> FleetProcess:
        if self.proc is not None:
            raise RuntimeError("this FleetProcess was already started")
        env = dict(os.environ if self.env is None else self.env)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen([self.python, "-m", "devicesim", *self.args], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, env=env)
        self._reader = threading.Thread(target=self._drain, daemon=True, name="devicesim-output")
        self._reader.start()
        deadline = time.monotonic() + self.timeout
        creds: dict[str, tuple[str, str]] = {}
        tls = "--insecure" not in self.args
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(0.01, left))
            except queue.Empty:
                self.stop()
                raise RuntimeError(f"devicesim did not become ready in {self.timeout}s; output:\n"
                                   + "\n".join(self.output)) from None
            if line is None:
                code = self.proc.wait()
                raise RuntimeError(f"devicesim exited with code {code} before it was ready; output:\n"
                                   + "\n".join(self.output))
            kv = dict(_KV.findall(line))
            if "device-ready" in line:
                # passwords are not printed: known here only when given with --password
                creds[kv["name"]] = (kv.get("username", "admin"), self._arg("--password", "admin"))
                self.devices[kv["name"]] = DeviceInfo(
                    kv["name"], kv["address"], int(kv["port"]), *creds[kv["name"]],
                    kv.get("platform", ""), tuple(kv.get("ports", "").split(",")), tls)
            elif "fleet-ready" in line:
                self.admin_url = kv.get("admin")
                ca = kv.get("ca")
                self.ca_path = ca if ca and ca != "-" else None
                return self

    def _arg(self, flag: str, default: str) -> str:
        if flag in self.args[:-1]:
            return self.args[self.args.index(flag) + 1]
        return default

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            self.output.append(line)
            self._lines.put(line)
        self._lines.put(None)

    @property
    def admin(self) -> AdminClient:
        if self.admin_url is None:
            raise RuntimeError("admin API address unknown (process not ready?)")
        return AdminClient(self.admin_url)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._reader is not None:
            self._reader.join(2)
        with contextlib.suppress(Exception):
            assert self.proc.stdout is not None
            self.proc.stdout.close()
        return self.proc.returncode

    def __enter__(self) -> FleetProcess:
        # ``with launch(...) as p`` and ``with FleetProcess(...).start() as p`` are both fine
        return self if self.proc is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def launch(devices: int = 1, *, tls: bool = True, workdir: str | Path | None = None,
           extra: Sequence[str] = (), timeout: float = 60.0) -> FleetProcess:
    """Start ``python -m devicesim --devices N`` and wait until every device serves."""
    args = ["--devices", str(devices), *([] if tls else ["--insecure"]), *extra]
    return FleetProcess(args, workdir=workdir, timeout=timeout).start()
