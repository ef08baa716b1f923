"""Security: the controller runs with exactly the Helm chart's RBAC, as its ServiceAccount.

The chart is rendered with `helm template` (peering on, Secrets confined to one namespace), its
ServiceAccount, (Cluster)Roles, bindings and peering object are applied to the test API server, and
the controller runs with a token for that ServiceAccount from the TokenRequest API, with the flags
and environment of the rendered Deployment. Everything works (a NetworkService reaches Ready, device
status and Events are written), requests outside the rules are denied, device credentials come only
from Secrets and never appear in the log, Events or status, and devices are verified with TLS by
default (credentials are never sent to an unverified device).
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes
import pytest
import yaml
from kubernetes.client import ApiException

from localcluster.cluster import free_port
from tests.harness import GROUP, VERSION, Api, registered_webhook
from tests.integration.test_chart import helm as helm  # the session fixture that builds bin/helm
from tests.integration.test_chart import render
from tests.kube import Kubectl
from tests.reliability.rig import Rig, condition, ep, rig, unique, wait_for

ROOT = Path(__file__).resolve().parents[2]
RELEASE = "telco-intent"
RELEASE_NS = "rbac-system"
SECRETS_NS = "rbac-secrets"
SA = f"system:serviceaccount:{RELEASE_NS}:{RELEASE}"
PASSWORD = "Rb4c-s3cr3t-d3v1ce-pa55"
DEVICES = ("rb-r1", "rb-r2")
VALUES: dict[str, Any] = {
    "peering": {"enabled": True},
    "rbac": {"create": True, "secretNamespaces": [SECRETS_NS]},
    "controller": {"logLevel": "debug"},  # the most talkative level: still no secret may appear
}
RBAC_KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ClusterKopfPeering"}


@pytest.fixture(scope="module")
def chart(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return render(helm, tmp_path_factory.mktemp("chart"), VALUES, release=RELEASE, namespace=RELEASE_NS)


@pytest.fixture(scope="module")
def identity(chart: list[dict[str, Any]], crds: Kubectl, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The chart's RBAC applied; a kubeconfig holding a TokenRequest token of its ServiceAccount."""
    crds.apply_file(ROOT / "charts" / "telco-intent" / "crds" / "kopf.dev_peerings.yaml")
    crds.run("wait", "--for=condition=Established", "crd/clusterkopfpeerings.kopf.dev", "--timeout=60s")
    api = Api(crds.kubeconfig)
    for ns in (RELEASE_NS, SECRETS_NS):
        api.ensure_namespace(ns)
    docs = [d for d in chart if d["kind"] in RBAC_KINDS]
    assert {d["kind"] for d in docs} == RBAC_KINDS, sorted({d["kind"] for d in chart})
    crds.apply(docs)
    return service_account_kubeconfig(crds, RELEASE, RELEASE_NS, tmp_path_factory.mktemp("identity"))


def service_account_kubeconfig(admin: Kubectl, name: str, namespace: str, directory: Path) -> Path:
    """A kubeconfig holding a TokenRequest token of ServiceAccount namespace/name, in `directory`."""
    api = Api(admin.kubeconfig)
    token = api.core.create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 3600}}
    ).status.token
    config = yaml.safe_load(admin.kubeconfig.read_text())
    identity = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": config["clusters"],
        "users": [{"name": "controller", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": config["clusters"][0]["name"], "user": "controller"}}],
        "current-context": "sa",
    }
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(identity))
    path.chmod(0o600)
    return path


def deployment_flags(
    chart: list[dict[str, Any]], workdir: Path, namespace: str = RELEASE_NS
) -> tuple[list[str], dict[str, str]]:
    """The rendered Deployment's `run` flags and plain env, with loopback ports for this machine and the
    rendered billing signing Secret written where the env names its mount (under `workdir` here)."""
    (deployment,) = [d for d in chart if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    args = [a for a in container["args"] if not a.startswith(("--metrics-port", "--health-port"))]
    assert args[0] == "run"
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    env["TELCO_METRICS_ADDRESS"] = "127.0.0.1"  # every server on loopback here
    env.update(POD_NAME="telco-intent-rbac-test", POD_ID="telco-intent-rbac-test", POD_NAMESPACE=namespace)
    if "TELCO_BILLING_SIGNING_KEY_FILE" in env:
        (secret,) = [d for d in chart if d["kind"] == "Secret" and d["metadata"]["name"].endswith("-billing-signing")]
        key_file = workdir / "billing-signing-keys"
        key_file.write_bytes(base64.b64decode(secret["data"]["keys"]))
        env["TELCO_BILLING_SIGNING_KEY_FILE"] = str(key_file)
    return [*args[1:], f"--health-port={free_port()}", "--priority=1"], env


@pytest.fixture(scope="module")
def r(
    chart: list[dict[str, Any]], identity: Path, kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Rig]:
    flags, env = deployment_flags(chart, tmp_path_factory.mktemp("rbac-mounts"))
    with rig(
        kubeconfig,
        tmp_path_factory.mktemp("rbac"),
        "rb",
        DEVICES,
        controller=False,
        namespaced=False,
        password=PASSWORD,
        secret_namespace=SECRETS_NS,
        controller_kubeconfig=identity,
        controller_args=tuple(flags),
        controller_env=env,
        fleet_args=("--names", ",".join([*DEVICES, "rb-untrusted"])),
    ) as the_rig:
        the_rig.start_controller(webhook=True)  # registered only by the webhook test below
        yield the_rig


def test_everything_works_with_the_charts_rbac(r: Rig) -> None:
    name = unique("rbac")
    r.apply(r.service(name, [ep("rb-r1", "Ethernet1", 700)]))
    svc = r.ready(name, timeout=30)
    assert svc["metadata"]["finalizers"] == ["telco.intent.dev/cleanup"]
    device = r.api.get("networkdevices", "rb-r1")
    assert condition(device, "Reachable")["status"] == "True"  # type: ignore[index]
    # Drift reverted: an Event written with the chart's rules.
    r.admin.set(
        "rb-r1",
        "interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=700]/config",
        {"description": "by hand"},
    )
    wait_for("a DriftReverted Event", lambda: any(e.reason == "DriftReverted" for e in r.api.events(r.namespace, name)))
    r.delete(name)
    r.gone(name, 30)
    assert not any(r.managed("rb-r1").values())
    # Peering through the chart's ClusterKopfPeering: this replica is in it.
    peering = r.api.custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", RELEASE)
    assert "telco-intent-rbac-test" in (peering.get("status") or {}), peering
    assert not denials(r.logs()), "the controller hit RBAC denials:\n" + "\n".join(denials(r.logs())[:10])


def test_the_webhook_reads_what_it_needs_with_the_charts_rbac(r: Rig, kubeconfig: Path) -> None:
    """A refusal that needs the cluster's NetworkDevices, and an admission that needs every kind the
    webhook reads: under the chart's rules neither fails to read (that would be a 503 "could not read")."""
    assert r.controller is not None
    kubectl = Kubectl(kubeconfig)
    ghost = r.service(unique("rbac-ghost"), [ep("rb-ghost", "Ethernet1", 701)])
    good = r.service(unique("rbac-adm"), [ep("rb-r1", "Ethernet2", 702)])
    with registered_webhook(r.api, r.controller, "telco-intent-test-rbac-admission"):
        refused = wait_for(
            "the webhook refusing a service on an unknown device",
            lambda: (out := kubectl.apply(ghost, check=False)).returncode != 0 and "denied the request" in out.stderr
            and out.stderr,
            60,
            interval=0.5,
        )
        assert "spec.endpoints[0].device: NetworkDevice rb-ghost does not exist" in refused, refused
        admitted = kubectl.apply(good, check=False)
        assert admitted.returncode == 0, admitted.stderr
        r.ready(good["metadata"]["name"], timeout=30)
    r.delete(good["metadata"]["name"])
    r.gone(good["metadata"]["name"], 30)
    assert "could not read" not in r.logs()
    assert not denials(r.logs()), "the webhook hit RBAC denials:\n" + "\n".join(denials(r.logs())[:10])


# Other test modules leave NetworkDevices whose Secrets live in namespaces this release may not read
# (rbac.secretNamespaces): refusing those reads is the chart doing its job, not a missing rule.


def denials(log: str) -> list[str]:
    return denials_outside(log, SECRETS_NS)


def denials_outside(log: str, secrets_namespace: str) -> list[str]:
    """The 403s in a controller log, except reads of Secrets outside the one namespace it may read."""
    expected = re.compile(rf"GET /api/v1/namespaces/(?!{secrets_namespace}/)[a-z0-9-]+/secrets/")
    lines = [line for line in log.splitlines() if re.search(r'" 403 |\b403\b.*Forbidden|[Ff]orbidden', line)]
    return [line for line in lines if not expected.search(line)]


ALLOWED = [
    ("get", "secrets", SECRETS_NS),
    ("list", "networkservices.telco.intent.dev", None),
    ("watch", "billingaccounts.telco.intent.dev", None),
    ("patch", "networkdevices.telco.intent.dev/status", None),
    ("create", "events", "default"),
    ("patch", f"clusterkopfpeerings.kopf.dev/{RELEASE}", None),
]
DENIED = [
    ("list", "secrets", SECRETS_NS),
    ("watch", "secrets", SECRETS_NS),
    ("get", "secrets", "telco-system"),
    ("get", "secrets", "kube-system"),
    ("list", "secrets", None),
    ("delete", "networkdevices.telco.intent.dev", None),
    ("create", "networkdevices.telco.intent.dev", None),
    ("delete", "invoices.telco.intent.dev", "default"),
    ("patch", "billingaccounts.telco.intent.dev", "default"),
    ("get", "pods", RELEASE_NS),
    ("list", "pods", None),
    ("create", "pods/exec", RELEASE_NS),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io", None),
    ("escalate", "clusterroles.rbac.authorization.k8s.io", None),
    ("impersonate", "users", None),
    ("create", "serviceaccounts/token", RELEASE_NS),
    ("update", "customresourcedefinitions.apiextensions.k8s.io", None),
    ("patch", "clusterkopfpeerings.kopf.dev/someone-else", None),
    ("delete", "namespaces", None),
]


def can_i(identity: Path, verb: str, resource: str, namespace: str | None) -> bool:
    scope = ["-n", namespace] if namespace else ["--all-namespaces"]
    result = Kubectl(identity).run("auth", "can-i", verb, resource, *scope, check=False)
    assert result.stdout.strip() in ("yes", "no"), result
    return result.stdout.strip() == "yes"


@pytest.mark.parametrize(("verb", "resource", "namespace"), ALLOWED, ids=[" ".join(map(str, a)) for a in ALLOWED])
def test_the_identity_may_do_what_the_controller_needs(identity: Path, verb: str, resource: str, namespace: str):  # type: ignore[no-untyped-def]
    assert can_i(identity, verb, resource, namespace)


@pytest.mark.parametrize(("verb", "resource", "namespace"), DENIED, ids=[" ".join(map(str, d)) for d in DENIED])
def test_requests_outside_the_rules_are_denied(identity: Path, verb: str, resource: str, namespace: str):  # type: ignore[no-untyped-def]
    assert not can_i(identity, verb, resource, namespace), f"{SA} may {verb} {resource} in {namespace or 'all'}"


def test_denied_for_real_not_only_in_can_i(identity: Path, r: Rig) -> None:
    client = kubernetes.config.new_client_from_config(str(identity))
    core = kubernetes.client.CoreV1Api(client)
    custom = kubernetes.client.CustomObjectsApi(client)
    for call in (
        lambda: core.list_namespaced_secret(SECRETS_NS),
        lambda: core.read_namespaced_secret("nt-credentials", "telco-system"),
        lambda: core.list_namespaced_pod(RELEASE_NS),
        lambda: custom.delete_cluster_custom_object(GROUP, VERSION, "networkdevices", "rb-r2"),
    ):
        with pytest.raises(ApiException) as denied:
            call()
        assert denied.value.status == 403
    assert r.api.get("networkdevices", "rb-r2") is not None
    # ... while what it needs works with the same token.
    assert core.read_namespaced_secret(r.secret, SECRETS_NS).data["password"]


def test_credentials_only_from_secrets(r: Rig) -> None:
    inline = r.device("rb-r2")
    inline["metadata"]["name"] = "rb-inline-creds"
    inline["spec"]["credentials"] = {"username": "admin", "password": PASSWORD}
    try:
        r.api.custom.create_cluster_custom_object(
            GROUP, VERSION, "networkdevices", inline, dry_run="All", field_validation="Strict"
        )
    except ApiException as exc:
        assert exc.status in (400, 422) and "spec.credentials" in exc.body
    else:
        raise AssertionError("a NetworkDevice with inline credentials was admitted")


def test_tls_is_verified_by_default_and_credentials_never_reach_an_unverified_device(r: Rig) -> None:
    body = r.device("rb-untrusted")
    del body["spec"]["tls"]  # defaults: TLS on, verified against the system trust store
    r.api.apply(body)
    try:
        cond = wait_for(
            "the untrusted device refused",
            lambda: (
                (c := condition(r.api.get("networkdevices", "rb-untrusted"), "Reachable"))
                and c["status"] == "False"
                and c
            ),
            30,
        )
        assert cond["reason"] == "Unreachable"
        time.sleep(2)
        stats = r.stats("rb-untrusted")
        assert stats["capabilities_rpcs"] == 0 and stats["auth_failures"] == 0, (
            f"an RPC reached a device whose certificate was not verified: {stats}"
        )
    finally:
        r.api.delete("networkdevices", "rb-untrusted")


def test_the_password_is_never_in_the_log_events_or_status(r: Rig, identity: Path) -> None:
    # Also exercise the failure paths that quote device errors.
    r.api.put_secret(SECRETS_NS, "rb-wrong", {"username": "admin", "password": PASSWORD + "-wrong"})
    wrong = r.device("rb-r2")
    wrong["metadata"]["name"] = "rb-wrong-password"
    wrong["spec"]["credentialsSecretRef"]["name"] = "rb-wrong"
    wrong["spec"]["tls"]["serverName"] = "rb-r2"
    r.api.apply(wrong)
    name = unique("leak")
    r.apply(r.service(name, [ep("rb-r2", "Ethernet2", 710)]))
    r.ready(name, timeout=30)
    wait_for(
        "Unauthenticated",
        lambda: (
            (c := condition(r.api.get("networkdevices", "rb-wrong-password"), "Reachable"))
            and c["reason"] == "Unauthenticated"
        ),
        30,
    )
    statuses = {
        plural: r.api.custom.list_cluster_custom_object(GROUP, VERSION, plural)["items"]
        for plural in ("networkdevices", "networkservices", "subscriptions", "invoices", "productofferings")
    }
    events = [e.to_dict() for e in r.api.core.list_event_for_all_namespaces().items]
    haystacks = {
        "controller log": r.logs(),
        "status of every object": json.dumps({p: [i.get("status") for i in items] for p, items in statuses.items()}),
        "every Event": json.dumps(events, default=str),
    }
    assert "DEBUG" in r.logs(), "the controller must run at debug level here"
    token = yaml.safe_load(identity.read_text())["users"][0]["user"]["token"]
    for where, text in haystacks.items():
        assert PASSWORD not in text, f"the device password appears in the {where}"
        assert token not in text, f"the controller's own ServiceAccount token appears in the {where}"
    r.api.delete("networkdevices", "rb-wrong-password")
    r.delete(name)
    r.gone(name, 30)
