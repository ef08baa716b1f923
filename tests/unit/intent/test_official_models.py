"""Every path and value the controller puts on the wire, in both encodings, checked against the official
OpenConfig models by a third-party validator: the pyangbind bindings of oc-config-validate, the same
models strict devicesim devices validate against (devicesim.official)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controller.intent import Claim, GPath, merge, plan
from controller.intent.render import with_legacy_vlan
from controller.intent.rfc7951 import encode
from devicesim.official import OfficialModels

from .helpers import device_with_ports
from .test_properties import DEVICES, PORTS, service_sets

Shape = tuple[str, ...]


@pytest.fixture(scope="module")
def models() -> OfficialModels:
    return OfficialModels()


def wire_values(set_plan: Any) -> Iterator[tuple[GPath, Any]]:
    """Each update, and each container inside it as a drift repair would send it on its own."""
    for op in set_plan.updates:
        yield from _containers(op.path, op.value)


def _containers(path: GPath, value: Any) -> Iterator[tuple[GPath, Any]]:
    yield path, value
    for name, member in value.items():
        if isinstance(member, dict):
            yield from _containers(path.child(name), member)


def problems(models: OfficialModels, shape: Shape, value: Any, ietf: bool, parent: str | None) -> Iterator[str]:
    if isinstance(value, list):
        for item in value:
            yield from problems(models, shape, item, ietf, parent)
        return
    if not isinstance(value, dict):
        reason = models.check(shape, value)
        if reason is not None:
            yield f"{'/'.join(shape)} = {value!r}: {reason}"
        if ietf:
            yield from _ietf_leaf_problems(models, shape, value)
        return
    for raw, member in value.items():
        module, _, name = raw.rpartition(":")
        child = (*shape, name)
        if not models.has(child):
            yield f"{'/'.join(child)}: not in the models"
            continue
        defining = _defining_module(models, child)
        if ietf:
            must_qualify = parent is None or defining != parent
            if must_qualify and module != defining:
                yield f"{'/'.join(child)}: member {raw!r} must be qualified as {defining}:{name} (RFC 7951)"
            if not must_qualify and module:
                yield f"{'/'.join(child)}: member {raw!r} must not be qualified (same module as its parent)"
        elif module:
            yield f"{'/'.join(child)}: JSON carries no module prefixes"
        yield from problems(models, child, member, ietf, defining)


def _ietf_leaf_problems(models: OfficialModels, shape: Shape, value: Any) -> Iterator[str]:
    """RFC 7951 sect. 6.1 and 6.8: 64-bit integers are strings, identities carry their module."""
    node = models.node(shape)
    assert node is not None and node.attr is not None
    leaf = getattr(node.obj, node.attr)
    if getattr(leaf, "_yang_type", "") == "identityref" and ":" not in str(value):
        yield f"{'/'.join(shape)} = {value!r}: an identityref must be module-qualified in JSON_IETF"
    if getattr(leaf, "_restricted_int_size", None) == 64 and not isinstance(value, str):
        yield f"{'/'.join(shape)} = {value!r}: a 64-bit integer must be a string in JSON_IETF"


def _defining_module(models: OfficialModels, shape: Shape) -> str:
    parent = models.node(shape[:-1]) if len(shape) > 1 else None
    if parent is None:
        root = models._root(shape[0])
        return str(root._defining_module)
    found = models._child(parent.obj, shape[-1])
    assert found is not None
    return str(found[0]._defining_module)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)
@given(services=service_sets(), legacy_vlan=st.booleans())
def test_every_set_value_is_valid_current_openconfig_in_both_encodings(
    models: OfficialModels, services: list[Any], legacy_vlan: bool
) -> None:
    """Also in the legacy VLAN form (`vlan/config/vlan-id`), which the current models still hold."""
    if legacy_vlan:
        services = [Claim(c.key, c.created, with_legacy_vlan(c.entries)) for c in services]
    for device in DEVICES:
        intent = merge(device, services).intent
        for path, value in wire_values(plan(intent, device_with_ports(*PORTS))):
            shape = tuple(e.name for e in path.elems)
            assert models.has(shape), f"{path}: not in the official models"
            found = list(problems(models, shape, value, ietf=False, parent=None))
            found += problems(models, shape, encode(value, path), ietf=True, parent=None)
            assert not found, found
