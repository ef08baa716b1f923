"""The controller's benchmark suite: convergence, latency, drift repair, idle cost, the cost of strict
devices and JSON_IETF (profiles), scale, billing.

    python bench/controller_bench.py [--quick] [--only convergence,latency,drift,idle,profiles,scale,billing]
                                     [--no-profile] [--scale-services N] [--publish/--no-publish]

Runs on a real local control plane (etcd + kube-apiserver from bin/, `make bin`) and a fleet of
devicesim `strict` devices (official-model validation, YANG defaults; the controller negotiates
JSON_IETF), all on 127.0.0.1; only `profiles` also runs a lenient fleet. Every scenario measures
its baselines in the same run: on a noisy 2-core machine only ratios taken side by side hold.
Writes bench/results/<timestamp>.json and .md (the Markdown table), bench/results/convergence.png
and bench/results/profile-<timestamp>.txt; a full run (not --quick, not --only) also refreshes
the table in docs/bench.md and docs/bench-convergence.png (--no-publish to skip). See docs/bench.md.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as B
from baselines import api_only, batched_per_device, script_per_service
from gnmiwatch import DescriptionWatch
from memory_bench import memory
from profile_report import render_text, summarise
from references import references

from localcluster.cluster import ADMIN_USER
from tests.harness import GROUP, VERSION, condition

RESULTS = Path(__file__).resolve().parent / "results"
DOCS = B.ROOT / "docs"
WORKERS = 4  # concurrent creates, the same for the controller run and the API-only baseline

PROFILES = {
    "full": dict(
        conv_services=1000,
        conv_devices=20,
        latency=100,
        drift=100,
        idle=300.0,
        scale_services=10_000,
        scale_devices=100,
        scale_big=1000,
        scale_small=10,
        probes=20,
        billing_events=4000,
        invoice_subs=10_000,
        conv_timeout=600.0,
        profile_timeout=200.0,  # each of the three convergences of `profiles` (about 15 s each when healthy)
        scale_timeout=420.0,
        sub_services=1000,  # as many Subscriptions as the issue asks (1,000 over 20 devices)
        sub_timeout=240.0,
        # off, on or off,on: the Subscription variant without and/or with the chart's admission webhooks
        # registered (validating, and the mutating one adding the finalizer at create: webhook.addFinalizer)
        sub_admission="off",
        settle=60.0,
        probe_timeout=30.0,
        mem_services=2000,  # the memory scenario: N services on mem_devices, a plain and a traced run
        mem_devices=100,
        mem_timeout=300.0,
        mem_traced_services=0,  # > 0: that many again under tracemalloc (slow: 1 frame, still several-fold)
        mem_env="",  # "K=V;K2=V2": environment of the measured controller (allocator settings)
        ref_sizes="1000,10000",  # the references scenario: floor, plain Kopf operator, controller
        ref_devices=100,
        ref_timeout=900.0,
    ),
    "quick": dict(
        conv_services=200,
        conv_devices=10,
        latency=20,
        drift=20,
        idle=60.0,
        scale_services=300,
        scale_devices=10,
        scale_big=150,
        scale_small=10,
        probes=5,
        billing_events=1000,
        invoice_subs=2000,
        conv_timeout=120.0,
        profile_timeout=60.0,
        scale_timeout=30.0,
        sub_services=30,
        sub_timeout=60.0,
        sub_admission="off",
        settle=10.0,
        probe_timeout=8.0,
        mem_services=300,
        mem_devices=10,
        mem_timeout=60.0,
        mem_traced_services=100,
        mem_env="",
        ref_sizes="200",
        ref_devices=10,
        ref_timeout=120.0,
    ),
}
SCENARIOS = ("convergence", "latency", "drift", "idle", "profiles", "scale", "memory", "references", "billing")
FLEET_PROFILE = "strict"  # the devicesim profile of every network scenario except the profile comparison


@dataclass
class Ctx:
    args: argparse.Namespace
    p: dict[str, Any]
    workdir: Path
    stamp: str
    results: dict[str, Any]


# =============================================================================================
# 1-4: one control plane, one fleet, one controller


class NetworkRun:
    """The converged system that the latency, drift and idle scenarios reuse."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.plane = B.ControlPlane(ctx.workdir / "cluster").start()
        B.log(f"control plane up in {self.plane.started_in:.1f}s")
        self.names = B.device_names(ctx.p["conv_devices"])
        self.fleet = B.start_fleet(self.names, ctx.workdir / "fleet", FLEET_PROFILE)
        self.ns = "bench-conv"
        self.services = B.layout(self.ns, B.spread(ctx.p["conv_services"], self.names))
        self.used = {d: n for d, n in B.spread(ctx.p["conv_services"], self.names).items()}
        self.controller: B.BenchController | None = None
        self.watch: B.WatchAudit | None = None
        self.receiver: B.ReceiverProcess | None = None
        self.extra: list[str] = []
        if "--billing-sink-url" in B.controller_flags():
            self.receiver = B.ReceiverProcess()
            self.extra = ["--billing-sink-url", self.receiver.url]

    def close(self) -> None:
        if self.watch is not None:
            self.watch.stop()
        if self.controller is not None:
            self.controller.stop()
        if self.receiver is not None:
            self.receiver.stop()
        self.fleet.stop()
        self.plane.stop()

    def pids(self) -> dict[str, int]:
        pids = {**self.plane.pids()}
        assert self.fleet.proc is not None
        pids["devicesim"] = self.fleet.proc.pid
        return pids

    def next_slot(self, device: str) -> tuple[str, int, str]:
        k = self.used[device]
        self.used[device] = k + 1
        return B.slot(k)


def convergence(ctx: Ctx, run: NetworkRun) -> dict[str, Any]:
    p, api, n = ctx.p, run.plane.api, len(run.services)
    out: dict[str, Any] = {"services": n, "devices": len(run.names), "create_workers": WORKERS}

    # -- the API server's own write cost: the same creates, no controller --------------------------
    api.ensure_namespace("bench-api")
    cpu = B.CpuMeter(run.plane.pids())
    out["api_only"] = api_only(api, [replace(s, namespace="bench-api") for s in run.services], WORKERS)
    out["api_only"]["cpu_s"] = cpu.read()
    B.delete_namespace_services(api, "bench-api")

    # -- (a) a script: one pygnmi connection per device, one Set per service, in sequence ----------
    before = B.fleet_stats(run.fleet, run.names)
    cpu = B.CpuMeter(run.pids())
    B.log(f"baseline (a): pygnmi, one Set per service, {n} services in sequence")
    out["script"] = script_per_service(run.fleet, run.services)
    out["script"]["cpu_s"] = cpu.read()
    d = B.stats_delta(B.fleet_stats(run.fleet, run.names), before)
    out["script"]["set_rpcs"] = sum(s["set_rpcs"] for s in d.values())
    B.log(f"  (a) {out['script']['wall_s']}s")
    B.reset_devices(run.fleet, run.names)

    # -- (b) the ceiling: one batched Set per device --------------------------------------------
    before = B.fleet_stats(run.fleet, run.names)
    cpu = B.CpuMeter(run.pids())
    out["ceiling"] = batched_per_device(run.fleet, run.services)
    out["ceiling"]["cpu_s"] = cpu.read()
    d = B.stats_delta(B.fleet_stats(run.fleet, run.names), before)
    out["ceiling"]["set_rpcs"] = sum(s["set_rpcs"] for s in d.values())
    B.log(f"  (b) {out['ceiling']['wall_s']}s")
    B.reset_devices(run.fleet, run.names)

    # -- the controller ------------------------------------------------------------------------
    api.ensure_namespace(run.ns)
    B.register_devices(api, run.fleet, run.names)
    profiling = not ctx.args.no_profile
    raw = RESULTS / f"profile-{ctx.stamp}.raw"
    ctl = run.controller = B.BenchController(
        run.plane.kubeconfig,
        ctx.workdir / "controller.log",
        extra=run.extra,
        profile_to=raw if profiling else None,
        webhook=_admission_modes(ctx)[-1],
    ).start()
    B.wait_devices_ready(api, run.names)
    ctl.wait_up(len(run.names))
    out["fleet"] = fleet_facts(api, run.names, FLEET_PROFILE)
    watch = run.watch = B.WatchAudit(run.plane.new_client(), "networkservices", run.ns).start()
    dev_watch = B.WatchAudit(run.plane.new_client(), "networkdevices").start()
    time.sleep(1.0)
    before = B.fleet_stats(run.fleet, run.names)
    m0 = ctl.metrics()
    spy = {"py-spy": ctl.proc.pid} if profiling and ctl.proc is not None else {}
    cpu = B.CpuMeter({**run.pids(), "controller": ctl.ps.pid, **spy})
    rss = B.RssSampler(ctl.ps).start()
    dev_events0 = len(dev_watch.events)
    B.log(f"controller: applying {n} NetworkServices ({WORKERS} concurrent creates)")
    t0 = time.monotonic()
    created = B.create_all(api, run.services, workers=WORKERS)
    t_created = max(created.values()) - t0
    ok = watch.wait_ready(
        [f"{s.namespace}/{s.name}" for s in run.services], max(1.0, p["conv_timeout"] - (time.monotonic() - t0))
    )
    keys = [f"{s.namespace}/{s.name}" for s in run.services]
    ready = sorted(t - t0 for k in keys if (t := watch.objects[k].ready_at) is not None)
    wall = ready[-1] if ok else time.monotonic() - t0
    time.sleep(2.0)  # writes that trail the last Ready (device status) are counted too
    cpu_used = cpu.read()
    m1 = ctl.metrics()
    d = B.stats_delta(B.fleet_stats(run.fleet, run.names), before)
    versions = watch.versions(keys)
    kube_writes = {
        k: v - B.metric_by(m0, "telco_kube_writes_total", "resource").get(k, 0)
        for k, v in B.metric_by(m1, "telco_kube_writes_total", "resource").items()
    }
    sets = [s["set_rpcs"] for s in d.values()]
    out["controller"] = {
        "all_ready": ok,
        "ready": len(ready),
        "wall_s": round(wall, 2),
        "creates_done_s": round(t_created, 2),
        "services_per_s": round(len(ready) / wall, 1),
        "ready_times": ready,
        "writes_per_object_watch": {
            "mean": round(sum(versions) / len(versions) - 1, 2),
            "max": max(versions) - 1,
            "min": min(versions) - 1,
        },
        "write_kinds": dict(watch.write_kinds(keys)),
        "status_fields_changed": dict(watch.status_fields.most_common(40)),
        "controller_writes_by_resource": {k: int(v) for k, v in kube_writes.items() if v},
        "controller_writes_per_service": round(sum(kube_writes.values()) / n, 2),
        "networkdevice_writes_watch": len(dev_watch.events) - dev_events0,
        "set_rpcs_per_device": {"mean": round(sum(sets) / len(sets), 1), "max": max(sets), "min": min(sets)},
        "set_updates_total": sum(s["set_updates"] for s in d.values()),
        "get_rpcs_per_device": round(sum(s["get_rpcs"] for s in d.values()) / len(d), 1),
        "cpu_s": cpu_used,
        "rss_peak_mb": round(rss.stop(), 1),
        "relists": watch.relists,
    }
    dev_watch.stop()
    out["api_only"]["wall_s_before"] = out["api_only"]["wall_s"]
    judge_convergence(out)
    c, a, b, ap = out["controller"], out["script"], out["ceiling"], out["api_only"]
    B.log(
        f"  controller {c['wall_s']}s, (a) {a['wall_s']}s, (b) {b['wall_s']}s, api-only {ap['wall_s']}s; "
        f"writes/object mean {c['writes_per_object_watch']['mean']} max {c['writes_per_object_watch']['max']}"
    )
    plot_convergence(ctx, out)
    if profiling:
        out["profile"] = finish_profile(ctx, run, raw)
    return out


def api_cost_again(ctx: Ctx, run: NetworkRun, out: dict[str, Any]) -> None:
    """The API server's write cost measured again at the end, with the controller stopped: the goal
    takes the faster of the two runs (the one least disturbed by other load); both are reported."""
    if run.controller is not None:
        run.controller.stop()
        run.controller = None
    api = run.plane.api
    api.ensure_namespace("bench-api2")
    again = api_only(api, [replace(s, namespace="bench-api2") for s in run.services], WORKERS)
    B.delete_namespace_services(api, "bench-api2")
    out["api_only"]["wall_s_after"] = again["wall_s"]
    if again["wall_s"] < out["api_only"]["wall_s"]:
        out["api_only"].update({k: again[k] for k in ("wall_s", "creates_per_s", "ready_times")})
    judge_convergence(out)
    plot_convergence(ctx, out)


def judge_convergence(out: dict[str, Any]) -> None:
    c, a, b, ap = out["controller"], out["script"], out["ceiling"], out["api_only"]
    out["ratios"] = {
        "speedup_vs_script": round(a["wall_s"] / c["wall_s"], 2),
        "vs_ceiling_plus_api": round(c["wall_s"] / (b["wall_s"] + ap["wall_s"]), 2),
        "vs_ceiling": round(c["wall_s"] / b["wall_s"], 1),
    }
    out["goals"] = {
        "5x_faster_than_script": out["ratios"]["speedup_vs_script"] >= 5,
        "within_3x_of_ceiling_plus_api": out["ratios"]["vs_ceiling_plus_api"] <= 3,
        "at_most_3_writes_per_object": c["writes_per_object_watch"]["max"] <= 3,
    }


def finish_profile(ctx: Ctx, run: NetworkRun, raw: Path) -> dict[str, Any]:
    """Stop the profiled controller (py-spy writes its file), summarise the profile, and start a plain
    controller for the next scenarios; measure what that restart costs (it must adopt, not re-push)."""
    assert run.controller is not None and run.watch is not None
    run.controller.stop()
    out: dict[str, Any] = {}
    if raw.exists():
        summary = summarise(raw)
        text = RESULTS / f"profile-{ctx.stamp}.txt"
        text.write_text(render_text(summary) + "\n")
        out = {
            "summary": summary,
            "raw": str(raw.relative_to(B.ROOT)),
            "text": str(text.relative_to(B.ROOT)),
            "sampler": "py-spy record --nonblocking --gil --rate 100 (samples holding the GIL)",
        }
        B.log(f"profile: {text.relative_to(B.ROOT)}")
    else:
        out = {"error": "py-spy wrote no profile"}
    api = run.plane.api
    before = B.fleet_stats(run.fleet, run.names)
    events0 = len(run.watch.events)
    t0 = time.monotonic()
    run.controller = B.BenchController(
        run.plane.kubeconfig, ctx.workdir / "controller-2.log", extra=run.extra, webhook=_admission_modes(ctx)[-1]
    ).start()
    B.wait_devices_ready(api, run.names)
    run.controller.wait_up(len(run.names))
    verified = time.monotonic() - t0
    run.watch.quiet_for(3.0, 120)
    run.controller.wait_idle()  # the re-list's passes are done too, not only the API writes
    passes_settled = time.monotonic() - t0
    with run.watch.lock:
        last = max((t for t, _, _ in run.watch.events[events0:]), default=t0)
    d = B.stats_delta(B.fleet_stats(run.fleet, run.names), before)
    out["restart"] = {
        "all_devices_verified_s": round(verified, 1),
        "last_write_s": round(last - t0, 1),
        "quiet_after_s": round(max(verified, last - t0), 1),
        "passes_settled_s": round(passes_settled, 1),
        "networkservice_writes": len(run.watch.events) - events0,
        "set_rpcs": sum(x["set_rpcs"] for x in d.values()),
        "get_rpcs": sum(x["get_rpcs"] for x in d.values()),
    }
    B.log(
        f"  restart: quiet after {out['restart']['quiet_after_s']}s, {out['restart']['networkservice_writes']} "
        f"writes, {out['restart']['set_rpcs']} Sets"
    )
    return out


def plot_convergence(ctx: Ctx, out: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=110)
    series = [
        ("controller", out["controller"]["ready_times"], "tab:blue", "-"),
        ("(a) pygnmi script, one Set per service", out["script"]["ready_times"], "tab:red", "-"),
        ("(b) ceiling: one batched Set per device", out["ceiling"]["ready_times"], "tab:green", "-"),
        ("API server alone: objects created, no controller", out["api_only"]["ready_times"], "tab:gray", "--"),
    ]
    for label, times, color, style in series:
        if not times:
            continue
        xs = [0.0, *times]
        ys = list(range(len(xs)))
        ax.step(xs, ys, where="post", label=f"{label} ({times[-1]:.1f} s)", color=color, linestyle=style)
    done = out["controller"].get("creates_done_s")
    if done:
        ax.axvline(
            done,
            color="tab:blue",
            linestyle=":",
            linewidth=1,
            label=f"controller run: last create returned ({done:.1f} s)",
        )
    ax.set_xlabel("seconds since the first apply")
    ax.set_ylabel("services Ready (configured on the device)")
    ax.set_title(f"Convergence: {out['services']} NetworkServices on {out['devices']} devices")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / "convergence.png")
    plt.close(fig)


def latency(ctx: Ctx, run: NetworkRun) -> dict[str, Any]:
    """One NetworkService at a time on the idle converged system: create -> Ready."""
    assert run.controller is not None and run.watch is not None
    api, ctl, watch = run.plane.api, run.controller, run.watch
    watch.quiet_for(2.0, 30)
    ctl.wait_idle()  # "an idle system": no passes left over from the previous scenario either
    samples: list[float] = []
    from_return: list[float] = []
    set_s: list[float] = []
    failures = 0
    # (ms, device, seconds into the scenario, device passes the controller ran meanwhile, all devices)
    slow: list[tuple[float, str, float, int]] = []
    timeouts: list[dict[str, Any]] = []
    t_first = time.monotonic()
    for i in range(ctx.p["latency"]):
        device = run.names[i % len(run.names)]
        port, vlan, ip = run.next_slot(device)
        svc = B.Svc(run.ns, f"lat{i:04d}", device, port, vlan, ip)
        m0 = ctl.metrics()
        t0 = time.monotonic()
        api.custom.create_namespaced_custom_object(GROUP, VERSION, svc.namespace, "networkservices", svc.body())
        t_ret = time.monotonic()
        t_ready = watch.wait_one(f"{svc.namespace}/{svc.name}", 30)
        if t_ready is None:
            failures += 1
            timeouts.append(
                {
                    "device": device,
                    "at_s": round(t0 - t_first, 1),
                    **stuck(api.get("networkservices", svc.name, svc.namespace)),
                }
            )
            continue
        samples.append(t_ready - t0)
        from_return.append(t_ready - t_ret)
        m1 = ctl.metrics()
        passes = int(B.metric_sum(m1, "telco_reconcile_total") - B.metric_sum(m0, "telco_reconcile_total"))
        slow.append((round((t_ready - t0) * 1000, 1), device, round(t0 - t_first, 1), passes))
        ds = B.metric_sum(m1, "telco_gnmi_rpc_duration_seconds_sum", device=device, rpc="Set") - B.metric_sum(
            m0, "telco_gnmi_rpc_duration_seconds_sum", device=device, rpc="Set"
        )
        dc = B.metric_sum(m1, "telco_gnmi_rpc_duration_seconds_count", device=device, rpc="Set") - B.metric_sum(
            m0, "telco_gnmi_rpc_duration_seconds_count", device=device, rpc="Set"
        )
        if dc:
            set_s.append(ds / dc)
        time.sleep(0.2)  # idle between samples
    out = {
        "samples": len(samples),
        "timeouts": failures,
        "apply_to_ready_ms": B.summary(samples),
        "create_return_to_ready_ms": B.summary(from_return),
        "device_set_ms": B.summary(set_s, digits=2),
        "services_on_system": len(run.services) + len(samples),
        "slowest": sorted(slow, reverse=True)[:5],
        "timeouts_30s": timeouts,
    }
    out["goals"] = {"p99_under_1s": bool(samples) and B.pct(samples, 99) < 1.0 and not failures}
    B.log(f"  latency p50 {out['apply_to_ready_ms'].get('p50')} ms, p99 {out['apply_to_ready_ms'].get('p99')} ms")
    return out


def stuck(obj: dict[str, Any] | None) -> dict[str, Any]:
    """What a service that missed its deadline looked like then."""
    if obj is None:
        return {"exists": False}
    return {
        "finalizers": obj["metadata"].get("finalizers"),
        "generation": obj["metadata"].get("generation"),
        "ready": condition(obj, "Ready"),
        "observedGeneration": (obj.get("status") or {}).get("observedGeneration"),
    }


def drift(ctx: Ctx, run: NetworkRun) -> dict[str, Any]:
    """Out-of-band changes of a managed leaf (devicesim admin), timed until devicesim shows it back."""
    assert run.controller is not None and run.watch is not None
    admin = run.fleet.admin
    gw = DescriptionWatch(run.fleet, run.names).start()
    run.watch.quiet_for(2.0, 30)
    ctl_m0 = run.controller.metrics()
    samples: list[float] = []
    timeouts = 0
    n = ctx.p["drift"]
    step = max(1, len(run.services) // n)
    try:
        for i in range(n):
            svc = run.services[(i * step + i) % len(run.services)]
            key = (svc.device, svc.port, svc.vlan)
            original = f"telco-intent {svc.namespace}/{svc.name}"
            mark = gw.mark(key)
            oob = f"changed by hand #{i}"
            path = f"interfaces/interface[name={svc.port}]/subinterfaces/subinterface[index={svc.vlan}]/config"
            admin.set(svc.device, path, {"description": oob})
            t_ret = time.monotonic()
            t_back = gw.wait_value(key, original, mark, timeout=15, not_before=oob)
            if t_back is None:
                timeouts += 1
            else:
                samples.append(t_back - t_ret)
            time.sleep(0.2)
    finally:
        gw.stop()
    m1 = run.controller.metrics()
    reverted = B.metric_sum(m1, "telco_drift_events_total", action="reverted") - B.metric_sum(
        ctl_m0, "telco_drift_events_total", action="reverted"
    )
    out = {
        "changes": n,
        "repaired": len(samples),
        "timeouts": timeouts,
        "repair_ms": B.summary(samples),
        "controller_drift_reverted": int(reverted),
    }
    out["goals"] = {"p99_under_1s": bool(samples) and B.pct(samples, 99) < 1.0 and not timeouts}
    B.log(f"  drift repair p50 {out['repair_ms'].get('p50')} ms, p99 {out['repair_ms'].get('p99')} ms")
    return out


def idle(ctx: Ctx, run: NetworkRun) -> dict[str, Any]:
    """Nothing changes: API writes and gNMI Sets per minute (goal zero) and controller CPU."""
    assert run.controller is not None
    ctl, seconds = run.controller, ctx.p["idle"]
    svc_watch = B.WatchAudit(run.plane.new_client(), "networkservices").start()
    dev_watch = B.WatchAudit(run.plane.new_client(), "networkdevices").start()
    svc_watch.quiet_for(3.0, 60)
    before = B.fleet_stats(run.fleet, run.names)
    m0 = ctl.metrics()
    cpu = B.CpuMeter({**run.pids(), "controller": ctl.ps.pid})
    t0 = time.monotonic()
    B.log(f"idle: {svc_watch.ready_count()} Ready services, watching for {seconds:.0f}s")
    time.sleep(seconds)
    t1 = time.monotonic()
    minutes = (t1 - t0) / 60
    d = B.stats_delta(B.fleet_stats(run.fleet, run.names), before)
    m1 = ctl.metrics()
    used = cpu.read()
    svc_watch.stop()
    dev_watch.stop()
    writes = svc_watch.writes_since(t0, t1) + dev_watch.writes_since(t0, t1)
    ctl_writes = sum(B.metric_by(m1, "telco_kube_writes_total", "resource").values()) - sum(
        B.metric_by(m0, "telco_kube_writes_total", "resource").values()
    )
    sets = sum(s["set_rpcs"] for s in d.values())
    out = {
        "seconds": round(t1 - t0, 1),
        "services": svc_watch.ready_count(),
        "devices": len(run.names),
        "fleet": fleet_facts(run.plane.api, run.names, FLEET_PROFILE),
        "api_writes": writes,
        "gnmi_sets": sets,
        "api_writes_per_min": round(writes / minutes, 2),
        "networkservice_writes": svc_watch.writes_since(t0, t1),
        "networkdevice_writes": dev_watch.writes_since(t0, t1),
        "controller_writes_per_min": round(ctl_writes / minutes, 2),
        "gnmi_sets_per_min": round(sets / minutes, 2),
        "gnmi_gets_per_min": round(sum(s["get_rpcs"] for s in d.values()) / minutes, 1),
        "controller_cpu_s": used["controller"],
        "controller_cpu_pct_of_core": round(100 * used["controller"] / (t1 - t0), 2),
        "cpu_s": used,
        "controller_rss_mb": round(ctl.rss_mb(), 1),
    }
    out["goals"] = {"zero_api_writes": writes == 0, "zero_gnmi_sets": sets == 0}
    B.log(
        f"  idle: {out['api_writes_per_min']} writes/min, {out['gnmi_sets_per_min']} Sets/min, "
        f"controller {out['controller_cpu_pct_of_core']}% of a core"
    )
    return out


def fleet_facts(api: Any, names: list[str], profile: str) -> dict[str, Any]:
    """What the devices of a scenario were: devicesim profile and the encodings the controller uses."""
    return {"profile": profile, "devices": len(names), "encodings": B.device_encodings(api, names)}


def fleet_label(fleet: dict[str, Any] | None) -> str:
    """'strict devices, JSON_IETF 20/20' for a table row."""
    if not fleet:
        return "devices of an unknown profile"
    encodings = ", ".join(f"{e} {n}/{fleet['devices']}" for e, n in sorted(fleet["encodings"].items()))
    return f"{fleet['profile']} devices, {encodings}"


# =============================================================================================
# 4b: the cost of JSON_IETF and of schema validation: the same convergence on three fleets

# (key, devicesim profile, NetworkDevice spec.encoding or None to negotiate, the encoding expected)
PROFILE_VARIANTS = (
    ("strict_json_ietf", "strict", None, "JSON_IETF"),
    ("strict_json", "strict", "JSON", "JSON"),
    ("lenient_json", "lenient", "JSON", "JSON"),
)


def profiles(ctx: Ctx) -> dict[str, Any]:
    """Convergence of the same services at the same size, each on its own fresh control plane, fleet and
    controller (not profiled), differing only in the devicesim profile and the encoding: strict with
    JSON_IETF (what the controller negotiates), strict with JSON pinned, lenient with JSON pinned. The
    first two differ by the encoding alone (the cost of RFC 7951 on both sides), the last two by the
    device's validation against the official models and its YANG defaults."""
    n, ndev = ctx.p["conv_services"], ctx.p["conv_devices"]
    out: dict[str, Any] = {"services": n, "devices": ndev, "variants": {}}
    for key, profile, pinned, expected in PROFILE_VARIANTS:
        r = out["variants"][key] = one_profile(ctx, key, profile, pinned, expected)
        B.log(
            f"  {key}: {r['wall_s']} s to all Ready, controller CPU {r['cpu_s'].get('controller')} s, "
            f"devicesim {r['cpu_s'].get('devicesim')} s (set up in {r['setup_s']} s)"
        )
    v = out["variants"]

    def ratio(a: str, b: str, f: Any) -> float | None:
        x, y = f(v[a]), f(v[b])
        return round(x / y, 2) if x is not None and y else None

    measures = {
        "wall_s": lambda r: r["wall_s"] if r["all_ready"] else None,
        "controller_cpu_s": lambda r: r["cpu_s"].get("controller"),
        "devicesim_cpu_s": lambda r: r["cpu_s"].get("devicesim"),
        "sets_per_device": lambda r: r["set_rpcs_per_device"]["mean"],
    }
    out["ratios"] = {
        "json_ietf_vs_json_on_strict": {m: ratio("strict_json_ietf", "strict_json", f) for m, f in measures.items()},
        "strict_vs_lenient_json": {m: ratio("strict_json", "lenient_json", f) for m, f in measures.items()},
        "strict_json_ietf_vs_lenient_json": {
            m: ratio("strict_json_ietf", "lenient_json", f) for m, f in measures.items()
        },
    }
    return out


def one_profile(ctx: Ctx, key: str, profile: str, pinned: str | None, expected: str) -> dict[str, Any]:
    p = ctx.p
    names = B.device_names(p["conv_devices"])
    t_setup = time.monotonic()
    plane = B.ControlPlane(ctx.workdir / f"cluster-{key}").start()
    fleet = B.start_fleet(names, ctx.workdir / f"fleet-{key}", profile)
    ctl: B.BenchController | None = None
    try:
        api = plane.api
        ns = "bench-profiles"
        api.ensure_namespace(ns)
        services = B.layout(ns, B.spread(p["conv_services"], names))
        B.register_devices(api, fleet, names, encoding=pinned)
        ctl = B.BenchController(plane.kubeconfig, ctx.workdir / f"controller-{key}.log").start()
        B.wait_devices_ready(api, names)
        ctl.wait_up(len(names))
        facts = fleet_facts(api, names, profile)
        if facts["encodings"] != {expected: len(names)}:
            raise RuntimeError(f"{key}: expected every device on {expected}, status.encoding says {facts['encodings']}")
        watch = B.WatchAudit(plane.new_client(), "networkservices", ns).start()
        time.sleep(1.0)
        assert fleet.proc is not None
        before = B.fleet_stats(fleet, names)
        cpu = B.CpuMeter({**plane.pids(), "devicesim": fleet.proc.pid, "controller": ctl.ps.pid})
        t0 = time.monotonic()
        setup_s = t0 - t_setup
        B.create_all(api, services, workers=WORKERS)
        keys = [f"{ns}/{s.name}" for s in services]
        ok = watch.wait_ready(keys, max(1.0, p["profile_timeout"] - (time.monotonic() - t0)))
        ready = sorted(t - t0 for k in keys if (t := watch.objects[k].ready_at) is not None)
        wall = ready[-1] if ok else time.monotonic() - t0
        time.sleep(2.0)  # the same trailing window as the convergence scenario
        used = cpu.read()
        d = B.stats_delta(B.fleet_stats(fleet, names), before)
        watch.stop()
        sets = [s["set_rpcs"] for s in d.values()]
        return {
            "fleet": facts,
            "spec_encoding": pinned or "auto",
            "all_ready": ok,
            "ready": len(ready),
            "wall_s": round(wall, 2),
            "cpu_s": used,
            "set_rpcs_per_device": {"mean": round(sum(sets) / len(sets), 1), "max": max(sets), "min": min(sets)},
            "set_updates_total": sum(s["set_updates"] for s in d.values()),
            "get_rpcs_per_device": round(sum(s["get_rpcs"] for s in d.values()) / len(d), 1),
            "setup_s": round(setup_s, 1),
        }
    finally:
        t_down = time.monotonic()
        if ctl is not None:
            ctl.stop()
        fleet.stop()
        plane.stop()
        B.log(f"  {key}: torn down in {time.monotonic() - t_down:.1f} s, {time.monotonic() - t_setup:.1f} s in all")


# =============================================================================================
# 5: scale


def scale(ctx: Ctx) -> dict[str, Any]:
    p = ctx.p
    total = ctx.args.scale_services or p["scale_services"]
    ndev = ctx.args.scale_devices or p["scale_devices"]
    big, small = p["scale_big"], p["scale_small"]
    names = B.device_names(ndev)
    rest = B.spread(total - big - small, names[2:])
    per_device = {names[0]: big, names[1]: small, **rest}
    plane = B.ControlPlane(ctx.workdir / "cluster-scale").start()
    fleet = B.start_fleet(names, ctx.workdir / "fleet-scale", FLEET_PROFILE)
    ctl: B.BenchController | None = None
    out: dict[str, Any] = {
        "services": total,
        "devices": ndev,
        "per_device": {"largest": big, "smallest": small, "others": max(rest.values())},
    }
    try:
        api = plane.api
        ns = "bench-scale"
        api.ensure_namespace(ns)
        services = B.layout(ns, per_device)
        B.register_devices(api, fleet, names)
        ctl = B.BenchController(plane.kubeconfig, ctx.workdir / "controller-scale.log").start()
        B.wait_devices_ready(api, names, timeout=300)
        ctl.wait_up(len(names), timeout=300)
        out["fleet"] = fleet_facts(api, names, FLEET_PROFILE)
        watch = B.WatchAudit(plane.new_client(), "networkservices", ns).start()
        time.sleep(1.0)
        rss0 = ctl.rss_mb()
        rss = B.RssSampler(ctl.ps, 1.0).start()
        cpu = B.CpuMeter({**plane.pids(), "controller": ctl.ps.pid})
        B.log(f"scale: applying {total} NetworkServices on {ndev} devices")
        t0 = time.monotonic()
        created = B.create_all(api, services, workers=WORKERS)
        keys = [f"{ns}/{s.name}" for s in services]
        ok = watch.wait_ready(keys, max(1.0, p["scale_timeout"] - (time.monotonic() - t0)), progress=30)
        ready = sorted(t - t0 for k in keys if (t := watch.objects[k].ready_at) is not None)
        wall = ready[-1] if ok else time.monotonic() - t0
        used = cpu.read()
        versions = watch.versions(keys)
        out.update(
            {
                "all_ready": ok,
                "ready": len(ready),
                "converge_s": round(wall, 1),
                "creates_done_s": round(max(created.values()) - t0, 1),
                "services_per_s": round(len(ready) / wall, 1),
                "controller_rss_start_mb": round(rss0, 1),
                "controller_cpu_s": used["controller"],
                "cpu_s": used,
                "writes_per_object_watch": {
                    "mean": round(sum(versions) / len(versions) - 1, 2),
                    "max": max(versions) - 1,
                },
                "relists": watch.relists,
                "ready_at_s": {
                    f"{q}%": round(ready[total * q // 100 - 1], 1)
                    for q in (25, 50, 75, 90, 100)
                    if 1 <= total * q // 100 <= len(ready)
                },
                "deadline_s": p["scale_timeout"],
            }
        )
        B.log(f"  scale: {len(ready)}/{total} Ready in {wall:.1f}s")
        big_keys = [f"{ns}/{s.name}" for s in services if s.device == names[0]]
        out["largest_device_ready"] = watch.ready_count(big_keys)
        rss_end = ctl.rss_mb()
        out["controller_rss_converged_mb" if ok else "controller_rss_at_deadline_mb"] = round(rss_end, 1)
        out["controller_rss_kb_per_service"] = round((rss_end - rss0) * 1024 / max(1, len(ready)), 1)
        out["controller_rss_peak_mb"] = round(rss.stop(), 1)
        out["goals"] = {
            "rss_under_300mb": out["controller_rss_peak_mb"] < 300,
            "full_size": total >= 10_000 and ndev >= 100 and ok,
        }
        if not ok:
            out["add_one"] = {
                "skipped": f"the system did not converge within {p['scale_timeout']:.0f} s of the first "
                "create "
                f"({len(ready):,} of {total:,} Ready; the largest device had "
                f"{out['largest_device_ready']} of {big} Ready)"
            }
            watch.stop()
            return out
        out["settled"] = watch.quiet_for(3.0, p["settle"])  # False: the probes start while it still works
        # -- adding one service to the largest device vs the smallest, alternately -----------
        used_slots = dict(per_device)
        probes: dict[str, dict[str, list[float]]] = {}
        probe_timeouts: list[dict[str, Any]] = []
        t_probes = time.monotonic()
        for i in range(p["probes"] * 2):
            device = names[i % 2]
            k = used_slots[device]
            used_slots[device] = k + 1
            svc = B.Svc(ns, f"probe{i:03d}", device, *B.slot(k))
            m0 = ctl.metrics()
            t_start = time.monotonic()
            api.custom.create_namespaced_custom_object(GROUP, VERSION, ns, "networkservices", svc.body())
            t_ready = watch.wait_one(f"{ns}/{svc.name}", p["probe_timeout"])
            m1 = ctl.metrics()
            rec = probes.setdefault(device, {"apply_to_ready": [], "set": [], "get": [], "reconcile": []})
            if t_ready is not None:
                rec["apply_to_ready"].append(t_ready - t_start)
            else:
                probe_timeouts.append(
                    {
                        "device": device,
                        "at_s": round(t_start - t_probes, 1),
                        **stuck(api.get("networkservices", svc.name, ns)),
                    }
                )
            for rpc in ("Set", "Get"):
                s = B.metric_sum(m1, "telco_gnmi_rpc_duration_seconds_sum", device=device, rpc=rpc) - B.metric_sum(
                    m0, "telco_gnmi_rpc_duration_seconds_sum", device=device, rpc=rpc
                )
                c = B.metric_sum(m1, "telco_gnmi_rpc_duration_seconds_count", device=device, rpc=rpc) - B.metric_sum(
                    m0, "telco_gnmi_rpc_duration_seconds_count", device=device, rpc=rpc
                )
                if c:
                    rec[rpc.lower()].append(s / c)
            time.sleep(0.2)
        sizes = {names[0]: big, names[1]: small}
        out["add_one"] = {
            f"device_with_{sizes[d]}": {
                "apply_to_ready_ms": B.summary(r["apply_to_ready"]),
                "set_rpc_ms": B.summary(r["set"], digits=2),
                "get_rpc_ms": B.summary(r["get"], digits=2),
                "device_time_ms_p50": round((B.pct(r["set"], 50) + 2 * B.pct(r["get"], 50)) * 1000, 2)
                if r["set"] and r["get"]
                else None,
            }
            for d, r in probes.items()
        }
        bigk, smallk = f"device_with_{big}", f"device_with_{small}"
        bset = out["add_one"][bigk]["set_rpc_ms"].get("p50", float("nan"))
        sset = out["add_one"][smallk]["set_rpc_ms"].get("p50", float("nan"))
        out["add_one"]["set_ratio_large_vs_small"] = round(bset / sset, 2) if sset else None
        out["add_one"]["timeouts"] = probe_timeouts
        out["goals"].update(
            {
                "add_one_device_time_under_100ms": (out["add_one"][bigk]["device_time_ms_p50"] or 1e9) < 100,
                "add_one_set_independent_of_size": out["add_one"]["set_ratio_large_vs_small"] is not None
                and out["add_one"]["set_ratio_large_vs_small"] < 2,
            }
        )
        watch.stop()
    finally:
        if ctl is not None:
            ctl.stop()
        fleet.stop()
        plane.stop()
    return out


# =============================================================================================
# 6: billing


RECEIVER = """
import sys
sys.path.insert(0, {root!r})
from tests.support.cloudevents_receiver import CloudEventsReceiver
rx = CloudEventsReceiver().start()
print(rx.url, flush=True)
sys.stdin.read()
print(len(rx.ids), flush=True)
rx.stop()
"""


def billing(ctx: Ctx) -> dict[str, Any]:
    runtime = B.ROOT / "controller" / "commerce" / "runtime.py"
    out: dict[str, Any] = {"commerce_runtime_present": runtime.exists()}
    try:
        from controller.billing.outbox import MAX_PENDING, Outbox
        from controller.billing.sinks import Deliverer, HttpSink
    except ImportError as exc:
        return {**out, "skipped": f"controller/billing is not importable: {exc}"}
    from controller.billing import events as ev

    n = ctx.p["billing_events"]
    now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    refs = [ev.SubscriptionRef("bench", f"sub{i:05d}", f"uid-{i:05d}", f"acct-{i % 100:03d}") for i in range(n)]
    events = [ev.activated(r, now, "fiber") for r in refs]

    proc = subprocess.Popen(
        [sys.executable, "-c", RECEIVER.format(root=str(B.ROOT))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=B.ROOT,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        url = proc.stdout.readline().strip()
        results = {}
        for concurrency in (1, 16):
            batch = events if concurrency == 1 else [replace(e, id=e.id + "-c16") for e in events]

            async def through_outbox(batch: list[Any] = batch, concurrency: int = concurrency) -> tuple[float, int]:
                deliverer = Deliverer([HttpSink(url)], concurrency=concurrency)
                box, delivered = Outbox(), 0
                pending = list(batch)
                t0 = time.monotonic()
                while pending or box.depth:
                    room = MAX_PENDING - box.depth
                    box = box.add(pending[:room], now)
                    pending = pending[room:]
                    report = await deliverer.deliver(box.take())
                    box = box.mark_delivered(report.delivered)
                    delivered += len(report.delivered)
                    if report.errors and not report.delivered:
                        raise RuntimeError(f"delivery failed: {report.errors}")
                wall = time.monotonic() - t0
                await deliverer.close()
                return wall, delivered

            wall, delivered = asyncio.run(through_outbox())
            results[f"concurrency_{concurrency}"] = {
                "events": delivered,
                "seconds": round(wall, 2),
                "events_per_s": round(delivered / wall, 1),
            }
            B.log(
                f"  billing: {delivered} events through the outbox at concurrency {concurrency}: "
                f"{delivered / wall:.0f}/s"
            )
        proc.stdin.close()
        received = int(proc.stdout.readline().strip() or 0)
        results["receiver_distinct_ids"] = received
        out["delivery"] = results
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    out["invoice"] = invoice_run(ctx.p["invoice_subs"])
    out["note"] = (
        "library level: Outbox + Deliverer + HttpSink to the CloudEvents receiver in another process, "
        "and compute_invoice over synthetic BillingInputs; "
        + (
            "the delivery through the running controller (Subscription status outbox) is the "
            "Subscription variant's figure"
            if runtime.exists()
            else "controller/commerce/runtime.py does not exist, so nothing runs through Subscription "
            "objects or the API server"
        )
    )
    return out


def invoice_run(subs: int) -> dict[str, Any]:
    """compute_invoice for every account of `subs` synthetic subscriptions (10 per account): monthly
    fee with a setup charge and a percentage discount; a third start mid-month (prorated)."""
    from controller.billing.invoice import BillingInput, TaxRule, compute_invoice
    from controller.billing.periods import Period
    from controller.billing.rating import Meter
    from tests.unit.billing.conftest import delivered, discount, monthly, offering, one_time, ref, utc

    period = Period(utc(2026, 10, 31, 23), utc(2026, 11, 30, 23))
    now = utc(2026, 12, 1)
    spec = offering(monthly("49.90"), one_time("99.00"), discount(percentage="10"))
    vat = [TaxRule.of("VAT", "20")]
    t0 = time.monotonic()
    accounts: dict[str, list[BillingInput]] = {}
    for i in range(subs):
        account = f"acct-{i // 10:05d}"
        start = utc(2026, 11, 1 + (i % 3) * 7, 23)
        accounts.setdefault(account, []).append(
            BillingInput(ref(f"fiber-{i:05d}", account), "fiber", spec, delivered(start), Meter(), "Europe/Paris")
        )
    build = time.monotonic() - t0
    t0 = time.monotonic()
    lines = 0
    for account, inputs in accounts.items():
        draft = compute_invoice(account, period, inputs, now, vat, time_zone="Europe/Paris")
        lines += len(draft.lines)
    wall = time.monotonic() - t0
    B.log(f"  invoice run: {subs} subscriptions, {len(accounts)} invoices, {lines} lines in {wall:.2f}s")
    return {
        "subscriptions": subs,
        "invoices": len(accounts),
        "lines": lines,
        "seconds": round(wall, 2),
        "subscriptions_per_s": round(subs / wall),
        "inputs_built_s": round(build, 2),
    }


# =============================================================================================
# Report


def fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        v = f"{v:,.2f}" if abs(v) < 10 else f"{v:,.1f}" if abs(v) < 100 else f"{v:,.0f}"
    elif isinstance(v, int):
        v = f"{v:,}"
    return f"{v}{unit}"


def speed(ratio: float) -> str:
    return f"controller {ratio:.1f}x faster" if ratio >= 1 else f"controller {1 / ratio:.0f}x slower"


def ok(flag: bool | None) -> str:
    return "-" if flag is None else ("met" if flag else "**missed**")


VARIANT_LABELS = {
    "strict_json_ietf": "strict devices, JSON_IETF (negotiated, the default)",
    "strict_json": "strict devices, JSON (NetworkDevice spec.encoding: JSON)",
    "lenient_json": "lenient devices, JSON (spec.encoding: JSON)",
}


def profile_rows(pr: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The three-fleet comparison: one row per fleet, then the two ratios that isolate each cost."""
    rows = [
        (
            f"4b. Cost of JSON_IETF and of schema validation: convergence, {pr['services']:,} services / "
            f"{pr['devices']} devices, each fleet on a fresh control plane and controller (not profiled)",
            "wall time to all Ready",
            "controller CPU, devicesim CPU, apiserver CPU; Sets and Gets per device",
            "",
        )
    ]
    for key, v in pr["variants"].items():
        cpu = v["cpu_s"]
        rows.append(
            (
                f"  {VARIANT_LABELS.get(key, key)}",
                fmt(v["wall_s"], " s") + ("" if v["all_ready"] else f" (only {v['ready']:,} Ready)"),
                f"controller {fmt(cpu.get('controller'))} s, devicesim {fmt(cpu.get('devicesim'))} s, "
                f"apiserver {fmt(cpu.get('kube-apiserver'))} s; Sets/device mean "
                f"{fmt(v['set_rpcs_per_device']['mean'])} (max {v['set_rpcs_per_device']['max']}), "
                f"Gets/device {fmt(v['get_rpcs_per_device'])}",
                "",
            )
        )

    def times(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}x"

    for key, label in (
        ("json_ietf_vs_json_on_strict", "  ratio JSON_IETF / JSON, both strict (the cost of RFC 7951)"),
        ("strict_vs_lenient_json", "  ratio strict / lenient, both JSON (the cost of validation and YANG defaults)"),
        ("strict_json_ietf_vs_lenient_json", "  ratio strict JSON_IETF / lenient JSON (both costs)"),
    ):
        q = pr["ratios"][key]
        rows.append(
            (
                label,
                f"wall {times(q['wall_s'])}",
                f"controller CPU {times(q['controller_cpu_s'])}, devicesim CPU {times(q['devicesim_cpu_s'])}, "
                f"Sets/device {times(q['sets_per_device'])}",
                "",
            )
        )
    return rows


def markdown(res: dict[str, Any]) -> str:
    r = dict(res["scenarios"])
    rows: list[tuple[str, str, str, str]] = []
    for name in [k for k, v in r.items() if isinstance(v, dict) and "error" in v and k != "scale"]:
        rows.append((f"{name}: failed", r.pop(name)["error"][:300], "", ""))
    if "convergence" in r:
        c = r["convergence"]
        ctl, a, b, ap = c["controller"], c["script"], c["ceiling"], c["api_only"]
        n, d = c["services"], c["devices"]
        fleet = c.get("fleet")
        if fleet:
            rows.append(
                (
                    "Devices of scenarios 1-5",
                    f"devicesim `{fleet['profile']}` profile: {B.PROFILE_NOTES[fleet['profile']]}",
                    "encoding in use (NetworkDevice status.encoding): "
                    + ", ".join(f"{e} on {k}/{fleet['devices']}" for e, k in sorted(fleet["encodings"].items())),
                    "",
                )
            )
        rows += [
            (
                f"1. Convergence, {n:,} services / {d} {fleet['profile'] if fleet else ''} devices: "
                "controller wall time to all Ready",
                fmt(ctl["wall_s"], " s") + ("" if ctl["all_ready"] else f" (only {ctl['ready']:,} Ready)"),
                "",
                "",
            ),
            (
                "  (a) pygnmi script, one Set per service in sequence",
                fmt(a["wall_s"], " s"),
                speed(a["wall_s"] / ctl["wall_s"]),
                ok(c["goals"]["5x_faster_than_script"]) + " (>= 5x)",
            ),
            ("  (b) ceiling, one batched Set per device", fmt(b["wall_s"], " s"), "", ""),
            (
                "  API server alone, same creates, no controller (the faster of a run before and one after)",
                fmt(ap["wall_s"], " s")
                + (
                    f" ({fmt(ap['wall_s_before'])} s / {fmt(ap['wall_s_after'])} s)"
                    if "wall_s_after" in ap
                    else " (measured once)"
                ),
                f"controller = {fmt(c['ratios']['vs_ceiling_plus_api'])}x of (b)+API",
                ok(c["goals"]["within_3x_of_ceiling_plus_api"]) + " (<= 3x)",
            ),
            (
                "  API writes per NetworkService (watch: resourceVersion changes after the create)",
                f"mean {fmt(ctl['writes_per_object_watch']['mean'])}, max {ctl['writes_per_object_watch']['max']}",
                ", ".join(f"{k} {v}" for k, v in sorted(ctl["write_kinds"].items())),
                ok(c["goals"]["at_most_3_writes_per_object"]) + " (<= 3)",
            ),
            (
                "  controller's own count (telco_kube_writes_total) per service, all resources",
                fmt(ctl["controller_writes_per_service"]),
                ", ".join(f"{k} {v:,}" for k, v in sorted(ctl["controller_writes_by_resource"].items())),
                "",
            ),
            (
                "  gNMI Sets per device (devicesim stats)",
                f"mean {fmt(ctl['set_rpcs_per_device']['mean'])}, max {ctl['set_rpcs_per_device']['max']}",
                f"(a) {a['set_rpcs'] / d:.0f}, (b) {b['set_rpcs'] / d:.0f}; "
                f"Gets/device {fmt(ctl['get_rpcs_per_device'])}",
                "",
            ),
            (
                "  controller CPU seconds",
                fmt(ctl["cpu_s"].get("controller"), " s"),
                f"apiserver {fmt(ctl['cpu_s'].get('kube-apiserver'))} s, etcd {fmt(ctl['cpu_s'].get('etcd'))} s, "
                f"devicesim {fmt(ctl['cpu_s'].get('devicesim'))} s"
                + (f", py-spy {fmt(ctl['cpu_s']['py-spy'])} s" if "py-spy" in ctl["cpu_s"] else "")
                + f"; RSS peak {fmt(ctl['rss_peak_mb'])} MB",
                "",
            ),
        ]
    prof = r.get("convergence", {}).get("profile", {})
    if "restart" in prof:
        rs = prof["restart"]
        rows.append(
            (
                "  controller restart on the converged system (adoption)",
                f"quiet after {fmt(rs['quiet_after_s'])} s",
                f"{rs['networkservice_writes']} NetworkService writes, {rs['set_rpcs']} Sets, {rs['get_rpcs']} Gets; "
                f"device passes settled after {fmt(rs.get('passes_settled_s'))} s",
                "",
            )
        )
    if "summary" in prof:
        top = prof["summary"]["self_by_package"][:4]
        rows.append(
            (
                "  profile of the controller during that run (py-spy)",
                ", ".join(f"{t['name']} {t['pct']}%" for t in top),
                "self time by package",
                "",
            )
        )
    if "subscription_variant" in r:
        sv = r["subscription_variant"]
        if sv.get("ran"):
            sp = sv["subscriptions_path"]
            rows.append(
                (
                    f"  Subscription variant: {sv['subscriptions']} Subscriptions (each owns a NetworkService) "
                    "to all Ready",
                    fmt(sp["wall_s"], " s") + ("" if sp["all_ready"] else f" (only {sp['ready']} Ready)"),
                    f"{sv['subscriptions']} plain NetworkServices: "
                    f"{fmt(sv['plain_networkservices']['wall_s'])} s; "
                    f"writes/Subscription mean {fmt(sp['writes_per_subscription_watch']['mean'])}, "
                    f"per owned NetworkService mean {fmt(sp['writes_per_owned_networkservice_watch']['mean'])} "
                    f"(create included); activation events at the sink after "
                    f"{fmt(sp['all_activation_events_delivered_s'], ' s')}",
                    "",
                )
            )
            wa = sv.get("with_admission")
            if wa and wa.get("ran"):
                wp = wa["subscriptions_path"]
                rows.append(
                    (
                        "  the same with the chart's admission webhooks registered (finalizer at admission)",
                        fmt(wp["wall_s"], " s") + ("" if wp["all_ready"] else f" (only {wp['ready']} Ready)"),
                        f"plain NetworkServices: {fmt(wa['plain_networkservices']['wall_s'])} s; controller writes"
                        f" per Subscription {fmt(wp['controller_writes_per_subscription'])} against"
                        f" {fmt(sp.get('controller_writes_per_subscription'))} without",
                        "",
                    )
                )
        else:
            rows.append(("  Subscription variant", str(sv.get("note", sv.get("error", ""))), "", ""))
    if "latency" in r:
        lat = r["latency"]
        rows.append(
            (
                f"2. Latency, one service at a time on an idle system ({lat['samples']} samples)",
                f"p50 {fmt(lat['apply_to_ready_ms'].get('p50'), ' ms')}, "
                f"p99 {fmt(lat['apply_to_ready_ms'].get('p99'), ' ms')}",
                f"device Set p50 {fmt(lat['device_set_ms'].get('p50'), ' ms')}; "
                f"{lat['services_on_system']:,} services on the system",
                ok(lat["goals"]["p99_under_1s"]) + " (p99 < 1 s)",
            )
        )
    if "drift" in r:
        dr = r["drift"]
        rows.append(
            (
                f"3. Drift repair, {dr['changes']} out-of-band changes",
                f"p50 {fmt(dr['repair_ms'].get('p50'), ' ms')}, p99 {fmt(dr['repair_ms'].get('p99'), ' ms')}",
                f"{dr['repaired']} repaired, {dr['timeouts']} not within 15 s",
                ok(dr["goals"]["p99_under_1s"]) + " (p99 < 1 s)",
            )
        )
    if "idle" in r:
        i = r["idle"]
        rows += [
            (
                f"4. Idle, {i['services']:,} Ready services on {fleet_label(i.get('fleet'))}, "
                f"{i['seconds']:.0f} s: API writes/min",
                fmt(i["api_writes_per_min"]),
                f"{i.get('api_writes', '-')} in {i['seconds']:.0f} s (watch): NetworkServices "
                f"{i['networkservice_writes']}, NetworkDevices {i['networkdevice_writes']}",
                ok(i["goals"]["zero_api_writes"]) + " (0)",
            ),
            (
                "  gNMI Sets/min",
                fmt(i["gnmi_sets_per_min"]),
                f"{i.get('gnmi_sets', '-')} Sets in {i['seconds']:.0f} s (devicesim stats); "
                f"Gets/min {fmt(i['gnmi_gets_per_min'])} (resync)",
                ok(i["goals"]["zero_gnmi_sets"]) + " (0)",
            ),
            (
                "  controller CPU",
                f"{fmt(i['controller_cpu_s'])} s ({fmt(i['controller_cpu_pct_of_core'])}% of a core)",
                f"RSS {fmt(i['controller_rss_mb'])} MB",
                "",
            ),
        ]
    if "profiles" in r:
        rows += profile_rows(r["profiles"])
    if "scale" in r:
        s = r["scale"]
        if "error" in s:
            rows.append(("5. Scale", "failed: " + s["error"], "", ""))
        else:
            big, small = s["per_device"]["largest"], s["per_device"]["smallest"]
            converged = (
                f"converged {fmt(s.get('controller_rss_converged_mb'))} MB"
                if s["all_ready"]
                else (f"at the deadline {fmt(s.get('controller_rss_at_deadline_mb'))} MB")
            )
            rows += [
                (
                    f"5. Scale, {s['services']:,} services / {s['devices']} "
                    f"{s.get('fleet', {}).get('profile', '')} devices: time to converge",
                    fmt(s["converge_s"], " s")
                    if s["all_ready"]
                    else f"**did not converge**: {s['ready']:,} Ready after {fmt(s['converge_s'])} s",
                    f"creates done at {fmt(s['creates_done_s'])} s; {fmt(s['services_per_s'])} services/s; "
                    f"Ready at 25/50/75%: "
                    + ", ".join(f"{v} s" for q, v in s.get("ready_at_s", {}).items() if q in ("25%", "50%", "75%")),
                    "full size" if s["goals"]["full_size"] else "**missed**",
                ),
                (
                    "  controller RSS peak",
                    fmt(s["controller_rss_peak_mb"], " MB"),
                    f"at start {fmt(s['controller_rss_start_mb'])} MB, {converged}; "
                    f"{fmt(s.get('controller_rss_kb_per_service'))} KB per service (RSS delta / services)",
                    ok(s["goals"]["rss_under_300mb"]) + " (< 300 MB)",
                ),
            ]
            add = s.get("add_one", {})
            if "skipped" in add:
                rows.append((f"  add one service to a device holding {big:,}", "not measured", add["skipped"], ""))
            elif add:
                ab, asm = add[f"device_with_{big}"], add[f"device_with_{small}"]
                rows += [
                    (
                        f"  add one service to a device holding {big:,}: device time (Set + 2 Gets, p50)",
                        fmt(ab["device_time_ms_p50"], " ms"),
                        f"Set p50 {fmt(ab['set_rpc_ms'].get('p50'), ' ms')}, "
                        f"Get p50 {fmt(ab['get_rpc_ms'].get('p50'), ' ms')}, "
                        f"apply->Ready p50 {fmt(ab['apply_to_ready_ms'].get('p50'), ' ms')}",
                        ok(s["goals"]["add_one_device_time_under_100ms"]) + " (< 100 ms)",
                    ),
                    (
                        f"  same on a device holding {small}",
                        fmt(asm["device_time_ms_p50"], " ms"),
                        f"Set p50 {fmt(asm['set_rpc_ms'].get('p50'), ' ms')}, "
                        f"Get p50 {fmt(asm['get_rpc_ms'].get('p50'), ' ms')}, "
                        f"Set ratio large/small {fmt(add['set_ratio_large_vs_small'])}",
                        ok(s["goals"]["add_one_set_independent_of_size"]) + " (Set independent of size)",
                    ),
                ]
    if "billing" in r:
        bl = r["billing"]
        if "delivery" in bl:
            d1, d16 = bl["delivery"]["concurrency_1"], bl["delivery"]["concurrency_16"]
            rows.append(
                (
                    "6. Billing: events/s through the outbox to an HTTP sink (another process)",
                    f"{fmt(d1['events_per_s'])}/s",
                    f"concurrency 16: {fmt(d16['events_per_s'])}/s; {d1['events']:,} events each",
                    "",
                )
            )
        if "invoice" in bl:
            inv = bl["invoice"]
            rows.append(
                (
                    f"  invoice run, {inv['subscriptions']:,} subscriptions ({inv['invoices']:,} invoices)",
                    fmt(inv["seconds"], " s"),
                    f"{fmt(inv['subscriptions_per_s'])} subscriptions/s, {inv['lines']:,} lines",
                    "",
                )
            )
        rows.append(("  scope", bl.get("note", bl.get("skipped", "")), "", ""))
    if "memory" in r:
        rows += memory_rows(r["memory"])
    if "references" in r:
        rows += reference_rows(r["references"])
    head = ["| measure | result | side by side | goal |", "|---|---|---|---|"]
    return "\n".join(head + [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows])


def memory_rows(m: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    if "error" in m:
        return [("7. Memory per service", "failed: " + m["error"], "", "")]
    rss = m["rss"]
    rows = [
        (
            f"7. Memory per Ready service, {m['services']:,} services / {m['devices']} devices (RSS delta / services)",
            fmt(rss["kb_per_service"], " KB"),
            f"VmRSS {fmt(rss['rss_before_mb'])} -> {fmt(rss['rss_after_mb'])} MB, VmHWM {fmt(rss['hwm_mb'])} MB"
            + ("" if rss["all_ready"] else f"; only {rss['ready']:,} Ready"),
            "",
        )
    ]
    c = m.get("census")
    if c:
        top = ", ".join(f"{k} {v}" for k, v in list(c["holders_kb_per_service"].items())[:4])
        rows.append(("  held by the controller's own structures (census)", fmt(c["kb_per_service"], " KB"), top, ""))
    t = m.get("tracemalloc")
    if t:
        top = ", ".join(f"{r['where']} {r['kb_per_service']}" for r in t["by_file"][:5])
        rows.append(
            (
                f"  tracemalloc, {t.get('services', 0):,} services: what the controller grew by",
                fmt(t["traced_kb_per_service"], " KB"),
                f"largest holders, KB per service: {top}",
                "",
            )
        )
    return rows


def reference_rows(refs: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    if "error" in refs:
        return [("8. References", "failed: " + refs["error"], "", "")]
    for key, r in refs.items():
        if not key.startswith("n"):
            continue
        if "error" in r:
            rows.append((f"8. References, {r['services']:,} services", "failed: " + r["error"], "", ""))
            continue
        ctl = r["controller"]["1"]
        k = r["kopf_operator"]
        rows += [
            (
                f"8. References, {r['services']:,} services / {r['devices']} devices: controller to all Ready",
                fmt(ctl["wall_s"], " s"),
                f"{fmt(r['ratios']['controller_vs_floor'])}x the floor; "
                f"{fmt(ctl.get('rss_kb_per_service'))} KB RSS per service",
                ok(r["goals"]["controller_within_1_5x_floor"]) + " (<= 1.5x the floor)",
            ),
            (
                "  plain Kopf operator (one handler per service, one pygnmi Set per event)",
                fmt(k["wall_s"], " s") + ("" if k["all_ready"] else f" ({k['ready']:,} Ready)"),
                f"{fmt(r['ratios']['kopf_operator_vs_floor'])}x the floor; writes/object {fmt(k['writes_per_object'])}",
                "",
            ),
            (
                "  floor: API server alone (create + finalizer + status) plus the batched device ceiling",
                fmt(r["floor_s"], " s"),
                f"API {fmt(r['floor_api']['wall_s'])} s + devices {fmt(r['floor_device']['wall_s'])} s",
                "",
            ),
        ]
    return rows


def git_state() -> dict[str, Any]:
    """The commit measured, and whether controller/ had uncommitted changes (controllers start at
    different times during a run: a change landing meanwhile shows as a different state at the end)."""

    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=B.ROOT, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {
        "commit": git("rev-parse", "--short", "HEAD"),
        "controller_dirty": bool(git("status", "--porcelain", "controller")),
    }


def machine() -> dict[str, Any]:
    import psutil

    load = os.getloadavg()
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_avg_at_start": [round(x, 2) for x in load],
        "mem_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
    }


def publish(res: dict[str, Any], table: str) -> None:
    doc = DOCS / "bench.md"
    begin, end = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"
    text = doc.read_text() if doc.exists() else f"# Benchmarks\n\n{begin}\n{end}\n"
    commit = res.get("git_at_start", {}).get("commit", "?")
    moved = res.get("git_at_end") != res.get("git_at_start")
    block = (
        f"{begin}\nRun {res['started']} at commit {commit}"
        f"{' (the code moved during the run)' if moved else ''} ({'quick' if res['quick'] else 'full'}; "
        f"{res['machine']['cpus']} CPUs, load average {res['machine']['load_avg_at_start']} at start, "
        f"{res['machine'].get('load_avg_at_end')} at the end; "
        f"total {res['total_s']:.0f} s):\n\n{table}\n{end}"
    )
    if begin in text and end in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text += "\n" + block + "\n"
    doc.write_text(text)
    if (RESULTS / "convergence.png").exists():
        shutil.copyfile(RESULTS / "convergence.png", DOCS / "bench-convergence.png")
    B.log("published docs/bench.md and docs/bench-convergence.png")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller sizes; about 4.5 minutes")
    parser.add_argument("--only", default="", help=f"comma-separated subset of {','.join(SCENARIOS)}")
    parser.add_argument(
        "--no-profile",
        action="store_true",
        help="run the convergence controller without py-spy (then nothing is profiled)",
    )
    parser.add_argument("--scale-services", type=int, default=0, help="override the scale scenario's size")
    parser.add_argument("--scale-devices", type=int, default=0)
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one size parameter, e.g. --set idle=30 (keys: see PROFILES)",
    )
    parser.add_argument(
        "--publish",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="refresh docs/bench.md and docs/bench-convergence.png (default: on a full run)",
    )
    args = parser.parse_args(argv)
    atexit.register(B.kill_leftovers)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks: stop every process
    only = [s for s in args.only.split(",") if s] or list(SCENARIOS)
    unknown = set(only) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    profile = dict(PROFILES["quick" if args.quick else "full"])
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in profile:
            parser.error(f"--set {key}: unknown parameter (one of {', '.join(profile)})")
        profile[key] = type(profile[key])(value)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    RESULTS.mkdir(parents=True, exist_ok=True)
    res: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "quick": args.quick,
        "machine": machine(),
        "git_at_start": git_state(),
        "parameters": profile,
        "scenarios": {},
    }
    started = time.monotonic()

    def save() -> None:  # after every scenario, so an interrupted run keeps what it measured
        res["total_s"] = round(time.monotonic() - started, 1)
        (RESULTS / f"{stamp}.json").write_text(json.dumps(res, indent=1, default=str) + "\n")

    workdir = Path(tempfile.mkdtemp(prefix="telco-bench-"))

    def scenario(name: str, fn: Any, *fn_args: Any) -> None:
        """Run one scenario and save; a failure is reported in its place and the rest of the run goes on."""
        t = time.monotonic()
        try:
            res["scenarios"][name] = fn(*fn_args)
        except Exception as exc:
            B.log(f"{name} failed: {exc!r}")
            res["scenarios"][name] = {"error": repr(exc)}
        res["scenarios"][name]["scenario_s"] = round(time.monotonic() - t, 1)
        save()

    try:
        ctx = Ctx(args, profile, workdir, stamp, res["scenarios"])
        if any(s in only for s in ("convergence", "latency", "drift", "idle")):
            run = NetworkRun(ctx)
            try:
                t = time.monotonic()
                res["scenarios"]["convergence"] = convergence(ctx, run)
                res["scenarios"]["convergence"]["scenario_s"] = round(time.monotonic() - t, 1)
                save()
                for name, fn in (
                    ("latency", latency),
                    ("drift", drift),
                    ("idle", idle),
                    ("subscription_variant", subscription_variant),
                ):
                    if name in only or (name == "subscription_variant" and "convergence" in only):
                        scenario(name, fn, ctx, run)
                api_cost_again(ctx, run, res["scenarios"]["convergence"])
                save()
            finally:
                run.close()
        if "profiles" in only:
            scenario("profiles", profiles, ctx)
        if "scale" in only:
            scenario("scale", scale, ctx)
        if "memory" in only:
            scenario("memory", memory, ctx)
        if "references" in only:
            scenario("references", references, ctx)
        if "billing" in only:
            t = time.monotonic()
            res["scenarios"]["billing"] = billing(ctx)
            res["scenarios"]["billing"]["scenario_s"] = round(time.monotonic() - t, 1)
            save()
    finally:
        keep = RESULTS / f"logs-{stamp}"
        keep.mkdir(exist_ok=True)
        for logfile in workdir.glob("*.log"):
            shutil.copyfile(logfile, keep / logfile.name)
        shutil.rmtree(workdir, ignore_errors=True)
    res["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    res["git_at_end"] = git_state()
    save()
    table = markdown(res)
    (RESULTS / f"{stamp}.md").write_text(table + "\n")
    print("\n" + table + "\n")
    B.log(f"results: bench/results/{stamp}.json (+ .md); total {res['total_s']:.0f}s")
    publish_now = args.publish if args.publish is not None else (not args.quick and not args.only and not args.set)
    if publish_now:
        publish(res, table)
    return 0


def _admission_modes(ctx: Ctx) -> list[bool]:
    """The Subscription variant's rounds: False without the admission webhooks, True with them registered."""
    modes = [m.strip() == "on" for m in str(ctx.p["sub_admission"]).split(",") if m.strip()]
    return modes or [False]


def subscription_variant(ctx: Ctx, run: NetworkRun) -> dict[str, Any]:
    """Convergence through the commercial layer: N Subscriptions, each owning a NetworkService, until
    every Subscription is Ready; side by side with N plain NetworkServices on the same system. With
    `sub_admission=off,on` the same again with the chart's webhooks registered (the finalizer is then
    added at admission, the controller's own finalizer writes go), in namespaces of its own."""
    runtime = B.ROOT / "controller" / "commerce" / "runtime.py"
    if not runtime.exists():
        return {"ran": False, "note": "not measured: controller/commerce/runtime.py does not exist"}
    if run.receiver is None:
        return {"ran": False, "note": "not measured: this controller has no --billing-sink-url flag"}
    assert run.controller is not None
    out: dict[str, Any] = {}
    for admission in _admission_modes(ctx):
        if not admission:
            out.update(_subscription_round(ctx, run, ""))
            continue
        from tests.harness import registered_webhook

        with registered_webhook(
            run.plane.api, run.controller, "bench-subscription-variant", controller_username=ADMIN_USER
        ):
            out["with_admission"] = _subscription_round(ctx, run, "-wh")
        if "ran" not in out:  # only the round with admission: it is the variant's figure
            out.update(out.pop("with_admission"))
            out["admission"] = True
    return out


def _subscription_round(ctx: Ctx, run: NetworkRun, suffix: str) -> dict[str, Any]:
    from tests.integration.test_commerce import offering, subscription

    assert run.controller is not None and run.receiver is not None
    api, ctl, n = run.plane.api, run.controller, ctx.p["sub_services"]
    devices = [run.names[i % len(run.names)] for i in range(n)]
    out: dict[str, Any] = {"ran": True, "subscriptions": n}

    # plain NetworkServices, same N, same system, just before
    plain_ns = f"bench-plain{suffix}"
    api.ensure_namespace(plain_ns)
    plain = [B.Svc(plain_ns, f"p{i:05d}", d, *run.next_slot(d)) for i, d in enumerate(devices)]
    watch = B.WatchAudit(run.plane.new_client(), "networkservices", plain_ns).start()
    m0 = ctl.metrics()
    t0 = time.monotonic()
    B.create_all(api, plain, workers=WORKERS)
    plain_keys = [f"{plain_ns}/{s.name}" for s in plain]
    ok = watch.wait_ready(plain_keys, ctx.p["sub_timeout"])
    pv = watch.versions(plain_keys)
    out["plain_networkservices"] = {
        "all_ready": ok,
        "wall_s": round(time.monotonic() - t0, 2),
        "writes_per_networkservice_watch": round(sum(pv) / max(1, len(pv)) - 1, 2),
        "write_kinds": dict(watch.write_kinds(plain_keys)),
    }
    time.sleep(1.0)
    out["plain_networkservices"]["controller_writes_by_resource"] = _writes_since(m0, ctl.metrics())
    watch.stop()

    sub_ns = f"bench-sub{suffix}"
    api.ensure_namespace(sub_ns)
    api.apply(offering("bench-fiber"))
    with contextlib.suppress(AssertionError):
        B.wait_for("ProductOffering Ready", lambda: B.is_ready(api.get("productofferings", "bench-fiber")), 20)
    bodies = []
    for i, d in enumerate(devices):
        port, vlan, ip = run.next_slot(d)
        body = subscription(sub_ns, f"sub{i:05d}", "bench-fiber", f"acct-{i % 50:03d}", d, port, vlan)
        body["spec"]["endpoints"][0]["ipv4Address"] = ip
        bodies.append(body)
    subs = B.WatchAudit(run.plane.new_client(), "subscriptions", sub_ns).start()
    owned = B.WatchAudit(run.plane.new_client(), "networkservices", sub_ns).start()
    time.sleep(1.0)
    events0 = run.receiver.count()
    m0 = ctl.metrics()
    cpu = B.CpuMeter({"controller": ctl.ps.pid})
    t0 = time.monotonic()
    B.create_objects(api, "subscriptions", bodies, workers=WORKERS)
    keys = [f"{sub_ns}/{b['metadata']['name']}" for b in bodies]
    ok = subs.wait_ready(keys, ctx.p["sub_timeout"])
    wall = time.monotonic() - t0
    # the activation events: every Subscription's first billing fact, through its outbox to the sink
    events_done = None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if run.receiver.count() - events0 >= n:
            events_done = time.monotonic() - t0
            break
        time.sleep(0.25)
    time.sleep(1.0)
    writes = _writes_since(m0, ctl.metrics())
    sv = subs.versions(keys)
    ov = owned.versions(list(owned.objects))
    out["subscriptions_path"] = {
        "all_ready": ok,
        "ready": subs.ready_count(keys),
        "wall_s": round(wall, 2),
        "writes_per_subscription_watch": {
            "mean": round(sum(sv) / max(1, len(sv)) - 1, 2),
            "max": max(sv, default=1) - 1,
        },
        "writes_per_owned_networkservice_watch": {
            "mean": round(sum(ov) / max(1, len(ov)), 2),
            "max": max(ov, default=0),
        },
        "subscription_write_kinds": dict(subs.write_kinds(keys)),
        "controller_writes_by_resource": writes,
        "controller_writes_per_subscription": round(sum(writes.values()) / n, 2),
        "controller_cpu_s": cpu.read()["controller"],
        "billing_events_received": run.receiver.count() - events0,
        "all_activation_events_delivered_s": round(events_done, 2) if events_done is not None else None,
    }
    subs.stop()
    owned.stop()
    out["ratio_subscriptions_vs_plain"] = round(wall / out["plain_networkservices"]["wall_s"], 2)
    out["note"] = (
        f"{n} Subscriptions Ready in {wall:.1f} s vs {out['plain_networkservices']['wall_s']:.1f} s for "
        f"{n} plain NetworkServices" + (" (admission webhooks registered)" if suffix else "")
    )
    B.log("  subscription variant: " + out["note"])
    return out


def _writes_since(m0: Any, m1: Any) -> dict[str, int]:
    """The controller's own API writes (telco_kube_writes_total) between two scrapes, by resource."""
    before = B.metric_by(m0, "telco_kube_writes_total", "resource")
    after = B.metric_by(m1, "telco_kube_writes_total", "resource")
    return {k: int(v - before.get(k, 0)) for k, v in after.items() if v - before.get(k, 0)}


if __name__ == "__main__":
    sys.exit(main())
