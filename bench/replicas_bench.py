"""Sharded replicas (docs/sharding.md): the same services converged by 1, 2 and 4 replicas of one shard
group, and a SIGKILL of one of 3 replicas during a rollout.

Per run: time to all Ready (a watch from outside), peak RSS and CPU seconds of each replica, Sets per
device (devicesim), API writes per NetworkService (resourceVersions seen on the watch). Failover: one
of 3 replicas is SIGKILLed once a third of the services were created; measured until each of its devices
receives a Set from its new owner (devicesim's Set log), and checked: every service Ready, each device
holding exactly its services' subinterfaces (nothing lost, nothing twice), no two tenures overlapping.

    PATH=$PWD/bin:$PATH .venv/bin/python bench/replicas_bench.py --services 2000 --devices 20

On a 2-core machine the replicas share the CPU: read the per-replica work and memory, not the wall time,
for what a cluster with one core per replica would do.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as B
import kubernetes

from devicesim.device import writer_overlaps

GROUP = "bench"
NS = "bench-replicas"
TIMING = ["--shard-lease-seconds", "15", "--shard-renew-deadline-seconds", "10", "--shard-renew-seconds", "2"]


def replica(plane: B.ControlPlane, workdir: Path, name: str) -> B.BenchController:
    workdir.mkdir(parents=True, exist_ok=True)
    ctl = B.BenchController(
        plane.kubeconfig,
        workdir / f"{name}.log",
        extra=["--shard-group", GROUP, "--shard-namespace", "default", *TIMING],
    )
    ctl.env["POD_ID"] = name
    return ctl.start()


def holders(api: Any) -> dict[str, str]:
    leases = kubernetes.client.CoordinationV1Api(api.client)
    found = {}
    for lease in leases.list_namespaced_lease("default", label_selector="telco.intent.dev/shard-role=unit").items:
        unit = (lease.metadata.annotations or {}).get("telco.intent.dev/shard-unit")
        if unit:
            found[unit] = lease.spec.holder_identity or ""
    return found


def overlaps(fleet: Any, names: list[str]) -> dict[str, list[str]]:
    """Devices whose Set log shows two writers overlapping (split brain), with what is wrong."""
    found = {d: writer_overlaps(fleet.admin.sets(d)) for d in names}
    return {d: p for d, p in found.items() if p}


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
        B.wait_devices_ready(plane.api, names, timeout=300)
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


def converge(workdir: Path, replicas: int, services: int, devices: int, timeout: float) -> dict[str, Any]:
    names = B.device_names(devices)
    plane, fleet, ctls = start_group(workdir, str(replicas), replicas, names)
    try:
        api = plane.api
        share = defaultdict(int)
        for unit, holder in holders(api).items():
            if unit in names:
                share[holder.rsplit("-", 1)[0]] += 1
        svcs = B.layout(NS, B.spread(services, names))
        watch = B.WatchAudit(plane.new_client(), "networkservices", NS).start()
        rss = {n: B.RssSampler(c.ps, 1.0).start() for n, c in ctls.items()}
        cpu = B.CpuMeter({**plane.pids(), **{n: c.ps.pid for n, c in ctls.items()}})
        before = B.fleet_stats(fleet, names)
        t0 = time.monotonic()
        B.create_all(api, svcs, workers=4)
        keys = [f"{NS}/{s.name}" for s in svcs]
        ok = watch.wait_ready(keys, timeout, progress=30)
        wall = time.monotonic() - t0
        used = cpu.read()
        sets = [d["set_rpcs"] for d in B.stats_delta(B.fleet_stats(fleet, names), before).values()]
        versions = watch.versions(keys)
        watch.stop()
        return {
            "replicas": replicas,
            "services": services,
            "devices": devices,
            "all_ready": ok,
            "converge_s": round(wall, 1),
            "devices_per_replica": dict(share),
            "rss_peak_mb": {n: round(s.stop(), 1) for n, s in rss.items()},
            "cpu_s": {n: used[n] for n in ctls},
            "apiserver_cpu_s": used.get("kube-apiserver"),
            "sets_per_device": {"mean": round(sum(sets) / len(sets), 1), "max": max(sets)},
            "writes_per_service": round(sum(versions) / len(versions) - 1, 2),
            "overlapping_devices": overlaps(fleet, names),
        }
    finally:
        stop_group(plane, fleet, ctls)


def failover(workdir: Path, services: int, devices: int, timeout: float) -> dict[str, Any]:
    names = B.device_names(devices)
    plane, fleet, ctls = start_group(workdir, "failover", 3, names)
    try:
        api = plane.api
        owners = {u: h for u, h in holders(api).items() if u in names}
        victim = max(("r1", "r2", "r3"), key=lambda n: sum(h.rsplit("-", 1)[0] == n for h in owners.values()))
        lost = sorted(d for d, h in owners.items() if h.rsplit("-", 1)[0] == victim)
        svcs = B.layout(NS, B.spread(services, names))
        watch = B.WatchAudit(plane.new_client(), "networkservices", NS).start()
        killed: dict[str, float] = {}

        def kill_after_a_third() -> None:
            while watch.ready_count() < services // 3:
                time.sleep(0.05)
            killed["at"] = time.monotonic()
            killed["wall"] = time.time_ns()
            ctls[victim].kill_group()

        threading.Thread(target=kill_after_a_third, daemon=True).start()
        t0 = time.monotonic()
        B.create_all(api, svcs, workers=4)
        keys = [f"{NS}/{s.name}" for s in svcs]
        ok = watch.wait_ready(keys, timeout, progress=30)
        wall = time.monotonic() - t0
        watch.stop()
        driven_again = []
        for device in lost:  # the first Set of another replica after the kill
            after = [
                s["received"]
                for s in fleet.admin.sets(device)
                if s["received"] > killed.get("wall", 0) and not s["replica"].startswith(victim + "-")
            ]
            if after:
                driven_again.append((min(after) - killed["wall"]) / 1e9)
        expected = defaultdict(set)
        for s in svcs:
            expected[s.device].add((s.port, s.vlan))
        wrong = []
        for device in names:
            config = fleet.admin.dump(device)["config"]
            held = {
                (i["name"], int(sub["index"]))
                for i in config.get("interfaces", {}).get("interface", [])
                for sub in i.get("subinterfaces", {}).get("subinterface", [])
                if str(sub.get("config", {}).get("description", "")).startswith("telco-intent ")
            }
            if held != expected[device]:
                wrong.append(device)
        return {
            "services": services,
            "devices": devices,
            "killed": victim,
            "its_devices": len(lost),
            "all_ready": ok,
            "converge_s": round(wall, 1),
            "killed_after_s": round(killed.get("at", t0) - t0, 1),
            "driven_again_s": {
                "first": round(min(driven_again), 1) if driven_again else None,
                "last": round(max(driven_again), 1) if driven_again else None,
                "devices": len(driven_again),
            },
            "devices_not_exactly_their_services": wrong,
            "overlapping_devices": overlaps(fleet, names),
        }
    finally:
        stop_group(plane, fleet, ctls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--replicas", type=int, nargs="*", default=[1, 2, 4], help="none: only the failover")
    parser.add_argument("--failover-services", type=int, default=2_000)
    parser.add_argument("--timeout", type=float, default=420)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    B.kill_leftovers()
    with tempfile.TemporaryDirectory(prefix="bench-replicas-") as tmp:
        workdir = Path(tmp)
        results: dict[str, Any] = {"convergence": []}
        for n in args.replicas:
            B.log(f"replicas: {n} replica(s), {args.services} services on {args.devices} devices")
            results["convergence"].append(converge(workdir, n, args.services, args.devices, args.timeout))
            B.log(json.dumps(results["convergence"][-1]))
        if args.failover_services:
            B.log(f"replicas: SIGKILL 1 of 3 during a {args.failover_services}-service rollout")
            results["failover"] = failover(workdir, args.failover_services, args.devices, args.timeout)
            B.log(json.dumps(results["failover"]))
    text = json.dumps(results, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
