"""The Helm chart: lint, rendering rules, and a server-side dry run against the real API server.

helm comes from hack/helm/build.sh (pinned in hack/helm/go.mod); the fixture builds it when it is
missing, and a helm that cannot be had fails the tests (never a skip). That the chart's RBAC is
enough for the controller to run is checked elsewhere.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import random
import re
import shlex
import string
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller.__main__ import build_parser, settings_from_args
from controller.admission import (
    FINALIZED,
    WEBHOOKS,
    finalizer_path,
    mutating_webhook_configuration,
    webhook_configuration,
)
from controller.api import GROUP, KINDS
from controller.tmf.hubs import HUBS_CONFIGMAP, OUTBOX_CONFIGMAP
from tests.kube import Kubectl

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "telco-intent"
HELM = ROOT / "bin" / "helm"
NS = "chart-tests"
WAVE = "argocd.argoproj.io/sync-wave"

# Active/standby, sharded by namespace, with every optional part on.
SHARDED_HA: dict[str, Any] = {
    "replicas": 2,
    "peering": {"enabled": True},
    "watchNamespaces": ["chart-acme", "chart-globex"],
    "rbac": {"create": True, "secretNamespaces": ["chart-secrets"]},
    "metrics": {"enabled": True, "port": 9090, "serviceMonitor": {"enabled": True, "labels": {"release": "prom"}}},
    "dashboards": {"enabled": True},
    "webhook": {"enabled": True, "certificateSecret": "telco-intent-webhook-tls", "caBundle": "Q0E="},
    "billing": {
        "sinkUrls": ["https://billing.example.net/events"],
        "mode": "binary",
        "authSecret": {"name": "billing-sink", "key": "header"},
        "caSecret": {"name": "billing-ca", "key": "ca.pem"},
    },
    "controller": {"resyncSeconds": 30, "logLevel": "info", "healthPort": 8081, "clusterIdentity": "https://k8s.x"},
}
# All replicas active, sharing the devices through Leases (docs/sharding.md).
SHARDED_BY_DEVICE: dict[str, Any] = {
    "replicas": 3,
    "sharding": {"enabled": True, "leaseSeconds": 20, "renewDeadlineSeconds": 12, "renewSeconds": 3},
    "podDisruptionBudget": {"maxUnavailable": 1},
}
# The TM Forum APIs on every sharded replica, with a certificate Secret.
TMF: dict[str, Any] = {
    **SHARDED_BY_DEVICE,
    "tmf": {"enabled": True, "port": 8444, "certSecret": "tmf-tls", "service": {"type": "NodePort", "port": 8443}},
}
SERVICE_MONITOR_API = "monitoring.coreos.com/v1/ServiceMonitor"


@pytest.fixture(scope="session")
def helm() -> Path:
    """bin/helm at the version pinned in hack/helm/go.mod, built when missing or outdated."""
    try:
        proc = subprocess.run([str(ROOT / "hack" / "helm" / "build.sh")], capture_output=True, text=True, timeout=1800)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.fail(f"helm could not be built with hack/helm/build.sh: {exc}", pytrace=False)
    if proc.returncode != 0 or not HELM.is_file():
        pytest.fail(
            f"helm is missing and hack/helm/build.sh failed ({proc.returncode}); it needs Go and the Go "
            f"module proxy:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}",
            pytrace=False,
        )
    return HELM


def run_helm(helm: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    # helm's own state stays inside this checkout, so another copy of the suite never shares it.
    home = ROOT / ".local" / "helm"
    env = {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }
    proc = subprocess.run([str(helm), *args], capture_output=True, text=True, timeout=120, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"helm {shlex.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc


def values_file(tmp_path: Path, values: dict[str, Any], name: str = "values.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return path


def render_text(
    helm: Path,
    tmp_path: Path,
    values: dict[str, Any] | None = None,
    *,
    release: str = "telco-intent",
    namespace: str = NS,
    include_crds: bool = False,
    api_versions: tuple[str, ...] = (),
) -> str:
    args = ["template", release, str(CHART), "--namespace", namespace]
    for api in api_versions:  # what `helm install` reads from the cluster (.Capabilities)
        args += ["--api-versions", api]
    if values:
        args += ["--values", str(values_file(tmp_path, values, f"{release}.yaml"))]
    if include_crds:
        args.append("--include-crds")
    return run_helm(helm, *args).stdout


def render(helm: Path, tmp_path: Path, values: dict[str, Any] | None = None, **kw: Any) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(render_text(helm, tmp_path, values, **kw)) if d]


def only(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def deployment(docs: list[dict[str, Any]]) -> dict[str, Any]:
    (found,) = only(docs, "Deployment")
    return found


# -- lint and schema ----------------------------------------------------------------------------


def test_helm_is_the_pinned_release(helm: Path) -> None:
    pinned = re.search(r"^\s*helm\.sh/helm/v3 (v\S+)", (ROOT / "hack/helm/go.mod").read_text(), re.M)
    assert pinned
    assert run_helm(helm, "version", "--template", "{{.Version}}").stdout == pinned.group(1)


def test_lint_default_values(helm: Path) -> None:
    out = run_helm(helm, "lint", "--strict", str(CHART), "--namespace", NS)
    assert "0 chart(s) failed" in out.stdout


def test_lint_sharded_ha_values(helm: Path, tmp_path: Path) -> None:
    out = run_helm(
        helm, "lint", "--strict", str(CHART), "--namespace", NS, "--values", str(values_file(tmp_path, SHARDED_HA))
    )
    assert "0 chart(s) failed" in out.stdout


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"replicas": 2}, "/peering/enabled"),
        ({"unknown": 1}, "additional properties 'unknown' not allowed"),
        ({"image": {"repository": "x", "pullPolicy": "Sometimes"}}, "/image/pullPolicy"),
        ({"watchNamespaces": ["Not_A_Namespace"]}, "/watchNamespaces/0"),
        ({"resources": {"requests": {"cpu": "lots"}, "limits": {}}}, "/resources/requests/cpu"),
        ({"controller": {"resyncSeconds": 30, "logLevel": "info", "healthPort": 80}}, "/controller/healthPort"),
        ({"webhook": {"enabled": True}}, "/webhook/certificateSecret"),
        ({"rbac": {"create": True, "secretNamespaces": ["*"]}}, "/rbac/secretNamespaces/0"),
        ({"tmf": {"enabled": True, "port": 443}}, "/tmf/port"),
        ({"tmf": {"enabled": True, "port": 70000}}, "/tmf/port"),
        ({"tmf": {"enabled": True, "port": 8443, "service": {"type": "Ingress", "port": 443}}}, "/tmf/service/type"),
        ({"tmf": {"enabled": True, "port": 8443, "certSecret": "Not_A_Secret"}}, "/tmf/certSecret"),
        ({"tmf": {"enabled": True, "port": 8443}, "watchNamespaces": ["acme"]}, "/watchNamespaces"),
    ],
    ids=[
        "ha-needs-peering",
        "unknown-key",
        "enum",
        "namespace-name",
        "quantity",
        "privileged-port",
        "webhook-cert",
        "no-wildcard-namespace",
        "tmf-privileged-port",
        "tmf-port-range",
        "tmf-service-type",
        "tmf-secret-name",
        "tmf-with-namespaces",
    ],
)
def test_schema_rejects(helm: Path, tmp_path: Path, values: dict[str, Any], expected: str) -> None:
    proc = run_helm(helm, "template", "x", str(CHART), "--values", str(values_file(tmp_path, values)), check=False)
    assert proc.returncode != 0
    assert expected in proc.stderr, proc.stderr


@pytest.mark.parametrize("values", [SHARDED_BY_DEVICE, TMF], ids=["sharded", "sharded-tmf"])
def test_lint_sharded_by_device_values(helm: Path, tmp_path: Path, values: dict[str, Any]) -> None:
    values = values_file(tmp_path, values)
    out = run_helm(helm, "lint", "--strict", str(CHART), "--namespace", NS, "--values", str(values))
    assert "0 chart(s) failed" in out.stdout


def test_sharded_replicas_are_all_active_spread_and_budgeted(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, SHARDED_BY_DEVICE)
    spec = deployment(docs)["spec"]
    assert spec["replicas"] == 3
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    container = spec["template"]["spec"]["containers"][0]
    settings = settings_from_args(build_parser().parse_args(container["args"]), {})
    assert (settings.shard_group, settings.shard_namespace, settings.peering) == ("telco-intent", NS, None)
    timing = (settings.shard_lease_seconds, settings.shard_renew_deadline_seconds, settings.shard_renew_seconds)
    assert timing == (20.0, 12.0, 3.0)
    assert not only(docs, "ClusterKopfPeering") and not only(docs, "KopfPeering")
    anti = spec["template"]["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    (pdb,) = only(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    lease_rules = [(role, rule) for role, rule in rbac_rules(docs) if "leases" in rule["resources"]]
    assert [(role["kind"], role["metadata"]["namespace"]) for role, _ in lease_rules] == [("Role", NS)]
    assert lease_rules[0][1] == {
        "apiGroups": ["coordination.k8s.io"],
        "resources": ["leases"],
        "verbs": ["get", "list", "watch", "create", "patch", "delete"],
    }
    (binding,) = [b for b in only(docs, "RoleBinding") if b["roleRef"]["name"] == lease_rules[0][0]["metadata"]["name"]]
    assert binding["subjects"][0]["name"] == spec["template"]["spec"]["serviceAccountName"]
    assert not only(render(helm, tmp_path), "PodDisruptionBudget"), "one replica: no budget to keep"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({"peering": {"enabled": True}}, "sharded replicas are all active"),
        ({"watchNamespaces": ["acme"]}, "namespaces share devices"),
    ],
    ids=["with-peering", "with-namespaces"],
)
def test_sharding_refuses_what_would_let_two_processes_drive_one_device(
    helm: Path, tmp_path: Path, extra: dict[str, Any], expected: str
) -> None:
    values = values_file(tmp_path, {**SHARDED_BY_DEVICE, **extra})
    proc = run_helm(helm, "template", "x", str(CHART), "--skip-schema-validation", "--values", str(values), check=False)
    assert proc.returncode != 0 and expected in proc.stderr, proc.stderr
    schema = run_helm(helm, "template", "x", str(CHART), "--values", str(values), check=False)
    assert schema.returncode != 0


def test_template_refuses_ha_without_peering_even_without_the_schema(helm: Path, tmp_path: Path) -> None:
    proc = run_helm(helm, "template", "x", str(CHART), "--skip-schema-validation", "--set", "replicas=2", check=False)
    assert proc.returncode != 0 and "needs peering.enabled=true" in proc.stderr


def test_every_value_has_a_described_schema_entry() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())

    def walk(value: Any, node: dict[str, Any], path: str) -> None:
        assert node.get("description"), f"{path or '(root)'} has no description"
        if isinstance(value, dict) and node.get("additionalProperties") is False:
            for key, sub in value.items():
                assert key in node["properties"], f"{path}.{key} is not in values.schema.json"
                walk(sub, node["properties"][key], f"{path}.{key}".lstrip("."))

    schema["description"] = schema["title"]
    walk(values, schema, "")


# -- rendering: security, RBAC, waves, HA ---------------------------------------------------------


@pytest.mark.parametrize("values", [None, SHARDED_HA], ids=["default", "sharded-ha"])
def test_pod_security(helm: Path, tmp_path: Path, values: dict[str, Any] | None) -> None:
    pod = deployment(render(helm, tmp_path, values))["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    sc = container["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert "emptyDir" in tmp
    assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]
    assert container["resources"]["requests"]["cpu"] and container["resources"]["requests"]["memory"]
    assert container["resources"]["limits"]["cpu"] and container["resources"]["limits"]["memory"]
    for probe in ("livenessProbe", "readinessProbe"):
        command = container[probe]["exec"]["command"]
        assert command[0] == "python" and "http://127.0.0.1:8081/healthz" in command[-1], command
    assert {"name": "metrics", "containerPort": 9090, "protocol": "TCP"} in container["ports"]
    assert "--health-port=8081" in container["args"] and "--metrics-port=9090" in container["args"]


def test_default_command_and_flags(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, tmp_path)
    container = deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    assert container["command"] == ["python", "-m", "controller"]
    assert container["args"] == [
        "run",
        "--resync-seconds=30",
        "--health-port=8081",
        "--metrics-port=9090",
        "--log-level=info",
    ]
    assert deployment(docs)["spec"]["strategy"] == {"type": "Recreate"}
    assert not only(docs, "ClusterKopfPeering") and not only(docs, "KopfPeering")


@pytest.mark.parametrize("values", [None, SHARDED_HA], ids=["default", "sharded-ha"])
def test_rendered_flags_parse_with_the_real_cli(helm: Path, tmp_path: Path, values: dict[str, Any] | None) -> None:
    container = deployment(render(helm, tmp_path, values))["spec"]["template"]["spec"]["containers"][0]
    args = build_parser().parse_args([*container["args"], "--priority=42"])
    assert args.func.__name__ == "_run"
    env = {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}
    settings = settings_from_args(args, env)
    assert settings.namespaces == list((values or {}).get("watchNamespaces", []))
    assert (settings.health_port, settings.metrics_port, settings.resync_seconds) == (8081, 9090, 30.0)
    assert settings.peering == ("telco-intent" if values else None)
    assert settings.priority == 42
    if values:
        assert settings.billing_sink_urls == ["https://billing.example.net/events"]
        assert settings.billing_sink_mode == "binary"
        assert settings.billing_sink_ca_file == "/etc/telco-intent/billing-ca/ca.pem"
        assert settings.cluster_identity == "https://k8s.x"
        (auth,) = [e for e in container["env"] if e["name"] == "TELCO_BILLING_SINK_AUTH_HEADER"]
        assert auth["valueFrom"]["secretKeyRef"] == {"name": "billing-sink", "key": "header"}, "from the Secret"
        pod = deployment(render(helm, tmp_path, values))["spec"]["template"]["spec"]
        (ca,) = [v for v in pod["volumes"] if v["name"] == "billing-ca"]
        assert ca["secret"] == {"secretName": "billing-ca", "items": [{"key": "ca.pem", "path": "ca.pem"}]}
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "billing-ca"]
        assert mount == {"name": "billing-ca", "mountPath": "/etc/telco-intent/billing-ca", "readOnly": True}
    else:
        assert settings.billing_sink_urls == [] and settings.cluster_identity is None


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"metrics": {"enabled": True, "port": 8081}}, "controller.healthPort and metrics.port are both 8081"),
        (
            {"webhook": {"enabled": True, "port": 9090, "certificateSecret": "tls", "caBundle": "Q0E="}},
            "metrics.port and webhook.port are both 9090",
        ),
        (
            {
                "webhook": {"enabled": True, "port": 8081, "certificateSecret": "tls", "caBundle": "Q0E="},
                "metrics": {"enabled": False, "port": 9090},
            },
            "controller.healthPort and webhook.port are both 8081",
        ),
        ({"tmf": {"enabled": True, "port": 9090}}, "metrics.port and tmf.port are both 9090"),
        (
            {
                "tmf": {"enabled": True, "port": 9443},
                "webhook": {"enabled": True, "certificateSecret": "tls", "caBundle": "Q0E="},
            },
            "webhook.port and tmf.port are both 9443",
        ),
    ],
    ids=["health-metrics", "metrics-webhook", "health-webhook", "metrics-tmf", "webhook-tmf"],
)
def test_ports_that_share_the_pod_must_differ(
    helm: Path, tmp_path: Path, values: dict[str, Any], expected: str
) -> None:
    proc = run_helm(helm, "template", "x", str(CHART), "--values", str(values_file(tmp_path, values)), check=False)
    assert proc.returncode != 0 and expected in proc.stderr, proc.stderr
    disabled = {**values, "metrics": {"enabled": False, "port": 8081}} if "webhook" not in values else None
    if disabled is not None:  # a disabled endpoint takes no port
        run_helm(helm, "template", "x", str(CHART), "--values", str(values_file(tmp_path, disabled)))


def test_probe_command_checks_healthz(helm: Path, tmp_path: Path) -> None:
    """The exec probe, run with this Python against a /healthz on 127.0.0.1, and with nothing there."""

    class Healthz(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Healthz)
    port = server.server_address[1]
    values = {"controller": {"resyncSeconds": 30, "logLevel": "info", "healthPort": port}}
    container = deployment(render(helm, tmp_path, values))["spec"]["template"]["spec"]["containers"][0]
    probe = container["livenessProbe"]["exec"]["command"]
    assert probe == container["readinessProbe"]["exec"]["command"]
    command = [sys.executable, *probe[1:]]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        assert subprocess.run(command, capture_output=True, timeout=10).returncode == 0
    finally:
        server.shutdown()
        server.server_close()
    assert subprocess.run(command, capture_output=True, timeout=10).returncode != 0


def rbac_rules(docs: list[dict[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    return [(d, rule) for d in docs if d["kind"] in ("Role", "ClusterRole") for rule in d.get("rules", [])]


@pytest.mark.parametrize("values", [None, SHARDED_HA, TMF], ids=["default", "sharded-ha", "sharded-tmf"])
def test_rbac_has_no_wildcards_and_secrets_are_get_only(helm: Path, tmp_path: Path, values: dict | None) -> None:
    docs = render(helm, tmp_path, values)
    rules = rbac_rules(docs)
    assert rules
    for role, rule in rules:
        for field in ("apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs"):
            for item in rule.get(field, []):
                assert "*" not in item, f"{role['kind']} {role['metadata']['name']}: wildcard in {field}: {rule}"
        assert rule["verbs"], rule
        assert not set(rule["verbs"]) & {"escalate", "bind", "impersonate", "deletecollection", "update"}, rule
    secret_rules = [(role, rule) for role, rule in rules if "secrets" in rule["resources"]]
    assert secret_rules
    expected_ns = (values or {}).get("rbac", {}).get("secretNamespaces") or [NS]
    assert sorted(role["metadata"].get("namespace") for role, _ in secret_rules) == sorted(expected_ns)
    for role, rule in secret_rules:
        assert role["kind"] == "Role", "Secrets are never readable cluster-wide"
        assert rule == {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}
    for _, rule in rules:
        # Invoices are billing data: the controller never deletes them.
        if "invoices" in rule["resources"]:
            assert "delete" not in rule["verbs"]


@pytest.mark.parametrize("values", [None, SHARDED_HA], ids=["default", "sharded-ha"])
def test_status_write_is_granted_to_the_controller_alone(helm: Path, tmp_path: Path, values: dict | None) -> None:
    """Status is the controller's (docs/reliability.md): every role granting a */status subresource is bound
    to the controller's ServiceAccount and nothing else; the chart makes no aggregated or user-facing role."""
    docs = render(helm, tmp_path, values)
    status_roles = {
        (role["kind"], role["metadata"].get("namespace"), role["metadata"]["name"])
        for role, rule in rbac_rules(docs)
        if any(r.endswith("/status") for r in rule["resources"])
    }
    assert status_roles
    sa = only(docs, "ServiceAccount")[0]["metadata"]["name"]
    for role in (d for d in docs if d["kind"] in ("Role", "ClusterRole")):
        assert "aggregationRule" not in role and not any(
            k.startswith("rbac.authorization.k8s.io/aggregate-to") for k in role["metadata"].get("labels", {})
        ), role["metadata"]["name"]
    bound = set()
    for binding in (d for d in docs if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        ref = binding["roleRef"]
        namespace = binding["metadata"].get("namespace") if ref["kind"] == "Role" else None
        if (ref["kind"], namespace, ref["name"]) in status_roles:
            assert [(s["kind"], s["name"]) for s in binding["subjects"]] == [("ServiceAccount", sa)], binding
            bound.add((ref["kind"], namespace, ref["name"]))
    assert bound == status_roles


def test_the_billing_signing_key_is_a_kept_secret_mounted_for_the_controller(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, tmp_path)
    (secret,) = [d for d in only(docs, "Secret") if d["metadata"]["name"].endswith("-billing-signing")]
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(base64.b64decode(secret["data"]["keys"])) >= 16
    pod = deployment(docs)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TELCO_BILLING_SIGNING_KEY_FILE"] == "/etc/telco-intent/billing-signing/keys"
    (volume,) = [v for v in pod["volumes"] if v["name"] == "billing-signing"]
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    theirs = render(helm, tmp_path, {"billingSigning": {"existingSecret": "my-billing-keys"}})
    assert not [d for d in only(theirs, "Secret") if d["metadata"]["name"].endswith("-billing-signing")]
    (volume,) = [v for v in deployment(theirs)["spec"]["template"]["spec"]["volumes"] if v["name"] == "billing-signing"]
    assert volume["secret"]["secretName"] == "my-billing-keys"


def test_clusterwide_rbac_covers_every_kind_with_a_cluster_role(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, tmp_path)
    (cluster_role,) = only(docs, "ClusterRole")
    resources = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    for model in KINDS:
        assert model.PLURAL in resources and f"{model.PLURAL}/status" in resources, model.KIND
    assert {"events", "customresourcedefinitions"} <= resources
    assert "namespaces" not in resources, "all namespaces: Kopf does not list namespaces"
    (binding,) = only(docs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "telco-intent", "namespace": NS}]


def test_sharded_rbac_is_a_role_per_watched_namespace(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, SHARDED_HA)
    (cluster_role,) = only(docs, "ClusterRole")
    cluster_resources = {r for rule in cluster_role["rules"] for r in rule["resources"]}
    namespaced = {m.PLURAL for m in KINDS if m.SCOPE == "Namespaced"}
    assert not cluster_resources & namespaced, "namespaced kinds are granted per namespace only"
    assert {m.PLURAL for m in KINDS if m.SCOPE == "Cluster"} <= cluster_resources
    assert "namespaces" in cluster_resources
    roles = {(r["metadata"]["namespace"], r["metadata"]["name"]): r for r in only(docs, "Role")}
    bindings = {(b["metadata"]["namespace"], b["metadata"]["name"]) for b in only(docs, "RoleBinding")}
    assert set(roles) == bindings
    for ns in SHARDED_HA["watchNamespaces"]:
        role = roles[(ns, "telco-intent")]
        resources = {r for rule in role["rules"] for r in rule["resources"]}
        assert namespaced <= resources and "events" in resources and "kopfpeerings" in resources
        peering_rules = [rule for rule in role["rules"] if "kopfpeerings" in rule["resources"]]
        assert {tuple(r["verbs"]) for r in peering_rules} == {("list", "watch"), ("get", "patch")}
        assert [r["resourceNames"] for r in peering_rules if "patch" in r["verbs"]] == [["telco-intent"]]


def test_shards_get_distinct_peering_and_rbac_names(helm: Path, tmp_path: Path) -> None:
    shard = {"peering": {"enabled": True}, "replicas": 2}
    a = render(helm, tmp_path, {**shard, "watchNamespaces": ["acme"]}, release="shard-a")
    b = render(helm, tmp_path, {**shard, "watchNamespaces": ["globex"]}, release="shard-b")

    def peering(docs: list[dict[str, Any]]) -> str:
        args = deployment(docs)["spec"]["template"]["spec"]["containers"][0]["args"]
        (flag,) = [a for a in args if a.startswith("--peering=")]
        return flag.split("=", 1)[1]

    assert peering(a) != peering(b)
    assert [p["metadata"]["name"] for p in only(a, "KopfPeering")] == [peering(a)]
    assert only(a, "KopfPeering")[0]["metadata"]["namespace"] == "acme"
    names_a = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in a}
    names_b = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]) for d in b}
    assert not names_a & names_b, "two shards in one namespace must not collide"


@pytest.mark.parametrize("values", [SHARDED_HA, TMF], ids=["sharded-ha", "sharded-tmf"])
def test_sync_waves(helm: Path, tmp_path: Path, values: dict[str, Any]) -> None:
    docs = render(helm, tmp_path, values, include_crds=True)
    setup = {
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "KopfPeering",
        "ClusterKopfPeering",
        "Secret",  # the billing signing key, mounted by the controller's pods
    }
    for doc in docs:
        wave = (doc["metadata"].get("annotations") or {}).get(WAVE)
        assert wave is not None, f"{doc['kind']} {doc['metadata']['name']} has no sync wave"
        expected = "-2" if doc["kind"] in setup else "-1"
        assert wave == expected, (doc["kind"], doc["metadata"]["name"], wave)
    crds = only(docs, "CustomResourceDefinition")
    assert {c["metadata"]["name"] for c in crds} >= {f"{m.PLURAL}.{GROUP}" for m in KINDS}
    for crd in crds:
        assert "Delete=false" in crd["metadata"]["annotations"]["argocd.argoproj.io/sync-options"]


def test_ha_replicas_get_distinct_priorities(helm: Path, tmp_path: Path) -> None:
    """Run the rendered container command with a stand-in `python` for many pod names."""
    docs = render(helm, tmp_path, SHARDED_HA)
    spec = deployment(docs)["spec"]
    assert spec["replicas"] == 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    assert "--peering=telco-intent" in container["args"]
    assert not any(a.startswith("--priority") for a in container["args"]), "a fixed priority would be shared"

    fake = tmp_path / "fakebin"
    fake.mkdir()
    (fake / "python").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (fake / "python").chmod(0o755)
    rng = random.Random(20261101)
    alphabet = string.ascii_lowercase + string.digits
    template_hash = "".join(rng.choice(alphabet) for _ in range(10))
    pods = [f"telco-intent-{template_hash}-{''.join(rng.choice(alphabet) for _ in range(5))}" for _ in range(200)]
    priorities = []
    for pod in pods:
        proc = subprocess.run(
            [*container["command"], *container["args"]],
            capture_output=True,
            text=True,
            timeout=10,
            env={"PATH": f"{fake}:{os.environ['PATH']}", "POD_NAME": pod},
        )
        assert proc.returncode == 0, proc.stderr
        argv = proc.stdout.splitlines()
        assert argv[:3] == ["-m", "controller", "run"], argv
        assert argv[3:-1] == container["args"][1:]
        (priority,) = re.fullmatch(r"--priority=(\d+)", argv[-1]).groups()  # type: ignore[union-attr]
        priorities.append(int(priority))
    assert len(set(priorities)) == len(pods), "two pods got the same priority"
    assert all(0 <= p < 2**32 for p in priorities)


def test_dashboard_configmap_ships_the_json(helm: Path, tmp_path: Path) -> None:
    (cm,) = only(render(helm, tmp_path, SHARDED_HA), "ConfigMap")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(cm["data"]["telco-intent.json"])
    assert shipped == json.loads((CHART / "dashboards" / "telco-intent.json").read_text())


@pytest.mark.cluster
def test_service_monitor_only_where_the_prometheus_operator_api_is_served(
    helm: Path, tmp_path: Path, peering_crds: Kubectl
) -> None:
    assert not only(render(helm, tmp_path, SHARDED_HA), "ServiceMonitor"), "no CRD, no ServiceMonitor"
    # Against a real API server without the Prometheus Operator CRDs: helm reads .Capabilities from it.
    values = str(values_file(tmp_path, SHARDED_HA))
    kubeconfig = str(peering_crds.kubeconfig)
    args = ("install", "x", str(CHART), "--dry-run=client", "--kubeconfig", kubeconfig, "--values", values)
    out = run_helm(helm, *args).stdout
    assert "kind: ServiceMonitor" not in out and "no ServiceMonitor was created" in out


def test_service_monitor_scrapes_the_metrics_service(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, SHARDED_HA, api_versions=(SERVICE_MONITOR_API,))
    (monitor,) = only(docs, "ServiceMonitor")
    services = {s["metadata"]["name"]: s for s in only(docs, "Service")}
    metrics = services["telco-intent-metrics"]
    assert monitor["spec"]["endpoints"][0]["port"] == metrics["spec"]["ports"][0]["name"] == "metrics"
    assert set(monitor["spec"]["selector"]["matchLabels"].items()) <= set(metrics["metadata"]["labels"].items())
    assert monitor["metadata"]["labels"]["release"] == "prom"


def test_the_webhook_service_keeps_an_api_servers_requests_on_one_replica(helm: Path, tmp_path: Path) -> None:
    """Admission reservations are per replica (docs/admission.md): ClientIP affinity sends the requests of
    one API server to one replica while it is ready."""
    services = {s["metadata"]["name"]: s for s in only(render(helm, tmp_path, SHARDED_HA), "Service")}
    assert services["telco-intent-webhook"]["spec"]["sessionAffinity"] == "ClientIP"


def test_argocd_example_application_values_are_valid(helm: Path, tmp_path: Path) -> None:
    apps = list(yaml.safe_load_all((ROOT / "deploy" / "argocd" / "application.yaml").read_text()))
    chart_app = next(a for a in apps if a["spec"]["source"]["path"] == "charts/telco-intent")
    values = chart_app["spec"]["source"]["helm"]["valuesObject"]
    out = run_helm(
        helm,
        "lint",
        "--strict",
        str(CHART),
        "--namespace",
        chart_app["spec"]["destination"]["namespace"],
        "--values",
        str(values_file(tmp_path, values)),
    )
    assert "0 chart(s) failed" in out.stdout
    waves = {a["metadata"]["name"]: int(a["metadata"]["annotations"][WAVE]) for a in apps}
    for app in apps:
        assert (ROOT / app["spec"]["source"]["path"]).is_dir(), app["spec"]["source"]["path"]
        if app is not chart_app:
            assert waves[app["metadata"]["name"]] > waves[chart_app["metadata"]["name"]]


# -- CRD copies -----------------------------------------------------------------------------------


def test_chart_crds_are_the_generated_ones(tmp_path: Path) -> None:
    out = tmp_path / "crds"
    subprocess.run([str(ROOT / "hack" / "sync-chart-crds.sh"), str(out)], check=True, capture_output=True)
    generated = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    copies = sorted(p.name for p in (CHART / "crds").glob(f"*.{GROUP}.yaml"))
    assert copies == generated, "run hack/sync-chart-crds.sh"
    for name in generated:
        assert (CHART / "crds" / name).read_text() == (out / name).read_text(), f"{name}: run hack/sync-chart-crds.sh"
        source = yaml.safe_load((ROOT / "crds" / name).read_text())
        copy = yaml.safe_load((CHART / "crds" / name).read_text())
        annotations = copy["metadata"].pop("annotations")
        assert set(annotations) == {WAVE, "argocd.argoproj.io/sync-options"}
        assert copy == source, f"{name} differs from crds/{name} beyond the Argo CD annotations"


# -- server-side dry run against the real API server ----------------------------------------------


def ensure_namespaces(kubectl: Kubectl, *names: str) -> None:
    kubectl.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}} for n in names])


@pytest.fixture(scope="module")
def peering_crds(kubectl: Kubectl) -> Kubectl:
    """Kopf's peering CRDs, installed for real so peering objects can be dry-run."""
    kubectl.apply_file(CHART / "crds" / "kopf.dev_peerings.yaml")
    kubectl.run(
        "wait",
        "--for=condition=Established",
        "crd/clusterkopfpeerings.kopf.dev",
        "crd/kopfpeerings.kopf.dev",
        "--timeout=60s",
    )
    return kubectl


@pytest.mark.cluster
@pytest.mark.parametrize("values", [None, SHARDED_HA, TMF], ids=["default", "sharded-ha", "sharded-tmf"])
def test_server_side_dry_run(peering_crds: Kubectl, helm: Path, tmp_path: Path, values: dict | None) -> None:
    kubectl = peering_crds
    namespaces = [
        NS,
        *((values or {}).get("watchNamespaces") or []),
        *((values or {}).get("rbac", {}).get("secretNamespaces") or []),
    ]
    ensure_namespaces(kubectl, *namespaces)
    docs = render(helm, tmp_path, values, include_crds=True)
    # The test API server has no Prometheus Operator CRDs; the ServiceMonitor is checked above.
    docs = [d for d in docs if d["kind"] != "ServiceMonitor"]
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    result = kubectl.run(
        "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", str(rendered), check=False
    )
    assert result.returncode == 0, f"server-side dry run failed:\n{result.stderr}"
    applied = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(applied) == len(docs), result.stdout
    assert all("(server dry run)" in line for line in applied), result.stdout


# -- the validating webhook ----------------------------------------------------------------------


def test_webhook_configuration_is_the_controllers_table(helm: Path, tmp_path: Path) -> None:
    """Every webhook the controller serves (controller/admission.py) is registered at its path, for its kind
    only, through the webhook Service, with the failure policy and bounded timeout from the values; the
    local control plane's registration (webhook_configuration) has the same webhooks and rules."""
    docs = render(helm, tmp_path, SHARDED_HA)
    (config,) = only(docs, "ValidatingWebhookConfiguration")
    (account,) = only(docs, "ServiceAccount")
    controller = f"system:serviceaccount:{NS}:{account['metadata']['name']}"
    local = webhook_configuration("x", "https://127.0.0.1:1", b"CA", controller_username=controller)
    assert [w["name"] for w in config["webhooks"]] == [w["name"] for w in local["webhooks"]]
    for chart_hook, local_hook, hook in zip(config["webhooks"], local["webhooks"], WEBHOOKS.values(), strict=True):
        assert chart_hook["rules"] == local_hook["rules"]
        assert chart_hook["matchConditions"] == local_hook["matchConditions"]
        assert chart_hook["matchConditions"][0] == {"name": "intent-changed", "expression": hook.match_condition}
        # the controller's own writes of an owned NetworkService skip the NetworkService check only
        assert len(chart_hook["matchConditions"]) == (2 if hook.plural == "networkservices" else 1), hook.plural
        assert chart_hook["clientConfig"]["service"] == {
            "name": "telco-intent-webhook",
            "namespace": NS,
            "path": hook.path,
            "port": 443,
        }
        assert chart_hook["clientConfig"]["caBundle"] == "Q0E="
        assert (chart_hook["failurePolicy"], chart_hook["timeoutSeconds"]) == ("Fail", 5)
        assert chart_hook["sideEffects"] == "None" and chart_hook["admissionReviewVersions"] == ["v1"]
        namespaced = hook.plural in ("subscriptions", "networkservices", "invoices")
        selector = chart_hook.get("namespaceSelector")
        assert (selector is not None) == namespaced, hook.plural  # a shard judges only its namespaces
        if selector is not None:
            assert selector["matchExpressions"][0]["values"] == SHARDED_HA["watchNamespaces"]
    (service,) = [d for d in only(docs, "Service") if d["metadata"]["name"] == "telco-intent-webhook"]
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "webhook", "protocol": "TCP"}]
    container = deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    args = build_parser().parse_args([*container["args"], "--priority=1"])
    settings = settings_from_args(args, env)
    assert (settings.webhook_port, settings.webhook_address) == (9443, "0.0.0.0")
    assert settings.webhook_cert_dir == "/etc/telco-intent/webhook"
    assert not only(render(helm, tmp_path), "ValidatingWebhookConfiguration")  # off by default


def test_finalizer_webhook_is_the_controllers_table(helm: Path, tmp_path: Path) -> None:
    """The mutating webhook (on with webhook.enabled unless webhook.addFinalizer is false) registers the
    kinds and paths the controller serves, creates only, failurePolicy Ignore, like the local control
    plane's registration (mutating_webhook_configuration)."""
    docs = render(helm, tmp_path, SHARDED_HA)
    (config,) = only(docs, "MutatingWebhookConfiguration")
    local = mutating_webhook_configuration("x", "https://127.0.0.1:1", b"CA")
    assert [w["name"] for w in config["webhooks"]] == [w["name"] for w in local["webhooks"]]
    for chart_hook, local_hook, plural in zip(config["webhooks"], local["webhooks"], FINALIZED, strict=True):
        assert chart_hook["rules"] == local_hook["rules"]
        assert chart_hook["rules"][0]["operations"] == ["CREATE"]
        for key in (
            "failurePolicy",
            "reinvocationPolicy",
            "timeoutSeconds",
            "sideEffects",
            "admissionReviewVersions",
            "matchConditions",
        ):
            assert chart_hook[key] == local_hook[key], key
        assert chart_hook["failurePolicy"] == "Ignore"
        assert chart_hook["clientConfig"]["service"] == {
            "name": "telco-intent-webhook",
            "namespace": NS,
            "path": finalizer_path(plural),
            "port": 443,
        }
        assert chart_hook["namespaceSelector"]["matchExpressions"][0]["values"] == SHARDED_HA["watchNamespaces"]
    off = {**SHARDED_HA, "webhook": {**SHARDED_HA["webhook"], "addFinalizer": False}}
    assert not only(render(helm, tmp_path, off), "MutatingWebhookConfiguration")
    assert only(render(helm, tmp_path, off), "ValidatingWebhookConfiguration")
    assert not only(render(helm, tmp_path), "MutatingWebhookConfiguration")  # off with the webhook


def test_webhook_with_cert_manager(helm: Path, tmp_path: Path) -> None:
    values = {
        "webhook": {
            "enabled": True,
            "certificateSecret": "telco-intent-webhook-tls",
            "certManager": {"enabled": True, "issuerRef": {"name": "ca-issuer", "kind": "ClusterIssuer"}},
            "failurePolicy": "Ignore",
            "timeoutSeconds": 8,
        }
    }
    docs = render(helm, tmp_path, values)
    (config,) = only(docs, "ValidatingWebhookConfiguration")
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NS}/telco-intent-webhook"
    assert all("caBundle" not in w["clientConfig"] for w in config["webhooks"])
    (mutating,) = only(docs, "MutatingWebhookConfiguration")
    assert mutating["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == f"{NS}/telco-intent-webhook"
    assert all("caBundle" not in w["clientConfig"] for w in mutating["webhooks"])
    assert {(w["failurePolicy"], w["timeoutSeconds"]) for w in config["webhooks"]} == {("Ignore", 8)}
    (cert,) = only(docs, "Certificate")
    assert cert["spec"]["secretName"] == "telco-intent-webhook-tls"
    assert cert["spec"]["issuerRef"] == {"name": "ca-issuer", "kind": "ClusterIssuer"}
    assert f"telco-intent-webhook.{NS}.svc" in cert["spec"]["dnsNames"]


@pytest.mark.parametrize(
    ("webhook", "expected"),
    [
        ({"enabled": True, "certificateSecret": "s"}, "needs webhook.caBundle"),
        ({"enabled": True, "certificateSecret": "s", "caBundle": "Q0E=", "timeoutSeconds": 30}, "timeoutSeconds"),
        ({"enabled": True, "certificateSecret": "s", "caBundle": "Q0E=", "failurePolicy": "Maybe"}, "failurePolicy"),
    ],
    ids=["no-ca", "timeout-bounded", "policy-enum"],
)
def test_webhook_values_refused(helm: Path, tmp_path: Path, webhook: dict[str, Any], expected: str) -> None:
    values = values_file(tmp_path, {"webhook": webhook})
    proc = run_helm(helm, "template", "x", str(CHART), "--values", str(values), check=False)
    assert proc.returncode != 0 and expected in proc.stderr, proc.stderr


# -- the TM Forum APIs -----------------------------------------------------------------------------


def tmf_rules(docs: list[dict[str, Any]]) -> set[tuple[str, str | None, str, str, str, str]]:
    """Every (kind, namespace, group, resource, resourceName, verb) the rendered roles grant, one per row."""
    return {
        (role["kind"], role["metadata"].get("namespace"), group, resource, name, verb)
        for role, rule in rbac_rules(docs)
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for name in rule.get("resourceNames", [""])
        for verb in rule["verbs"]
    }


def test_tmf_is_off_by_default(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, tmp_path)
    container = deployment(docs)["spec"]["template"]["spec"]["containers"][0]
    assert not [e for e in container["env"] if e["name"].startswith("TELCO_TMF_")]
    assert "tmf" not in {p["name"] for p in container["ports"]}
    assert not [d for d in only(docs, "Service") if d["metadata"]["name"].endswith("-tmf")]
    granted = {(group, resource) for _, _, group, resource, _, _ in tmf_rules(docs)}
    assert not granted & {("authentication.k8s.io", "tokenreviews"), ("authorization.k8s.io", "subjectaccessreviews")}
    assert ("", "configmaps") not in granted


def test_tmf_is_served_by_every_replica_behind_its_service(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, TMF)
    spec = deployment(docs)["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    args = build_parser().parse_args(container["args"])
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    settings = settings_from_args(args, env)
    assert (settings.tmf_port, settings.tmf_address, settings.tmf_cert_dir) == (
        8444,
        "0.0.0.0",
        "/etc/telco-intent/tmf",
    )
    assert settings.shard_group == "telco-intent", "the APIs ride along with sharding: every replica serves them"
    assert {"name": "tmf", "containerPort": 8444, "protocol": "TCP"} in container["ports"]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "tmf-certs"]
    assert mount == {"name": "tmf-certs", "mountPath": "/etc/telco-intent/tmf", "readOnly": True}
    (volume,) = [v for v in pod["volumes"] if v["name"] == "tmf-certs"]
    items = [{"key": "tls.crt", "path": "tls.crt"}, {"key": "tls.key", "path": "tls.key"}]
    assert volume["secret"] == {"secretName": "tmf-tls", "items": items}
    (service,) = [d for d in only(docs, "Service") if d["metadata"]["name"] == "telco-intent-tmf"]
    assert service["metadata"]["namespace"] == NS
    assert service["spec"]["type"] == "NodePort"
    assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
    assert service["spec"]["ports"] == [{"name": "https", "port": 8443, "targetPort": "tmf", "protocol": "TCP"}]
    # Readiness stays the controller's /healthz: the APIs add no probe of their own.
    default = deployment(render(helm, tmp_path))["spec"]["template"]["spec"]["containers"][0]
    assert (container["readinessProbe"], container["livenessProbe"]) == (
        default["readinessProbe"],
        default["livenessProbe"],
    )


def test_tmf_without_a_secret_serves_a_self_signed_certificate(helm: Path, tmp_path: Path) -> None:
    docs = render(helm, tmp_path, {"tmf": {"enabled": True, "port": 8443}})
    pod = deployment(docs)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    settings = settings_from_args(build_parser().parse_args(container["args"]), env)
    assert (settings.tmf_port, settings.tmf_cert_dir) == (8443, None)
    assert "tmf-certs" not in {v["name"] for v in pod["volumes"]}
    (service,) = [d for d in only(docs, "Service") if d["metadata"]["name"] == "telco-intent-tmf"]
    assert (service["spec"]["type"], service["spec"]["ports"][0]["port"]) == ("ClusterIP", 443)


def test_tmf_rbac_is_exactly_what_the_facade_uses(helm: Path, tmp_path: Path) -> None:
    """What tmf.enabled adds: the reviews, Subscription creation (productOrder add; the controller already
    gets, lists, watches and patches them) and, in the release namespace only, the two hub ConfigMaps
    (controller/tmf/hubs.py): created by any name (RBAC cannot limit create), read and patched by name."""
    added = tmf_rules(render(helm, tmp_path, TMF)) - tmf_rules(render(helm, tmp_path, SHARDED_BY_DEVICE))
    assert added == {
        ("ClusterRole", None, "authentication.k8s.io", "tokenreviews", "", "create"),
        ("ClusterRole", None, "authorization.k8s.io", "subjectaccessreviews", "", "create"),
        ("ClusterRole", None, GROUP, "subscriptions", "", "create"),
        ("Role", NS, "", "configmaps", "", "create"),
        ("Role", NS, "", "configmaps", HUBS_CONFIGMAP, "get"),
        ("Role", NS, "", "configmaps", HUBS_CONFIGMAP, "patch"),
        ("Role", NS, "", "configmaps", OUTBOX_CONFIGMAP, "get"),
        ("Role", NS, "", "configmaps", OUTBOX_CONFIGMAP, "patch"),
    }
    docs = render(helm, tmp_path, TMF)
    controller = tmf_rules(docs)
    for plural in ("productofferings", "subscriptions", "networkservices", "billingaccounts", "invoices"):
        assert {("ClusterRole", None, GROUP, plural, "", v) for v in ("list", "watch")} <= controller, plural
    assert {("ClusterRole", None, GROUP, "subscriptions", "", v) for v in ("get", "patch")} <= controller
    sa = only(docs, "ServiceAccount")[0]["metadata"]["name"]
    tmf_bindings = [
        b
        for b in docs
        if b["kind"] in ("RoleBinding", "ClusterRoleBinding") and b["roleRef"]["name"] == "telco-intent-tmf"
    ]
    assert sorted(b["kind"] for b in tmf_bindings) == ["ClusterRoleBinding", "RoleBinding"]
    for binding in tmf_bindings:
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa, "namespace": NS}]
    assert only(docs, "RoleBinding")[0]["metadata"]["namespace"] == NS
    unbound = render(helm, tmp_path, {**TMF, "rbac": {"create": False}})
    assert not tmf_rules(unbound), "rbac.create=false: no roles at all"


def test_tmf_refuses_watched_namespaces_even_without_the_schema(helm: Path, tmp_path: Path) -> None:
    values = values_file(tmp_path, {"tmf": {"enabled": True, "port": 8443}, "watchNamespaces": ["acme"]})
    proc = run_helm(helm, "template", "x", str(CHART), "--skip-schema-validation", "--values", str(values), check=False)
    assert proc.returncode != 0 and "tmf.enabled needs watchNamespaces empty" in proc.stderr, proc.stderr


# -- docs/deploy.md's values reference is generated from the schema --------------------------------


def values_table() -> str:
    """The values reference of docs/deploy.md: every key, its default and its schema description."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = ["| Key | Default | Description |", "| --- | --- | --- |"]

    def walk(node: dict[str, Any], value: Any, path: str) -> None:
        nested = node.get("properties") and node.get("additionalProperties") is False
        if nested and isinstance(value, dict) and path not in ("resources", "affinity"):
            for key, sub in node["properties"].items():
                walk(sub, value.get(key), f"{path}.{key}".lstrip("."))
        elif path != "global":
            default = json.dumps(value).replace("|", "\\|")
            rows.append(f"| `{path}` | `{default}` | {node.get('description', '')} |")

    walk(schema, values, "")
    return "\n".join(rows) + "\n"


def test_docs_values_reference_is_current() -> None:
    doc = (ROOT / "docs" / "deploy.md").read_text()
    match = re.search(r"<!-- values:begin -->\n(.*?)<!-- values:end -->", doc, re.S)
    assert match, "docs/deploy.md lacks the <!-- values:begin/end --> markers"
    assert match.group(1) == values_table(), "paste this table into docs/deploy.md:\n" + values_table()
