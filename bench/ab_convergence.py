"""Convergence of two (or more) controller checkouts, interleaved, each run on a fresh system.

    PATH="$PWD/bin:$PATH" .venv/bin/python bench/ab_convergence.py \
        --variant base=/tmp/base-checkout --variant branch=. --services 1000 --subscriptions 1000 --rounds 2

On a shared 2-core machine wall times move by tens of percent between runs; comparing two versions
of the controller holds only side by side. This runs each variant in turn (base, branch, base,
branch, ...), each run on a fresh etcd, kube-apiserver and devicesim fleet (strict devices) with a
fresh controller process started from that checkout (`python -m controller run` with the checkout
as its working directory, so its `controller` package is the one imported), N NetworkServices
created by 4 client threads until all are Ready, then N Subscriptions (each owning a
NetworkService) until all are Ready; then everything is stopped. Per run and phase it reports
wall time (first create to last Ready on the watch), the controller's CPU seconds (user + system,
psutil) per object, its device passes, the API writes per object seen on the watch
(resourceVersion changes after the create) and the controller's own write count. `--profile`
runs the controller under py-spy (samples holding the GIL) and writes a summary of the run's
stacks (bench/profile_report.py) next to the JSON in bench/results/.

`--admission off,on` runs every variant twice: as before, and with the controller's admission
webhooks registered as the chart registers them (tests.harness.registered_webhook: validating, and
the mutating one that adds the finalizer at create, `webhook.addFinalizer`, the chart's default), so
what the finalizer at admission saves (and what admission costs the controller) is measured.
`on-all` registers them without the condition that spares the controller's own writes of a
Subscription's NetworkService (as before 2026-12-04), to measure what that condition saves.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchlib as B
from profile_report import render_text, summarise

from localcluster.cluster import ADMIN_USER
from tests.harness import registered_webhook
from tests.integration.test_commerce import offering, subscription

RESULTS = Path(__file__).resolve().parent / "results"
WORKERS = 4


class CheckoutController(B.BenchController):
    """A BenchController started from another checkout's working directory."""

    def __init__(self, source: Path, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.source = source

    def start(self) -> CheckoutController:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1", **self.env}
        cmd = [sys.executable, "-m", "controller", "run", *self.args]
        if self.profile_to is not None:
            spy = Path(sys.executable).with_name("py-spy")
            prefix = [str(spy), "record", "--nonblocking", "--gil", "--rate", "100", "--format", "raw"]
            cmd = [*prefix, "--output", str(self.profile_to), "--", *cmd]
        with open(self.log_path, "ab") as logf:
            self.proc = subprocess.Popen(
                cmd, cwd=self.source, env=env, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True
            )
        self._ps = None
        B._LIVE.add(self)
        return self


def phase(
    api: Any,
    watch: B.WatchAudit,
    ctl: B.BenchController,
    plural: str,
    bodies: list[dict[str, Any]],
    timeout: float,
    plane_pids: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Create `bodies` from 4 threads, wait until every one is Ready on `watch`: wall, CPU, writes."""
    keys = [f"{b['metadata']['namespace']}/{b['metadata']['name']}" for b in bodies]
    m0 = ctl.metrics()
    cpu0 = ctl.cpu()
    others = B.CpuMeter(plane_pids or {})  # the API server and etcd: is the run bound by them?
    t0 = time.monotonic()
    B.create_objects(api, plural, bodies, workers=WORKERS)
    ok = watch.wait_ready(keys, timeout)
    # .get: a create that admission kept refusing (the client gives up after 5 tries) never appears
    ready = sorted(t - t0 for k in keys if (o := watch.objects.get(k)) is not None and (t := o.ready_at) is not None)
    wall = ready[-1] if ok else time.monotonic() - t0
    time.sleep(2.0)  # the writes trailing the last Ready are counted too
    cpu = ctl.cpu() - cpu0
    other_cpu = others.read()
    m1 = ctl.metrics()
    before = B.metric_by(m0, "telco_kube_writes_total", "resource")
    writes = {k: int(v - before.get(k, 0)) for k, v in B.metric_by(m1, "telco_kube_writes_total", "resource").items()}
    versions = watch.versions(keys)
    passes = B.metric_sum(m1, "telco_reconcile_total") - B.metric_sum(m0, "telco_reconcile_total")
    # Passes by queue (NetworkDevice, Subscription, ProductOffering, BillingAccount, Invoice): the total
    # alone mixes device passes with the commerce layer's own.
    kinds0 = B.metric_by(m0, "telco_reconcile_total", "kind")
    by_kind = {k: int(v - kinds0.get(k, 0)) for k, v in B.metric_by(m1, "telco_reconcile_total", "kind").items()}
    # The admission webhook's whole-kind lists (telco_admission_lists_total; base checkouts may lack it)
    lists0 = B.metric_by_labels(m0, "telco_admission_lists_total", ("kind", "reason"))
    lists = {
        k: int(v - lists0.get(k, 0))
        for k, v in B.metric_by_labels(m1, "telco_admission_lists_total", ("kind", "reason")).items()
    }
    listed0 = B.metric_by(m0, "telco_admission_listed_objects_total", "kind")
    listed = {
        k: int(v - listed0.get(k, 0))
        for k, v in B.metric_by(m1, "telco_admission_listed_objects_total", "kind").items()
    }
    n = len(bodies)
    return {
        "admission_lists": {"/".join(k): v for k, v in sorted(lists.items()) if v},
        "admission_listed_objects": {k: v for k, v in sorted(listed.items()) if v},
        "all_ready": ok,
        "created": sum(1 for k in keys if k in watch.objects),
        "ready": len(ready),
        "wall_s": round(wall, 2),
        "controller_cpu_s": round(cpu, 2),
        "cpu_ms_per_object": round(1000 * cpu / n, 2),
        "control_plane_cpu_s": other_cpu,
        "writes_per_object_watch": round(sum(versions) / max(1, len(versions)) - 1, 2),
        "write_kinds": dict(watch.write_kinds(keys)),
        "controller_writes": {k: v for k, v in writes.items() if v},
        "controller_writes_per_object": round(sum(writes.values()) / n, 2),
        "controller_writes_per_object_by_resource": {k: round(v / n, 2) for k, v in sorted(writes.items()) if v},
        "passes": int(passes),
        "passes_by_kind": {k: v for k, v in sorted(by_kind.items()) if v},
        "passes_per_object_by_kind": {k: round(v / n, 2) for k, v in sorted(by_kind.items()) if v},
    }


def one_run(
    args: argparse.Namespace,
    plane: B.ControlPlane,
    fleet: Any,
    names: list[str],
    receiver: B.ReceiverProcess,
    label: str,
    source: Path,
    run_id: str,
    workdir: Path,
    admission: str,
) -> dict[str, Any]:
    api = plane.api
    out: dict[str, Any] = {"variant": label, "source": str(source), "admission": admission}
    profile_to = RESULTS / f"ab-{run_id}.raw" if args.profile else None
    ctl = CheckoutController(
        source,
        plane.kubeconfig,
        workdir / f"{run_id}.log",
        extra=["--billing-sink-url", receiver.url],
        profile_to=profile_to,
        webhook=admission != "off",
    ).start()
    svc_ns, sub_ns = f"{run_id}-svc", f"{run_id}-sub"
    try:
        B.wait_devices_ready(api, names)
        ctl.wait_up(len(names))
        time.sleep(1.0)
        # the controller runs as the plane's admin, as the chart's runs as its ServiceAccount: its own writes
        # of a Subscription's NetworkService are not judged again (controller/admission.py)
        owner = ADMIN_USER if admission == "on" else None
        hooks = registered_webhook(api, ctl, f"ab-{run_id}", controller_username=owner)
        with hooks if admission != "off" else contextlib.nullcontext():
            phases(args, api, plane, ctl, names, receiver, run_id, svc_ns, sub_ns, out)
    finally:
        ctl.stop()
    if profile_to is not None and profile_to.exists():
        text = RESULTS / f"ab-{run_id}.txt"
        text.write_text(render_text(summarise(profile_to, top=40)) + "\n")
        out["profile"] = str(text)
    return out


def phases(
    args: argparse.Namespace,
    api: Any,
    plane: B.ControlPlane,
    ctl: B.BenchController,
    names: list[str],
    receiver: B.ReceiverProcess,
    run_id: str,
    svc_ns: str,
    sub_ns: str,
    out: dict[str, Any],
) -> None:
    """The two phases of one run: N plain NetworkServices, then N Subscriptions."""
    if args.services:
        api.ensure_namespace(svc_ns)
        services = B.layout(svc_ns, B.spread(args.services, names))
        watch = B.WatchAudit(plane.new_client(), "networkservices", svc_ns).start()
        time.sleep(0.5)
        B.log(f"{run_id}: {args.services} NetworkServices")
        out["services"] = phase(
            api, watch, ctl, "networkservices", [s.body() for s in services], args.timeout, plane.pids()
        )
        watch.stop()
        B.log(f"  {out['services']['wall_s']} s, {out['services']['cpu_ms_per_object']} ms CPU each")
    if args.subscriptions:
        api.ensure_namespace(sub_ns)
        start = B.spread(args.services, names) if args.services else {}
        bodies = []
        for i, svc in enumerate(B.layout(sub_ns, B.spread(args.subscriptions, names), start=start)):
            account = f"acct-{i % 50:03d}"
            body = subscription(sub_ns, f"sub{i:05d}", "bench-fiber", account, svc.device, svc.port, svc.vlan)
            body["spec"]["endpoints"][0]["ipv4Address"] = svc.ip
            bodies.append(body)
        subs = B.WatchAudit(plane.new_client(), "subscriptions", sub_ns).start()
        owned = B.WatchAudit(plane.new_client(), "networkservices", sub_ns).start()
        time.sleep(0.5)
        events0 = receiver.count()
        B.log(f"{run_id}: {args.subscriptions} Subscriptions")
        out["subscriptions"] = phase(api, subs, ctl, "subscriptions", bodies, args.timeout, plane.pids())
        out["subscriptions"]["billing_events_received"] = receiver.count() - events0
        svc_keys = list(owned.objects)
        ov = owned.versions(svc_keys)
        # the owned NetworkService's writes, its create included (the Subscription's exclude theirs)
        out["subscriptions"]["owned_service_writes_per_object_watch"] = round(sum(ov) / max(1, len(ov)), 2)
        out["subscriptions"]["owned_service_write_kinds"] = dict(owned.write_kinds(svc_keys))
        subs.stop()
        owned.stop()
        B.log(f"  {out['subscriptions']['wall_s']} s, {out['subscriptions']['cpu_ms_per_object']} ms CPU each")


def fresh_run(
    args: argparse.Namespace, label: str, source: Path, run_id: str, workdir: Path, admission: str
) -> dict[str, Any]:
    """One run on its own fresh control plane, fleet and billing sink (much faster than deleting
    thousands of finalized objects, and every run starts from the same empty system)."""
    plane = B.ControlPlane(workdir / f"cluster-{run_id}").start()
    names = B.device_names(args.devices)
    fleet = B.start_fleet(names, workdir / f"fleet-{run_id}", "strict")
    receiver = B.ReceiverProcess()
    try:
        B.register_devices(plane.api, fleet, names)
        plane.api.apply(offering("bench-fiber"))
        return one_run(args, plane, fleet, names, receiver, label, source, run_id, workdir, admission)
    finally:
        receiver.stop()
        fleet.stop()
        plane.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", action="append", required=True, metavar="LABEL=DIR", help="a checkout to run")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--subscriptions", type=int, default=1000)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--profile", action="store_true", help="py-spy on every controller run")
    parser.add_argument(
        "--admission",
        default="off",
        help="off, on, on-all or a list of them: run each variant without and/or with the chart's admission"
        " webhooks registered (on-all: the controller's own owned-service writes judged too)",
    )
    args = parser.parse_args(argv)
    variants = [(label, Path(d).resolve()) for label, _, d in (v.partition("=") for v in args.variant)]
    import atexit

    atexit.register(B.kill_leftovers)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    workdir = Path(tempfile.mkdtemp(prefix="telco-ab-"))
    res: dict[str, Any] = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "args": vars(args), "runs": []}
    res["load_avg_at_start"] = [round(x, 2) for x in os.getloadavg()]
    path = RESULTS / f"ab-{stamp}.json"
    modes = [m.strip() for m in args.admission.split(",") if m.strip()]
    if bad := [m for m in modes if m not in ("off", "on", "on-all")]:
        parser.error(f"--admission: {bad} are not off, on or on-all")
    for r in range(args.rounds):
        for admission in modes:
            for label, source in variants:
                tag = {"off": label, "on": f"{label}+webhook", "on-all": f"{label}+webhook-all"}[admission]
                run = fresh_run(args, tag, source, f"r{r}-{tag.replace('+', '-')}", workdir, admission)
                run["load_avg"] = [round(x, 2) for x in os.getloadavg()]
                res["runs"].append(run)
                path.write_text(json.dumps(res, indent=1) + "\n")
    res["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    path.write_text(json.dumps(res, indent=1) + "\n")
    print(f"\n{'run':<18} {'phase':<14} {'wall s':>8} {'CPU s':>8} {'ms/obj':>8} {'writes/obj':>10}  passes/obj")
    for run in res["runs"]:
        for ph in ("services", "subscriptions"):
            if ph in run:
                p = run[ph]
                print(
                    f"{run['variant']:<18} {ph:<14} {p['wall_s']:>8} {p['controller_cpu_s']:>8} "
                    f"{p['cpu_ms_per_object']:>8} {p['writes_per_object_watch']:>10}  {p['passes_per_object_by_kind']}"
                )
                print(f"{'':<33} writes/obj by resource: {p['controller_writes_per_object_by_resource']}")
                if p.get("admission_lists"):
                    print(f"{'':<33} admission lists: {p['admission_lists']} objects: {p['admission_listed_objects']}")
    B.log(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
