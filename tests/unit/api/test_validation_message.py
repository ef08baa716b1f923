"""The one formatter every kind uses for a spec that does not parse (the InvalidSpec message)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel, Field, ValidationError

from controller.api.common import MAX_FIELD_ERRORS, validation_message
from controller.api.networkservice import NetworkServiceSpec


class Endpoint(BaseModel):
    device: str
    vlanId: int = Field(ge=1, le=4094)


class Spec(BaseModel):
    name: str
    endpoints: list[Endpoint] = []
    tags: dict[str, int] = {}


def message(model: type[BaseModel], raw: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        model.model_validate(raw)
    return validation_message(caught.value)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, "spec.name: Field required"),
        ({"name": 7}, "spec.name: Input should be a valid string"),
        # list indexes and nested fields are spelt into the path
        (
            {"name": "a", "endpoints": [{"device": "pe1", "vlanId": 1}, {"device": "pe1", "vlanId": 5000}]},
            "spec.endpoints.1.vlanId: Input should be less than or equal to 4094",
        ),
        (
            {"name": "a", "tags": {"x": "y"}},
            "spec.tags.x: Input should be a valid integer, unable to parse string as an integer",
        ),
        # several bad fields: each named, in order, joined on one line
        (
            {"endpoints": [{"vlanId": 0}]},
            "spec.name: Field required; spec.endpoints.0.device: Field required; "
            "spec.endpoints.0.vlanId: Input should be greater than or equal to 1",
        ),
    ],
)
def test_each_bad_field_is_named_with_what_was_expected(raw: dict[str, Any], expected: str) -> None:
    assert message(Spec, raw) == expected


def test_at_most_five_fields_are_named() -> None:
    raw = {"name": "a", "endpoints": [{"device": "pe1", "vlanId": 0} for _ in range(MAX_FIELD_ERRORS + 3)]}
    parts = message(Spec, raw).split("; ")
    assert MAX_FIELD_ERRORS == 5
    assert parts == [f"spec.endpoints.{i}.vlanId: Input should be greater than or equal to 1" for i in range(5)]


def test_a_real_spec_names_its_fields() -> None:
    text = message(NetworkServiceSpec, {"serviceType": "l9vpn"})
    assert text.startswith("spec.")
    assert "spec.serviceType:" in text
    assert "\n" not in text
