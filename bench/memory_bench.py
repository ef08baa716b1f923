"""Scenario `memory`: what the controller holds per Ready NetworkService, from the process itself.

Two runs of the same N services on one fresh control plane and fleet:

1. plain controller (as `scale` runs it): VmRSS and VmHWM (/proc/PID/status) once every device is
   Ready and the controller idle, and again after all N services are Ready and the system is quiet.
   The difference over N is the per-service figure the issue's goal is stated in.
2. the same controller under tracemalloc (bench/traced_controller.py, SIGUSR1 dumps a snapshot), with
   mem_traced_services of the services (tracing slows the controller about tenfold),
   with the services deleted and the devices reset in between: a snapshot before the creates and one
   after all Ready; their difference grouped by the innermost frame in controller/ (the code that
   made what is still held) or, with no controller frame, by package (kopf, the kubernetes client).
   Tracing slows the process and costs memory of its own, so this run gives shares, not the RSS.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Any

import benchlib as B

CONTROLLER_DIR = str(B.ROOT / "controller") + os.sep


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process, in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


class TracedController(B.BenchController):
    """The benchmark's controller, started through bench/traced_controller.py."""

    def __init__(self, kubeconfig: Path, log_path: Path, snapshots: Path) -> None:
        super().__init__(kubeconfig, log_path)
        self.snapshots = snapshots
        snapshots.mkdir(parents=True, exist_ok=True)
        self.env["BENCH_TRACEMALLOC_DIR"] = str(snapshots)
        self._taken = 0

    def start(self) -> TracedController:
        import subprocess

        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1", **self.env}
        script = Path(__file__).resolve().parent / "traced_controller.py"
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                [sys.executable, str(script), "run", "--resync-seconds", "5", *self.args],
                cwd=B.ROOT,
                env=env,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._ps = None
        B._LIVE.add(self)
        return self

    def snapshot(self, timeout: float = 300) -> tracemalloc.Snapshot:
        assert self.proc is not None
        path = self.snapshots / f"snapshot-{self._taken}.pickle"
        self._taken += 1
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no tracemalloc snapshot within {timeout:.0f}s")
            time.sleep(0.2)
        return tracemalloc.Snapshot.load(str(path))


def holder(tb: tracemalloc.Traceback) -> str:
    """Who made a block: the innermost controller frame, else the innermost frame's package."""
    frames = list(tb)  # oldest first
    for frame in reversed(frames):
        if frame.filename.startswith(CONTROLLER_DIR):
            return f"{os.path.relpath(frame.filename, B.ROOT)}:{frame.lineno}"
    name = frames[-1].filename if frames else "?"
    if "site-packages" in name:
        return "(" + name.split("site-packages" + os.sep, 1)[1].split(os.sep, 1)[0] + ")"
    return f"(stdlib {os.path.basename(name)})"


def breakdown(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, services: int) -> dict[str, Any]:
    """What grew between the snapshots, by holder and by controller file, per service."""
    skip = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    diffs = after.filter_traces(skip).compare_to(before.filter_traces(skip), "traceback")
    by_holder: dict[str, int] = defaultdict(int)
    by_file: dict[str, int] = defaultdict(int)
    for d in diffs:
        h = holder(d.traceback)
        by_holder[h] += d.size_diff
        by_file[h.rsplit(":", 1)[0]] += d.size_diff
    total = sum(by_holder.values())

    def top(table: dict[str, int], n: int) -> list[dict[str, Any]]:
        rows = sorted(table.items(), key=lambda kv: -kv[1])[:n]
        return [{"where": k, "kb_per_service": round(v / services / 1024, 2)} for k, v in rows]

    return {
        "traced_kb_per_service": round(total / services / 1024, 2),
        "by_file": top(by_file, 15),
        "by_line": top(by_holder, 25),
    }


def _converge(
    api: Any, plane: B.ControlPlane, ns: str, services: list[B.Svc], timeout: float, settle: float
) -> dict[str, Any]:
    watch = B.WatchAudit(plane.new_client(), "networkservices", ns).start()
    t0 = time.monotonic()
    B.create_all(api, services, workers=4)
    keys = [f"{ns}/{s.name}" for s in services]
    ok = watch.wait_ready(keys, timeout, progress=30)
    wall = time.monotonic() - t0
    quiet = watch.quiet_for(3.0, settle)
    watch.stop()
    return {"all_ready": ok, "ready": watch.ready_count(keys), "converge_s": round(wall, 1), "settled": quiet}


def memory(ctx: Any) -> dict[str, Any]:
    p = ctx.p
    n, ndev = p["mem_services"], p["mem_devices"]
    names = B.device_names(ndev)
    plane = B.ControlPlane(ctx.workdir / "cluster-mem").start()
    fleet = B.start_fleet(names, ctx.workdir / "fleet-mem", "strict")
    out: dict[str, Any] = {"services": n, "devices": ndev}
    try:
        api = plane.api
        B.register_devices(api, fleet, names)
        ns = "bench-mem"
        api.ensure_namespace(ns)
        per_device = B.spread(n, names)

        # 1. the plain process: RSS
        with B.BenchController(plane.kubeconfig, ctx.workdir / "controller-mem.log") as ctl:
            ctl.start()
            B.wait_devices_ready(api, names, timeout=300)
            ctl.wait_up(ndev, timeout=300)
            ctl.wait_idle(timeout=60)
            before = proc_status(ctl.ps.pid)
            B.log(f"memory: {n} services on {ndev} devices (plain controller, RSS {before['VmRSS']:.0f} MiB)")
            run = _converge(api, plane, ns, B.layout(ns, per_device), p["mem_timeout"], p["settle"])
            ctl.wait_idle(timeout=60)
            after = proc_status(ctl.ps.pid)
        out["rss"] = {
            **run,
            "rss_before_mb": round(before["VmRSS"], 1),
            "rss_after_mb": round(after["VmRSS"], 1),
            "hwm_mb": round(after["VmHWM"], 1),
            "kb_per_service": round((after["VmRSS"] - before["VmRSS"]) * 1024 / n, 1),
            "hwm_kb_per_service": round((after["VmHWM"] - before["VmRSS"]) * 1024 / n, 1),
        }
        per = out["rss"]["kb_per_service"]
        B.log(f"  memory: RSS {before['VmRSS']:.0f} -> {after['VmRSS']:.0f} MiB: {per} KB/service")
        nt = min(n, p["mem_traced_services"])
        if not nt:
            return out

        # 2. the traced process: who holds it
        B.strip_finalizers_and_delete(api, ns)
        B.wait_for(
            "the services deleted",
            lambda: not api.custom.list_namespaced_custom_object(B.GROUP, B.VERSION, ns, "networkservices")["items"],
            timeout=120,
            interval=0.5,
        )
        B.reset_devices(fleet, names)
        with TracedController(
            plane.kubeconfig, ctx.workdir / "controller-mem-traced.log", ctx.workdir / "tracemalloc"
        ) as traced:
            traced.start()
            traced.wait_up(ndev, timeout=300)
            traced.wait_idle(timeout=120)
            first = traced.snapshot()
            traced_before = proc_status(traced.ps.pid)
            B.log("memory: the same services under tracemalloc")
            traced_services = B.layout(ns, B.spread(nt, names), prefix="t")
            run = _converge(api, plane, ns, traced_services, p["mem_timeout"] * 3, p["settle"])
            traced.wait_idle(timeout=120)
            last = traced.snapshot()
            traced_after = proc_status(traced.ps.pid)
        out["tracemalloc"] = {
            **run,
            "services": nt,
            **breakdown(first, last, nt),
            "traced_process_rss_kb_per_service": round((traced_after["VmRSS"] - traced_before["VmRSS"]) * 1024 / nt, 1),
        }
        B.log(f"  memory: tracemalloc {out['tracemalloc']['traced_kb_per_service']} KB/service")
    finally:
        fleet.stop()
        plane.stop()
    return out
