"""`make demo`: the whole product on the embedded default, on one machine.

Starts a local control plane (or uses the current kube context with
USE_CURRENT_CONTEXT=1), a devicesim fleet, the CRDs and the controller; applies the
quick-start scenario; shows progress while objects become Ready; prints what a
dashboard would show, the billing events and the invoice; then stays up until
Ctrl-C (or exits with --once, for CI and smoke tests).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from devicesim.fleet import FleetProcess
from localcluster import ClusterError, LocalCluster

from . import status as status_view

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "examples" / "quickstart"
STATE = ROOT / ".local" / "demo"


class DemoError(RuntimeError):
    pass


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


def kubectl(kubeconfig: Path | None, *args: str, stdin: str | None = None) -> str:
    local = ROOT / "bin" / "kubectl"
    binary = str(local) if local.exists() else shutil.which("kubectl")
    if binary is None:
        raise DemoError("kubectl not found: run `make bin`")
    env = dict(os.environ)
    if kubeconfig is not None:
        env["KUBECONFIG"] = str(kubeconfig)
    proc = subprocess.run([binary, *args], input=stdin, capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode != 0:
        raise DemoError(f"kubectl {' '.join(args)}: {proc.stderr.strip()}")
    return proc.stdout


def progress(label: str, count: Callable[[], tuple[int, int]], timeout: float) -> None:
    """A one-line progress bar until count() reports done == total."""
    deadline = time.monotonic() + timeout
    done, total = count()
    tty = sys.stdout.isatty()
    while True:
        bar = "#" * int(30 * done / max(total, 1))
        line = f"    {label:<26} [{bar:<30}] {done}/{total}"
        print(f"\r{line}" if tty else line, end="" if tty else "\n", flush=True)
        if done >= total and total > 0:
            break
        if time.monotonic() > deadline:
            print()
            raise DemoError(f"{label}: only {done} of {total} after {timeout:.0f}s (see {STATE}/controller.log)")
        time.sleep(0.5 if tty else 2.0)
        done, total = count()
    if tty:
        print()


def ready_counter(kubeconfig: Path | None, plural: str) -> Callable[[], tuple[int, int]]:
    def count() -> tuple[int, int]:
        items = json.loads(kubectl(kubeconfig, "get", plural, "-A", "-o", "json"))["items"]
        ready = sum(1 for i in items if status_view.condition_status(i, "Ready") == "True")
        return ready, len(items)

    return count


def run(once: bool) -> int:
    STATE.mkdir(parents=True, exist_ok=True)
    cluster: LocalCluster | None = None
    fleet: FleetProcess | None = None
    controller: subprocess.Popen[bytes] | None = None
    kubeconfig: Path | None = None
    try:
        if os.environ.get("USE_CURRENT_CONTEXT") == "1":
            step("using the current kube context (USE_CURRENT_CONTEXT=1)")
        else:
            step("starting the local control plane (etcd + kube-apiserver on 127.0.0.1)")
            kubeconfig = STATE / "kubeconfig"
            cluster = LocalCluster(kubeconfig=kubeconfig).start()
            print(f"    API server {cluster.server}")
        step("starting devicesim: 3 simulated routers (examples/quickstart/fleet.yaml)")
        fleet = FleetProcess(["--fleet", str(QUICKSTART / "fleet.yaml")], workdir=STATE / "devicesim").start()
        for name, info in fleet.devices.items():
            print(f"    {name}: gNMI on {info.address}:{info.port} (TLS, CA {fleet.ca_path})")
        step("installing the CRDs generated from controller/api")
        kubectl(kubeconfig, "apply", "--server-side", "-f", str(ROOT / "crds"))
        kubectl(kubeconfig, "wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        kubectl(kubeconfig, "apply", "--server-side", "-f", str(QUICKSTART / "00-namespaces.yaml"))
        assert fleet.ca_path is not None
        ca_secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "devicesim-ca", "namespace": "telco-system"},
            "stringData": {"ca.crt": Path(fleet.ca_path).read_text()},
        }
        kubectl(kubeconfig, "apply", "--server-side", "--force-conflicts", "-f", "-", stdin=yaml.safe_dump(ca_secret))
        step("starting the controller (python -m controller run); log in .local/demo/controller.log")
        events_file = STATE / "billing-events.jsonl"
        events_file.unlink(missing_ok=True)
        # A short billing interval so the demo's draft invoice fills within seconds.
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TELCO_BILLING_INTERVAL_SECONDS": "3"}
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        with open(STATE / "controller.log", "wb") as log:
            controller = subprocess.Popen(
                [sys.executable, "-m", "controller", "run", "--billing-jsonl", str(events_file)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        for path in sorted(QUICKSTART.glob("[1-9]*.yaml")):
            step(f"applying {path.relative_to(ROOT)}")
            kubectl(kubeconfig, "apply", "--server-side", "-f", str(path))
        step("waiting for the network and the orders to converge")
        progress("NetworkDevices Ready", ready_counter(kubeconfig, "networkdevices"), 60)
        progress("Subscriptions active", ready_counter(kubeconfig, "subscriptions"), 120)
        # The quick-start NetworkService is a dry run: it reports its plan and stays not Ready.
        step("what a dashboard shows")
        print(status_view.render(status_view.collect_with_kubectl(lambda *a: kubectl(kubeconfig, *a))))
        step(f"billing events delivered (JSON Lines sink {events_file.relative_to(ROOT)})")
        _wait_for_events(events_file, minimum=12, timeout=60)
        print(status_view.render_events(events_file))
        step("the invoice of examples/quickstart/50-invoice.yaml (a draft until November ends)")
        invoice = _wait_for_invoice_lines(kubeconfig, "acme", "acme-001-2026-11-adhoc", 60)
        print(status_view.render_invoice(invoice))
        if once:
            step("demo checks passed")
            return 0
        where = f"export KUBECONFIG={kubeconfig}" if kubeconfig else "(your current context)"
        print(
            f"\nExplore:\n  {where}\n  kubectl get telco -A\n  python -m controller status\n"
            f"  devicesim admin --url {fleet.admin_url} dump pe1\nPress Ctrl-C to stop everything."
        )
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()
    except KeyboardInterrupt:
        print("\nstopping")
    except (ClusterError, DemoError, RuntimeError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 1
    finally:
        if controller is not None and controller.poll() is None:
            controller.terminate()
            try:
                controller.wait(20)
            except subprocess.TimeoutExpired:
                controller.kill()
        if fleet is not None:
            fleet.stop()
        if cluster is not None:
            cluster.stop()
    return 0


def _wait_for_invoice_lines(kubeconfig: Path | None, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        invoice: dict[str, Any] = json.loads(kubectl(kubeconfig, "get", "invoice", name, "-n", namespace, "-o", "json"))
        if (invoice.get("status") or {}).get("lines") or time.monotonic() > deadline:
            return invoice
        time.sleep(1)


def _wait_for_events(path: Path, minimum: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and sum(1 for _ in path.open()) >= minimum:
            return
        time.sleep(0.5)
    have = sum(1 for _ in path.open()) if path.exists() else 0
    raise DemoError(f"only {have} billing events reached {path} after {timeout:.0f}s (expected {minimum})")
