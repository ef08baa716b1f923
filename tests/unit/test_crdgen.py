"""The CRDs are generated from the models, and the committed files are current."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from controller import crdgen
from controller.api import GROUP, KINDS

ROOT = Path(__file__).resolve().parents[2]


def test_committed_crds_match_the_models() -> None:
    generated = crdgen.render_all()
    committed = {p.name: p.read_text() for p in (ROOT / "crds").glob("*.yaml")}
    assert set(committed) == set(generated), "crds/ has other files than the models generate"
    stale = [name for name, text in generated.items() if committed[name] != text]
    assert not stale, f"crds/ is stale for {stale}: run `make crds` and commit the result"


def _walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, sub in schema.get("properties", {}).items():
        found += _walk(sub, f"{path}.{name}")
    if "items" in schema:
        found += _walk(schema["items"], f"{path}[]")
    return found


@pytest.mark.parametrize("model", KINDS, ids=lambda m: m.KIND)
def test_every_field_is_described_and_structural(model: Any) -> None:
    schema = crdgen.openapi_schema(model)
    for path, node in _walk(schema):
        assert "type" in node, f"{model.KIND}{path} has no type"
        assert not {"anyOf", "oneOf", "$ref", "allOf"} & set(node), f"{model.KIND}{path} is not structural"
        scalar_item = path.endswith("[]") and node["type"] != "object"
        if path and not scalar_item and path != ".metadata":
            assert node.get("description"), f"{model.KIND}{path} has no description"


@pytest.mark.parametrize("model", KINDS, ids=lambda m: m.KIND)
def test_names_follow_conventions(model: Any) -> None:
    crd = crdgen.crd(model)
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == f"{model.PLURAL}.{GROUP}"
    assert "po" not in names["shortNames"], "po is Pods' short name"
    assert names["categories"] == ["telco"]
    version = crd["spec"]["versions"][0]
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns[0] == "Ready"
    conditions = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]


def test_optional_unions_collapse_and_rules_survive() -> None:
    crd = crdgen.crd(KINDS[0])
    text = yaml.safe_dump(crd)
    assert "x-kubernetes-validations" in text
    assert "anyOf" not in text
    assert "type: 'null'" not in text and "type: null" not in text
    spec = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "validFor" not in spec["required"]
    price = spec["properties"]["productOfferingPrice"]["items"]["properties"]["price"]
    assert price["properties"]["value"]["pattern"].startswith("^")


def test_a_union_that_is_not_optional_is_refused() -> None:
    with pytest.raises(crdgen.SchemaError, match="unions"):
        crdgen._convert({"anyOf": [{"type": "string"}, {"type": "integer"}]}, {}, "spec.x")


def test_committed_api_reference_matches_the_models() -> None:
    from controller import apidoc

    committed = (ROOT / "docs" / "api-reference.md").read_text()
    assert committed == apidoc.render(), "docs/api-reference.md is stale: run `make crds` and commit the result"
    assert "| `endpoints[].vlanId` | integer | yes |" in committed
