"""Generate `yang_facts.py`: what the official OpenConfig models say about every node the renderer writes.

`python -m controller.intent.yanggen` reads the pyangbind bindings of openconfig/public that the
`oc-config-validate` package ships (the models strict devicesim devices validate against) and writes, per
schema position the renderer produces: the YANG module that defines the node (RFC 7951 qualifies a member
whose module differs from its parent's), and for a leaf its kind: `int` (with `wide` for 64-bit values,
which RFC 7951 encodes as strings), `bool`, `identityref` (with each identity's module), or `other`.
The controller reads only the generated file: loading the bindings costs ~150 MB and a second at start.
A unit test regenerates it and fails when it is stale.
"""

from __future__ import annotations

import pprint
import subprocess
import sys
from pathlib import Path
from typing import Any

from controller.api.networkservice import NetworkServiceSpec

from .render import ServiceKey, render, with_legacy_vlan

OUTPUT = Path(__file__).with_name("yang_facts.py")

# Leafrefs outside a list's own key: the bindings keep no target, so the models' `path` statements are
# named here (openconfig-interfaces' interface-ref, and the network instance's interface list).
LEAFREF_TARGETS: dict[tuple[str, ...], tuple[str, ...]] = {
    ("qos", "interfaces", "interface", "interface-ref", "config", "subinterface"): (
        "interfaces",
        "interface",
        "subinterfaces",
        "subinterface",
        "config",
        "index",
    ),
    ("qos", "interfaces", "interface", "interface-ref", "config", "interface"): (
        "interfaces",
        "interface",
        "config",
        "name",
    ),
    ("network-instances", "network-instance", "interfaces", "interface", "config", "subinterface"): (
        "interfaces",
        "interface",
        "subinterfaces",
        "subinterface",
        "config",
        "index",
    ),
    ("network-instances", "network-instance", "interfaces", "interface", "config", "interface"): (
        "interfaces",
        "interface",
        "config",
        "name",
    ),
}

# Specs whose renders hold every node the renderer can write (each service type, with and without an address).
SAMPLES: list[dict[str, Any]] = [
    {"serviceType": "internetAccess", "endpoints": [{"ipv4Address": "192.0.2.1/30"}]},
    {"serviceType": "l2vpn", "endpoints": [{}]},
    {"serviceType": "l3vpn", "vrf": "blue", "endpoints": [{"ipv4Address": "192.0.2.1/30"}]},
]


def rendered_positions() -> set[tuple[str, ...]]:
    """Every schema position (names from the root, no keys) of every node the sample renders hold."""
    found: set[tuple[str, ...]] = set()
    for sample in SAMPLES:
        endpoints = [{"device": "pe1", "port": "Ethernet1", "vlanId": 100, **e} for e in sample["endpoints"]]
        spec = NetworkServiceSpec.model_validate({**sample, "bandwidthMbps": 10, "endpoints": endpoints})
        entries = render(ServiceKey("ns", "sample"), spec)
        for entry in (*entries, *with_legacy_vlan(entries)):
            names = tuple(e.name for e in entry.path.elems)
            found.update(names[:n] for n in range(1, len(names) + 1))
            _walk(entry.value, names, found)
    return found


def _walk(value: Any, at: tuple[str, ...], found: set[tuple[str, ...]]) -> None:
    if isinstance(value, list):
        for item in value:
            _walk(item, at, found)
    elif isinstance(value, dict):
        for name, member in value.items():
            found.add((*at, name))
            _walk(member, (*at, name), found)


def facts(positions: set[tuple[str, ...]]) -> dict[str, dict[str, Any]]:
    from devicesim.official import OfficialModels  # the same third-party models strict devices use

    models = OfficialModels()
    out: dict[str, dict[str, Any]] = {}
    for shape in sorted(positions):
        node = _binding(models, shape)
        if node is None:
            raise SystemExit(f"{'/'.join(shape)} is not in the official OpenConfig models")
        fact: dict[str, Any] = {"module": node._defining_module}
        if getattr(node, "_is_leaf", False):
            fact.update(_leaf_kind(models, shape, node))
        out["/".join(shape)] = fact
    return out


def _binding(models: Any, shape: tuple[str, ...]) -> Any | None:
    """The binding object of the node itself (a list, not a scratch entry of it; a leaf, not its parent)."""
    if len(shape) == 1:
        return models._root(shape[0])
    parent = models.node(shape[:-1])
    if parent is None or parent.attr is not None:
        return None
    found = models._child(parent.obj, shape[-1])
    return None if found is None else found[0]


def _leaf_kind(models: Any, shape: tuple[str, ...], leaf: Any) -> dict[str, Any]:
    yang_type = str(getattr(leaf, "_yang_type", ""))
    if yang_type == "identityref":
        identities = leaf._restriction_dict["dict_key"]
        return {"kind": "identityref", "identities": {k: v["@module"] for k, v in identities.items() if ":" not in k}}
    if yang_type == "boolean":
        return {"kind": "bool"}
    if yang_type == "leafref":
        # A list key: OpenConfig keys are leafrefs to the same leaf in the entry's `config`.
        target = LEAFREF_TARGETS.get(shape, (*shape[:-1], "config", shape[-1]))
        found = _binding(models, target) if target != shape else None
        if found is not None and getattr(found, "_is_leaf", False):
            return _leaf_kind(models, target, found)
    if isinstance(leaf, int) and not isinstance(leaf, bool):
        return {"kind": "int", "wide": models.check(shape, 2**40) is None}
    return {"kind": "other"}


def generated_source() -> str:
    from devicesim.official import model_revisions

    revisions = model_revisions()
    found = facts(rendered_positions())
    body = pprint.pformat(found, width=110, sort_dicts=True)
    used = sorted({f["module"] for f in found.values()})
    revision_lines = "".join(f"    {m} {revisions.get(m, '?')}\n" for m in used)
    return (
        '"""GENERATED by `python -m controller.intent.yanggen` from the official OpenConfig models (the\n'
        f"pyangbind bindings of oc-config-validate); do not edit. Module revisions:\n{revision_lines}"
        '"""\n\nfrom typing import Any\n\nFACTS: dict[str, dict[str, Any]] = ' + body + "\n"
    )


def main() -> int:
    OUTPUT.write_text(generated_source())
    subprocess.run([sys.executable, "-m", "ruff", "format", "-q", str(OUTPUT)], check=False)
    print(f"wrote {OUTPUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
