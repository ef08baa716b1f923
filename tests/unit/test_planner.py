"""`plan`'s pure parts: reading manifests (files, directories, JSON, Lists), telling invalid services
from plannable ones, the Subscription -> NetworkService rendering, and the exit code CI gates on."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from controller import planner
from controller.api.productoffering import ProductOfferingSpec
from controller.api.subscription import SubscriptionSpec
from controller.commerce import order
from controller.intent import ServiceKey
from controller.kube import NotFound, Ref
from tests.unit.commerce.builders import endpoint, offering_doc

API = "telco.intent.dev/v1alpha1"
NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def service(name: str, vlan: int = 100, **spec: Any) -> dict[str, Any]:
    body = {"serviceType": "internetAccess", "bandwidthMbps": 50, "endpoints": [endpoint("pe1", vlan=vlan)], **spec}
    return {"apiVersion": API, "kind": "NetworkService", "metadata": {"name": name, "namespace": "acme"}, "spec": body}


def offering(name: str = "fiber", **spec: Any) -> dict[str, Any]:
    body = offering_doc(**{"lifecycleStatus": "Active", **spec})
    return {"apiVersion": API, "kind": "ProductOffering", "metadata": {"name": name}, "spec": body}


def subscription(name: str = "hq", vlan: int = 100, **spec: Any) -> dict[str, Any]:
    body = {
        "productOffering": {"name": "fiber"},
        "billingAccount": {"id": "acme-1"},
        "endpoints": [endpoint("pe1", vlan=vlan)],
    }
    return {
        "apiVersion": API,
        "kind": "Subscription",
        "metadata": {"name": name, "namespace": "acme"},
        "spec": {**body, **spec},
    }


# -- loading --------------------------------------------------------------------------------------


def test_a_file_with_several_documents(tmp_path: Path) -> None:
    path = tmp_path / "all.yaml"
    path.write_text(yaml.safe_dump_all([service("a"), None, subscription("b")]))
    docs = planner.load_documents(path)
    assert [(d.kind, d.body["metadata"]["name"], d.source) for d in docs] == [
        ("NetworkService", "a", str(path)),
        ("Subscription", "b", str(path)),
    ]


def test_a_directory_reads_yaml_yml_and_json_in_name_order_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "20-b.yml").write_text(yaml.safe_dump(service("b")))
    (tmp_path / "10-a.json").write_text(json.dumps(service("a")))
    (tmp_path / "30-c.yaml").write_text(yaml.safe_dump(subscription("c")))
    (tmp_path / "05-notes.txt").write_text("kind: NetworkService")
    (tmp_path / "15-sub.yaml").mkdir()
    (tmp_path / "15-sub.yaml" / "x.yaml").write_text(yaml.safe_dump(service("nested")))
    docs = planner.load_documents(tmp_path)
    assert [d.body["metadata"]["name"] for d in docs] == ["a", "b", "c"]
    assert docs[0].source == str(tmp_path / "10-a.json")


def test_a_kubectl_list_is_unpacked(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": [service("a"), service("b")]}))
    assert [d.body["metadata"]["name"] for d in planner.load_documents(path)] == ["a", "b"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: p / "missing.yaml", "missing.yaml: no such file or directory"),
        (lambda p: p, "the directory holds no *.yaml, *.yml or *.json file"),
        (lambda p: _write(p / "bad.yaml", "kind: [unclosed"), "bad.yaml: not valid YAML or JSON"),
        (lambda p: _write(p / "scalar.yaml", "just text"), "expected Kubernetes objects (mappings), found a str"),
        (lambda p: _write(p / "other.yaml", "kind: ConfigMap\nmetadata: {name: x}"), "holds no NetworkService"),
        (lambda p: _write(p / "binary.yaml", b"\xff\xfe\x00"), "binary.yaml: cannot read"),
    ],
    ids=["missing", "empty-dir", "bad-yaml", "scalar", "no-service", "not-text"],
)
def test_unreadable_input_is_an_error_not_a_verdict(tmp_path: Path, setup: Any, message: str) -> None:
    with pytest.raises(planner.PlanError) as caught:
        planner.load_documents(setup(tmp_path))
    assert message in str(caught.value)


def _write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def test_an_invalid_service_is_reported_with_its_field_and_the_others_still_parse() -> None:
    docs = [
        planner.Document("x.yaml", service("good")),
        planner.Document("x.yaml", service("bad", vlan=5000)),
        planner.Document("x.yaml", {"kind": "ProductOffering", "metadata": {"name": "ignored"}}),
    ]
    good, bad = planner.network_services(docs)
    assert good.key == ServiceKey("acme", "good") and good.spec is not None and not good.problems
    assert bad.key == ServiceKey("acme", "bad") and bad.spec is None
    assert len(bad.problems) == 1 and bad.problems[0].startswith("spec.endpoints.0.vlanId:")


def test_a_service_without_a_name_is_an_error_naming_the_field() -> None:
    body = service("x")
    del body["metadata"]["name"]
    with pytest.raises(planner.PlanError, match=r"x.yaml: a NetworkService without metadata.name"):
        planner.network_services([planner.Document("x.yaml", body)])


def test_namespace_defaults_to_default() -> None:
    body = service("x")
    del body["metadata"]["namespace"]
    (wanted,) = planner.network_services([planner.Document("x.yaml", body)])
    assert wanted.key == ServiceKey("default", "x")


# -- the exit code --------------------------------------------------------------------------------


def report(refused: list[str] | None = None, invalid: list[str] | None = None, ops: int = 1) -> dict[str, Any]:
    return {
        "service": "acme/a",
        "from": "NetworkService",
        "device": None if invalid else "pe1",
        "invalid": invalid or [],
        "refused": refused or [],
        "operations": [{"op": "update", "path": "p", "value": 1}] * ops,
    }


@pytest.mark.parametrize(
    ("reports", "code"),
    [
        ([report()], 0),
        ([report(ops=0)], 0),  # nothing to change is clean too
        ([report(), report(refused=["VLAN 100 is held by acme/b"], ops=0)], 1),
        ([report(invalid=["spec.endpoints.0.vlanId: too big"], ops=0), report()], 1),
    ],
    ids=["clean", "no-change", "one-refused", "one-invalid"],
)
def test_exit_code(reports: list[dict[str, Any]], code: int) -> None:
    assert planner.exit_code(reports) == code
    summary = planner.render_text(reports).splitlines()[-1]
    assert summary == (
        "plan: every service would apply cleanly"
        if code == 0
        else "plan: some service would be refused or is invalid (exit 1)"
    )


def test_render_text_marks_invalid_and_refused() -> None:
    text = planner.render_text([report(invalid=["spec.x: bad"], ops=0), report(refused=["held"], ops=0)])
    assert "# acme/a\n  INVALID: spec.x: bad" in text
    assert "# acme/a on pe1\n  REFUSED: held" in text


# -- Subscriptions ------------------------------------------------------------------------------


class FakeKube:
    """The reads `plan` makes of the API server, from dicts."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]]) -> None:
        self.objects = objects

    async def list_all(self, plural: str) -> list[dict[str, Any]]:
        return list(self.objects.get(plural, []))

    async def get(self, ref: Ref) -> dict[str, Any]:
        for body in self.objects.get(ref.plural, []):
            meta = body["metadata"]
            if meta["name"] == ref.name and meta.get("namespace") == ref.namespace:
                return body
        raise NotFound(str(ref))


def stored(body: dict[str, Any], created: str = "2026-01-01T00:00:00Z", state: str | None = None) -> dict[str, Any]:
    meta = {**body["metadata"], "creationTimestamp": created, "uid": f"uid-{body['metadata']['name']}"}
    return {**body, "metadata": meta, **({"status": {"state": state}} if state else {})}


def from_subscription(
    sub: dict[str, Any], objects: dict[str, list[dict[str, Any]]], manifests: list[dict[str, Any]] = ()
) -> planner.Wanted:
    docs = [planner.Document("m.yaml", b) for b in [*manifests, sub]]
    cluster = planner._Cluster(FakeKube(objects))  # type: ignore[arg-type]
    (wanted,) = [w for w in asyncio.run(planner.wanted_services(docs, cluster, NOW)) if w.origin.startswith("Sub")]
    return wanted


def test_a_subscription_renders_the_network_service_the_controller_would_make() -> None:
    wanted = from_subscription(subscription(), {"productofferings": [offering()]})
    assert wanted.key == ServiceKey("acme", "hq") and wanted.origin == "Subscription acme/hq"
    expected = order.network_service_for(
        "hq",
        "acme",
        "",
        SubscriptionSpec.model_validate(subscription()["spec"]),
        ProductOfferingSpec.model_validate(offering()["spec"]),
        True,
    )["spec"]
    assert wanted.spec is not None and wanted.spec.model_dump(exclude_unset=True) == expected
    assert wanted.spec.bandwidthMbps == 100, "the offering's serviceCandidate, not the Subscription, sets the rate"


def test_the_offering_in_the_manifests_wins_over_the_cluster() -> None:
    cluster = {"productofferings": [offering(serviceCandidate={"serviceType": "internetAccess", "bandwidthMbps": 10})]}
    wanted = from_subscription(subscription(), cluster, manifests=[offering()])
    assert wanted.spec is not None and wanted.spec.bandwidthMbps == 100


@pytest.mark.parametrize(
    ("sub", "objects", "problem"),
    [
        (subscription(), {}, "ProductOffering fiber does not exist"),
        (subscription(), {"productofferings": [offering(lifecycleStatus="Retired")]}, "ProductOffering fiber:"),
        (
            subscription(),
            {"productofferings": [offering(serviceCandidate={"serviceType": "x"})]},
            "spec.serviceCandidate",
        ),
        (
            subscription(endpoints=[{"device": "pe1", "port": "Ethernet1", "vlanId": 100}]),
            {"productofferings": [offering()]},
            "spec.endpoints[0].ipv4Address: offering fiber delivers internetAccess",
        ),
        (subscription(endpoints=[]), {"productofferings": [offering()]}, "spec.endpoints"),
        (
            subscription(),
            {"productofferings": [offering()], "subscriptions": [stored(subscription("other"), state="active")]},
            "device pe1 port Ethernet1 vlanId 100 is held by Subscription acme/other",
        ),
    ],
    ids=["no-offering", "not-sellable", "bad-offering", "order-error", "bad-spec", "endpoint-held"],
)
def test_a_subscription_the_controller_would_not_fulfil(
    sub: dict[str, Any], objects: dict[str, list[dict[str, Any]]], problem: str
) -> None:
    wanted = from_subscription(sub, objects)
    assert wanted.spec is None
    assert any(problem in p for p in wanted.problems), wanted.problems


def test_an_accepted_subscription_keeps_its_endpoints_against_a_later_one_and_its_offering_need_not_sell() -> None:
    objects = {
        "productofferings": [offering(lifecycleStatus="Retired")],
        "subscriptions": [
            stored(subscription("hq"), created="2026-01-01T00:00:00Z", state="active"),
            stored(subscription("later"), created="2026-02-01T00:00:00Z"),
        ],
    }
    wanted = from_subscription(subscription("hq"), objects)
    assert wanted.problems == [] and wanted.spec is not None
