"""Infrastructure of the controller benchmark: control plane, fleet, controller, watch audit.

Everything runs on 127.0.0.1: a LocalCluster (real etcd + kube-apiserver from bin/), a devicesim
fleet as a subprocess, and the controller as `python -m controller run` (optionally under
py-spy). The test helpers are reused (tests/harness.py, tests/integration/test_network.py), not
copied.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import kubernetes  # noqa: E402
import psutil  # noqa: E402
from kubernetes.client import ApiException  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from devicesim import FleetProcess  # noqa: E402
from localcluster import LocalCluster  # noqa: E402
from localcluster.cluster import free_port  # noqa: E402
from tests.harness import GROUP, VERSION, Api, ControllerProcess, is_ready, wait_for  # noqa: E402
from tests.integration.test_network import SYSTEM, device_body, service_body  # noqa: E402
from tests.kube import Kubectl  # noqa: E402

PORTS = tuple(f"Ethernet{i}" for i in range(1, 9))  # devicesim's default ports


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pct(values: Iterable[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of the values; nan when empty."""
    data = sorted(values)
    if not data:
        return float("nan")
    rank = max(1, min(len(data), round(p / 100 * len(data) + 0.5)))
    return data[rank - 1]


def summary(values: list[float], scale: float = 1000.0, digits: int = 1) -> dict[str, Any]:
    """p50/p90/p99/max/mean of `values` (seconds by default, reported in ms)."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": round(pct(values, 50) * scale, digits),
        "p90": round(pct(values, 90) * scale, digits),
        "p99": round(pct(values, 99) * scale, digits),
        "max": round(max(values) * scale, digits),
        "mean": round(statistics.fmean(values) * scale, digits),
    }


# ---------------------------------------------------------------------------------------------
# Control plane


class ControlPlane:
    """A LocalCluster with the project's CRDs installed, and API clients for the benchmark."""

    def __init__(self, workdir: Path) -> None:
        self.cluster = LocalCluster(workdir=workdir)

    def start(self) -> ControlPlane:
        t0 = time.monotonic()
        self.cluster.start()
        assert self.cluster.kubeconfig is not None
        self.kubeconfig = self.cluster.kubeconfig
        kubectl = Kubectl(self.kubeconfig)
        kubectl.apply_file(ROOT / "crds")
        kubectl.run("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        self.api = Api(self.kubeconfig)
        self.api.client.configuration.connection_pool_maxsize = 16
        self._wait_storage()
        self.started_in = time.monotonic() - t0
        return self

    def _wait_storage(self, timeout: float = 30) -> None:
        """Until every custom resource can be listed: right after Established the API server may still
        answer 429 "storage is (re)initializing", and the controller's watches would back off for tens of
        seconds before the first device is even connected."""
        crds = kubernetes.client.ApiextensionsV1Api(self.api.client).list_custom_resource_definition().items
        plurals = [(c.spec.group, c.spec.versions[0].name, c.spec.names.plural) for c in crds if c.spec.group == GROUP]
        deadline = time.monotonic() + timeout
        for group, version, plural in plurals:
            while True:
                try:
                    self.api.custom.list_cluster_custom_object(group, version, plural, limit=1)
                    break
                except ApiException as exc:
                    if exc.status != 429 or time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)

    def stop(self) -> None:
        self.cluster.stop()

    def pids(self) -> dict[str, int]:
        return dict(self.cluster.pids)

    def new_client(self) -> Api:
        """A separate client (own connection pool): watches must not starve the writers."""
        return Api(self.kubeconfig)


# ---------------------------------------------------------------------------------------------
# Fleet and devices


def device_names(count: int) -> list[str]:
    return [f"dev{i:03d}" for i in range(1, count + 1)]


PROFILE_NOTES = {
    "strict": "official OpenConfig model validation of every Set, YANG defaults filled, state apart from config",
    "lenient": "devicesim's own subset checks only, no defaults (the behaviour before issue 14)",
}


def start_fleet(names: list[str], workdir: Path, profile: str = "strict") -> FleetProcess:
    """A devicesim fleet of `profile` devices (every network scenario runs on strict ones unless it
    compares profiles); each device advertises and accepts JSON and JSON_IETF."""
    workdir.mkdir(parents=True, exist_ok=True)
    log(f"fleet: {len(names)} devicesim {profile} devices ({PROFILE_NOTES[profile]})")
    return FleetProcess(
        ["--devices", str(len(names)), "--names", ",".join(names), "--profile", profile],
        workdir=workdir,
        timeout=180,
    ).start()


def register_devices(api: Api, fleet: FleetProcess, names: list[str], encoding: str | None = None) -> None:
    """Secrets and NetworkDevices exactly as the integration tests make them (API default timeout);
    `encoding` pins spec.encoding (JSON or JSON_IETF), else the controller negotiates it."""
    api.put_secret(SYSTEM, "nt-credentials", {"username": "admin", "password": "admin"})
    assert fleet.ca_path is not None
    api.put_secret(SYSTEM, "nt-ca", {"ca.crt": Path(fleet.ca_path).read_text()})
    for name in names:
        body = device_body(name, fleet.devices[name].port)
        body["spec"].pop("timeoutSeconds", None)  # the API default (5 s), as a user would leave it
        if encoding is not None:
            body["spec"]["encoding"] = encoding
        api.apply(body)


def device_encodings(api: Api, names: Iterable[str]) -> dict[str, int]:
    """How many of the devices use each encoding (NetworkDevice status.encoding, as negotiated)."""
    return dict(Counter(str((api.get("networkdevices", n) or {}).get("status", {}).get("encoding")) for n in names))


def reset_devices(fleet: FleetProcess, names: Iterable[str]) -> None:
    admin = fleet.admin
    for name in names:
        admin.reset(name)


def fleet_stats(fleet: FleetProcess, names: Iterable[str]) -> dict[str, dict[str, int]]:
    admin = fleet.admin
    return {name: admin.stats(name) for name in names}


def stats_delta(after: dict[str, dict[str, int]], before: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {d: {k: v - before.get(d, {}).get(k, 0) for k, v in s.items()} for d, s in after.items()}


# ---------------------------------------------------------------------------------------------
# Services


@dataclass(frozen=True)
class Svc:
    """One benchmark NetworkService: one endpoint on one device."""

    namespace: str
    name: str
    device: str
    port: str
    vlan: int
    ip: str

    def body(self) -> dict[str, Any]:
        endpoint = {"device": self.device, "port": self.port, "vlanId": self.vlan, "ipv4Address": self.ip}
        body = service_body(self.name, [endpoint])
        body["metadata"]["namespace"] = self.namespace
        return body


def slot(k: int) -> tuple[str, int, str]:
    """The k-th free (port, vlan, address) of a device: ports round-robin, VLANs from 100 up."""
    a, b = divmod(k, 64)
    return PORTS[k % len(PORTS)], 100 + k // len(PORTS), f"100.{64 + a // 256}.{a % 256}.{b * 4 + 1}/30"


def layout(
    namespace: str,
    per_device: dict[str, int],
    prefix: str = "s",
    start: dict[str, int] | None = None,
    interleave: bool = True,
) -> list[Svc]:
    """Services spread as `per_device` says; `start` gives each device's first free slot.
    Interleaved across devices (the order a big apply would bring them) unless told otherwise."""
    start = start or {}
    queues = {d: [(d, *slot(start.get(d, 0) + k)) for k in range(n)] for d, n in per_device.items()}
    order: list[tuple[str, str, int, str]] = []
    if interleave:
        longest = max((len(q) for q in queues.values()), default=0)
        for i in range(longest):
            order += [q[i] for q in queues.values() if i < len(q)]
    else:
        for q in queues.values():
            order += q
    return [Svc(namespace, f"{prefix}{i:05d}", d, port, vlan, ip) for i, (d, port, vlan, ip) in enumerate(order)]


def spread(total: int, devices: list[str]) -> dict[str, int]:
    base, extra = divmod(total, len(devices))
    return {d: base + (1 if i < extra else 0) for i, d in enumerate(devices)}


def create_objects(api: Api, plural: str, bodies: list[dict[str, Any]], workers: int = 4) -> dict[str, float]:
    """Create namespaced objects from `workers` threads (as a bulk apply would); returns name ->
    monotonic time the create call returned."""
    done: dict[str, float] = {}

    def one(body: dict[str, Any]) -> None:
        meta = body["metadata"]
        for attempt in range(5):
            try:
                api.custom.create_namespaced_custom_object(GROUP, VERSION, meta["namespace"], plural, body)
                break
            except ApiException as exc:
                if exc.status == 409:
                    break
                if exc.status >= 500 or exc.status == 429:
                    time.sleep(0.2 * (attempt + 1))
                    continue
                raise
        done[meta["name"]] = time.monotonic()

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="create") as pool:
        list(pool.map(one, bodies))
    return done


def create_all(api: Api, services: list[Svc], workers: int = 4) -> dict[str, float]:
    return create_objects(api, "networkservices", [s.body() for s in services], workers)


def delete_namespace_services(api: Api, namespace: str) -> None:
    api.custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, "networkservices")


def strip_finalizers_and_delete(api: Api, namespace: str, plural: str = "networkservices") -> None:
    """Remove every finalizer (no controller runs) and delete every object of the kind in the namespace."""
    items = api.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)["items"]

    def strip(item: dict[str, Any]) -> None:
        if item["metadata"].get("finalizers"):
            with contextlib.suppress(ApiException):
                api.custom.patch_namespaced_custom_object(
                    GROUP, VERSION, namespace, plural, item["metadata"]["name"], {"metadata": {"finalizers": None}}
                )

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(strip, items))
    api.custom.delete_collection_namespaced_custom_object(GROUP, VERSION, namespace, plural)


def _transient(exc: ApiException) -> bool:
    return exc.status is not None and (exc.status >= 500 or exc.status == 429)


def clear_services(api: Api, fleet: FleetProcess, names: Iterable[str], namespace: str) -> None:
    """With no controller running: every NetworkService of `namespace` gone, and the devices reset to
    empty, so the next run starts where the previous one did. Deleting 10,000 objects can outlast the
    API server's 60 s request timeout when it is short of CPU (a 5xx, twice on 2026-12-04): then the
    list and delete are made again until nothing is left."""

    def delete(what: str) -> None:
        try:
            strip_finalizers_and_delete(api, namespace)
        except ApiException as exc:
            if not _transient(exc):
                raise
            log(f"clearing {what}: {exc.status} from the API server, again")

    def gone() -> bool:
        try:
            left = api.custom.list_namespaced_custom_object(GROUP, VERSION, namespace, "networkservices")["items"]
        except ApiException as exc:
            if _transient(exc):
                return False
            raise
        if left:
            delete(f"{len(left)} services")
        return not left

    delete("the services")
    wait_for("the services deleted", gone, timeout=600, interval=2.0)
    reset_devices(fleet, names)


# ---------------------------------------------------------------------------------------------
# A CloudEvents sink in another process (the test suite's receiver)

_RECEIVER = """
import sys
sys.path.insert(0, {root!r})
from tests.support.cloudevents_receiver import CloudEventsReceiver
rx = CloudEventsReceiver().start()
print(rx.url, flush=True)
for line in sys.stdin:
    if line.strip() == "count":
        print(len(rx.ids), flush=True)
rx.stop()
"""


class ReceiverProcess:
    """tests/support/cloudevents_receiver.CloudEventsReceiver in a child process; `count()` asks it
    how many distinct event ids it accepted."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _RECEIVER.format(root=str(ROOT))],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError(f"the CloudEvents receiver did not start: {self.url!r}")
        self.lock = threading.Lock()

    def count(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        with self.lock:
            self.proc.stdin.write("count\n")
            self.proc.stdin.flush()
            return int(self.proc.stdout.readline().strip() or -1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def controller_flags() -> str:
    """`python -m controller run --help` (to use flags only when this controller has them)."""
    return subprocess.run(
        [sys.executable, "-m", "controller", "run", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    ).stdout


# ---------------------------------------------------------------------------------------------
# The watch audit: every resourceVersion of our objects, seen from outside the controller


@dataclass
class ObjTrack:
    first_seen: float
    versions: int = 0  # distinct resourceVersions seen (create included)
    ready_at: float | None = None
    finalizers: tuple[str, ...] = ()
    status: dict[str, Any] = field(default_factory=dict)
    kinds: Counter[str] = field(default_factory=Counter)  # what each write changed


def status_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Which status fields a write changed; conditions are named by type and field."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key == "conditions" and isinstance(a, list) and isinstance(b, list):
            ca = {c.get("type"): c for c in a}
            cb = {c.get("type"): c for c in b}
            for t in sorted(set(ca) | set(cb), key=str):
                x, y = ca.get(t, {}), cb.get(t, {})
                out += [f"conditions[{t}].{f}" for f in sorted(set(x) | set(y)) if x.get(f) != y.get(f)]
        else:
            out.append(key)
    return out


class WatchAudit:
    """Watches one plural (one namespace or all) from a thread and records, per object, every
    resourceVersion, what each write changed (metadata/finalizers, status, spec) and when the
    object was first Ready (Ready=True at the current generation)."""

    def __init__(self, api: Api, plural: str, namespace: str | None = None) -> None:
        self.api = api
        self.plural = plural
        self.namespace = namespace
        self.objects: dict[str, ObjTrack] = {}
        self.events: list[tuple[float, str, str]] = []  # (time, type, name) of every ADDED/MODIFIED
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.relists = 0
        self.status_fields: Counter[str] = Counter()  # how often each status field changed

    def _list(self) -> dict[str, Any]:
        if self.namespace is None:
            return dict(self.api.custom.list_cluster_custom_object(GROUP, VERSION, self.plural))
        return dict(self.api.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, self.plural))

    def start(self) -> WatchAudit:
        listed = self._list()
        now = time.monotonic()
        for item in listed["items"]:
            self._observe(now, "LISTED", item)
        self._rv = listed["metadata"]["resourceVersion"]
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"watch-{self.plural}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            w = kubernetes.watch.Watch()
            if self.namespace is None:
                fn, args = self.api.custom.list_cluster_custom_object, (GROUP, VERSION, self.plural)
            else:
                fn, args = self.api.custom.list_namespaced_custom_object, (GROUP, VERSION, self.namespace, self.plural)
            try:
                for event in w.stream(
                    fn, *args, resource_version=self._rv, timeout_seconds=20, allow_watch_bookmarks=True
                ):
                    obj = event["object"]
                    self._rv = obj["metadata"]["resourceVersion"]
                    if event["type"] in ("ADDED", "MODIFIED"):
                        self._observe(time.monotonic(), event["type"], obj)
                    if self._stop.is_set():
                        break
            except ApiException as exc:
                if exc.status == 410:  # too old: relist (the writes in between are lost: counted)
                    self.relists += 1
                    listed = self._list()
                    now = time.monotonic()
                    for item in listed["items"]:  # what became Ready in the gap is Ready from now on
                        self._observe(now, "LISTED", item)
                    self._rv = listed["metadata"]["resourceVersion"]
                else:
                    time.sleep(0.2)
            except Exception:  # connection reset and such: resume from the last version
                time.sleep(0.2)
            finally:
                w.stop()

    def _observe(self, t: float, kind: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if obj["metadata"].get("namespace"):
            name = f"{obj['metadata']['namespace']}/{name}"
        finalizers = tuple(obj["metadata"].get("finalizers") or ())
        status = obj.get("status") or {}
        ready = is_ready(obj)
        with self.lock:
            track = self.objects.get(name)
            if track is None:
                track = self.objects[name] = ObjTrack(first_seen=t, finalizers=finalizers, status=status)
                if kind != "LISTED":
                    track.kinds["create"] += 1
            else:
                what = []
                if finalizers != track.finalizers:
                    what.append("finalizers")
                if status != track.status:
                    what.append("status")
                    self.status_fields.update(status_changes(track.status, status))
                if kind != "LISTED":  # a relist's writes are counted in versions by no one: not here either
                    track.kinds["+".join(what) or "other"] += 1
                track.finalizers, track.status = finalizers, status
            if kind != "LISTED":
                track.versions += 1
                self.events.append((t, kind, name))
            if ready and track.ready_at is None:
                track.ready_at = t
            self.changed.notify_all()

    # -- queries ------------------------------------------------------------------------------
    def ready_count(self, names: Iterable[str] | None = None) -> int:
        with self.lock:
            if names is None:
                return sum(1 for o in self.objects.values() if o.ready_at is not None)
            return sum(1 for n in names if (o := self.objects.get(n)) is not None and o.ready_at is not None)

    def wait_ready(self, names: list[str], timeout: float, progress: float = 15.0) -> bool:
        """Wait until every one of `names` was seen Ready; log progress; False on timeout."""
        deadline = time.monotonic() + timeout
        next_log = time.monotonic() + progress
        total = len(set(names))
        wanted = set(names)
        with self.lock:
            while True:
                missing = [n for n in wanted if (o := self.objects.get(n)) is None or o.ready_at is None]
                if not missing:
                    return True
                now = time.monotonic()
                if now >= deadline:
                    return False
                if now >= next_log:
                    log(f"  {total - len(missing)}/{total} Ready")
                    next_log = now + progress
                self.changed.wait(min(1.0, deadline - now))
                wanted = set(missing)

    def wait_one(self, name: str, timeout: float) -> float | None:
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                o = self.objects.get(name)
                if o is not None and o.ready_at is not None:
                    return o.ready_at
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(min(0.5, left))

    def writes_since(self, t0: float, t1: float | None = None) -> int:
        t1 = t1 if t1 is not None else float("inf")
        with self.lock:
            return sum(1 for t, _, _ in self.events if t0 <= t < t1)

    def write_kinds(self, names: Iterable[str]) -> Counter[str]:
        total: Counter[str] = Counter()
        with self.lock:
            for n in names:
                if n in self.objects:
                    total.update(self.objects[n].kinds)
        return total

    def versions(self, names: Iterable[str]) -> list[int]:
        with self.lock:
            return [self.objects[n].versions for n in names if n in self.objects]

    def quiet_for(self, seconds: float, timeout: float) -> bool:
        """Wait until no event arrived for `seconds` (at most `timeout`)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                last = self.events[-1][0] if self.events else 0.0
            if time.monotonic() - last >= seconds:
                return True
            time.sleep(0.2)
        return False


# ---------------------------------------------------------------------------------------------
# The controller process


_LIVE: set[BenchController] = set()


def kill_leftovers() -> None:
    """Kill every controller this benchmark started and did not stop (atexit, interrupted runs)."""
    for ctl in list(_LIVE):
        ctl.kill_group()
        _LIVE.discard(ctl)


class BenchController(ControllerProcess):
    """The harness's ControllerProcess with a metrics port, production resync, and optionally
    py-spy sampling it (py-spy cannot attach to a running process here, so it launches it)."""

    def __init__(
        self,
        kubeconfig: Path,
        log_path: Path,
        *,
        resync: float = 30.0,
        profile_to: Path | None = None,
        extra: Iterable[str] = (),
        webhook: bool = False,
    ) -> None:
        """`webhook`: also serve admission (tests.harness.registered_webhook registers it as the chart does)."""
        self.metrics_port = free_port()
        super().__init__(
            kubeconfig,
            log_path,
            "--resync-seconds",
            str(resync),
            "--metrics-port",
            str(self.metrics_port),
            "--log-level",
            "warning",
            *extra,
            webhook=webhook,
        )
        self.profile_to = profile_to
        self._ps: psutil.Process | None = None

    def start(self) -> BenchController:
        if self.profile_to is None:
            super().start()
        else:
            env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1", **self.env}
            spy = Path(sys.executable).with_name("py-spy")
            cmd = [
                str(spy),
                "record",
                "--nonblocking",
                "--gil",
                "--rate",
                "100",
                "--format",
                "raw",
                "--output",
                str(self.profile_to),
                "--",
                sys.executable,
                "-m",
                "controller",
                "run",
                "--resync-seconds",
                "5",
                *self.args,
            ]
            with open(self.log_path, "ab") as logf:
                self.proc = subprocess.Popen(
                    cmd, cwd=ROOT, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True
                )
        self._ps = None
        _LIVE.add(self)
        return self

    @property
    def ps(self) -> psutil.Process:
        """The controller's own process (py-spy's child when profiling)."""
        if self._ps is None:
            assert self.proc is not None
            proc = psutil.Process(self.proc.pid)
            if self.profile_to is not None:
                deadline = time.monotonic() + 10
                while not proc.children() and time.monotonic() < deadline:
                    time.sleep(0.05)
                proc = proc.children()[0]
            self._ps = proc
        return self._ps

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def rss_mb(self) -> float:
        return float(self.ps.memory_info().rss) / 2**20

    def wait_up(self, devices: int, timeout: float = 120) -> None:
        """Until the metrics endpoint answers and every device was reconciled at least once."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                m = self.metrics()
            except OSError:
                time.sleep(0.2)
                continue
            if metric_sum(m, "telco_reconcile_total") >= devices:
                return
            time.sleep(0.2)
        raise AssertionError(f"the controller did not reconcile {devices} devices within {timeout:.0f}s")

    def wait_idle(self, window: float = 1.0, max_passes: int = 1, timeout: float = 60) -> float:
        """Until the controller ran at most `max_passes` device passes in a `window` (the staggered resync
        keeps it from ever being zero): the seconds it took."""
        t0 = time.monotonic()
        last = metric_sum(self.metrics(), "telco_reconcile_total")
        while time.monotonic() - t0 < timeout:
            time.sleep(window)
            now = metric_sum(self.metrics(), "telco_reconcile_total")
            if now - last <= max_passes:
                return time.monotonic() - t0
            last = now
        return time.monotonic() - t0

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = float(s.value)
        return out

    def kill_group(self) -> None:
        """Last resort (the benchmark is being interrupted): the whole process group, py-spy included."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)

    def stop(self) -> None:
        _LIVE.discard(self)
        if self.profile_to is not None and self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                self.ps.send_signal(signal.SIGTERM)  # py-spy writes its file when its child exits
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGINT)
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.kill_group()
            self.proc = None
            return
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)  # nothing to save: do not wait for Kopf's graceful shutdown
            except subprocess.TimeoutExpired:
                self.kill_group()
                self.proc.wait()
        self.proc = None

    def __enter__(self) -> BenchController:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def metric_sum(m: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, lab), v in m.items() if n == name and want <= set(lab))


def metric_by(m: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, label: str) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for (n, lab), v in m.items():
        if n == name:
            out[dict(lab).get(label, "")] += v
    return dict(out)


def metric_by_labels(
    m: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, labels: tuple[str, ...]
) -> dict[tuple[str, ...], float]:
    """Like metric_by, keyed by several labels' values."""
    out: dict[tuple[str, ...], float] = defaultdict(float)
    for (n, lab), v in m.items():
        if n == name:
            d = dict(lab)
            out[tuple(d.get(label, "") for label in labels)] += v
    return dict(out)


def wait_devices_ready(api: Api, names: list[str], timeout: float = 120) -> None:
    wait_for(
        "every NetworkDevice Ready",
        lambda: all(is_ready(api.get("networkdevices", n)) for n in names),
        timeout,
        interval=0.5,
    )


def proc_cpu(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return float("nan")


class CpuMeter:
    """CPU seconds of named processes between two points."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.start = {k: proc_cpu(p) for k, p in pids.items()}

    def read(self) -> dict[str, float]:
        return {k: round(proc_cpu(p) - self.start[k], 2) for k, p in self.pids.items()}


class RssSampler:
    """Peak RSS of a process, sampled every `interval` seconds from a thread."""

    def __init__(self, proc: psutil.Process, interval: float = 0.5) -> None:
        self.proc = proc
        self.interval = interval
        self.peak = 0.0
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="rss")

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                rss = self.proc.memory_info().rss / 2**20
                self.peak = max(self.peak, rss)
                self.samples.append((time.monotonic(), rss))
            self._stop.wait(self.interval)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(2)
        return self.peak


@contextlib.contextmanager
def timed(label: str) -> Iterator[None]:
    t0 = time.monotonic()
    yield
    log(f"{label}: {time.monotonic() - t0:.1f}s")
