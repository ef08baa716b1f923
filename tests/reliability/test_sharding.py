"""Several active replicas sharing the devices through Leases (--shard-group, docs/sharding.md).

What is proved, on real processes, a real API server and devicesim (which records the replica and
tenure each Set carries): every device is driven by one replica at a time -- per device, the tenures
in the Set log only grow, each tenure is one replica's, and a new tenure's first Set comes after the
old tenure's last one finished -- through SIGKILL (here, in `make test`), and SIGSTOP, a partition
from the API server and scale up/down (`make reliability`). A service spanning devices of two
replicas is Ready from both replicas' reports; the failover time after a SIGKILL is measured.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml

from controller.sharding import assign
from devicesim.device import writer_overlaps
from tests.harness import ControllerProcess
from tests.kube import Kubectl
from tests.reliability.rig import Rig, ep, holders, is_ready, pod, rig, unique, wait_for

DEVICES = ("sh-a", "sh-b", "sh-c", "sh-d", "sh-e", "sh-f")
GROUP = "shtest"
# Short timings so the suite waits seconds, not the production 15 s.
LEASE, DEADLINE, RENEW = 6.0, 4.0, 1.0
TIMING = (
    "--shard-lease-seconds",
    str(LEASE),
    "--shard-renew-deadline-seconds",
    str(DEADLINE),
    "--shard-renew-seconds",
    str(RENEW),
)


@pytest.fixture(scope="module")
def r(kubeconfig: Path, crds: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(kubeconfig, tmp_path_factory.mktemp("sharding"), "sh", DEVICES, controller=False, namespaced=False) as rg:
        yield rg


class Replicas:
    """The replicas of one shard group started by a test; all stopped at the end."""

    def __init__(self, r: Rig) -> None:
        self.r = r
        self.procs: dict[str, ControllerProcess] = {}
        self.kubeconfigs: dict[str, Path] = {}

    def start(self, name: str, kubeconfig: Path | None = None, *extra: str) -> ControllerProcess:
        r = self.r
        proc = ControllerProcess(
            kubeconfig or r.kubeconfig,
            r.workdir / f"{name}.log",
            "--shard-group",
            GROUP,
            "--shard-namespace",
            r.namespace,
            *TIMING,
            *extra,
            env={"POD_ID": name},
        )
        self.procs[name] = proc.start()
        r.controller = proc  # the rig's teardown deletes services while one runs
        return proc

    def alive(self) -> ControllerProcess | None:
        return next((p for p in self.procs.values() if p.alive()), None)

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.proc is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.proc.pid, signal.SIGCONT)
            if proc.alive():
                proc.stop()


@pytest.fixture()
def replicas(r: Rig) -> Iterator[Replicas]:
    group = Replicas(r)
    try:
        yield group
    finally:
        alive = group.alive()
        r.controller = alive
        with contextlib.suppress(Exception):  # remove the test's services while a replica still drives
            for name in r.service_names():
                r.delete(name)
            wait_for("the test's services gone", lambda: not r.service_names(), 40, 0.3)
        group.stop_all()
        r.controller = None
        for device in DEVICES:
            r.admin.reset(device)
        leases = kubernetes.client.CoordinationV1Api(r.api.client)
        leases.delete_collection_namespaced_lease(r.namespace, label_selector=f"telco.intent.dev/shard-group={GROUP}")


# -- instruments ------------------------------------------------------------------------------------
def members(r: Rig) -> list[str]:
    api = kubernetes.client.CoordinationV1Api(r.api.client)
    listed = api.list_namespaced_lease(r.namespace, label_selector="telco.intent.dev/shard-role=member").items
    return [lease.spec.holder_identity for lease in listed if lease.spec.holder_identity]


def driven_by(r: Rig, names: set[str]) -> dict[str, str]:
    """device -> replica name, once exactly the replicas `names` are members and every device is held
    by the one rendezvous hashing assigns it to (hand-overs done)."""

    def probe() -> dict[str, str] | None:
        identities = [m for m in members(r) if pod(m) in names]
        if {pod(m) for m in identities} != names:
            return None
        want = assign(DEVICES, identities)
        found = {u: h for u, h in holders(r).items() if u in DEVICES}
        return {d: pod(h) for d, h in found.items()} if found == want else None

    return wait_for(f"every device held by its replica among {sorted(names)}", probe, 4 * LEASE + 30, 0.3)


def assert_one_writer_at_a_time(r: Rig) -> dict[str, int]:
    """Per device, from devicesim's Set log: tenures never go back, each is one replica's, and the
    windows of two tenures never overlap. Returns the Sets seen per device."""
    counts = {}
    for device in DEVICES:
        log = r.admin.sets(device)
        counts[device] = len(log)
        problems = writer_overlaps(log)
        assert not problems, f"{device}: {problems}"
    return counts


def ports_for(device: str, index: int) -> dict[str, Any]:
    return ep(device, f"Ethernet{1 + index % 4}", 700 + index)


# -- make test: SIGKILL ---------------------------------------------------------------------------------
def test_devices_are_shared_and_a_killed_replicas_devices_move_to_the_other(  # type: ignore[no-untyped-def]
    r: Rig, replicas: Replicas, measure
) -> None:
    replicas.start("rep-1")
    replicas.start("rep-2")
    owners = driven_by(r, {"rep-1", "rep-2"})
    for _ in range(5):  # identities are random: 1 time in 32 one replica draws all six devices
        if set(owners.values()) == {"rep-1", "rep-2"}:
            break
        replicas.procs["rep-2"].stop()
        replicas.start("rep-2")
        owners = driven_by(r, {"rep-1", "rep-2"})
    assert set(owners.values()) == {"rep-1", "rep-2"}, f"both replicas drive devices: {owners}"
    r.wait_devices_ready()
    services = {}
    for i, device in enumerate(DEVICES):
        name = unique(f"one-{i}")
        services[name] = [ports_for(device, i)]
    # One service spanning a device of each replica: its first endpoint's replica writes its status.
    first = next(d for d, o in owners.items() if o == "rep-1")
    second = next(d for d, o in owners.items() if o == "rep-2")
    span = unique("span")
    services[span] = [ep(first, "Ethernet4", 790), ep(second, "Ethernet4", 791)]
    for name, endpoints in services.items():
        r.apply(r.service(name, endpoints))
    r.all_ready(services, timeout=60)
    body = r.get(span)
    assert body is not None and [e["applied"] for e in body["status"]["endpoints"]] == [True, True]
    report = body["status"]["shards"][second]
    assert pod(report["replica"]) == "rep-2" and report["endpoints"][0]["phase"] == "Applied"
    assert second in {o["device"] for o in body["status"]["owned"]}, "the foreign device's leaves are recorded"

    victim = "rep-1"
    victim_devices = sorted(d for d, o in owners.items() if o == victim)
    replicas.procs[victim].kill9()
    killed = time.monotonic()
    late = unique("after-kill")
    r.apply(r.service(late, [ep(victim_devices[0], "Ethernet3", 795)]))
    r.controller = replicas.procs["rep-2"]
    r.ready(late, timeout=4 * LEASE + 30)
    failover = time.monotonic() - killed
    measure(
        "sharding: one of 2 replicas SIGKILLed, its devices driven again",
        failover,
        f"kill -> a new service on its device Ready (lease {LEASE:g}s, renew {RENEW:g}s)",
    )
    assert failover >= LEASE - RENEW - 0.5, "the survivor waited for the Lease to expire"
    assert driven_by(r, {"rep-2"}) == dict.fromkeys(DEVICES, "rep-2")
    r.all_ready([*services, late], timeout=30)
    for device in DEVICES:
        expected_here = {n: [(e["device"], e["port"], e["vlanId"]) for e in eps] for n, eps in services.items()}
        expected_here[late] = [(victim_devices[0], "Ethernet3", 795)]
        assert r.managed(device) == r.expected(device, expected_here), device
    counts = assert_one_writer_at_a_time(r)
    assert sum(counts.values()) >= len(DEVICES), counts


RETRY = 6.0  # a device's retry delay, longer than the renew deadline: the retry falls due after the fence


def test_a_replica_fenced_by_a_pause_drives_every_device_again(r: Rig, replicas: Replicas) -> None:
    """The 5,000-service stall, small: a lone replica, one device failing its Sets (a transient error,
    so it is retried with backoff), paused just after a failed Set for longer than the renew deadline.
    On resume its fence watchdog and the device's retry fall due together, the watchdog first: the stop
    cancelled the retry's run before its first step, and the work queue kept the device marked as
    running for good, so the device was never reconciled again (its service stayed DeviceUnavailable
    once the device was healthy, through the take-back and every resync). Now every service is Ready
    again and each device is driven by the one replica, with one writer at a time."""
    proc = replicas.start(
        "rep-1",
        None,
        "--retry-initial-seconds",
        str(RETRY),
        "--retry-max-seconds",
        str(RETRY),
        "--resync-seconds",
        "600",  # nothing but the take-back may re-drive the device
    )
    driven_by(r, {"rep-1"})
    r.wait_devices_ready()
    services = {unique(f"f-{i}"): [ports_for(d, 50 + i)] for i, d in enumerate(DEVICES)}
    for name, eps in services.items():
        r.apply(r.service(name, eps))
    r.all_ready(services)
    sick = DEVICES[0]
    r.admin.fail_sets(sick, 1000, "UNAVAILABLE", "injected: the device is busy")
    late = unique("f-late")
    r.apply(r.service(late, [ports_for(sick, 60)]))
    r.wait_cond(late, "Ready", "False", {"DeviceUnavailable"})
    # Pause right after a failed Set: the next retry is due RETRY s later, after the fence's deadline.
    sent = r.sets(sick)
    wait_for("the next retried Set", lambda: r.sets(sick) > sent, 3 * RETRY, 0.02)
    assert proc.proc is not None
    os.kill(proc.proc.pid, signal.SIGSTOP)
    try:
        time.sleep(RETRY + 2)  # past the renew deadline and the retry: both fall due at once on resume
        r.admin.fail_sets(sick, 0)  # the device is healthy again
    finally:
        os.kill(proc.proc.pid, signal.SIGCONT)
    wait_for("the fence has stopped the units", lambda: "stopping all" in proc.logs(), 30, 0.2)
    r.all_ready([*services, late], timeout=4 * LEASE + 30)
    assert driven_by(r, {"rep-1"}) == dict.fromkeys(DEVICES, "rep-1")
    expected = {n: [(e["device"], e["port"], e["vlanId"]) for e in eps] for n, eps in services.items()}
    expected[late] = [(sick, ports_for(sick, 60)["port"], ports_for(sick, 60)["vlanId"])]
    for device in DEVICES:
        assert r.managed(device) == r.expected(device, expected), device
    assert_one_writer_at_a_time(r)


RELIST = "listing every NetworkService for the devices this replica took"


def log_time(line: str) -> float:
    """The wall-clock time of a controller log line (its asctime, local time)."""
    return dt.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def test_a_lapsed_fence_nobody_took_advantage_of_keeps_the_sessions_and_services(  # type: ignore[no-untyped-def]
    r: Rig, replicas: Replicas, measure
) -> None:
    """Issue 16: a replica paused past its renew deadline (a starved event loop) used to stop every device
    (each session closed, each service record dropped) and take them all back (a new session per device,
    a list of every NetworkService). Its Leases were never taken, so now it sends nothing while fenced,
    then resumes each device at the same tenure over the session it kept, with no list; the commerce layer
    too resumes with the objects it kept."""
    proc = replicas.start("rep-1", None, "--resync-seconds", "600")  # nothing but the resume re-drives
    driven_by(r, {"rep-1"})
    r.wait_devices_ready()
    services = {unique(f"k-{i}"): [ports_for(d, 80 + i)] for i, d in enumerate(DEVICES)}
    for name, eps in services.items():
        r.apply(r.service(name, eps))
    r.all_ready(services)
    subscribes = {d: r.stats(d)["subscribe_rpcs"] for d in DEVICES}
    tenures = {d: {s["tenure"] for s in r.admin.sets(d) if s["replica"]} for d in DEVICES}
    assert all(len(t) == 1 for t in tenures.values()), tenures
    start = len(proc.logs())
    assert proc.proc is not None
    os.kill(proc.proc.pid, signal.SIGSTOP)
    stopped = time.time()
    try:
        time.sleep(DEADLINE + 2)  # past the renew deadline, as a starved loop is
    finally:
        os.kill(proc.proc.pid, signal.SIGCONT)
    woke = time.monotonic()
    wait_for("the fence lapsed", lambda: "stopping all" in proc.logs()[start:], 30, 0.1)
    after = {unique(f"k-after-{i}"): [ports_for(d, 90 + i)] for i, d in enumerate(DEVICES)}
    for name, eps in after.items():  # the devices are driven again once these are Ready
        r.apply(r.service(name, eps))
    r.all_ready(after, timeout=4 * LEASE + 30)
    again = time.monotonic() - woke
    opened = {d: r.stats(d)["subscribe_rpcs"] - subscribes[d] for d in DEVICES}
    logs = proc.logs()[start:]
    measure(
        "sharding: a lone replica paused past its renew deadline, its devices driven again",
        again,
        f"SIGCONT -> a new service on each of {len(DEVICES)} devices Ready; sessions opened {sum(opened.values())},"
        f" NetworkService lists {logs.count(RELIST)}, load {os.getloadavg()[0]:.1f}",
    )
    assert not any(opened.values()), f"new gNMI sessions after the lapse: {opened}"
    assert RELIST not in logs, "the services were listed again"
    assert "commerce: listed" not in logs, "the commerce layer was rebuilt from lists"
    assert "commerce: resumed with the objects it kept" in logs, "the commerce layer was not suspended and resumed"
    # every device of the cluster is this lone replica's, also those other tests left on a shared API server
    resumed = {
        line.split("shard: resumed ")[1].split()[0]: log_time(line)
        for line in logs.splitlines()
        if "shard: resumed " in line
    }
    assert set(DEVICES) <= set(resumed), resumed
    for device in DEVICES:
        log = r.admin.sets(device)
        fenced = [s for s in log if stopped * 1e9 <= s["received"] < resumed[device] * 1e9]
        assert not fenced, f"{device}: Sets received while the fence was invalid: {fenced}"
        assert {s["tenure"] for s in log if s["replica"]} == tenures[device], f"{device}: a new tenure"
    r.all_ready([*services, *after], timeout=30)
    expected = {n: [(e["device"], e["port"], e["vlanId"]) for e in eps] for n, eps in {**services, **after}.items()}
    for device in DEVICES:
        assert r.managed(device) == r.expected(device, expected), device
    assert_one_writer_at_a_time(r)


def test_a_replica_stopped_with_sigterm_exits_by_itself_and_releases_its_leases(  # type: ignore[no-untyped-def]
    r: Rig, replicas: Replicas
) -> None:
    """Kubernetes stops a pod with SIGTERM and SIGKILLs it after the grace period. The controller used to
    finish its cleanup (Leases released) and then hang: Kopf waits for its threading.Event stop flag on
    an executor thread, which asyncio.run's shutdown joined forever. It must exit by itself, with 0."""
    proc = replicas.start("rep-1", None)
    driven_by(r, {"rep-1"})
    proc.stop()
    assert not proc.killed, "still running 20 s after SIGTERM: SIGKILLed"
    assert proc.returncode == 0, proc.returncode
    api = kubernetes.client.CoordinationV1Api(r.api.client)
    leases = api.list_namespaced_lease(r.namespace, label_selector=f"telco.intent.dev/shard-group={GROUP}").items
    held = [lease.metadata.name for lease in leases if pod(lease.spec.holder_identity or "") == "rep-1"]
    assert not held, f"Leases still held after a graceful stop: {held}"


# -- make reliability: SIGSTOP, scale up and down, a partition from the API server ------------------
@pytest.mark.full
def test_a_paused_replica_resumes_without_writing_to_devices_it_lost(  # type: ignore[no-untyped-def]
    r: Rig, replicas: Replicas, measure
) -> None:
    for name in ("rep-1", "rep-2", "rep-3"):
        replicas.start(name)
    owners = driven_by(r, {"rep-1", "rep-2", "rep-3"})
    r.wait_devices_ready()
    victim = max(("rep-1", "rep-2", "rep-3"), key=lambda n: sum(o == n for o in owners.values()))
    mine = sorted(d for d, o in owners.items() if o == victim)
    assert mine, owners
    before = {unique(f"pre-{i}"): [ports_for(d, i)] for i, d in enumerate(mine)}
    for name, eps in before.items():
        r.apply(r.service(name, eps))
    r.all_ready(before)
    proc = replicas.procs[victim]
    assert proc.proc is not None
    os.kill(proc.proc.pid, signal.SIGSTOP)
    paused = time.monotonic()
    during = {unique(f"during-{i}"): [ports_for(d, 10 + i)] for i, d in enumerate(mine)}
    for name, eps in during.items():
        r.apply(r.service(name, eps))
    r.controller = next(p for n, p in replicas.procs.items() if n != victim)
    r.all_ready(during, timeout=4 * LEASE + 30)
    measure("sharding: one of 3 replicas SIGSTOPped, its devices driven again", time.monotonic() - paused, "")
    for name in before:  # deleted while the paused replica still believes it owns their devices
        r.delete(name)
    for name in before:
        r.gone(name, 30)
    os.kill(proc.proc.pid, signal.SIGCONT)
    time.sleep(LEASE + 3 * RENEW)  # it wakes up, finds its renew late, and takes back its share
    driven_by(r, {"rep-1", "rep-2", "rep-3"})
    r.all_ready(during, timeout=30)
    for device in mine:
        left = {s for s in r.managed(device)["subinterfaces"] if any(s[2].endswith(f"/{n}") for n in before)}
        assert not left, f"{device}: deleted services came back: {left}"
    assert_one_writer_at_a_time(r)


@pytest.mark.full
def test_scaling_up_and_down_hands_devices_over_without_overlap(  # type: ignore[no-untyped-def]
    r: Rig, replicas: Replicas, measure
) -> None:
    replicas.start("rep-1")
    driven_by(r, {"rep-1"})
    r.wait_devices_ready()
    services = {unique(f"s-{i}"): [ports_for(d, i)] for i, d in enumerate(DEVICES)}
    for name, eps in services.items():
        r.apply(r.service(name, eps))
    r.all_ready(services)
    for name in ("rep-2", "rep-3"):
        replicas.start(name)
    started = time.monotonic()
    owners = driven_by(r, {"rep-1", "rep-2", "rep-3"})  # each device with its rendezvous owner
    measure("sharding: scale 1 -> 3, devices handed over", time.monotonic() - started,
            f"{sum(o != 'rep-1' for o in owners.values())} of {len(DEVICES)} devices moved")
    more = {unique(f"m-{i}"): [ports_for(d, 20 + i)] for i, d in enumerate(DEVICES)}
    for name, eps in more.items():
        r.apply(r.service(name, eps))
    r.all_ready([*services, *more])
    stopped = time.monotonic()
    replicas.procs["rep-1"].stop()  # graceful: it releases at once, nobody waits for an expiry
    owners = driven_by(r, {"rep-2", "rep-3"})
    measure("sharding: scale 3 -> 2 (SIGTERM), its devices held again", time.monotonic() - stopped, "")
    r.controller = replicas.procs["rep-2"]
    assert set(owners.values()) <= {"rep-2", "rep-3"}
    last = {unique(f"l-{i}"): [ports_for(d, 30 + i)] for i, d in enumerate(DEVICES)}
    for name, eps in last.items():
        r.apply(r.service(name, eps))
    r.all_ready([*services, *more, *last])
    assert_one_writer_at_a_time(r)


class Proxy:
    """A TCP proxy in front of the API server that the test can cut (existing connections closed,
    new ones refused) and restore: a partition between one replica and the API server."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.cut = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.cut.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            self.conns += [client, upstream]
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        try:
            while not self.cut.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for s in ready:
                    data = s.recv(65536)
                    if not data:
                        return
                    (b if s is a else a).sendall(data)
        except OSError:
            pass
        finally:
            a.close()
            b.close()

    def partition(self) -> None:
        self.cut.set()
        for s in self.conns:
            with contextlib.suppress(OSError):
                s.close()
        self.conns.clear()

    def heal(self) -> None:
        self.cut.clear()

    def close(self) -> None:
        self.partition()
        self.listener.close()


def proxied_kubeconfig(kubeconfig: Path, port: int, path: Path) -> Path:
    config = yaml.safe_load(kubeconfig.read_text())
    for cluster in config["clusters"]:
        server = cluster["cluster"]["server"]
        cluster["cluster"]["server"] = server.rsplit(":", 1)[0] + f":{port}"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.full
def test_a_replica_cut_off_from_the_api_server_stops_before_its_devices_move(  # type: ignore[no-untyped-def]
    r: Rig, replicas: Replicas, measure
) -> None:
    server = yaml.safe_load(r.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    host, port = server.split("//", 1)[1].rsplit(":", 1)
    proxy = Proxy((host, int(port)))
    try:
        replicas.start("rep-1", proxied_kubeconfig(r.kubeconfig, proxy.port, r.workdir / "proxied.kubeconfig"))
        replicas.start("rep-2")
        owners = driven_by(r, {"rep-1", "rep-2"})
        r.wait_devices_ready()
        cut_off = sorted(d for d, o in owners.items() if o == "rep-1")
        assert cut_off, owners
        proxy.partition()
        parted = time.monotonic()
        r.controller = replicas.procs["rep-2"]
        during = {unique(f"p-{i}"): [ports_for(d, 40 + i)] for i, d in enumerate(cut_off)}
        for name, eps in during.items():
            r.apply(r.service(name, eps))
        r.all_ready(during, timeout=4 * LEASE + 30)
        measure("sharding: one of 2 replicas partitioned from the API server, its devices driven again",
                time.monotonic() - parted, "")
        assert "past the renew deadline" in replicas.procs["rep-1"].logs() or "stopping all" in (
            replicas.procs["rep-1"].logs()
        )
        proxy.heal()
        time.sleep(LEASE + 3 * RENEW)
        driven_by(r, {"rep-1", "rep-2"})
        r.all_ready(during, timeout=30)
        assert_one_writer_at_a_time(r)
    finally:
        proxy.close()


def test_a_lone_replica_that_is_not_sharded_sends_no_identity(r: Rig) -> None:
    """Unsharded (no --shard-group) nothing changes: no Leases, Sets without the shard metadata."""
    proc = r.start_controller(log_name="unsharded.log", wait=True)
    try:
        name = unique("plain")
        r.apply(r.service(name, [ep(DEVICES[0], "Ethernet2", 799)]))
        r.ready(name)
        assert [s["replica"] for s in r.admin.sets(DEVICES[0])][-1:] == [""]
        assert not holders(r)
        r.delete(name)
        r.gone(name, 30)
    finally:
        proc.stop()
        r.controller = None
        r.admin.reset(DEVICES[0])
    assert is_ready(r.api.get("networkdevices", DEVICES[0]))
