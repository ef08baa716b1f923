"""A test rig for reliability and security tests: one devicesim fleet, the real controller process,
and the instruments the tests measure with (Set RPC and API write counters, a status recorder that
sees every version of every object, the managed entries actually on each device).

The object builders and device-config readers of tests/integration/test_network.py are reused as
they are; only the namespace and the Secret names differ per rig, so rigs never see each other's
objects.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
from kubernetes.client import ApiException

from devicesim.admin import AdminClient
from devicesim.fleet import FleetProcess
from localcluster.cluster import free_port
from tests.harness import GROUP, VERSION, Api, ControllerProcess, condition, is_ready, wait_for
from tests.integration.test_network import SYSTEM, device_body, ep, service_body, subif, unique

__all__ = [
    "SYSTEM",
    "Recorder",
    "Rig",
    "condition",
    "device_body",
    "ep",
    "is_ready",
    "service_body",
    "subif",
    "unique",
    "wait_for",
]

TRACEBACK = re.compile(r"^Traceback \(most recent call last\)", re.M)


def metric_total(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of `name` whose labels include `labels` (Prometheus text format)."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


def writes_by_resource(text: str) -> dict[str, float]:
    """The controller's telco_kube_writes_total per resource (Prometheus text format)."""
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith('telco_kube_writes_total{resource="'):
            head, _, value = line.rpartition(" ")
            found[head.split('"')[1]] = float(value)
    return found


@dataclass
class Seen:
    """One version of one object, as a watch delivered it."""

    at: float
    type: str
    name: str
    resource_version: str
    generation: int
    status: dict[str, Any]

    def cond(self, type_: str) -> dict[str, Any] | None:
        return condition({"status": self.status}, type_)


class Recorder:
    """Records every version of the objects of one plural (optionally one namespace) from a watch.

    Runs on a daemon thread and resumes each watch from the last resourceVersion it saw, so no version
    is missed (it also survives an API server restart). Bounded: it stops when asked or after `limit` s.
    """

    def __init__(self, api: Api, plural: str, namespace: str | None = None, limit: float = 1800) -> None:
        self.api, self.plural, self.namespace = api, plural, namespace
        self.seen: list[Seen] = []
        self._stop = threading.Event()
        self._deadline = time.monotonic() + limit
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"recorder-{plural}")

    def __enter__(self) -> Recorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        """Watch without gaps: resume from the last resourceVersion seen; start over (a fresh watch,
        which replays the current state as ADDED) only when the API server says it is too old."""
        resource_version: str | None = None
        while not self._stop.is_set() and time.monotonic() < self._deadline:
            w = kubernetes.watch.Watch()
            try:
                if self.namespace is None:
                    fn, args = self.api.custom.list_cluster_custom_object, (GROUP, VERSION, self.plural)
                else:
                    fn = self.api.custom.list_namespaced_custom_object
                    args = (GROUP, VERSION, self.namespace, self.plural)
                extra = {"resource_version": resource_version} if resource_version else {}
                for ev in w.stream(fn, *args, timeout_seconds=3, _request_timeout=10, **extra):
                    obj = ev["object"]
                    meta = obj.get("metadata", {})
                    if ev["type"] == "ERROR":
                        resource_version = None  # 410 Gone: too old
                        break
                    resource_version = meta.get("resourceVersion") or resource_version
                    with self._lock:
                        self.seen.append(
                            Seen(
                                time.monotonic(),
                                ev["type"],
                                meta.get("name", ""),
                                meta.get("resourceVersion", ""),
                                int(meta.get("generation") or 0),
                                dict(obj.get("status") or {}),
                            )
                        )
                    if self._stop.is_set():
                        break
            except ApiException as exc:
                if exc.status == 410:
                    resource_version = None
                time.sleep(0.2)
            except Exception:  # the API server may be restarting: try again shortly
                time.sleep(0.2)
            finally:
                w.stop()

    def of(self, name: str) -> list[Seen]:
        with self._lock:
            return [s for s in self.seen if s.name == name]

    def reasons(self, name: str, type_: str = "Ready") -> list[tuple[str, str]]:
        """The distinct (status, reason) of condition `type_` in the order they appeared."""
        out: list[tuple[str, str]] = []
        for s in self.of(name):
            c = s.cond(type_)
            pair = (c["status"], c["reason"]) if c else ("-", "-")
            if not out or out[-1] != pair:
                out.append(pair)
        return out


@dataclass
class Rig:
    """devicesim + Secrets + NetworkDevices + the controller, in namespace `namespace`."""

    kubeconfig: Path
    workdir: Path
    prefix: str
    devices: tuple[str, ...]
    fleet_args: tuple[str, ...] = ()
    controller_args: tuple[str, ...] = ()
    controller_env: dict[str, str] = field(default_factory=dict)
    password: str = "admin"
    timeout_seconds: int = 2
    namespaced: bool = True
    secret_namespace: str = SYSTEM
    controller_kubeconfig: Path | None = None  # default: kubeconfig (the admin)
    api: Api = field(init=False)
    fleet: FleetProcess = field(init=False)
    controller: ControllerProcess | None = field(init=False, default=None)
    metrics_port: int = field(init=False, default=0)

    @property
    def namespace(self) -> str:
        return f"{self.prefix}-tests"

    @property
    def admin(self) -> AdminClient:
        return self.fleet.admin

    @property
    def secret(self) -> str:
        return f"{self.prefix}-credentials"

    @property
    def ca_secret(self) -> str:
        return f"{self.prefix}-ca"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, controller: bool = True) -> Rig:
        self.api = Api(self.kubeconfig)
        self.api.ensure_namespace(self.namespace)
        # strict: official-model validation and YANG defaults, like a real router
        args = ["--names", ",".join(self.devices), "--password", self.password, "--profile", "strict"]
        args += self.fleet_args
        self.fleet = FleetProcess(args, workdir=self.workdir)
        self.fleet.start()
        self.api.put_secret(self.secret_namespace, self.secret, {"username": "admin", "password": self.password})
        assert self.fleet.ca_path is not None
        self.api.put_secret(self.secret_namespace, self.ca_secret, {"ca.crt": Path(self.fleet.ca_path).read_text()})
        for name in self.devices:
            self.api.apply(self.device(name))
        if controller:
            self.start_controller()
        return self

    def device(self, name: str, **spec: Any) -> dict[str, Any]:
        """The NetworkDevice of fleet device `name` (spec fields overridable)."""
        body = device_body(name, self.fleet.devices[name].port, secret=self.secret, ca=self.ca_secret)
        body["spec"]["credentialsSecretRef"]["namespace"] = self.secret_namespace
        body["spec"]["tls"]["caSecretRef"]["namespace"] = self.secret_namespace
        body["spec"]["timeoutSeconds"] = self.timeout_seconds
        body["spec"].update(spec)
        return body

    def start_controller(
        self, *extra: str, log_name: str = "controller.log", wait: bool = True, webhook: bool = False
    ) -> ControllerProcess:
        """The controller; with `webhook` it also serves admission (tests.harness.registered_webhook)."""
        self.metrics_port = free_port()
        scope = ["-n", self.namespace] if self.namespaced else []
        proc = ControllerProcess(
            self.controller_kubeconfig or self.kubeconfig,
            self.workdir / log_name,
            "--metrics-port",
            str(self.metrics_port),
            *scope,
            *self.controller_args,
            *extra,
            env=self.controller_env,
            webhook=webhook,
        )
        self.controller = proc.start()
        if wait:
            self.wait_devices_ready()
        return proc

    def wait_devices_ready(self, timeout: float = 40) -> None:
        for name in self.devices:
            wait_for(f"NetworkDevice {name} Ready", lambda n=name: is_ready(self.api.get("networkdevices", n)), timeout)

    def stop(self) -> None:
        """Delete this rig's services while the controller runs (so devices are cleaned), then stop."""
        with contextlib.suppress(Exception):
            if self.controller is not None and self.controller.alive():
                for name in self.service_names():
                    self.api.delete("networkservices", name, self.namespace)
                wait_for("the rig's services gone", lambda: not self.service_names(), 40, 0.2)
        if self.controller is not None:
            self.controller.stop()
        with contextlib.suppress(Exception):
            for name in self.service_names():  # no controller left to release them
                self.api.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, "networkservices", name, {"metadata": {"finalizers": None}}
                )
                self.api.delete("networkservices", name, self.namespace)
        with contextlib.suppress(Exception):
            for name in self.devices:
                self.api.delete("networkdevices", name)
        self.fleet.stop()

    # -- objects -----------------------------------------------------------------------------
    def service(self, name: str, endpoints: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
        body = service_body(name, endpoints, **spec)
        body["metadata"]["namespace"] = self.namespace
        return body

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.api.apply(body)

    def get(self, name: str) -> dict[str, Any] | None:
        return self.api.get("networkservices", name, self.namespace)

    def delete(self, name: str) -> None:
        self.api.delete("networkservices", name, self.namespace)

    def service_names(self) -> list[str]:
        items = self.api.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, "networkservices")
        return [i["metadata"]["name"] for i in items.get("items", [])]

    def cond(self, name: str, type_: str = "Ready") -> dict[str, Any] | None:
        return condition(self.get(name), type_)

    def ready(self, name: str, timeout: float = 20) -> dict[str, Any]:
        return wait_for(f"NetworkService {name} Ready", lambda: (s := self.get(name)) and is_ready(s) and s, timeout)

    def all_ready(self, names: Iterable[str], timeout: float = 60) -> float:
        """Wait until every service is Ready; returns the seconds it took."""
        started = time.monotonic()
        pending = set(names)

        def probe() -> bool:
            items = self.api.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, "networkservices")
            for item in items.get("items", []):
                if item["metadata"]["name"] in pending and is_ready(item):
                    pending.discard(item["metadata"]["name"])
            return not pending

        wait_for(f"{len(pending)} services Ready", lambda: probe() or None, timeout, 0.25)
        return time.monotonic() - started

    def gone(self, name: str, timeout: float = 20) -> None:
        wait_for(f"NetworkService {name} deleted", lambda: self.get(name) is None, timeout)

    def wait_cond(
        self, name: str, type_: str, status: str, reasons: Iterable[str] | None = None, timeout: float = 20
    ) -> dict[str, Any]:
        wanted = set(reasons) if reasons is not None else None

        def probe() -> dict[str, Any] | None:
            c = self.cond(name, type_)
            if c and c["status"] == status and (wanted is None or c["reason"] in wanted):
                return c
            return None

        return wait_for(f"{name} {type_}={status} {sorted(wanted) if wanted else ''}", probe, timeout)

    # -- instruments ---------------------------------------------------------------------------
    def stats(self, device: str) -> dict[str, int]:
        return self.admin.stats(device)

    def sets(self, device: str) -> int:
        return self.admin.stats(device)["set_rpcs"]

    def metrics(self) -> str:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        return urllib.request.urlopen(url, timeout=5).read().decode()

    def kube_writes(self) -> float:
        return metric_total(self.metrics(), "telco_kube_writes_total")

    def logs(self) -> str:
        return self.controller.logs() if self.controller is not None else ""

    def tracebacks(self) -> list[str]:
        """Each traceback in the controller log with the line before it (what logged it)."""
        text = self.logs()
        found = []
        for m in TRACEBACK.finditer(text):
            start = text.rfind("\n", 0, max(0, m.start() - 1)) + 1
            found.append(text[start : m.start() + 1200])
        return found

    def managed(self, device: str) -> dict[str, set[Any]]:
        """What this controller could have written on `device`: customer subinterfaces (by their
        telco-intent description), QoS scheduler policies and QoS interfaces, VRFs and their members."""
        config = self.admin.dump(device)["config"]
        subifs = set()
        for iface in config.get("interfaces", {}).get("interface", []):
            for sub in iface.get("subinterfaces", {}).get("subinterface", []):
                subifs.add((iface["name"], sub["index"], sub.get("config", {}).get("description", "")))
        qos = config.get("qos", {})
        policies = {p["name"] for p in qos.get("scheduler-policies", {}).get("scheduler-policy", [])}
        qos_ifaces = {i["interface-id"] for i in qos.get("interfaces", {}).get("interface", [])}
        vrfs = set()
        for ni in config.get("network-instances", {}).get("network-instance", []):
            if ni.get("config", {}).get("type") == "L3VRF":
                vrfs.add(ni["name"])
                for member in ni.get("interfaces", {}).get("interface", []):
                    vrfs.add(f"{ni['name']}/{member['id']}")
        return {"subinterfaces": subifs, "policies": policies, "qos_interfaces": qos_ifaces, "vrfs": vrfs}

    def expected(self, device: str, services: dict[str, list[tuple[str, str, int]]]) -> dict[str, set[Any]]:
        """What `managed(device)` must be when exactly `services` (name -> [(device, port, vlan)]) are
        configured (internetAccess/l2vpn services of this rig's namespace)."""
        subifs, names = set(), set()
        for svc, endpoints in services.items():
            for dev, port, vlan in endpoints:
                if dev == device:
                    subifs.add((port, vlan, f"telco-intent {self.namespace}/{svc}"))
                    names.add(f"{port}.{vlan}")
        return {"subinterfaces": subifs, "policies": names, "qos_interfaces": set(names), "vrfs": set()}


@contextlib.contextmanager
def rig(
    kubeconfig: Path, workdir: Path, prefix: str, devices: Iterable[str], controller: bool = True, **kw: Any
) -> Iterator[Rig]:
    r = Rig(kubeconfig, workdir, prefix, tuple(devices), **kw)
    try:
        r.start(controller=controller)
    except Exception:
        with contextlib.suppress(Exception):
            r.fleet.stop()
        raise
    try:
        yield r
    finally:
        r.stop()
        tail = r.logs()[-4000:]
        if tail:
            print(f"--- controller log of rig {prefix} (tail) ---\n{tail}")


def api_error(exc: BaseException) -> str:
    return f"{exc.status}: {exc.reason}" if isinstance(exc, ApiException) else repr(exc)


# -- sharded replicas ----------------------------------------------------------------------------------
def holders(r: Rig) -> dict[str, str]:
    """unit -> replica identity holding its Lease (empty: released)."""
    api = kubernetes.client.CoordinationV1Api(r.api.client)
    found = {}
    for lease in api.list_namespaced_lease(r.namespace, label_selector="telco.intent.dev/shard-role=unit").items:
        unit = (lease.metadata.annotations or {}).get("telco.intent.dev/shard-unit")
        if unit:
            found[unit] = lease.spec.holder_identity or ""
    return found


def pod(identity: str) -> str:
    """The replica name (POD_ID) in an identity `<pod>-<random>`."""
    return identity.rsplit("-", 1)[0]
