"""JSON_IETF (RFC 7951) values from the controller's bare OpenConfig JSON, and back, by schema facts.

The facts (`yang_facts.FACTS`, generated from the official models by `yanggen`) say, per schema position,
which module defines the node and what a leaf's type is. Encoding qualifies a member name with its
module where the module differs from its parent's (and always at the top of the value), qualifies
identityref values with the identity's module, and writes 64-bit integers as strings. Decoding is
`normalise`, from the same facts (names lose their module, leaves take the type the facts give);
positions the facts do not hold (what the controller never writes) keep their form.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .normalise import JsonValue, SchemaPath, schema_path, strip_module
from .paths import GPath
from .yang_facts import FACTS

JSON, JSON_IETF = "JSON", "JSON_IETF"


def fact(where: SchemaPath) -> Mapping[str, Any] | None:
    return FACTS.get("/".join(where))


def module_of(where: SchemaPath) -> str | None:
    found = fact(where)
    return None if found is None else str(found["module"])


def encode(value: JsonValue, at: GPath) -> JsonValue:
    """`value` (bare OpenConfig JSON, as rendered) found at path `at`, in RFC 7951 form."""
    # The value's own members are top-level members of its JSON text: always qualified (RFC 7951 sect. 4).
    return _encode(value, schema_path(at), None)


def _encode(value: JsonValue, where: SchemaPath, parent_module: str | None) -> JsonValue:
    if isinstance(value, dict):
        out = {}
        for name, member in value.items():
            bare = strip_module(name)
            child = (*where, bare)
            module = module_of(child)
            qualified = f"{module}:{bare}" if module is not None and module != parent_module else bare
            out[qualified] = _encode(member, child, module or parent_module)
        return out
    if isinstance(value, list):
        return [_encode(item, where, parent_module) for item in value]
    return encode_leaf(value, where)


def encode_leaf(value: JsonValue, where: SchemaPath) -> JsonValue:
    found = fact(where)
    if found is None:
        return value
    kind = found.get("kind")
    if kind == "int" and found.get("wide") and isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if kind == "identityref" and isinstance(value, str) and ":" not in value:
        module = found["identities"].get(value)
        return f"{module}:{value}" if module else value
    return value


def negotiate(wanted: str, advertised: list[str]) -> str:
    """The encoding to use with a device: the NetworkDevice's choice, or with `auto` JSON_IETF when the
    device advertises it, else JSON (also when it advertises neither: the gNMI default)."""
    if wanted in (JSON, JSON_IETF):
        return wanted
    return JSON_IETF if JSON_IETF in advertised else JSON
