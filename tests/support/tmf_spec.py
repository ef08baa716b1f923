"""The published TMF OpenAPI (Swagger 2.0) documents in docs/tmf/, as validators of the facade's answers.

`Contract.check(method, path, status, body, headers)` finds the operation the request is (by the
document's base path and path templates) and validates the body against the response schema the
document declares for that status, and the paging headers of a list; it fails naming the operation and
the schema error. An operation or status the document does not declare fails too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SPECS = Path(__file__).resolve().parents[2] / "docs" / "tmf"
FILES = {
    "TMF620": "TMF620-ProductCatalog-v4.swagger.json",
    "TMF622": "TMF622-ProductOrdering-v4.swagger.json",
    "TMF635": "TMF635-UsageManagement-v4.swagger.json",
    "TMF637": "TMF637-ProductInventory-v4.swagger.json",
    "TMF638": "TMF638-ServiceInventory-v4.swagger.json",
    "TMF666": "TMF666-AccountManagement-v4.swagger.json",
    "TMF678": "TMF678-CustomerBill-v4.swagger.json",
}


# TMF630 statuses an operation may answer though its document does not list them (a body too large, of
# the wrong media type, well-formed but not doable, the facade's own Kubernetes write refused): the body
# must still be the document's Error.
UNDECLARED_ERRORS = frozenset({413, 415, 422, 503})


def _corrected(api: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The documents' known errata, corrected (and nothing else)."""
    if api == "TMF637":
        enum = doc["definitions"]["ProductStatusType"]["enum"]
        doc["definitions"]["ProductStatusType"]["enum"] = [v.strip() for v in enum]  # "aborted " (sic)
    return doc


def _fits(template: str, path: str) -> bool:
    """Whether `path` is an instance of the path template (a {parameter} is one non-empty segment)."""
    want, got = template.split("/"), path.split("/")
    return len(want) == len(got) and all(
        (w.startswith("{") and w.endswith("}") and g) or w == g for w, g in zip(want, got, strict=True)
    )


@dataclass(frozen=True)
class Operation:
    api: str
    method: str
    template: str
    spec: dict[str, Any]


class Contract:
    def __init__(self) -> None:
        self.docs = {api: _corrected(api, json.loads((SPECS / name).read_text())) for api, name in FILES.items()}
        self.checked: set[tuple[str, str, str, int]] = set()  # (api, method, template, status) seen

    def operation(self, method: str, path: str) -> Operation:
        for api, doc in self.docs.items():
            base = doc["basePath"].rstrip("/")
            if not path.startswith(base + "/"):
                continue
            rest = path[len(base) :]
            for template, ops in doc["paths"].items():
                if _fits(template, rest) and method.lower() in ops:
                    return Operation(api, method.upper(), template, ops[method.lower()])
        raise AssertionError(f"{method} {path}: no operation of the published documents")

    def check(self, method: str, path: str, status: int, body: Any, headers: dict[str, str]) -> None:
        op = self.operation(method, path)
        responses = op.spec["responses"]
        where = f"{op.api} {op.method} {op.template} -> {status}"
        if str(status) in responses:
            response = responses[str(status)]
        else:
            # TMF630 errors the documents do not list per operation (422 above all): an Error body still.
            assert status in UNDECLARED_ERRORS, f"{where}: status not declared (declared: {sorted(responses)})"
            response = {"schema": {"$ref": "#/definitions/Error"}}
        if "schema" in response:
            schema = {**response["schema"], "definitions": self.docs[op.api]["definitions"]}
            try:
                jsonschema.Draft4Validator(schema).validate(body)
            except jsonschema.ValidationError as exc:
                at = "/".join(str(p) for p in exc.absolute_path)
                raise AssertionError(f"{where}: body at /{at}: {exc.message}") from None
        for name, header in (response.get("headers") or {}).items():
            assert name in headers, f"{where}: header {name} missing"
            if header.get("type") == "integer":
                assert headers[name].isdigit(), f"{where}: header {name}={headers[name]!r} is not an integer"
        self.checked.add((op.api, op.method, op.template, status))


@cache
def contract() -> Contract:
    return Contract()
