"""Controller start-up after a SIGKILL: how long a restarted controller takes to serve again.

On its own control plane (LocalCluster) and devicesim fleet: N Subscriptions (each owning a
NetworkService) on D devices, brought up once; then, `--rounds` times per mode, the controller is
SIGKILLed, one Subscription's order is changed while it is down (an immediate offering change, as the
order chaos makes them), and the controller is started again. Each round reports the controller's own
start-up timeline (the `start-up: <phase> at <s> s after exec` INFO lines, controller/startup.py) and,
measured from outside, when the order change was in force (status.billing.plans names the new
offering), counted from the exec.

Modes: `calm`, and `load`: two busy loops (`python -c 'while 1: pass'`) at the benchmark's own
niceness beside the controller for the whole round.

    PATH=$PWD/bin:$PATH nice .venv/bin/python bench/startup_bench.py --subscriptions 50 --devices 5
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import benchlib as B  # noqa: E402

from tests.harness import ControllerProcess, wait_for  # noqa: E402
from tests.integration.test_commerce import billing_account, per_second, subscription_for_account  # noqa: E402

PHASE = re.compile(r"start-up: (.+) at ([0-9.]+) s after exec \(([0-9.]+) s CPU\)")
NAMESPACE = "startup-bench"
OFFERINGS = ("sb-one", "sb-two")
IMMEDIATE = {"changePolicy": {"upgrade": "immediate", "downgrade": "immediate"}}


def plans_offerings(sub: dict[str, Any] | None) -> list[str]:
    plans = (((sub or {}).get("status") or {}).get("billing") or {}).get("plans") or []
    return [str(p.get("offering") or "") for p in plans]


def in_force(sub: dict[str, Any] | None) -> str | None:
    offerings = plans_offerings(sub)
    return offerings[-1] if offerings else None


@contextlib.contextmanager
def busy(count: int) -> Iterator[None]:
    procs = [subprocess.Popen([sys.executable, "-c", "while 1: pass"]) for _ in range(count)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def timeline(log_text: str) -> dict[str, tuple[float, float]]:
    """phase -> (seconds after exec, CPU seconds of the process by then)."""
    return {m.group(1): (float(m.group(2)), float(m.group(3))) for m in PHASE.finditer(log_text)}


def setup(api: Any, fleet: Any, devices: list[str], count: int) -> list[str]:
    B.register_devices(api, fleet, devices)
    for i, name in enumerate(OFFERINGS):
        api.apply(per_second(str(i + 1), name, 100 * (i + 1), **IMMEDIATE))
    api.ensure_namespace(NAMESPACE)
    api.apply(billing_account(NAMESPACE, "acct"))
    per = B.spread(count, devices)
    bodies = []
    for svc in B.layout(NAMESPACE, per, prefix="sub"):
        bodies.append(
            subscription_for_account(NAMESPACE, svc.name, OFFERINGS[0], "acct", svc.device, svc.port, svc.vlan)
        )
    B.create_objects(api, "subscriptions", bodies)
    return [b["metadata"]["name"] for b in bodies]


def all_active(api: Any, names: list[str]) -> bool:
    items = api.custom.list_namespaced_custom_object(B.GROUP, B.VERSION, NAMESPACE, "subscriptions")["items"]
    active = {i["metadata"]["name"] for i in items if (i.get("status") or {}).get("state") == "active"}
    return set(names) <= active


def one_round(api: Any, ctl: ControllerProcess, target: str, log_path: Path) -> dict[str, Any]:
    sub = api.get("subscriptions", target, NAMESPACE)
    assert sub is not None
    current = in_force(sub)
    new = OFFERINGS[1] if current == OFFERINGS[0] else OFFERINGS[0]
    ctl.kill9()
    api.custom.patch_namespaced_custom_object(
        B.GROUP, B.VERSION, NAMESPACE, "subscriptions", target, {"spec": {"productOffering": {"name": new}}}
    )
    before = len(ctl.logs())
    exec_at = time.monotonic()
    ctl.start()
    wait_for(f"{target} on {new}", lambda: in_force(api.get("subscriptions", target, NAMESPACE)) == new, 180, 0.1)
    changed = time.monotonic() - exec_at
    needed = ("first Subscription pass", "first device pass")
    wait_for("the first passes", lambda: all(k in timeline(ctl.logs()[before:]) for k in needed), 60, 0.2)
    return {"timeline": timeline(ctl.logs()[before:]), "change_in_force": round(changed, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subscriptions", type=int, default=50)
    ap.add_argument("--devices", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--modes", default="calm,load")
    ap.add_argument("--busy", type=int, default=2, help="busy loops in the load mode")
    ap.add_argument("--json", type=Path, help="write the results here too")
    args = ap.parse_args(argv)
    results: dict[str, Any] = {"subscriptions": args.subscriptions, "devices": args.devices, "modes": {}}
    with tempfile.TemporaryDirectory(prefix="startup-bench-") as tmp:
        work = Path(tmp)
        plane = B.ControlPlane(work / "cluster").start()
        devices = B.device_names(args.devices)
        fleet = B.start_fleet(devices, work / "fleet")
        try:
            api = plane.api
            names = setup(api, fleet, devices, args.subscriptions)
            log_path = work / "controller.log"
            ctl = ControllerProcess(
                plane.kubeconfig, log_path, "--log-level", "info", "--billing-interval-seconds", "5"
            )
            t0 = time.monotonic()
            ctl.start()
            try:
                wait_for("every Subscription active", lambda: all_active(api, names), 600, 1.0)
                B.log(f"{len(names)} Subscriptions active after {time.monotonic() - t0:.0f} s")
                for mode in args.modes.split(","):
                    rounds = []
                    with busy(args.busy if mode == "load" else 0):
                        for i in range(args.rounds):
                            load = Path("/proc/loadavg").read_text().split()[0]
                            out = one_round(api, ctl, names[i % len(names)], log_path)
                            out["loadavg"] = load
                            rounds.append(out)
                            B.log(f"{mode} round {i + 1}: load {load}, change in force {out['change_in_force']} s")
                            for phase, (at, cpu) in sorted(out["timeline"].items(), key=lambda kv: kv[1]):
                                B.log(f"    {at:7.2f} s ({cpu:5.2f} s CPU)  {phase}")
                            time.sleep(2)
                    results["modes"][mode] = rounds
            finally:
                ctl.stop()
                (ROOT / "bench" / "results").mkdir(exist_ok=True)
                (ROOT / "bench" / "results" / "startup-controller.log").write_text(ctl.logs())
        finally:
            fleet.stop()
            plane.stop()
    for mode, rounds in results["modes"].items():
        phases = sorted(
            {p for r in rounds for p in r["timeline"]}, key=lambda p: rounds[0]["timeline"].get(p, (1e9, 0))[0]
        )
        print(f"\n{mode} ({args.subscriptions} Subscriptions on {args.devices} devices), median of {len(rounds)}:")
        for p in phases:
            walls = [r["timeline"][p][0] for r in rounds if p in r["timeline"]]
            cpus = [r["timeline"][p][1] for r in rounds if p in r["timeline"]]
            print(
                f"  {statistics.median(walls):7.2f} s ({statistics.median(cpus):5.2f} s CPU)  {p}"
                f"  ({', '.join(f'{v:.2f}' for v in walls)})"
            )
        changes = [r["change_in_force"] for r in rounds]
        print(f"  {statistics.median(changes):7.2f} s  order change in force ({', '.join(map(str, changes))})")
        print(f"  load: {', '.join(r['loadavg'] for r in rounds)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
