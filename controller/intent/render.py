"""Rendering a NetworkService into the OpenConfig entries each device must hold.

This mapping is the product's contract with devices. JSON is OpenConfig without module prefixes; a list is
a JSON array of objects that carry their key leaves. For each endpoint (device D, port P, VLAN V, optional
IPv4 address A with prefix length L) of service `<namespace>/<name>`, with X = f"{P}.{V}":

`interfaces/interface[name=P]/subinterfaces/subinterface[index=V]`
    {"index": V,
     "config": {"index": V, "description": "telco-intent <namespace>/<name>", "enabled": adminState == "enabled"},
     "vlan": {"match": {"single-tagged": {"config": {"vlan-id": V}}}},
             (on a device advertising openconfig-vlan < 3.0.0: "vlan": {"config": {"vlan-id": V}})
     "ipv4": {"addresses": {"address": [{"ip": A, "config": {"ip": A, "prefix-length": L}}]}}}
    (no "ipv4" without an address)

`qos/scheduler-policies/scheduler-policy[name=X]`
    {"name": X, "config": {"name": X},
     "schedulers": {"scheduler": [{"sequence": 0, "config": {"sequence": 0, "type": "TWO_RATE_THREE_COLOR"},
                                   "two-rate-three-color": {"config": {"cir": C, "pir": P, "bc": BC, "be": BE}}}]}}
    C = bandwidthMbps * 10^6 and P = (peakBandwidthMbps or bandwidthMbps) * 10^6 in bit/s; the bursts BC and
    BE are 10 ms at C and P in bytes (rate / 800), at least 1500 (one full-size frame).

`qos/interfaces/interface[interface-id=X]`
    {"interface-id": X, "config": {"interface-id": X},
     "interface-ref": {"config": {"interface": P, "subinterface": V}},
     "output": {"scheduler-policy": {"config": {"name": X}}}}

Only for serviceType l3vpn, with vrf R:

`network-instances/network-instance[name=R]` (shared by every service in R; it stays while one remains)
    {"name": R, "config": {"name": R, "type": "L3VRF"}}
    (no `config/enabled`: openconfig-network-instance 2.0.0 removed it, and current devices refuse it.)
    Created only when the device lacks it; a VRF the controller did not create is used as it is.
    Its "interfaces" list is not owned by this entry: each member is its own entry, and members the
    controller did not write are left alone.

`network-instances/network-instance[name=R]/interfaces/interface[id=X]`
    {"id": X, "config": {"id": X, "interface": P, "subinterface": V}}
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from controller.api.networkservice import Endpoint, NetworkServiceSpec

from .normalise import JsonObject
from .paths import GPath
from .sharedjson import shared

# Schema paths of the managed entries render produces: ownership never reaches above them.
ENTRY_ROOTS = frozenset(
    {
        ("interfaces", "interface", "subinterfaces", "subinterface"),
        ("qos", "scheduler-policies", "scheduler-policy"),
        ("qos", "interfaces", "interface"),
        ("network-instances", "network-instance"),
        ("network-instances", "network-instance", "interfaces", "interface"),
    }
)
# Entries several services share: created only when absent, removed only when nothing foreign remains.
SHARED_ROOTS = frozenset({("network-instances", "network-instance")})

BURST_MILLISECONDS = 10
MIN_BURST_BYTES = 1500
DESCRIPTION_PREFIX = "telco-intent"


@dataclass(frozen=True, order=True, slots=True)
class ServiceKey:
    """A NetworkService by namespace and name."""

    namespace: str
    name: str
    _hash: int = field(default=0, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.namespace, self.name)))

    def __hash__(self) -> int:  # a key of most of the reconciler's maps: hash once
        return self._hash

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class ManagedEntry:
    """A subtree one service needs on one device.

    `shared` entries (a VRF) may be claimed by several services at once; any other entry belongs to one.
    `delegated` names members of the value's container that other entries manage piecewise (a VRF's
    interface list): this entry neither compares nor resets them.
    """

    device: str
    path: GPath
    value: JsonObject = field(hash=False)
    owner: ServiceKey
    shared: bool = False
    delegated: tuple[str, ...] = ()


def qos_name(port: str, vlan_id: int) -> str:
    """The name of the scheduler policy and QoS interface of one subinterface."""
    return f"{port}.{vlan_id}"


def burst_bytes(rate_bps: int) -> int:
    """Bytes sent in BURST_MILLISECONDS at `rate_bps`, at least one full-size frame."""
    return max(MIN_BURST_BYTES, rate_bps * BURST_MILLISECONDS // 8000)


def render(key: ServiceKey, spec: NetworkServiceSpec) -> list[ManagedEntry]:
    """Every entry the service needs, endpoint by endpoint; a shared entry appears once per device."""
    entries: list[ManagedEntry] = []
    for endpoint in spec.endpoints:
        entries += [e for e in _endpoint_entries(key, spec, endpoint) if e not in entries]
    return entries


def _endpoint_entries(key: ServiceKey, spec: NetworkServiceSpec, endpoint: Endpoint) -> list[ManagedEntry]:
    device, port, vlan = endpoint.device, endpoint.port, endpoint.vlanId
    name = qos_name(port, vlan)
    # Values are shared read-only copies (sharedjson): renders are kept per service, and mostly equal.
    entries = [
        ManagedEntry(device, _subinterface_path(port, vlan), shared(_subinterface(key, spec, endpoint)), key),
        ManagedEntry(device, scheduler_policy_path(name), shared(_scheduler_policy(spec, name)), key),
        ManagedEntry(device, qos_interface_path(name), shared(_qos_interface(name, port, vlan)), key),
    ]
    if spec.serviceType == "l3vpn" and spec.vrf is not None:
        vrf = network_instance_path(spec.vrf)
        vrf_value = shared({"name": spec.vrf, "config": {"name": spec.vrf, "type": "L3VRF"}})
        member = shared({"id": name, "config": {"id": name, "interface": port, "subinterface": vlan}})
        entries += [
            ManagedEntry(device, vrf, vrf_value, key, shared=True, delegated=("interfaces",)),
            ManagedEntry(device, vrf.child("interfaces").child("interface", {"id": name}), member, key),
        ]
    return entries


# openconfig-vlan before 3.0.0 matched a subinterface's VLAN with `vlan/config/vlan-id`; 3.0.0 moved it
# to `vlan/match/single-tagged/config/vlan-id`. Devices say which they run in Capabilities (ModelData).
LEGACY_VLAN_BEFORE = (3, 0, 0)


def uses_legacy_vlan(models: Iterable[tuple[str, str, str]]) -> bool:
    """Whether a device's Capabilities (name, organization, version) advertise an openconfig-vlan older
    than 3.0.0 (an `openconfig-version` such as 2.0.0). A revision date, or no version, is taken as current."""
    for name, _, version in models:
        if name == "openconfig-vlan":
            parts = version.split(".")
            if len(parts) == 3 and all(p.isdigit() for p in parts):
                return tuple(int(p) for p in parts) < LEGACY_VLAN_BEFORE
    return False


def with_legacy_vlan(entries: Iterable[ManagedEntry]) -> tuple[ManagedEntry, ...]:
    """The entries as a device with a pre-3.0.0 openconfig-vlan takes them: `vlan/config/vlan-id`."""
    out = []
    for entry in entries:
        single = entry.value.get("vlan", {}).get("match", {}).get("single-tagged")
        if single is not None:
            value = {**entry.value, "vlan": {"config": {"vlan-id": single["config"]["vlan-id"]}}}
            entry = ManagedEntry(entry.device, entry.path, value, entry.owner, entry.shared, entry.delegated)
        out.append(entry)
    return tuple(out)


def port_path(port: str) -> GPath:
    return GPath.of("interfaces", ("interface", {"name": port}))


def scheduler_policy_path(name: str) -> GPath:
    return GPath.of("qos", "scheduler-policies", ("scheduler-policy", {"name": name}))


def qos_interface_path(name: str) -> GPath:
    return GPath.of("qos", "interfaces", ("interface", {"interface-id": name}))


def network_instance_path(vrf: str) -> GPath:
    return GPath.of("network-instances", ("network-instance", {"name": vrf}))


def counters_path(port: str, vlan: int) -> GPath:
    """The octet counters of one service subinterface (what usage-priced billing reads)."""
    return _subinterface_path(port, vlan).child("state").child("counters")


def _subinterface_path(port: str, vlan: int) -> GPath:
    return port_path(port).child("subinterfaces").child("subinterface", {"index": str(vlan)})


def _subinterface(key: ServiceKey, spec: NetworkServiceSpec, endpoint: Endpoint) -> JsonObject:
    vlan = endpoint.vlanId
    value: JsonObject = {
        "index": vlan,
        "config": {
            "index": vlan,
            "description": f"{DESCRIPTION_PREFIX} {key}",
            "enabled": spec.adminState == "enabled",
        },
        "vlan": {"match": {"single-tagged": {"config": {"vlan-id": vlan}}}},
    }
    if endpoint.ipv4Address is not None:
        ip, _, length = endpoint.ipv4Address.partition("/")
        address = {"ip": ip, "config": {"ip": ip, "prefix-length": int(length)}}
        value["ipv4"] = {"addresses": {"address": [address]}}
    return value


def _scheduler_policy(spec: NetworkServiceSpec, name: str) -> JsonObject:
    cir = spec.bandwidthMbps * 1_000_000
    pir = (spec.peakBandwidthMbps or spec.bandwidthMbps) * 1_000_000
    rates = {"cir": cir, "pir": pir, "bc": burst_bytes(cir), "be": burst_bytes(pir)}
    scheduler = {
        "sequence": 0,
        "config": {"sequence": 0, "type": "TWO_RATE_THREE_COLOR"},
        "two-rate-three-color": {"config": rates},
    }
    return {"name": name, "config": {"name": name}, "schedulers": {"scheduler": [scheduler]}}


def _qos_interface(name: str, port: str, vlan: int) -> JsonObject:
    return {
        "interface-id": name,
        "config": {"interface-id": name},
        "interface-ref": {"config": {"interface": port, "subinterface": vlan}},
        "output": {"scheduler-policy": {"config": {"name": name}}},
    }
