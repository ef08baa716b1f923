"""Scenario `memory`: what the controller holds per Ready NetworkService, from the process itself.

On one fresh control plane and fleet:

1. plain controller (as `scale` runs it): VmRSS and VmHWM (/proc/PID/status) once every device is
   Ready and the controller idle, and again after all N services are Ready and the system is quiet.
   The difference over N is the per-service figure the issue's goal is stated in. At the end a heap
   probe (SIGUSR2) says where that RSS is: glibc and pymalloc in use and kept free, live Python
   objects by type, and the RSS after gc.collect() and after malloc_trim(0). `mem_env` (e.g.
   "MALLOC_ARENA_MAX=2;PYTHONMALLOC=malloc") runs the controller with those variables set.
   bench/traced_controller.py runs it with a probe: a census (SIGUSR1) of the deep size of what each
   part of the controller holds (records, reconciler maps, device intents, status writer, leaf
   caches, Kopf's per-object memories), before the creates and after; each object counted once.
2. if mem_traced_services > 0, that many services again (deleted and devices reset in between) under
   tracemalloc from just before the creates: what is still alive at the end, by allocation site.
   Tracing slows the process and costs memory of its own, so this run gives shares, not the RSS.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from collections import defaultdict
from pathlib import Path
from typing import Any

import benchlib as B


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a process, in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


class ProbedController(B.BenchController):
    """The benchmark's controller, started through bench/traced_controller.py (a census on SIGUSR1;
    with `trace`, tracemalloc from the first one on)."""

    def __init__(
        self, kubeconfig: Path, log_path: Path, out: Path, trace: bool = False, env: dict[str, str] | None = None
    ) -> None:
        super().__init__(kubeconfig, log_path)
        self.out = out
        out.mkdir(parents=True, exist_ok=True)
        self.env["BENCH_CENSUS_DIR"] = str(out)
        self.env.update(env or {})
        if trace:
            self.env["BENCH_TRACEMALLOC"] = "1"
        self._taken = 0
        self._heaps = 0

    def start(self) -> ProbedController:
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

    def probe(self, timeout: float = 300) -> tuple[dict[str, Any], tracemalloc.Snapshot | None]:
        """A census (and, when tracing, the snapshot taken with it)."""
        assert self.proc is not None
        n = self._taken
        self._taken += 1
        self.proc.send_signal(signal.SIGUSR1)
        path = self.out / f"census-{n}.json"
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no census within {timeout:.0f}s")
            time.sleep(0.2)
        snap = self.out / f"snapshot-{n}.pickle"
        return json.loads(path.read_text()), tracemalloc.Snapshot.load(str(snap)) if snap.exists() else None

    def heap(self, timeout: float = 300) -> dict[str, Any]:
        """Where the process's memory is (bench/traced_controller.py heap()); it also runs gc.collect() and
        malloc_trim(0), so take it after the RSS that is reported as the controller's."""
        assert self.proc is not None
        path = self.out / f"heap-{self._heaps}.json"
        self._heaps += 1
        self.proc.send_signal(signal.SIGUSR2)
        deadline = time.monotonic() + timeout
        while not path.exists():
            if time.monotonic() > deadline:
                raise TimeoutError(f"no heap report within {timeout:.0f}s")
            time.sleep(0.2)
        return json.loads(path.read_text())


def grown_types(before: dict[str, Any], after: dict[str, Any], services: int) -> list[dict[str, Any]]:
    """KB per service each type of live Python object grew by (of the types in either top list)."""
    was = {r["type"]: r for r in before["top"]}
    rows = []
    for r in after["top"]:
        old = was.get(r["type"], {"count": 0, "mb": 0.0})
        kb = (r["mb"] - old["mb"]) * 1024 / services
        rows.append(
            {"type": r["type"], "per_service": round((r["count"] - old["count"]) / services, 1), "kb": round(kb, 2)}
        )
    return sorted(rows, key=lambda r: -r["kb"])


def parse_env(text: str) -> dict[str, str]:
    """ "K=V;K2=V2" -> {"K": "V", "K2": "V2"} (the mem_env parameter)."""
    return dict(item.split("=", 1) for item in text.split(";") if item.strip())


def per_service(before: dict[str, Any], after: dict[str, Any], services: int) -> dict[str, Any]:
    """KB per service each holder grew by between two censuses, largest first."""
    rows = {}
    for name, held in after["holders"].items():
        if "bytes" not in held:
            rows[name] = held
            continue
        grown = held["bytes"] - before["holders"].get(name, {}).get("bytes", 0)
        rows[name] = round(grown / services / 1024, 2)
    total = sum(v for v in rows.values() if isinstance(v, float))
    ordered = dict(sorted(rows.items(), key=lambda kv: -kv[1] if isinstance(kv[1], float) else 0))
    return {"kb_per_service": round(total, 2), "holders_kb_per_service": ordered}


def holder(tb: tracemalloc.Traceback) -> str:
    """Where a block was made: file and line of its allocation site, relative to the checkout."""
    frame = tb[0]
    name = frame.filename
    if "site-packages" in name:
        return "(" + name.split("site-packages" + os.sep, 1)[1].split(os.sep, 1)[0] + f") {os.path.basename(name)}"
    if name.startswith(str(B.ROOT)):
        return f"{os.path.relpath(name, B.ROOT)}:{frame.lineno}"
    return f"(stdlib) {os.path.basename(name)}:{frame.lineno}"


def breakdown(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, services: int) -> dict[str, Any]:
    """What grew between the snapshots, by holder and by controller file, per service."""
    skip = [tracemalloc.Filter(False, tracemalloc.__file__), tracemalloc.Filter(False, "<frozen importlib._bootstrap>")]
    diffs = after.filter_traces(skip).compare_to(before.filter_traces(skip), "traceback")
    by_holder: dict[str, int] = defaultdict(int)
    by_file: dict[str, int] = defaultdict(int)
    for d in diffs:
        h = holder(d.traceback)
        by_holder[h] += d.size_diff
        by_file[h.rsplit(":", 1)[0] if h.startswith("controller") else h.split(":", 1)[0]] += d.size_diff
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

        # 1. the plain process (the probe costs nothing until asked): RSS, and a census of what it holds
        env = parse_env(p["mem_env"])
        out["env"] = env
        with ProbedController(
            plane.kubeconfig, ctx.workdir / "controller-mem.log", ctx.workdir / "census", env=env
        ) as ctl:
            ctl.start()
            B.wait_devices_ready(api, names, timeout=300)
            ctl.wait_up(ndev, timeout=300)
            ctl.wait_idle(timeout=60)
            before = proc_status(ctl.ps.pid)
            heap0 = ctl.heap()  # reads only (bench/traced_controller.py)
            census0, _ = ctl.probe()
            B.log(f"memory: {n} services on {ndev} devices (plain controller, RSS {before['VmRSS']:.0f} MiB)")
            run = _converge(api, plane, ns, B.layout(ns, per_device), p["mem_timeout"], p["settle"])
            ctl.wait_idle(timeout=60)
            after = proc_status(ctl.ps.pid)
            heap = ctl.heap()
            census1, _ = ctl.probe()
        out["rss"] = {
            **run,
            "rss_before_mb": round(before["VmRSS"], 1),
            "rss_after_mb": round(after["VmRSS"], 1),
            "hwm_mb": round(after["VmHWM"], 1),
            "kb_per_service": round((after["VmRSS"] - before["VmRSS"]) * 1024 / n, 1),
            "hwm_kb_per_service": round((after["VmHWM"] - before["VmRSS"]) * 1024 / n, 1),
        }
        out["rss"]["after_gc_kb_per_service"] = round((heap["rss_after_gc"]["VmRSS"] - before["VmRSS"]) * 1024 / n, 1)
        out["rss"]["after_trim_kb_per_service"] = round(
            (heap["rss_after_trim"]["VmRSS"] - before["VmRSS"]) * 1024 / n, 1
        )
        out["heap"] = heap
        out["heap_before"] = heap0
        out["python_objects_grown"] = grown_types(heap0["python_objects"], heap["python_objects"], n)
        out["census"] = per_service(census0, census1, n)
        keys = census1.get("status_keys") or {}
        out["census"]["status_keys_kb_per_service"] = {
            k: round(v / n / 1024, 2) for k, v in sorted((keys.get("bytes") or {}).items(), key=lambda kv: -kv[1])
        }
        out["census"]["status_sample"] = keys.get("sample")
        per = out["rss"]["kb_per_service"]
        B.log(
            f"  memory: RSS {before['VmRSS']:.0f} -> {after['VmRSS']:.0f} MiB: {per} KB/service; "
            f"held by the controller's own structures {out['census']['kb_per_service']} KB/service; "
            f"after malloc_trim {out['rss']['after_trim_kb_per_service']} KB/service; "
            f"glibc {heap['glibc']}, pymalloc {heap['pymalloc']}, python objects {heap['python_objects']['mb']} MB"
        )
        nt = min(n, p["mem_traced_services"])
        if not nt:
            return out

        # 2. the traced process: where what it holds was allocated
        B.clear_services(api, fleet, names, ns)
        traced = ProbedController(
            plane.kubeconfig, ctx.workdir / "controller-mem-traced.log", ctx.workdir / "tracemalloc", trace=True
        )
        with traced:
            traced.start()
            traced.wait_up(ndev, timeout=300)
            traced.wait_idle(timeout=120)
            traced.probe()  # starts tracing
            first = traced.probe()[1]
            B.log(f"memory: {nt} services under tracemalloc")
            traced_services = B.layout(ns, B.spread(nt, names), prefix="t")
            run = _converge(api, plane, ns, traced_services, p["mem_timeout"] * 3, p["settle"])
            traced.wait_idle(timeout=120)
            last = traced.probe()[1]
        assert first is not None and last is not None
        out["tracemalloc"] = {**run, "services": nt, **breakdown(first, last, nt)}
        B.log(f"  memory: tracemalloc {out['tracemalloc']['traced_kb_per_service']} KB/service")
    finally:
        fleet.stop()
        plane.stop()
    return out
