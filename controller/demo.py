"""`make demo`: the whole product on the embedded default, on one machine.

Starts a local control plane (or uses the current kube context with
USE_CURRENT_CONTEXT=1), a devicesim fleet, the CRDs and the controller; applies the
quick-start scenario; shows progress while objects become Ready; prints what a
dashboard would show, the billing events and the invoice; then stays up until
Ctrl-C (or exits with --once, for CI and smoke tests).

Everything dated or machine-specific in the scenario comes from the moment and the machine
it runs on (controller/demo_scenario.py): free ports for the simulated routers, an invoice for
the current month so far. `--at` runs the whole demo, controller included, as if it were
another instant (the controller's clock offset), which is how the tests try month ends.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from devicesim.fleet import FleetProcess
from localcluster import ClusterError, LocalCluster
from localcluster.cluster import free_port
from localcluster.webhook import serving_certificate

from . import demo_scenario as scenario
from . import status as status_view
from .admission import mutating_webhook_configuration, webhook_configuration
from .times import rfc3339

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "examples" / "quickstart"
STATE = ROOT / ".local" / "demo"
WEBHOOKS_NAME = "telco-intent-demo"


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


def _ready_now(kubeconfig: Path | None) -> dict[str, tuple[int, int]]:
    """(Ready, present) per kind the scenario checks, read from the API server now."""
    return {kind: ready_counter(kubeconfig, plural)() for kind, plural in scenario.READY_KINDS.items()}


def ready_counter(kubeconfig: Path | None, plural: str) -> Callable[[], tuple[int, int]]:
    def count() -> tuple[int, int]:
        items = json.loads(kubectl(kubeconfig, "get", plural, "-A", "-o", "json"))["items"]
        ready = sum(1 for i in items if status_view.condition_status(i, "Ready") == "True")
        return ready, len(items)

    return count


def _free_port_fleet(source: Path, target: Path) -> Path:
    """The fleet file with every device port left to the simulator (0: a free one at start)."""
    fleet = yaml.safe_load(source.read_text())
    for device in fleet["devices"]:
        device.pop("port", None)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump(fleet, sort_keys=False))
    return target


def _signing_key(path: Path) -> Path:
    """The demo's billing signing key, made once and kept (as a Secret would be) so a restart verifies."""
    if not path.exists():
        path.write_text(secrets.token_hex(32) + "\n")
        path.chmod(0o600)
    return path


def _report(checks: list[scenario.Check]) -> None:
    for check in checks:
        print(f"    {'ok    ' if check.ok else 'FAILED'} {check.what} ({check.detail})")
    failed = [c.what for c in checks if not c.ok]
    if failed:
        raise DemoError("demo check failed: " + "; ".join(failed))


def _hints(kubeconfig: Path | None, admin_url: str | None) -> str:
    """What to try next, each line runnable as printed from the checkout on a fresh machine."""
    where = f"export KUBECONFIG={kubeconfig}" if kubeconfig else "# (your current kube context)"
    return (
        f"\nExplore (in another terminal, from {ROOT}):\n"
        f"  {where}\n"
        "  bin/kubectl get telco -A\n"
        "  bin/kubectl describe subscription hq -n acme\n"
        "  make status                      # the dashboard tables again\n"
        f"  .venv/bin/devicesim admin --url {admin_url or 'URL'} dump pe1"
    )


def run(once: bool, at: datetime | None = None) -> int:
    """The demo; `at` runs it (controller included) as if the clock showed that instant."""
    STATE.mkdir(parents=True, exist_ok=True)
    offset = (at - datetime.now(UTC)).total_seconds() if at is not None else 0.0

    def now() -> datetime:
        return datetime.fromtimestamp(time.time() + offset, UTC)

    cluster: LocalCluster | None = None
    fleet: FleetProcess | None = None
    controller: subprocess.Popen[bytes] | None = None
    kubeconfig: Path | None = None
    try:
        if at is not None:
            moved = rfc3339(now().replace(microsecond=0))
            step(f"the clock of this demo and its controller is set to {moved} (--at)")
        if os.environ.get("USE_CURRENT_CONTEXT") == "1":
            step("using the current kube context (USE_CURRENT_CONTEXT=1)")
        else:
            step("starting the local control plane (etcd + kube-apiserver on 127.0.0.1)")
            kubeconfig = STATE / "kubeconfig"
            cluster = LocalCluster(kubeconfig=kubeconfig).start()
            print(f"    API server {cluster.server}")
        step("starting devicesim: 3 simulated routers (examples/quickstart/fleet.yaml, on free ports)")
        fleet_file = _free_port_fleet(QUICKSTART / "fleet.yaml", STATE / "fleet.yaml")
        fleet = FleetProcess(["--fleet", str(fleet_file)], workdir=STATE / "devicesim").start()
        for name, info in fleet.devices.items():
            print(f"    {name}: gNMI on {info.address} (TLS, CA {fleet.ca_path})")
        device_ports = {name: info.port for name, info in fleet.devices.items()}
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
        # The TM Forum APIs beside it (docs/tmf.md), on a free port, with a certificate from a CA made here.
        tmf_ca = serving_certificate(STATE / "tmf-certs")
        tmf_port = free_port()
        env.update(TELCO_TMF_PORT=str(tmf_port), TELCO_TMF_CERT_DIR=str(STATE / "tmf-certs"))
        if offset:
            env["TELCO_CLOCK_OFFSET_SECONDS"] = repr(offset)
        # Billing events carry a proof of origin (docs/billing.md); in a cluster the key is a Secret.
        env["TELCO_BILLING_SIGNING_KEY_FILE"] = str(_signing_key(STATE / "billing-signing.key"))
        if kubeconfig is not None:
            env["KUBECONFIG"] = str(kubeconfig)
        # The admission webhooks (docs/admission.md), only with the local control plane: an API server
        # elsewhere cannot call back to this machine's loopback, and would refuse every order meanwhile.
        webhook_ca = serving_certificate(STATE / "webhook-certs") if cluster is not None else None
        webhook_port = free_port()
        if webhook_ca is not None:
            env.update(TELCO_WEBHOOK_PORT=str(webhook_port), TELCO_WEBHOOK_CERT_DIR=str(STATE / "webhook-certs"))
        with open(STATE / "controller.log", "wb") as log:
            controller = subprocess.Popen(
                [sys.executable, "-m", "controller", "run", "--billing-jsonl", str(events_file)],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        applied_at = now()  # the moment the scenario's dates are taken from (before waiting for the webhooks)
        if webhook_ca is not None:
            step("registering the admission webhooks it serves (validating; mutating: the finalizer at create)")
            _register_webhooks(kubeconfig, f"https://127.0.0.1:{webhook_port}", webhook_ca)
        invoice_name = ""
        applied: list[dict[str, Any]] = []
        for path in sorted(QUICKSTART.glob("[1-9]*.yaml")):
            docs = scenario.adapt(yaml.safe_load_all(path.read_text()), applied_at, device_ports)
            step(f"applying {path.relative_to(ROOT)}")
            for doc in docs:
                if doc["kind"] == "Invoice":
                    invoice_name = doc["metadata"]["name"]
                    period = doc["spec"]["billingPeriod"]
                    print(
                        f"    {invoice_name}: {period['startDateTime']} to {period['endDateTime']} (this month so far)"
                    )
            kubectl(kubeconfig, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(docs))
            applied += docs
        step("waiting for the network and the orders to converge")
        progress("NetworkDevices Ready", ready_counter(kubeconfig, "networkdevices"), 60)
        progress("Subscriptions active", ready_counter(kubeconfig, "subscriptions"), 120)
        subscriptions = sum(1 for d in applied if d["kind"] == "Subscription")
        # The quick-start NetworkService is a dry run: it reports its plan and stays not Ready.
        refusal = ""
        if webhook_ca is not None:
            step("an order for an offering the catalog does not have: kubectl apply refuses it, naming the field")
            refusal = _apply_refused(kubeconfig, scenario.BAD_ORDER)
            print(f"    {refusal}")
        step("what a dashboard shows")
        print(status_view.render(status_view.collect_with_kubectl(lambda *a: kubectl(kubeconfig, *a))))
        step(f"billing events delivered (JSON Lines sink {events_file.relative_to(ROOT)})")
        events = _wait_for_events(events_file, lambda ev: scenario.event_checks(ev, subscriptions), timeout=60)
        print(status_view.render_events(events_file))
        step(f"the invoice of examples/quickstart/50-invoice.yaml ({invoice_name}, a draft until its period ends)")
        invoice = _wait_for_invoice(kubeconfig, "acme", invoice_name, 60)
        print(status_view.render_invoice(invoice))
        url = f"https://127.0.0.1:{tmf_port}/tmf-api/productInventory/v4/product?fields=status,productOffering"
        step(f"the same orders through the TM Forum API (TMF637, a ServiceAccount's token): {url}")
        products = _tmf_products(kubeconfig, url, tmf_ca)
        for product in products:
            offering = (product.get("productOffering") or {}).get("id", "-")
            print(f"    {product['id']:<28} {product.get('status', '-'):<14} {offering}")
        step("checking what the demo showed")
        _report(
            [
                *scenario.ready_checks(applied, _ready_now(kubeconfig)),
                *scenario.event_checks(events, subscriptions),
                *scenario.invoice_checks(invoice),
                *scenario.tmf_checks(applied, products),
                *(scenario.admission_checks(refusal) if webhook_ca is not None else []),
            ]
        )
        if once:
            step("demo checks passed")
            print("(--once: everything stops now; `make demo` keeps it up for you to explore like this:)")
            print(_hints(kubeconfig, fleet.admin_url))
            return 0
        print(_hints(kubeconfig, fleet.admin_url))
        print("Press Ctrl-C to stop everything.", flush=True)
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


def _register_webhooks(kubeconfig: Path | None, url: str, ca: bytes, timeout: float = 60) -> None:
    """Both webhook configurations by URL, then until the controller answers: a dry run it refuses."""
    configs = [webhook_configuration(WEBHOOKS_NAME, url, ca), mutating_webhook_configuration(WEBHOOKS_NAME, url, ca)]
    kubectl(kubeconfig, "apply", "--server-side", "-f", "-", stdin=yaml.safe_dump_all(configs))
    deadline = time.monotonic() + timeout
    while "denied the request" not in _apply_refused(kubeconfig, scenario.BAD_ORDER, dry_run=True):
        if time.monotonic() > deadline:
            raise DemoError(f"the admission webhooks at {url} did not answer within {timeout:.0f} s")
        time.sleep(0.5)


def _apply_refused(kubeconfig: Path | None, doc: dict[str, Any], dry_run: bool = False) -> str:
    """What the API server answered to applying `doc` (its error line); empty when it was admitted."""
    try:
        args = ["apply", "--server-side", "-f", "-", *(["--dry-run=server"] if dry_run else [])]
        kubectl(kubeconfig, *args, stdin=yaml.safe_dump(doc))
    except DemoError as exc:
        return str(exc).split(": ", 1)[-1]
    return ""


TMF_READER = """
apiVersion: v1
kind: ServiceAccount
metadata: {name: tmf-demo-reader, namespace: telco-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: tmf-demo-reader}
rules:
  - {apiGroups: [telco.intent.dev], resources: ["*"], verbs: [get, list, watch]}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: tmf-demo-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: tmf-demo-reader}
subjects: [{kind: ServiceAccount, name: tmf-demo-reader, namespace: telco-system}]
"""


def _tmf_products(kubeconfig: Path | None, url: str, ca: bytes, timeout: float = 30) -> list[dict[str, Any]]:
    """TMF637 products as a read-only ServiceAccount sees them (Kubernetes RBAC decides what it may read)."""
    kubectl(kubeconfig, "apply", "--server-side", "-f", "-", stdin=TMF_READER)
    token = kubectl(kubeconfig, "create", "token", "tmf-demo-reader", "-n", "telco-system").strip()
    context = ssl.create_default_context(cadata=ca.decode())
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as answer:
                return list(json.loads(answer.read()))
        except OSError as exc:  # not listening yet, or a 503 while its cache lists
            if time.monotonic() > deadline:
                raise DemoError(f"the TM Forum API at {url} did not answer: {exc}") from None
            time.sleep(0.5)


def _wait_for_invoice(kubeconfig: Path | None, namespace: str, name: str, timeout: float) -> dict[str, Any]:
    """The invoice once its checks hold, or as it is at the timeout (the checks then say what is wrong)."""
    deadline = time.monotonic() + timeout
    while True:
        invoice: dict[str, Any] = json.loads(kubectl(kubeconfig, "get", "invoice", name, "-n", namespace, "-o", "json"))
        if all(c.ok for c in scenario.invoice_checks(invoice)) or time.monotonic() > deadline:
            return invoice
        time.sleep(1)


def _read_events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _wait_for_events(
    path: Path, checks: Callable[[list[dict[str, Any]]], list[scenario.Check]], timeout: float
) -> list[dict[str, Any]]:
    """The events in the sink once `checks` hold, or as they are at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        events = _read_events(path)
        if all(c.ok for c in checks(events)) or time.monotonic() > deadline:
            return events
        time.sleep(0.5)
