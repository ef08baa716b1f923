"""Sharded replicas (docs/sharding.md): the same services converged by 1, 2 and 4 replicas of one shard
group, and a SIGKILL of one of 3 replicas during a rollout.

Per run: time to all Ready (a watch from outside), peak RSS and CPU seconds of each replica and CPU seconds
of the API server, etcd and devicesim, Sets per device (devicesim), API writes per NetworkService
(resourceVersions seen on the watch), the API server's request counts (its /metrics: Lease requests per
replica per minute, during the rollout and in an idle window after it), and the load average through the
run. Failover: one of 3 replicas is SIGKILLed once a third of the services are Ready; the last third of the
creates waits for the kill, so every device of the killed replica has work for its new owner. Measured per
device of the killed replica: when its unit Lease was taken and when it received its first Set from the new
owner (devicesim's Set log). Checked: every service Ready, each device holding exactly its services'
subinterfaces (nothing lost, nothing twice), no two writers overlapping on any device.

    PATH=$PWD/bin:$PATH .venv/bin/python bench/replicas_bench.py                      # the full scenario
    PATH=$PWD/bin:$PATH .venv/bin/python bench/replicas_bench.py --services 2000 --devices 20

Logs and the JSON (written after each run, so an interrupted run keeps what it measured) go to
bench/results/replicas-<timestamp>/. On a 2-core machine the replicas share the CPU: read the per-replica
work and memory, not the wall time, for what a cluster with one core per replica would do.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as B
import kubernetes
from prometheus_client.parser import text_string_to_metric_families

from devicesim.device import writer_overlaps

GROUP = "bench"
NS = "bench-replicas"
TIMING = ["--shard-lease-seconds", "15", "--shard-renew-deadline-seconds", "10", "--shard-renew-seconds", "2"]
LOG_LEVEL = ["--log-level", "warning"]  # --log-level: info logs each failover take's start and first Set


def replica(plane: B.ControlPlane, workdir: Path, name: str) -> B.BenchController:
    workdir.mkdir(parents=True, exist_ok=True)
    ctl = B.BenchController(
        plane.kubeconfig,
        workdir / f"{name}.log",
        extra=["--shard-group", GROUP, "--shard-namespace", "default", *TIMING, *LOG_LEVEL],
    )
    ctl.env["POD_ID"] = name
    return ctl.start()


def short(holder: str) -> str:
    """r2-1a2b3c -> r2 (the replica's name without the random part of its identity)."""
    return holder.rsplit("-", 1)[0]


def unit_leases(api: Any) -> dict[str, Any]:
    leases = kubernetes.client.CoordinationV1Api(api.client)
    found = {}
    for lease in leases.list_namespaced_lease("default", label_selector="telco.intent.dev/shard-role=unit").items:
        unit = ((lease.metadata and lease.metadata.annotations) or {}).get("telco.intent.dev/shard-unit")
        if unit:
            found[unit] = lease
    return found


def holders(api: Any) -> dict[str, str]:
    return {u: lease.spec.holder_identity or "" for u, lease in unit_leases(api).items()}


def overlaps(fleet: Any, names: list[str]) -> dict[str, list[str]]:
    """Devices whose Set log shows two writers overlapping (split brain), with what is wrong."""
    found = {d: writer_overlaps(fleet.admin.sets(d)) for d in names}
    return {d: p for d, p in found.items() if p}


class LoadSampler:
    """The 1-minute load average every `interval` seconds (the machine is shared: say how loaded it was)."""

    def __init__(self, interval: float = 5.0) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="loadavg")

    def start(self) -> LoadSampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(os.getloadavg()[0])
            self._stop.wait(self.interval)

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join(2)
        data = self.samples or [os.getloadavg()[0]]
        return {"min": round(min(data), 2), "mean": round(sum(data) / len(data), 2), "max": round(max(data), 2)}


def api_requests(plane: B.ControlPlane) -> Counter[tuple[str, str]]:
    """The API server's request counts so far (apiserver_request_total), by (resource, verb)."""
    client = plane.api.client
    resp = client.call_api("GET", client.configuration.host + "/metrics", _request_timeout=30)
    text = resp.read().decode()
    out: Counter[tuple[str, str]] = Counter()
    for family in text_string_to_metric_families(text):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if sample.name == "apiserver_request_total":
                labels = sample.labels
                out[(labels.get("resource", ""), labels.get("verb", ""))] += int(sample.value)
    return out


def requests_per_replica_minute(
    after: Counter[tuple[str, str]], before: Counter[tuple[str, str]], replicas: int, seconds: float
) -> dict[str, Any]:
    """Lease requests by verb, and all requests, per replica per minute between two scrapes."""
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}
    per = 60.0 / seconds / replicas
    leases = {verb: round(n * per, 1) for (res, verb), n in sorted(delta.items()) if res == "leases"}
    return {
        "seconds": round(seconds, 1),
        "lease_requests_per_replica_minute": leases,
        "lease_total_per_replica_minute": round(sum(leases.values()), 1),
        "all_requests_per_replica_minute": round(sum(delta.values()) * per, 1),
        "by_resource": {f"{res or '-'} {verb}": n for (res, verb), n in sorted(delta.items())},
    }


def start_group(
    workdir: Path, key: str, replicas: int, names: list[str]
) -> tuple[B.ControlPlane, Any, dict[str, B.BenchController]]:
    """A fresh control plane and fleet, and `replicas` replicas of one shard group driving every device."""
    plane = B.ControlPlane(workdir / f"cluster-{key}").start()
    fleet = B.start_fleet(names, workdir / f"fleet-{key}")
    ctls: dict[str, B.BenchController] = {}
    try:
        plane.api.ensure_namespace(NS)
        B.register_devices(plane.api, fleet, names)
        for i in range(replicas):
            ctls[f"r{i + 1}"] = replica(plane, workdir / f"run-{key}", f"r{i + 1}")
        t0 = time.monotonic()
        B.wait_devices_ready(plane.api, names, timeout=600)
        B.log(f"  {len(names)} devices Ready after {time.monotonic() - t0:.0f}s")
    except BaseException:
        stop_group(plane, fleet, ctls)
        raise
    time.sleep(2)  # hand-overs between replicas that started a moment apart
    return plane, fleet, ctls


def stop_group(plane: B.ControlPlane, fleet: Any, ctls: dict[str, B.BenchController]) -> None:
    for c in ctls.values():
        c.stop()
    fleet.stop()
    plane.stop()


def not_ready(plane: B.ControlPlane, watch: B.WatchAudit, keys: list[str], owner: dict[str, str]) -> dict[str, Any]:
    """What the services that never became Ready say (a sample), and on whose devices they sit."""
    missing = [k for k in keys if (o := watch.objects.get(k)) is None or o.ready_at is None]
    sample: list[dict[str, Any]] = []
    by_replica: Counter[str] = Counter()
    for key in missing:
        ns, name = key.split("/")
        obj = plane.api.get("networkservices", name, ns) or {}
        device = ((obj.get("spec") or {}).get("endpoints") or [{}])[0].get("device", "")
        by_replica[owner.get(device, "?")] += 1
        if len(sample) < 5:
            conditions = [
                {k: c.get(k) for k in ("type", "status", "reason", "message")}
                for c in (obj.get("status") or {}).get("conditions") or []
            ]
            sample.append(
                {
                    "name": key,
                    "device": device,
                    "finalizers": obj.get("metadata", {}).get("finalizers"),
                    "conditions": conditions,
                }
            )
    return {"count": len(missing), "by_replica_of_first_device": dict(by_replica), "sample": sample}


def converge(workdir: Path, replicas: int, services: int, devices: int, timeout: float, idle: float) -> dict[str, Any]:
    names = B.device_names(devices)
    load = LoadSampler().start()
    plane, fleet, ctls = start_group(workdir, str(replicas), replicas, names)
    try:
        api = plane.api
        owner = {u: short(h) for u, h in holders(api).items() if u in names}
        share = Counter(owner.values())
        svcs = B.layout(NS, B.spread(services, names))
        watch = B.WatchAudit(plane.new_client(), "networkservices", NS).start()
        rss = {n: B.RssSampler(c.ps, 1.0).start() for n, c in ctls.items()}
        fleet_pid = fleet.proc.pid if fleet.proc is not None else None
        pids = {
            **plane.pids(),
            **({"devicesim": fleet_pid} if fleet_pid else {}),
            **{n: c.ps.pid for n, c in ctls.items()},
        }
        cpu = B.CpuMeter(pids)
        before = B.fleet_stats(fleet, names)
        requests_before = api_requests(plane)
        rollout_load = LoadSampler().start()
        t0 = time.monotonic()
        B.create_all(api, svcs, workers=4)
        created = time.monotonic() - t0
        B.log(f"  created {services} services in {created:.0f}s (load {os.getloadavg()[0]:.1f})")
        keys = [f"{NS}/{s.name}" for s in svcs]
        ok = watch.wait_ready(keys, timeout, progress=30)
        wall = time.monotonic() - t0
        used = cpu.read()
        requests_after = api_requests(plane)
        rollout = rollout_load.stop()
        peak = {n: round(s.stop(), 1) for n, s in rss.items()}
        delta = B.stats_delta(B.fleet_stats(fleet, names), before)
        sets = [d["set_rpcs"] for d in delta.values()]
        sets_by_replica: dict[str, list[int]] = defaultdict(list)
        for device, d in delta.items():
            sets_by_replica[owner.get(device, "?")].append(d["set_rpcs"])
        versions = watch.versions(keys)
        kube_writes: dict[str, int | None] = {}
        for n, c in ctls.items():
            try:
                kube_writes[n] = int(B.metric_sum(c.metrics(), "telco_kube_writes_total"))
            except OSError:
                kube_writes[n] = None
        result: dict[str, Any] = {
            "replicas": replicas,
            "services": services,
            "devices": devices,
            "all_ready": ok,
            "ready": watch.ready_count(keys),
            "converge_s": round(wall, 1),
            "create_s": round(created, 1),
            "load_average_during_rollout": rollout,
            "devices_per_replica": dict(sorted(share.items())),
            "rss_peak_mb": peak,
            "cpu_s": {n: used[n] for n in ctls},
            "cpu_s_per_device": {n: round(used[n] / max(1, share.get(n, 0)), 2) for n in ctls},
            "apiserver_cpu_s": used.get("kube-apiserver"),
            "etcd_cpu_s": used.get("etcd"),
            "devicesim_cpu_s": used.get("devicesim"),
            "sets_per_device": {"mean": round(sum(sets) / len(sets), 1), "max": max(sets), "min": min(sets)},
            "sets_per_device_by_replica": {n: round(sum(v) / len(v), 1) for n, v in sorted(sets_by_replica.items())},
            "writes_per_service": round(sum(versions) / len(versions) - 1, 2) if versions else None,
            "controller_kube_writes": kube_writes,
            "api_requests_rollout": requests_per_replica_minute(requests_after, requests_before, replicas, wall),
            "overlapping_devices": overlaps(fleet, names),
        }
        watch.stop()
        if idle > 0:
            B.log(f"  idle {idle:.0f}s: API requests per replica")
            idle_load = LoadSampler().start()
            t1 = time.monotonic()
            time.sleep(idle)
            result["api_requests_idle"] = requests_per_replica_minute(
                api_requests(plane), requests_after, replicas, time.monotonic() - t1
            )
            result["load_average_idle"] = idle_load.stop()
        if not ok:  # after the idle window: its GETs are not the replicas' requests
            result["not_ready"] = not_ready(plane, watch, keys, owner)
        result["load_average_whole_run"] = load.stop()
        return result
    finally:
        load.stop()
        stop_group(plane, fleet, ctls)


def subinterfaces(config: dict[str, Any]) -> list[tuple[str, int]]:
    """The controller's subinterfaces on a device (their description starts with "telco-intent ")."""
    return [
        (i["name"], int(sub["index"]))
        for i in config.get("interfaces", {}).get("interface", [])
        for sub in i.get("subinterfaces", {}).get("subinterface", [])
        if str(sub.get("config", {}).get("description", "")).startswith("telco-intent ")
    ]


def failover(workdir: Path, services: int, devices: int, timeout: float) -> dict[str, Any]:
    names = B.device_names(devices)
    load = LoadSampler().start()
    plane, fleet, ctls = start_group(workdir, "failover", 3, names)
    try:
        api = plane.api
        owners = {u: h for u, h in holders(api).items() if u in names}
        victim = max(("r1", "r2", "r3"), key=lambda n: sum(short(h) == n for h in owners.values()))
        lost = sorted(d for d, h in owners.items() if short(h) == victim)
        svcs = B.layout(NS, B.spread(services, names))
        watch = B.WatchAudit(plane.new_client(), "networkservices", NS).start()
        killed: dict[str, float] = {}
        done = threading.Event()

        def kill_after_a_third() -> None:
            while watch.ready_count() < services // 3:
                time.sleep(0.05)
            killed["at"] = time.monotonic()
            killed["wall"] = time.time_ns()
            ctls[victim].kill_group()
            killed["load"] = os.getloadavg()[0]
            done.set()

        threading.Thread(target=kill_after_a_third, daemon=True).start()
        rollout_load = LoadSampler().start()
        t0 = time.monotonic()
        # The last third (interleaved: some on every device) waits for the kill, so each of the victim's
        # devices has something its new owner must send.
        first = services - services // 3
        B.create_all(api, svcs[:first], workers=4)
        if not done.wait(timeout):
            raise RuntimeError(f"a third of the services were not Ready within {timeout:.0f}s: no kill")
        B.create_all(api, svcs[first:], workers=4)
        keys = [f"{NS}/{s.name}" for s in svcs]
        ok = watch.wait_ready(keys, timeout, progress=30)
        wall = time.monotonic() - t0
        rollout = rollout_load.stop()
        watch.stop()
        survivors = {u: lease for u, lease in unit_leases(api).items() if u in lost}
        first_set: list[float] = []
        taken: list[float] = []
        new_owner: Counter[str] = Counter()
        for device in lost:  # the first Set of another replica after the kill
            after = [
                s["received"]
                for s in fleet.admin.sets(device)
                if s["received"] > killed["wall"] and not s["replica"].startswith(victim + "-")
            ]
            if after:
                first_set.append((min(after) - killed["wall"]) / 1e9)
            lease = survivors.get(device)
            if lease is not None and lease.spec.acquire_time is not None:
                taken.append(lease.spec.acquire_time.timestamp() - killed["wall"] / 1e9)
                new_owner[short(lease.spec.holder_identity or "")] += 1
        expected: dict[str, set[tuple[str, int]]] = defaultdict(set)
        for s in svcs:
            expected[s.device].add((s.port, s.vlan))
        missing = doubled = extra = 0
        wrong = []
        for device in names:
            held = subinterfaces(fleet.admin.dump(device)["config"])
            counts = Counter(held)
            missing += len(expected[device] - set(held))
            extra += len(set(held) - expected[device])
            doubled += sum(n - 1 for n in counts.values() if n > 1)
            if set(held) != expected[device] or len(held) != len(set(held)):
                wrong.append(device)
        result: dict[str, Any] = {
            "services": services,
            "devices": devices,
            "killed": victim,
            "its_devices": len(lost),
            "taken_over_by": dict(sorted(new_owner.items())),
            "all_ready": ok,
            "ready": watch.ready_count(keys),
            "converge_s": round(wall, 1),
            "killed_after_s": round(killed.get("at", t0) - t0, 1),
            "killed_at_utc": time.strftime("%H:%M:%S", time.gmtime(killed.get("wall", 0) / 1e9))
            + f".{int(killed.get('wall', 0) // 1_000_000 % 1000):03d}",
            "load_average_at_kill": round(killed.get("load", 0.0), 2),
            "load_average_during_rollout": rollout,
            "lease_taken_s": summary_s(taken, len(lost)),
            "first_set_from_new_owner_s": summary_s(first_set, len(lost)),
            "subinterfaces_missing": missing,
            "subinterfaces_doubled": doubled,
            "subinterfaces_not_ours": extra,
            "devices_not_exactly_their_services": wrong,
            "overlapping_devices": overlaps(fleet, names),
        }
        result["takeover"] = takeover_breakdown(
            [c.log_path for n, c in ctls.items() if n != victim], lost, result["killed_at_utc"]
        )
        if not ok:
            result["not_ready"] = not_ready(plane, watch, keys, {d: short(h) for d, h in owners.items()})
        result["load_average_whole_run"] = load.stop()
        return result
    finally:
        load.stop()
        stop_group(plane, fleet, ctls)


_STARTED = re.compile(r"shard: started (\S+) in ([\d.]+)s, ([\d.]+)s after its take")
_SECRETS = re.compile(r"device (\S+): Secrets read and session started in ([\d.]+)s")
_FIRST_PASS = re.compile(
    r"device (\S+): first pass over a synced session since it was taken, ([\d.]+)s after, (\d+) services"
)
_FIRST_SET = re.compile(r"device (\S+): first Set since it was taken, ([\d.]+)s after")
_LISTED = re.compile(r"listed (\d+) NetworkServices in ([\d.]+)s; (\d+) taken up in ([\d.]+)s")


def takeover_breakdown(logs: list[Path], lost: list[str], killed_at: str) -> dict[str, Any]:
    """Where each lost device's time went between its take and its first Set, from the survivors' info
    logs (their own durations, so no clocks to align): waiting for a start slot, the start (Secrets read,
    session started), the first pass over a synced session, the first Set; and the lists of every
    NetworkService the survivors made. Empty at a log level above info."""
    per: dict[str, dict[str, float]] = defaultdict(dict)
    lists: list[dict[str, float]] = []
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            if line[11:23] < killed_at:  # "2026-12-04 01:19:04,479 ..." against "01:18:47.332"
                continue
            # The first of each after the kill: a later one is another hand-over (the stop at the end).
            if m := _STARTED.search(line):
                step = {"slot_wait": float(m[3]), "start": float(m[2])}
            elif m := _SECRETS.search(line):
                step = {"secrets_and_session": float(m[2])}
            elif m := _FIRST_PASS.search(line):
                step = {"first_synced_pass": float(m[2]), "services_at_first_pass": float(m[3])}
            elif m := _FIRST_SET.search(line):
                step = {"first_set": float(m[2])}
            elif m := _LISTED.search(line):
                lists.append(
                    {"listed": float(m[1]), "list_s": float(m[2]), "taken_up": float(m[3]), "take_up_s": float(m[4])}
                )
                continue
            else:
                continue
            for key, value in step.items():
                per[m[1]].setdefault(key, value)
    found = {d: per[d] for d in lost if d in per}
    for d in found.values():  # from the take: the slot wait, then the start's own clock
        if "slot_wait" in d and "first_set" in d:
            d["take_to_first_set"] = round(d["slot_wait"] + d["first_set"], 2)

    def spread(key: str) -> dict[str, Any]:
        return summary_s([d[key] for d in found.values() if key in d], len(lost))

    keys = ["slot_wait", "start", "secrets_and_session", "first_synced_pass", "first_set", "take_to_first_set"]
    return {
        "per_step_s": {k: spread(k) for k in keys},
        "services_lists": lists,
        "devices": {d: found[d] for d in sorted(found)},
    }


def summary_s(values: list[float], expected: int) -> dict[str, Any]:
    """First, median and last of per-device delays (seconds), and how many devices had one."""
    if not values:
        return {"devices": 0, "of": expected}
    data = sorted(values)
    return {
        "devices": len(data),
        "of": expected,
        "first": round(data[0], 1),
        "median": round(data[len(data) // 2], 1),
        "last": round(data[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--replicas", type=int, nargs="*", default=[1, 2, 4], help="none: only the failover")
    parser.add_argument("--failover-services", type=int, default=2_000, help="0: no failover run")
    parser.add_argument("--failover-devices", type=int, default=None, help="default: --devices")
    parser.add_argument("--timeout", type=float, default=900, help="per run, from the first create to all Ready")
    parser.add_argument("--idle-seconds", type=float, default=60, help="after each convergence: API requests idle")
    parser.add_argument(
        "--log-level", default="warning", help="the replicas' (info: the failover's per-device start and first Set)"
    )
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/replicas-<time>/results.json")
    args = parser.parse_args()
    LOG_LEVEL[1] = args.log_level
    B.kill_leftovers()
    workdir = B.ROOT / "bench" / "results" / f"replicas-{time.strftime('%Y%m%d-%H%M%S')}"
    workdir.mkdir(parents=True, exist_ok=True)
    out = args.out or workdir / "results.json"
    commit = os.popen(f"git -C {B.ROOT} rev-parse --short HEAD").read().strip()
    results: dict[str, Any] = {
        "commit": commit,
        "cpus": os.cpu_count(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "convergence": [],
    }
    started = time.monotonic()

    def save() -> None:
        results["load_average_now"] = [round(x, 2) for x in os.getloadavg()]
        results["elapsed_s"] = round(time.monotonic() - started, 1)
        out.write_text(json.dumps(results, indent=2) + "\n")

    B.log(f"replicas bench at {commit}: logs and results in {workdir}; load average {os.getloadavg()}")
    try:
        for n in args.replicas:
            B.log(f"replicas: {n} replica(s), {args.services} services on {args.devices} devices")
            results["convergence"].append(
                converge(workdir, n, args.services, args.devices, args.timeout, args.idle_seconds)
            )
            B.log(json.dumps(results["convergence"][-1]))
            save()
        if args.failover_services:
            devices = args.failover_devices or args.devices
            B.log(f"replicas: SIGKILL 1 of 3 during a {args.failover_services}-service rollout on {devices} devices")
            results["failover"] = failover(workdir, args.failover_services, devices, args.timeout)
            B.log(json.dumps(results["failover"]))
            save()
    finally:
        save()
        B.kill_leftovers()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
