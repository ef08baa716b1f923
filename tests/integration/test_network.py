"""NetworkDevice and NetworkService against a real API server, the real controller process and
real gNMI targets (devicesim): apply, merge, conflicts, dry run, drift, teardown, faults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from devicesim.admin import AdminClient
from devicesim.fleet import FleetProcess
from localcluster.cluster import free_port
from tests.harness import Api, ControllerProcess, condition, is_ready, serving, wait_for
from tests.kube import Kubectl
from tests.unit.commerce.builders import offering_doc

NS = "net-tests"
SYSTEM = "telco-system"
DEVICES = ("nt-r1", "nt-r2", "nt-r3")
METRICS_PORT = free_port()


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FleetProcess]:
    workdir = tmp_path_factory.mktemp("fleet")
    proc = FleetProcess(
        # strict: validated against the official OpenConfig models, YANG defaults filled, like a real router
        ["--devices", str(len(DEVICES)), "--names", ",".join(DEVICES), "--profile", "strict"], workdir=workdir
    )
    try:
        proc.start()
    except RuntimeError as exc:
        pytest.fail(f"devicesim could not start: {exc}", pytrace=False)
    yield proc
    proc.stop()


def device_body(
    name: str, port: int, secret: str = "nt-credentials", ca: str = "nt-ca", server_name: str | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "telco.intent.dev/v1alpha1",
        "kind": "NetworkDevice",
        "metadata": {"name": name},
        "spec": {
            "address": "127.0.0.1",
            "port": port,
            "tls": {"caSecretRef": {"name": ca, "namespace": SYSTEM}, "serverName": server_name or name},
            "credentialsSecretRef": {"name": secret, "namespace": SYSTEM},
            "timeoutSeconds": 2,
        },
    }


def service_body(name: str, endpoints: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "telco.intent.dev/v1alpha1",
        "kind": "NetworkService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"serviceType": "internetAccess", "bandwidthMbps": 50, "endpoints": endpoints, **spec},
    }


def ep(device: str, port: str, vlan: int, third: int = 1) -> dict[str, Any]:
    return {"device": device, "port": port, "vlanId": vlan, "ipv4Address": f"100.65.{vlan % 250}.{third}/30"}


@pytest.fixture(scope="module")
def api(crds: Kubectl, fleet: FleetProcess) -> Api:
    api = Api(crds.kubeconfig)
    api.ensure_namespace(NS)
    api.put_secret(SYSTEM, "nt-credentials", {"username": "admin", "password": "admin"})
    assert fleet.ca_path is not None
    api.put_secret(SYSTEM, "nt-ca", {"ca.crt": Path(fleet.ca_path).read_text()})
    for name in DEVICES:
        api.apply(device_body(name, fleet.devices[name].port))
    return api


@pytest.fixture(scope="module")
def controller(api: Api, kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControllerProcess]:
    log = tmp_path_factory.mktemp("controller") / "controller.log"
    with serving(ControllerProcess(kubeconfig, log, "--metrics-port", str(METRICS_PORT)), api, DEVICES) as proc:
        yield proc


@pytest.fixture()
def admin(fleet: FleetProcess) -> AdminClient:
    return fleet.admin


def subif(admin: AdminClient, device: str, port: str, vlan: int) -> dict[str, Any] | None:
    for iface in admin.dump(device)["config"].get("interfaces", {}).get("interface", []):
        if iface["name"] == port:
            for sub in iface.get("subinterfaces", {}).get("subinterface", []):
                if sub["index"] == vlan:
                    return dict(sub)
    return None


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def ready(api: Api, name: str, timeout: float = 20) -> dict[str, Any]:
    return wait_for(f"NetworkService {name} Ready", lambda: is_ready(api.get("networkservices", name, NS))
                    and api.get("networkservices", name, NS), timeout)


def gone(api: Api, name: str, timeout: float = 20) -> None:
    wait_for(f"NetworkService {name} deleted", lambda: api.get("networkservices", name, NS) is None, timeout)


def test_devices_report_capabilities(api: Api, controller: ControllerProcess) -> None:
    device = api.get("networkdevices", "nt-r1")
    assert device is not None
    caps = device["status"]["capabilities"]
    assert caps["gnmiVersion"] == "0.8.0"
    assert "JSON" in caps["encodings"]
    assert any(m["name"] == "openconfig-interfaces" for m in caps["models"])
    assert condition(device, "Reachable")["status"] == "True"  # type: ignore[index]


def test_two_services_on_one_device_merge(api: Api, controller: ControllerProcess, admin: AdminClient) -> None:
    a, b = unique("merge-a"), unique("merge-b")
    api.apply(service_body(a, [ep("nt-r1", "Ethernet1", 301)]))
    api.apply(service_body(b, [ep("nt-r1", "Ethernet1", 302)], bandwidthMbps=200, peakBandwidthMbps=400))
    svc = ready(api, a)
    ready(api, b)
    assert svc["status"]["state"] == "active" and svc["status"]["operatingStatus"] == "running"
    assert svc["status"]["endpoints"][0]["applied"] is True
    for vlan in (301, 302):
        sub = subif(admin, "nt-r1", "Ethernet1", vlan)
        assert sub is not None and sub["vlan"]["match"]["single-tagged"]["config"]["vlan-id"] == vlan
    qos = {p["name"]: p for p in admin.dump("nt-r1")["config"]["qos"]["scheduler-policies"]["scheduler-policy"]}
    rate = qos["Ethernet1.302"]["schedulers"]["scheduler"][0]["two-rate-three-color"]["config"]
    assert (int(rate["cir"]), int(rate["pir"])) == (200_000_000, 400_000_000)
    for name in (a, b):
        api.delete("networkservices", name, NS)
    gone(api, a), gone(api, b)
    assert subif(admin, "nt-r1", "Ethernet1", 301) is None and subif(admin, "nt-r1", "Ethernet1", 302) is None


def test_conflicting_claim_is_refused_to_the_later_service(api: Api, controller: ControllerProcess) -> None:
    first, second = unique("claim-first"), unique("claim-second")
    api.apply(service_body(first, [ep("nt-r1", "Ethernet2", 310)]))
    ready(api, first)
    api.apply(service_body(second, [ep("nt-r1", "Ethernet2", 310, third=2)]))
    degraded = wait_for(
        "the later service Degraded",
        lambda: (c := condition(api.get("networkservices", second, NS), "Degraded")) and c["status"] == "True" and c,
    )
    assert degraded["reason"] == "ConflictingClaim"
    assert first in degraded["message"]
    assert is_ready(api.get("networkservices", first, NS)), "the earlier service must keep working"
    api.delete("networkservices", second, NS)
    api.delete("networkservices", first, NS)
    gone(api, second), gone(api, first)


def test_dry_run_reports_the_set_without_touching_the_device(
    api: Api, controller: ControllerProcess, admin: AdminClient
) -> None:
    name = unique("dry")
    before = admin.stats("nt-r2")["set_rpcs"]
    api.apply(service_body(name, [ep("nt-r2", "Ethernet3", 320)], dryRun=True))
    svc = wait_for("a plan in status", lambda: (s := api.get("networkservices", name, NS))
                   and s.get("status", {}).get("plan") and s)
    ops = svc["status"]["plan"]
    assert {o["op"] for o in ops} == {"update"}
    assert any("subinterface[index=320]" in o["path"] for o in ops)
    assert condition(svc, "Ready")["reason"] == "DryRun"  # type: ignore[index]
    assert subif(admin, "nt-r2", "Ethernet3", 320) is None
    assert admin.stats("nt-r2")["set_rpcs"] == before
    body = service_body(name, [ep("nt-r2", "Ethernet3", 320)], dryRun=False)
    api.apply(body)
    svc = ready(api, name)
    assert svc["status"]["plan"] == []
    assert subif(admin, "nt-r2", "Ethernet3", 320) is not None
    api.delete("networkservices", name, NS)
    gone(api, name)


def test_drift_is_reverted(api: Api, controller: ControllerProcess, admin: AdminClient) -> None:
    name = unique("revert")
    api.apply(service_body(name, [ep("nt-r2", "Ethernet4", 330)]))
    ready(api, name)
    path = "interfaces/interface[name=Ethernet4]/subinterfaces/subinterface[index=330]/config"
    admin.set("nt-r2", path, {"description": "changed by hand", "enabled": False})
    wait_for("the description put back", lambda: (s := subif(admin, "nt-r2", "Ethernet4", 330))
             and s["config"].get("description", "").startswith("telco-intent") and s["config"]["enabled"], 10)
    wait_for("a DriftReverted event", lambda: any(e.reason == "DriftReverted" for e in api.events(NS, name)))
    ready(api, name)
    api.delete("networkservices", name, NS)
    gone(api, name)


def test_drift_is_reported_under_policy_report(api: Api, controller: ControllerProcess, admin: AdminClient) -> None:
    name = unique("report")
    api.apply(service_body(name, [ep("nt-r2", "Ethernet5", 340)], driftPolicy="report"))
    ready(api, name)
    path = "interfaces/interface[name=Ethernet5]/subinterfaces/subinterface[index=340]/config"
    admin.set("nt-r2", path, {"description": "maintenance window"})
    drift = wait_for("DriftDetected", lambda: (c := condition(api.get("networkservices", name, NS), "DriftDetected"))
                     and c["status"] == "True" and c, 10)
    assert "description" in drift["message"]
    wait_for("a DriftDetected event", lambda: any(e.reason == "DriftDetected" for e in api.events(NS, name)))
    sub = subif(admin, "nt-r2", "Ethernet5", 340)
    assert sub is not None and sub["config"]["description"] == "maintenance window", "report must not revert"
    api.delete("networkservices", name, NS)
    gone(api, name)


def test_teardown_on_a_shared_device_removes_exactly_its_paths(
    api: Api, controller: ControllerProcess, admin: AdminClient
) -> None:
    keep, drop = unique("keep"), unique("drop")
    api.apply(service_body(keep, [ep("nt-r3", "Ethernet1", 350)]))
    api.apply(service_body(drop, [ep("nt-r3", "Ethernet1", 351)]))
    ready(api, keep), ready(api, drop)
    unmanaged = "interfaces/interface[name=Ethernet6]/config"
    admin.set("nt-r3", unmanaged, {"description": "uplink, not ours"})
    api.delete("networkservices", drop, NS)
    gone(api, drop)
    assert subif(admin, "nt-r3", "Ethernet1", 351) is None
    assert subif(admin, "nt-r3", "Ethernet1", 350) is not None
    policies = {p["name"] for p in admin.dump("nt-r3")["config"]["qos"]["scheduler-policies"]["scheduler-policy"]}
    assert "Ethernet1.350" in policies and "Ethernet1.351" not in policies
    ports = {i["name"]: i for i in admin.dump("nt-r3")["config"]["interfaces"]["interface"]}
    assert ports["Ethernet6"]["config"]["description"] == "uplink, not ours"
    assert is_ready(api.get("networkservices", keep, NS))
    api.delete("networkservices", keep, NS)
    gone(api, keep)


def test_device_down_during_apply_then_back(api: Api, controller: ControllerProcess, admin: AdminClient) -> None:
    name = unique("down-apply")
    admin.down("nt-r3")
    try:
        api.apply(service_body(name, [ep("nt-r3", "Ethernet2", 360)]))
        progressing = wait_for(
            "Progressing while the device is down",
            lambda: (c := condition(api.get("networkservices", name, NS), "Progressing")) and c["status"] == "True"
            and c["reason"] in ("DeviceUnreachable", "DeviceUnavailable") and c, 20,
        )
        assert "nt-r3" in progressing["message"]
        wait_for("device not Reachable", lambda: (c := condition(api.get("networkdevices", "nt-r3"), "Reachable"))
                 and c["status"] == "False")
    finally:
        admin.up("nt-r3")
    ready(api, name, timeout=30)
    assert subif(admin, "nt-r3", "Ethernet2", 360) is not None
    api.delete("networkservices", name, NS)
    gone(api, name)


def test_device_down_during_delete_holds_the_finalizer(
    api: Api, controller: ControllerProcess, admin: AdminClient
) -> None:
    name = unique("down-delete")
    api.apply(service_body(name, [ep("nt-r3", "Ethernet3", 370)]))
    ready(api, name)
    admin.down("nt-r3")
    try:
        wait_for("device not Reachable", lambda: (c := condition(api.get("networkdevices", "nt-r3"), "Reachable"))
                 and c["status"] == "False", 20)
        api.delete("networkservices", name, NS)
        waiting = wait_for("a Terminating condition", lambda: (c := condition(api.get("networkservices", name, NS),
                           "Ready")) and c["reason"] == "Terminating" and c, 20)
        assert "nt-r3" in waiting["message"]
        assert api.get("networkservices", name, NS) is not None, "deletion must wait for the device"
    finally:
        admin.up("nt-r3")
    gone(api, name, timeout=30)
    assert subif(admin, "nt-r3", "Ethernet3", 370) is None


def test_device_restarted_empty_gets_its_config_back(
    api: Api, controller: ControllerProcess, admin: AdminClient
) -> None:
    name = unique("restart")
    api.apply(service_body(name, [ep("nt-r2", "Ethernet6", 380)]))
    ready(api, name)
    admin.restart("nt-r2", empty=True)
    wait_for("config re-applied", lambda: subif(admin, "nt-r2", "Ethernet6", 380) is not None, 30)
    ready(api, name, timeout=30)
    api.delete("networkservices", name, NS)
    gone(api, name)


def test_port_the_device_lacks_is_degraded_then_fixed(
    api: Api, controller: ControllerProcess, crds: Kubectl
) -> None:
    name = unique("noport")
    api.apply(service_body(name, [ep("nt-r1", "Ethernet99", 390)]))
    degraded = wait_for("Degraded", lambda: (c := condition(api.get("networkservices", name, NS), "Degraded"))
                        and c["status"] == "True" and c)
    assert degraded["reason"] == "PortNotFound" and "Ethernet99" in degraded["message"]
    stalled = condition(api.get("networkservices", name, NS), "Stalled")
    assert stalled and stalled["status"] == "True" and "fix the NetworkService spec or the device" in stalled["message"]
    # What a person reads: the reason beside READY, the message with -o wide, one Warning in describe.
    table = crds.run("get", "networkservice", name, "-n", NS, "-o", "wide").stdout
    assert "REASON" in table.splitlines()[0] and "MESSAGE" in table.splitlines()[0]
    assert "PortNotFound" in table and "nt-r1/Ethernet99.390" in table
    described = wait_for("the Warning event", lambda: (
        out := crds.run("describe", "networkservice", name, "-n", NS).stdout) and "Warning" in out and out, 20)
    warnings = [line for line in described.splitlines() if line.strip().startswith("Warning")]
    assert len(warnings) == 1 and "PortNotFound" in warnings[0] and "Ethernet99" in warnings[0], described
    api.apply(service_body(name, [ep("nt-r1", "Ethernet7", 390)]))
    ready(api, name)
    api.delete("networkservices", name, NS)
    gone(api, name)


def test_wrong_credentials_and_untrusted_certificate(
    api: Api, controller: ControllerProcess, fleet: FleetProcess
) -> None:
    from localcluster.pki import CertificateAuthority

    api.put_secret(SYSTEM, "nt-wrong", {"username": "admin", "password": "not-the-password"})
    api.put_secret(SYSTEM, "nt-other-ca", {"ca.crt": CertificateAuthority("someone else").cert_pem.decode()})
    port = fleet.devices["nt-r1"].port
    api.apply(device_body("nt-badcreds", port, secret="nt-wrong", server_name="nt-r1"))
    api.apply(device_body("nt-badca", port, ca="nt-other-ca", server_name="nt-r1"))
    try:
        creds = wait_for("Unauthenticated", lambda: (c := condition(api.get("networkdevices", "nt-badcreds"),
                         "Reachable")) and c["status"] == "False" and c, 20)
        assert creds["reason"] == "Unauthenticated"
        assert "not-the-password" not in str(api.get("networkdevices", "nt-badcreds"))
        tls = wait_for("TLS refused", lambda: (c := condition(api.get("networkdevices", "nt-badca"), "Reachable"))
                       and c["status"] == "False" and c, 20)
        assert tls["reason"] == "Unreachable"
    finally:
        api.delete("networkdevices", "nt-badcreds")
        api.delete("networkdevices", "nt-badca")


def test_controller_killed_mid_rollout_converges_and_adopts(
    api: Api, controller: ControllerProcess, admin: AdminClient
) -> None:
    names = [unique(f"roll{i}") for i in range(12)]
    for i, name in enumerate(names):
        api.apply(service_body(name, [ep(DEVICES[i % 3], "Ethernet8", 400 + i)]))
    controller.kill9()
    controller.start()
    for name in names:
        ready(api, name, timeout=40)
    sets = {d: admin.stats(d)["set_rpcs"] for d in DEVICES}
    controller.kill9()
    controller.start()
    wait_for("devices Ready after restart", lambda: all(is_ready(api.get("networkdevices", d)) for d in DEVICES), 30)
    for name in names:
        ready(api, name)
    rv = {n: api.get("networkservices", n, NS)["metadata"]["resourceVersion"] for n in names}  # type: ignore[index]
    assert {d: admin.stats(d)["set_rpcs"] for d in DEVICES} == sets, "correct config must be adopted, not re-pushed"
    assert rv == {n: api.get("networkservices", n, NS)["metadata"]["resourceVersion"] for n in names}  # type: ignore[index]
    for name in names:
        api.delete("networkservices", name, NS)
    for name in names:
        gone(api, name)


def run_plan(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KUBECONFIG": str(kubeconfig)}
    return subprocess.run([sys.executable, "-m", "controller", "plan", *args], env=env,
                          capture_output=True, text=True, timeout=90)


def offering_body(name: str) -> dict[str, Any]:
    spec = offering_doc(name=name, lifecycleStatus="Active",
                        serviceCandidate={"serviceType": "internetAccess", "bandwidthMbps": 75})
    return {"apiVersion": "telco.intent.dev/v1alpha1", "kind": "ProductOffering", "metadata": {"name": name},
            "spec": spec}


def subscription_body(name: str, offering: str, endpoint: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "telco.intent.dev/v1alpha1",
        "kind": "Subscription",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"productOffering": {"name": offering}, "billingAccount": {"id": "plan-tests"},
                 "endpoints": [endpoint]},
    }


@pytest.fixture()
def plan_holder(api: Api, controller: ControllerProcess) -> Iterator[str]:
    """A Ready service holding nt-r1 Ethernet6 VLAN 420, for the plans to conflict with."""
    holder = unique("plan-holder")
    api.apply(service_body(holder, [ep("nt-r1", "Ethernet6", 420)]))
    ready(api, holder)
    yield holder
    api.delete("networkservices", holder, NS)
    gone(api, holder)


def test_plan_cli_prints_the_set_without_sending_and_exits_by_verdict(
    plan_holder: str, admin: AdminClient, kubeconfig: Path, tmp_path: Path
) -> None:
    wanted = service_body("plan-me", [ep("nt-r1", "Ethernet6", 421)])
    clash = service_body("plan-clash", [ep("nt-r1", "Ethernet6", 420, third=2)])
    invalid = service_body("plan-invalid", [ep("nt-r1", "Ethernet6", 5000)])
    (tmp_path / "clean.yaml").write_text(yaml.safe_dump(wanted))
    (tmp_path / "clash.yaml").write_text(yaml.safe_dump_all([wanted, clash]))
    (tmp_path / "invalid.yaml").write_text(yaml.safe_dump(invalid))
    before = admin.stats("nt-r1")["set_rpcs"]

    clean = run_plan(kubeconfig, "-f", str(tmp_path / "clean.yaml"))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "# net-tests/plan-me on nt-r1" in clean.stdout
    assert "update  interfaces/interface[name=Ethernet6]/subinterfaces/subinterface[index=421]" in clean.stdout
    assert "REFUSED" not in clean.stdout and "plan: every service would apply cleanly" in clean.stdout

    conflict = run_plan(kubeconfig, "-f", str(tmp_path / "clash.yaml"))
    assert conflict.returncode == 1, conflict.stdout + conflict.stderr
    assert "# net-tests/plan-clash on nt-r1\n  REFUSED:" in conflict.stdout and plan_holder in conflict.stdout
    assert "subinterface[index=421]" in conflict.stdout, "the clean service in the same file is still planned"

    bad = run_plan(kubeconfig, "-f", str(tmp_path / "invalid.yaml"))
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "# net-tests/plan-invalid\n  INVALID: spec.endpoints.0.vlanId:" in bad.stdout

    as_json = run_plan(kubeconfig, "-f", str(tmp_path / "clash.yaml"), "-o", "json")
    assert as_json.returncode == 1
    by_service = {r["service"]: r for r in json.loads(as_json.stdout)}
    assert by_service["net-tests/plan-me"]["refused"] == [] and by_service["net-tests/plan-me"]["operations"]
    assert by_service["net-tests/plan-clash"]["refused"] and not by_service["net-tests/plan-clash"]["operations"]

    assert admin.stats("nt-r1")["set_rpcs"] == before, "plan must not send anything"
    assert subif(admin, "nt-r1", "Ethernet6", 421) is None


def test_plan_cli_renders_subscriptions_and_reads_directories(
    api: Api, plan_holder: str, admin: AdminClient, kubeconfig: Path, tmp_path: Path
) -> None:
    offering = unique("plan-offer")
    api.apply(offering_body(offering))
    try:
        ordered = subscription_body("plan-sub", offering, ep("nt-r2", "Ethernet7", 431))
        taken = subscription_body("plan-sub-taken", offering, ep("nt-r1", "Ethernet6", 420, third=2))
        (tmp_path / "order.yaml").write_text(yaml.safe_dump(ordered))
        out = run_plan(kubeconfig, "-f", str(tmp_path / "order.yaml"), "-o", "json")
        assert out.returncode == 0, out.stdout + out.stderr
        (report,) = json.loads(out.stdout)
        assert (report["service"], report["from"], report["device"]) == (
            "net-tests/plan-sub", "Subscription net-tests/plan-sub", "nt-r2")
        paths = [op["path"] for op in report["operations"]]
        assert "interfaces/interface[name=Ethernet7]/subinterfaces/subinterface[index=431]" in paths, paths
        written = " ".join(str(op["value"]) for op in report["operations"])  # each value is JSON text
        assert '"cir":75000000' in written, f"the offering's 75 Mbit/s is what the Set would write: {written}"

        before = {d: admin.stats(d)["set_rpcs"] for d in DEVICES}
        manifests = tmp_path / "manifests"
        manifests.mkdir()
        (manifests / "10-order.yaml").write_text(yaml.safe_dump(ordered))
        (manifests / "20-taken.json").write_text(json.dumps(taken))
        in_dir = service_body("plan-dir", [ep("nt-r3", "Ethernet7", 432)])
        (manifests / "30-service.yml").write_text(yaml.safe_dump(in_dir))
        (manifests / "README.md").write_text("not a manifest")
        out = run_plan(kubeconfig, "-f", str(manifests))
        assert out.returncode == 1, out.stdout + out.stderr
        headers = [line for line in out.stdout.splitlines() if line.startswith("# ")]
        assert headers == [
            "# net-tests/plan-sub (from Subscription net-tests/plan-sub) on nt-r2",
            "# net-tests/plan-sub-taken (from Subscription net-tests/plan-sub-taken) on nt-r1",
            "# net-tests/plan-dir on nt-r3",
        ], out.stdout
        taken_part = out.stdout.split("# net-tests/plan-sub-taken")[1].split("# net-tests/plan-dir")[0]
        assert "REFUSED:" in taken_part and plan_holder in taken_part, out.stdout
        assert "subinterface[index=432]" in out.stdout.split("# net-tests/plan-dir")[1]
        assert {d: admin.stats(d)["set_rpcs"] for d in DEVICES} == before, "plan must not send anything"
        assert subif(admin, "nt-r2", "Ethernet7", 431) is None
        assert api.get("networkservices", "plan-sub", NS) is None, "plan writes nothing to the cluster"
    finally:
        api.delete("productofferings", offering)


def test_plan_cli_exits_2_when_it_cannot_plan(
    api: Api, admin: AdminClient, kubeconfig: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "service.yaml"
    manifest.write_text(yaml.safe_dump(service_body("plan-err", [ep("nt-r3", "Ethernet8", 441)])))

    missing = run_plan(kubeconfig, "-f", str(tmp_path / "nothing-here.yaml"))
    assert missing.returncode == 2 and "nothing-here.yaml: no such file or directory" in missing.stderr

    dead = yaml.safe_load(kubeconfig.read_text())
    for cluster in dead["clusters"]:
        cluster["cluster"]["server"] = f"https://127.0.0.1:{free_port()}"
    dead_path = tmp_path / "dead-kubeconfig"
    dead_path.write_text(yaml.safe_dump(dead))
    unreachable = run_plan(dead_path, "-f", str(manifest))
    assert unreachable.returncode == 2, unreachable.stdout + unreachable.stderr
    assert "cannot list networkservices from the API server" in unreachable.stderr

    admin.down("nt-r3")
    try:
        device_down = run_plan(kubeconfig, "-f", str(manifest))
    finally:
        admin.up("nt-r3")
    assert device_down.returncode == 2, device_down.stdout + device_down.stderr
    assert "NetworkDevice nt-r3 at 127.0.0.1:" in device_down.stderr and "cannot read its config" in device_down.stderr


def test_metrics_endpoint_exports_what_the_dashboard_reads(controller: ControllerProcess) -> None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5).read().decode()
    assert 'telco_reconcile_total{kind="NetworkDevice",result="ok"}' in text
    assert 'telco_gnmi_rpc_duration_seconds_bucket{device="nt-r1"' in text
    assert "telco_devices_reachable" in text and "telco_kube_writes_total" in text


def operator_view(admin: AdminClient, device: str, vrf: str, port: str) -> dict[str, Any]:
    """What operators wrote on the device, as the device holds it (config only)."""
    config = admin.dump(device)["config"]
    ports = {i["name"]: i for i in config["interfaces"]["interface"]}
    subs = {s["index"]: s for s in ports[port].get("subinterfaces", {}).get("subinterface", [])}
    vrfs = {n["name"]: n for n in config.get("network-instances", {}).get("network-instance", [])}
    return {
        "description": ports[port]["config"].get("description"),
        "subinterface 900": subs.get(900),
        "vrf config": vrfs[vrf]["config"] if vrf in vrfs else None,
        "vrf protocols": vrfs[vrf].get("protocols") if vrf in vrfs else None,
    }


def member(admin: AdminClient, device: str, vrf: str, member_id: str) -> dict[str, Any] | None:
    for n in admin.dump(device)["config"].get("network-instances", {}).get("network-instance", []):
        if n["name"] == vrf:
            for m in n.get("interfaces", {}).get("interface", []):
                if m["id"] == member_id:
                    return dict(m)
    return None


def test_operator_config_survives_create_drift_repair_spec_change_and_teardown(
    api: Api, controller: ControllerProcess, admin: AdminClient
) -> None:
    """Defects 3 and 4 of issue 14, on a strict device that fills YANG defaults: what the controller did
    not write is never drift, never replaced and never deleted, byte for byte."""
    device, port, vrf = "nt-r1", "Ethernet5", unique("op-vrf")
    vrf_path = f"/network-instances/network-instance[name={vrf}]"
    bgp = f"{vrf_path}/protocols/protocol[identifier=BGP][name=bgp]"
    admin.config(device, update=[
        (f"/interfaces/interface[name={port}]/config/description", "core uplink (operator)"),
        (f"/interfaces/interface[name={port}]/subinterfaces/subinterface[index=900]/config", {"description": "mgmt"}),
        (f"{vrf_path}/config", {"name": vrf, "type": "L3VRF", "route-distinguisher": "65000:42"}),
        (f"{bgp}/config", {"identifier": "BGP", "name": "bgp"}),
        (f"{bgp}/bgp/neighbors/neighbor[neighbor-address=198.51.100.1]/config",
         {"neighbor-address": "198.51.100.1", "peer-as": 64512}),
    ])
    before = operator_view(admin, device, vrf, port)
    assert before["vrf protocols"] and before["subinterface 900"], before
    name = unique("owned")
    body = service_body(name, [ep(device, port, 450)], serviceType="l3vpn", vrf=vrf)
    try:
        api.apply(body)
        ready(api, name)
        assert operator_view(admin, device, vrf, port) == before, "create touched operator config"
        assert member(admin, device, vrf, f"{port}.450") is not None
        svc = api.get("networkservices", name, NS)
        owned = {e["path"]: e["leaves"] for o in svc["status"]["owned"] for e in o["entries"]}  # type: ignore[index]
        assert not any(path.endswith(f"network-instance[name={vrf}]") for path in owned), "the VRF is the operator's"
        sub = f"interfaces/interface[name={port}]/subinterfaces/subinterface[index=450]"
        assert "config/description" in owned[sub] and "ipv4/config/enabled" not in owned[sub], owned[sub]

        # At idle nothing is sent, although the device reports leaves the controller never wrote.
        sets = admin.stats(device)["set_rpcs"]
        time.sleep(3)
        assert admin.stats(device)["set_rpcs"] == sets, "a strict device's defaults must not look like drift"

        # Drift repair of our member entry and subinterface config leaves the VRF's operator config alone.
        admin.delete(device, f"{vrf_path}/interfaces/interface[id={port}.450]")
        admin.set(device, f"/{sub}/config", {"description": "changed by hand"})
        wait_for("the member and description put back", lambda: member(admin, device, vrf, f"{port}.450")
                 and (s := subif(admin, device, port, 450)) and s["config"]["description"].startswith("telco-intent"))
        assert operator_view(admin, device, vrf, port) == before, "drift repair touched operator config"

        # A spec change writes only what changed.
        body["spec"]["bandwidthMbps"] = 80
        api.apply(body)
        wait_for("the new rate", lambda: any(
            p["name"] == f"{port}.450" and int(p["schedulers"]["scheduler"][0]["two-rate-three-color"]["config"]["cir"])
            == 80_000_000 for p in admin.dump(device)["config"]["qos"]["scheduler-policies"]["scheduler-policy"]))
        ready(api, name)
        assert operator_view(admin, device, vrf, port) == before, "a spec change touched operator config"
    finally:
        api.delete("networkservices", name, NS)
    gone(api, name)
    assert subif(admin, device, port, 450) is None and member(admin, device, vrf, f"{port}.450") is None
    assert operator_view(admin, device, vrf, port) == before, "teardown removed the operator's VRF or its config"
    admin.config(device, delete=[vrf_path, f"/interfaces/interface[name={port}]/subinterfaces/subinterface[index=900]",
                                 f"/interfaces/interface[name={port}]/config/description"])


def test_a_vrf_the_controller_created_goes_with_its_last_service_unless_an_operator_added_to_it(
    api: Api, controller: ControllerProcess, admin: AdminClient
) -> None:
    device = "nt-r2"
    for keep in (False, True):
        vrf, name = unique("ctl-vrf"), unique("vrf-svc")
        api.apply(service_body(name, [ep(device, "Ethernet1", 460)], serviceType="l3vpn", vrf=vrf))
        ready(api, name)
        svc = api.get("networkservices", name, NS)
        owned = [e["path"] for o in svc["status"]["owned"] for e in o["entries"]]  # type: ignore[index]
        assert f"network-instances/network-instance[name={vrf}]" in owned, "created by the controller: recorded"
        vrf_path = f"/network-instances/network-instance[name={vrf}]"
        if keep:
            admin.set(device, f"{vrf_path}/config", {"route-distinguisher": "65000:7"})
        api.delete("networkservices", name, NS)
        gone(api, name)
        instances = admin.dump(device)["config"].get("network-instances", {}).get("network-instance", [])
        left = {n["name"]: n for n in instances}
        if keep:
            assert left[vrf]["config"]["route-distinguisher"] == "65000:7" and not left[vrf].get("interfaces")
            admin.delete(device, vrf_path)
        else:
            assert vrf not in left, "the controller created it and nothing foreign is in it: it goes"


def metric(name: str, **labels: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=5).read().decode()
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{") and line.split("}")[0][len(name) + 1:] == want:
            return float(line.split()[-1])
    return 0.0


def test_suspend_resume_and_spec_changes_are_not_drift(
    api: Api, controller: ControllerProcess, admin: AdminClient
) -> None:
    """Issue 18 part 3: the controller's own changes are never counted or reported as drift."""
    device, name = "nt-r3", unique("suspend")
    body = service_body(name, [ep(device, "Ethernet4", 470)])
    api.apply(body)
    ready(api, name)
    drift_before = metric("telco_drift_events_total", device=device, action="reverted")
    for state in ("disabled", "enabled", "disabled", "enabled"):
        body["spec"]["adminState"] = state
        api.apply(body)
        enabled = state == "enabled"
        wait_for(f"adminState {state} applied", lambda e=enabled: (s := subif(admin, device, "Ethernet4", 470))
                 and s["config"]["enabled"] == e)
        if state == "disabled":
            wait_for("AdminDisabled", lambda: (c := condition(api.get("networkservices", name, NS), "Ready"))
                     and c["reason"] == "AdminDisabled")
        else:
            ready(api, name)
    body["spec"]["bandwidthMbps"] = 70
    api.apply(body)
    wait_for("the new spec applied", lambda: (s := api.get("networkservices", name, NS))
             and s["status"].get("observedGeneration") == s["metadata"]["generation"] and is_ready(s))
    reasons = {e.reason for e in api.events(NS, name)}
    assert "DriftReverted" not in reasons and "DriftDetected" not in reasons, reasons
    assert metric("telco_drift_events_total", device=device, action="reverted") == drift_before
    drift = condition(api.get("networkservices", name, NS), "DriftDetected")
    assert drift is not None and drift["status"] == "False"
    api.delete("networkservices", name, NS)
    gone(api, name)


MIXED = {"nt-x1": "JSON_IETF", "nt-j1": "JSON", "nt-l1": "JSON_IETF"}  # the encoding each one negotiates


@pytest.fixture(scope="module")
def mixed_fleet(tmp_path_factory: pytest.TempPathFactory, api: Api) -> Iterator[FleetProcess]:
    """A JSON_IETF-only strict device (the IOS XR case), a JSON-only strict one and a lenient one."""
    workdir = tmp_path_factory.mktemp("mixed")
    (workdir / "fleet.yaml").write_text(yaml.safe_dump({"devices": [
        {"name": "nt-x1", "profile": "strict", "encodings": ["JSON_IETF"]},
        {"name": "nt-j1", "profile": "strict", "encodings": ["JSON"]},
        {"name": "nt-l1", "profile": "lenient"},
    ]}))
    proc = FleetProcess(["--fleet", str(workdir / "fleet.yaml")], workdir=workdir)
    proc.start()
    assert proc.ca_path is not None
    api.put_secret(SYSTEM, "nt-mixed-ca", {"ca.crt": Path(proc.ca_path).read_text()})
    for name in MIXED:
        api.apply(device_body(name, proc.devices[name].port, ca="nt-mixed-ca"))
    yield proc
    for name in MIXED:
        api.delete("networkdevices", name)
    proc.stop()


def test_a_mixed_fleet_negotiates_each_device_and_converges(
    api: Api, controller: ControllerProcess, mixed_fleet: FleetProcess
) -> None:
    admin = mixed_fleet.admin
    for name, encoding in MIXED.items():
        wait_for(f"{name} Ready with {encoding}", lambda n=name, e=encoding: (d := api.get("networkdevices", n))
                 and is_ready(d) and d["status"].get("encoding") == e, 30)
    name = unique("mixed")
    endpoints = [ep(device, "Ethernet2", 480) for device in MIXED]
    api.apply(service_body(name, endpoints, serviceType="l3vpn", vrf="mixed", bandwidthMbps=5000))
    ready(api, name, timeout=30)
    for device in MIXED:
        sub = subif(admin, device, "Ethernet2", 480)
        assert sub is not None and sub["config"]["description"].startswith("telco-intent"), device
        policy = {p["name"]: p for p in admin.dump(device)["config"]["qos"]["scheduler-policies"]["scheduler-policy"]}
        rates = policy["Ethernet2.480"]["schedulers"]["scheduler"][0]["two-rate-three-color"]["config"]
        assert int(rates["cir"]) == 5_000_000_000, "a uint64 beyond 32 bits, a string in JSON_IETF"
    sets = {d: admin.stats(d)["set_rpcs"] for d in MIXED}
    time.sleep(3)
    assert {d: admin.stats(d)["set_rpcs"] for d in MIXED} == sets, "idle: no Set on any device"
    # The NetworkDevice may pin the encoding; its status shows the one in use.
    body = device_body("nt-l1", mixed_fleet.devices["nt-l1"].port, ca="nt-mixed-ca")
    body["spec"]["encoding"] = "JSON"
    api.apply(body)
    wait_for("nt-l1 on JSON", lambda: (d := api.get("networkdevices", "nt-l1")) and d["status"].get("encoding")
             == "JSON" and is_ready(d), 30)
    ready(api, name)
    api.delete("networkservices", name, NS)
    gone(api, name)
    for device in MIXED:
        assert subif(admin, device, "Ethernet2", 480) is None, device
