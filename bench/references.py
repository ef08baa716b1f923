"""Scenario `references`: the controller's convergence next to what a reader needs to judge it.

For each size N in ref_sizes, on one fresh control plane and devicesim fleet of ref_devices strict
devices (the services spread evenly, one endpoint each), in this order:

floor, API part   the API server alone doing the same N creates (same client, 4 threads) plus the
                  writes per object the controller needs (its finalizer and one status write: 2
                  after the create, measured in scenario 1), each object's as soon as its create
                  returns, from 8 threads (the controller's own API client pool); no controller.
floor, device     the batched device ceiling: every service's entries as one Set per device, all
                  devices at once (baselines.batched_per_device).
                  floor = API part + device part: what any controller that keeps Kubernetes status
                  must pay on this machine, with nothing of its own.
operator          a plain Kopf operator (bench/kopf_operator.py): one handler per NetworkService,
                  one pygnmi Set per event, status through Kopf's patch.
controller        the controller, as in scenarios 1 and 5.

Between runs the services are deleted (finalizers stripped) and the devices reset, so each run
starts from the same empty devices. Each run's wall time runs from the first create to the last
service seen Ready on the benchmark's watch (the floor's from the first create to the last write).
The goal: the controller within 1.5x of the floor. The replica-count runs of issue 16 (1, 2 and 4
replicas) belong here too, as more `controller` rows once sharding is merged (see `controller_runs`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import benchlib as B
from baselines import batched_per_device
from kubernetes.client import ApiException

from controller.kube import FINALIZER

WORKERS = 4  # the same client concurrency as every other scenario
WRITERS = 8  # the controller's API client pool (controller.kube.Kube's workers)
HERE = Path(__file__).resolve().parent


ATTEMPTS = 5  # per API call of the floor, on a 5xx or 429 (the controller's client retries those too)


def api_floor(api: Any, services: list[B.Svc], workers: int = WORKERS, writers: int = WRITERS) -> dict[str, Any]:
    """The creates from `workers` threads, as in every run; each object's finalizer and status write
    as soon as its create returns, from `writers` threads (the controller's own API client pool).
    A call answered 5xx or 429 (an API server short of CPU) is retried, and the retries counted: one
    such answer failed a whole 10,000-service run on 2026-12-04."""
    retries: list[str] = []  # list.append is atomic: the threads share it without a lock

    def call(what: str, fn: Any, *args: Any) -> Any:
        """fn(*args), retried on 5xx/429. A 409 on a retry means the failed attempt had landed (a
        timeout after the write): None is returned then."""
        for attempt in range(ATTEMPTS):
            try:
                return fn(*args)
            except ApiException as exc:
                if exc.status == 409 and attempt > 0:
                    retries.append(f"{what} 409 after a retry")
                    return None
                transient = exc.status is not None and (exc.status >= 500 or exc.status == 429)
                if not transient or attempt == ATTEMPTS - 1:
                    raise
                retries.append(f"{what} {exc.status}")
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def follow(svc: B.Svc, made: dict[str, Any]) -> None:
        custom, meta = api.custom, made["metadata"]
        call(
            "finalizer",
            custom.patch_namespaced_custom_object,
            B.GROUP,
            B.VERSION,
            svc.namespace,
            "networkservices",
            svc.name,
            {"metadata": {"finalizers": [FINALIZER], "resourceVersion": meta["resourceVersion"]}},
        )
        generation = meta.get("generation", 1)
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "Applied",
            "message": "floor",
            "lastTransitionTime": "2026-01-01T00:00:00Z",
            "observedGeneration": generation,
        }
        call(
            "status",
            custom.patch_namespaced_custom_object_status,
            B.GROUP,
            B.VERSION,
            svc.namespace,
            "networkservices",
            svc.name,
            {"status": {"observedGeneration": generation, "conditions": [ready]}},
        )

    t0 = time.monotonic()
    with ThreadPoolExecutor(writers, thread_name_prefix="floor-write") as pool:
        followed: list[Future[None]] = []

        def create(svc: B.Svc) -> None:
            made = call(
                "create",
                api.custom.create_namespaced_custom_object,
                B.GROUP,
                B.VERSION,
                svc.namespace,
                "networkservices",
                svc.body(),
            )
            if made is None:  # created by an attempt that timed out: read it back for its resourceVersion
                made = api.custom.get_namespaced_custom_object(
                    B.GROUP, B.VERSION, svc.namespace, "networkservices", svc.name
                )
            followed.append(pool.submit(follow, svc, made))

        with ThreadPoolExecutor(workers, thread_name_prefix="floor-create") as creators:
            list(creators.map(create, services))
        for f in followed:
            f.result()
    wall = time.monotonic() - t0
    return {
        "wall_s": round(wall, 2),
        "writes_per_object": 3,
        "create_threads": workers,
        "write_threads": writers,
        "objects_per_s": round(len(services) / wall, 1),
        "retries": len(retries),
        "retried": sorted(set(retries)),
    }


class KopfOperator:
    """bench/kopf_operator.py under `kopf run --standalone`, watching one namespace."""

    def __init__(self, kubeconfig: Path, fleet: Any, names: list[str], namespace: str, workdir: Path) -> None:
        devices = {
            n: {
                "target": list(fleet.devices[n].target),
                "username": fleet.devices[n].username,
                "password": fleet.devices[n].password,
                "ca": fleet.ca_path,
            }
            for n in names
        }
        self.devices_file = workdir / "kopf-operator-devices.json"
        self.devices_file.write_text(json.dumps(devices))
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.log_path = workdir / "kopf-operator.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> KopfOperator:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "BENCH_DEVICES_FILE": str(self.devices_file),
            "PYTHONUNBUFFERED": "1",
        }
        cmd = [sys.executable, "-m", "kopf", "run", "--standalone", "--quiet", "-n", self.namespace]
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                [*cmd, str(HERE / "kopf_operator.py")],
                cwd=B.ROOT,
                env=env,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def _watched_run(
    api: Any, plane: B.ControlPlane, ns: str, services: list[B.Svc], timeout: float, cpu_pid: int
) -> dict[str, Any]:
    """Create the services, wait until all are Ready on a watch: wall time, writes per object, CPU."""
    watch = B.WatchAudit(plane.new_client(), "networkservices", ns).start()
    cpu = B.CpuMeter({**plane.pids(), "process": cpu_pid})
    t0 = time.monotonic()
    B.create_all(api, services, workers=WORKERS)
    keys = [f"{ns}/{s.name}" for s in services]
    ok = watch.wait_ready(keys, timeout, progress=30)
    ready = sorted(t - t0 for k in keys if (t := watch.objects[k].ready_at) is not None)
    wall = ready[-1] if ok else time.monotonic() - t0
    versions = watch.versions(keys)
    watch.stop()
    return {
        "all_ready": ok,
        "ready": len(ready),
        "wall_s": round(wall, 2),
        "writes_per_object": round(sum(versions) / len(versions) - 1, 2) if versions else None,
        "cpu_s": cpu.read(),
    }


def controller_runs(ctx: Any, plane: B.ControlPlane, names: list[str], ns: str, services: list[B.Svc]) -> dict:
    """The controller's rows: one replica today. The replica-count runs (1, 2 and 4 replicas of one
    release, issue 16 part 6) go here once sharding is merged, one entry per replica count."""
    api = plane.api
    with B.BenchController(plane.kubeconfig, ctx.workdir / f"controller-ref-{len(services)}.log") as ctl:
        ctl.start()
        B.wait_devices_ready(api, names, timeout=300)
        ctl.wait_up(len(names), timeout=300)
        ctl.wait_idle(timeout=60)
        rss0 = ctl.rss_mb()
        run = _watched_run(api, plane, ns, services, ctx.p["ref_timeout"], ctl.ps.pid)
        run["rss_mb"] = round(ctl.rss_mb(), 1)
        run["rss_kb_per_service"] = round((run["rss_mb"] - rss0) * 1024 / len(services), 1)
    return {"1": run}


def one_size(ctx: Any, n: int) -> dict[str, Any]:
    p = ctx.p
    names = B.device_names(p["ref_devices"])
    plane = B.ControlPlane(ctx.workdir / f"cluster-ref-{n}").start()
    fleet = B.start_fleet(names, ctx.workdir / f"fleet-ref-{n}", "strict")
    out: dict[str, Any] = {"services": n, "devices": len(names)}
    try:
        api = plane.api
        B.register_devices(api, fleet, names)
        ns = "bench-ref"
        api.ensure_namespace(ns)
        per_device = B.spread(n, names)

        B.log(f"references, {n} services on {len(names)} devices: the floor (API part, then device part)")
        out["floor_api"] = api_floor(api, B.layout(ns, per_device, prefix="f"))
        B.clear_services(api, fleet, names, ns)
        device = batched_per_device(fleet, B.layout(ns, per_device, prefix="b"))
        device.pop("ready_times", None)
        out["floor_device"] = device
        B.reset_devices(fleet, names)
        out["floor_s"] = round(out["floor_api"]["wall_s"] + device["wall_s"], 2)

        B.log("references: the plain Kopf operator")
        operator = KopfOperator(plane.kubeconfig, fleet, names, ns, ctx.workdir).start()
        try:
            time.sleep(3.0)  # its watch is up (it lists, then watches; a create before that is listed)
            assert operator.proc is not None
            out["kopf_operator"] = _watched_run(
                api, plane, ns, B.layout(ns, per_device, prefix="k"), p["ref_timeout"], operator.proc.pid
            )
        finally:
            operator.stop()
        B.clear_services(api, fleet, names, ns)

        B.log("references: the controller")
        out["controller"] = controller_runs(ctx, plane, names, ns, B.layout(ns, per_device, prefix="c"))
        floor = out["floor_s"]
        ctl = out["controller"]["1"]
        out["ratios"] = {
            "controller_vs_floor": round(ctl["wall_s"] / floor, 2) if floor else None,
            "kopf_operator_vs_floor": round(out["kopf_operator"]["wall_s"] / floor, 2) if floor else None,
            "controller_vs_kopf_operator": round(ctl["wall_s"] / out["kopf_operator"]["wall_s"], 2),
        }
        out["goals"] = {"controller_within_1_5x_floor": bool(ctl["all_ready"] and ctl["wall_s"] <= 1.5 * floor)}
        B.log(
            f"  references {n}: floor {floor}s ({out['floor_api']['retries']} API retries), "
            f"operator {out['kopf_operator']['wall_s']}s, controller {ctl['wall_s']}s"
        )
    except Exception as exc:  # what this size measured before it failed is kept, with where it failed
        out["error"] = repr(exc)
        out["traceback"] = traceback.format_exc(limit=-4)
        B.log(f"references {n} failed: {exc!r}\n{out['traceback']}")
    finally:
        fleet.stop()
        plane.stop()
    return out


def references(ctx: Any) -> dict[str, Any]:
    sizes = [int(s) for s in str(ctx.p["ref_sizes"]).split(",") if s]
    out: dict[str, Any] = {}
    for n in sizes:  # a failed size is reported in its place; the sizes measured before it are kept
        try:
            out[f"n{n}"] = one_size(ctx, n)
        except Exception as exc:
            B.log(f"references {n} failed: {exc!r}")
            out[f"n{n}"] = {"services": n, "error": repr(exc)}
    return out
