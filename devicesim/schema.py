"""YANG-lite schema: the modelled OpenConfig subset as a declarative table.

The tree below is the only place that knows the shape of the data. Validation, defaults, JSON
(de)serialisation, config/state filtering, references and diffing in ``tree.py`` are generic
walks over these nodes, so adding a leaf means adding one line here.

Internal data representation (see ``tree.py``): a container is a ``dict`` of child name to
value, a list is a ``dict`` of key tuple to entry ``dict``, a leaf is a Python scalar
(``str``, ``bool`` or ``int``).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------------------------------------
# Leaf types


@dataclass(frozen=True)
class LeafType:
    """A scalar YANG type. ``kind`` is one of string, bool, uint, enum, identity, ipv4."""

    kind: str
    bits: int = 0
    lo: int | None = None
    hi: int | None = None
    values: tuple[str, ...] = ()
    # identities are printed module-qualified in JSON_IETF, e.g. ``iana-if-type:ethernetCsmacd``
    identity_module: str = ""
    pattern: str | None = None

    def describe(self) -> str:
        if self.kind == "uint":
            rng = f" {self.lo}..{self.hi}" if (self.lo, self.hi) != (0, (1 << self.bits) - 1) else ""
            return f"uint{self.bits}{rng}"
        if self.kind == "enum":
            return f"enum {{{' | '.join(self.values)}}}"
        if self.kind == "identity":
            return f"identity {self.identity_module}:{{{' | '.join(self.values)}}}"
        if self.kind == "string" and self.pattern:
            return f"string pattern {self.pattern!r}"
        return self.kind


def uint(bits: int, lo: int | None = None, hi: int | None = None) -> LeafType:
    return LeafType("uint", bits=bits, lo=0 if lo is None else lo, hi=(1 << bits) - 1 if hi is None else hi)


def enum(*values: str) -> LeafType:
    return LeafType("enum", values=values)


def identity(module: str, *values: str) -> LeafType:
    return LeafType("identity", values=values, identity_module=module)


def string(pattern: str | None = None) -> LeafType:
    return LeafType("string", pattern=pattern)


BOOL = LeafType("bool")
STRING = string()
IPV4 = LeafType("ipv4")
UINT8 = uint(8)
UINT16 = uint(16)
UINT32 = uint(32)
UINT64 = uint(64)
OPER = enum("UP", "DOWN")


class ValueError_(Exception):
    """A value does not conform to its leaf type (message names the rule)."""


_pattern_cache: dict[str, re.Pattern[str]] = {}


def check_scalar(t: LeafType, value: Any) -> Any:
    """Validate a JSON-decoded scalar against ``t``; return the canonical internal value.

    64-bit integers are accepted as numbers or as decimal strings (RFC 7951 encodes them as
    strings); smaller integers must be JSON numbers. Identities are stored without module prefix.
    """
    k = t.kind
    if k == "string":
        if not isinstance(value, str):
            raise ValueError_(f"expected a string, got {_show(value)}")
        if t.pattern is not None:
            rx = _pattern_cache.get(t.pattern)
            if rx is None:
                rx = _pattern_cache[t.pattern] = re.compile(t.pattern)
            if not rx.fullmatch(value):
                raise ValueError_(f"value {value!r} does not match pattern {t.pattern!r}")
        return value
    if k == "uint":
        if isinstance(value, bool):
            raise ValueError_(f"expected uint{t.bits}, got {_show(value)}")
        if isinstance(value, str) and t.bits == 64 and value.isdigit():
            value = int(value)
        if not isinstance(value, int):
            raise ValueError_(f"expected uint{t.bits}, got {_show(value)}")
        assert t.lo is not None and t.hi is not None
        if not t.lo <= value <= t.hi:
            raise ValueError_(f"value {value} out of range {t.lo}..{t.hi} (uint{t.bits})")
        return value
    if k == "bool":
        if not isinstance(value, bool):
            raise ValueError_(f"expected a boolean, got {_show(value)}")
        return value
    if k == "enum":
        if value not in t.values:
            raise ValueError_(f"value {_show(value)} is not one of {', '.join(t.values)}")
        return value
    if k == "identity":
        if isinstance(value, str) and ":" in value:
            mod, _, bare = value.partition(":")
            if mod != t.identity_module:
                raise ValueError_(f"identity {value!r} is not from module {t.identity_module}")
            value = bare
        if value not in t.values:
            raise ValueError_(f"identity {_show(value)} is not one of {', '.join(t.values)}")
        return value
    if k == "ipv4":
        if not isinstance(value, str):
            raise ValueError_(f"expected an IPv4 address string, got {_show(value)}")
        try:
            addr = ipaddress.IPv4Address(value)
        except ValueError:
            raise ValueError_(f"{value!r} is not a dotted IPv4 address") from None
        return str(addr)
    raise AssertionError(k)


def parse_key(t: LeafType, text: str) -> Any:
    """Convert a key value from a gNMI path (always a string) to the internal typed value."""
    if t.kind == "uint":
        if not text.isdigit():
            raise ValueError_(f"key {text!r} is not a uint{t.bits}")
        return check_scalar(t, int(text))
    if t.kind == "bool":
        if text not in ("true", "false"):
            raise ValueError_(f"key {text!r} is not a boolean")
        return text == "true"
    return check_scalar(t, text)


def key_text(value: Any) -> str:
    """The gNMI path form of a key value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return "a JSON " + ("object" if isinstance(value, dict) else "array")
    return str(value)


# ---------------------------------------------------------------------------------------------
# Schema nodes


@dataclass(frozen=True)
class Reference:
    """leafref-like rule on a container: leaves ``fields`` must name an existing node.

    ``target`` is a schema path template such as
    ``/interfaces/interface[name={interface}]/subinterfaces/subinterface[index={subinterface}]``.
    Fields in ``optional`` may be absent; the target is then cut before the first segment that
    needs a missing field (e.g. only the interface must exist when no subinterface is given).
    """

    fields: tuple[str, ...]
    target: str
    optional: tuple[str, ...] = ()


@dataclass(frozen=True)
class AtLeast:
    """``must`` rule on a container: leaf ``leaf`` >= leaf ``other`` when both are set."""

    leaf: str
    other: str


@dataclass(eq=False)
class Node:
    name: str
    module: str = ""
    config: bool = True
    parent: Container | ListNode | None = field(default=None, repr=False)
    description: str = ""

    @property
    def schema_path(self) -> str:
        parts: list[str] = []
        node: Node | None = self
        while node is not None and node.name:
            parts.append(node.name)
            node = node.parent
        return "/" + "/".join(reversed(parts))


@dataclass(eq=False)
class Leaf(Node):
    type: LeafType = STRING
    default: Any = None
    # operational: reported for GetRequest type OPERATIONAL (counters, oper-status)
    operational: bool = False
    # volatile: changed by the counter tick, see ``Container.volatile``
    volatile: bool = False


@dataclass(eq=False)
class Container(Node):
    children: dict[str, SchemaNode] = field(default_factory=dict)
    refs: tuple[Reference, ...] = ()
    musts: tuple[AtLeast, ...] = ()
    # volatile containers (counters) change on the periodic tick; ON_CHANGE subscriptions get
    # those changes only when their path names the container (documented in docs/devicesim.md)
    volatile: bool = False


@dataclass(eq=False)
class ListNode(Node):
    keys: tuple[str, ...] = ()
    children: dict[str, SchemaNode] = field(default_factory=dict)
    # unique: relative leaf paths whose values must differ between entries of one list instance
    unique: tuple[tuple[str, ...], ...] = ()
    # key_source: a device-provided closed set of allowed keys (``ports`` = physical interfaces)
    key_source: str | None = None

    def key_types(self) -> tuple[LeafType, ...]:
        out = []
        for k in self.keys:
            leaf = self.children[k]
            assert isinstance(leaf, Leaf)
            out.append(leaf.type)
        return tuple(out)


SchemaNode = Leaf | Container | ListNode


def _adopt(parent: Container | ListNode, children: tuple[SchemaNode, ...]) -> None:
    for child in children:
        child.parent = parent
        if not child.module:
            child.module = parent.module
        if not parent.config:
            child.config = False
        if isinstance(parent, Container) and parent.volatile and isinstance(child, Leaf):
            child.volatile = True
        parent.children[child.name] = child
    # children inherit module/config lazily above; re-run for grandchildren created earlier
    for child in children:
        if isinstance(child, (Container, ListNode)):
            _adopt(child, tuple(child.children.values()))


def leaf(name: str, type_: LeafType = STRING, *, default: Any = None, operational: bool = False,
         description: str = "") -> Leaf:
    return Leaf(name=name, type=type_, default=default, operational=operational, description=description)


def container(name: str, *children: SchemaNode, module: str = "", config: bool = True,
              refs: tuple[Reference, ...] = (), musts: tuple[AtLeast, ...] = (),
              volatile: bool = False) -> Container:
    c = Container(name=name, module=module, config=config, refs=refs, musts=musts, volatile=volatile)
    for ch in children:
        c.children[ch.name] = ch
    return c


def list_(name: str, keys: tuple[str, ...], *children: SchemaNode, module: str = "",
          unique: tuple[tuple[str, ...], ...] = (), key_source: str | None = None) -> ListNode:
    n = ListNode(name=name, module=module, keys=keys, unique=unique, key_source=key_source)
    for ch in children:
        n.children[ch.name] = ch
    return n


def counters() -> Container:
    return container(
        "counters",
        leaf("in-octets", UINT64, operational=True),
        leaf("out-octets", UINT64, operational=True),
        volatile=True,
    )


# ---------------------------------------------------------------------------------------------
# The modelled OpenConfig subset

OC_IF = "openconfig-interfaces"
OC_VLAN = "openconfig-vlan"
OC_IP = "openconfig-if-ip"
OC_NI = "openconfig-network-instance"
OC_QOS = "openconfig-qos"

IF_TYPES = identity("iana-if-type", "ethernetCsmacd", "l3ipvlan", "softwareLoopback", "ieee8023adLag")
NI_TYPES = identity("openconfig-network-instance-types", "L3VRF", "DEFAULT_INSTANCE")
PROTOCOL_TYPES = identity("openconfig-policy-types", "BGP", "STATIC", "DIRECTLY_CONNECTED")
ADDRESS_TYPES = enum("PRIMARY", "SECONDARY")
ADDRESS_ORIGINS = enum("OTHER", "STATIC", "DHCP", "LINK_LAYER", "RANDOM")
PROXY_ARP_MODES = enum("DISABLE", "REMOTE_ONLY", "ALL")
SCHED_TYPES = identity("openconfig-qos-types", "ONE_RATE_TWO_COLOR", "TWO_RATE_THREE_COLOR")

SUBIF_REF = Reference(
    fields=("interface", "subinterface"),
    target="/interfaces/interface[name={interface}]/subinterfaces/subinterface[index={subinterface}]",
    optional=("subinterface",),
)


def _build() -> Container:
    subinterface = list_(
        "subinterface", ("index",),
        leaf("index", UINT32),
        container(
            "config",
            leaf("index", UINT32),
            leaf("description", STRING),
            leaf("enabled", BOOL, default=True),
        ),
        container(
            "state",
            leaf("index", UINT32),
            leaf("description", STRING),
            leaf("enabled", BOOL),
            leaf("oper-status", OPER, operational=True),
            leaf("admin-status", OPER),
            counters(),
            config=False,
        ),
        container(
            "vlan",
            container("match", container("single-tagged", container(
                "config", leaf("vlan-id", uint(16, 1, 4094))))),
            module=OC_VLAN,
        ),
        container(
            "ipv4",
            container("config", leaf("enabled", BOOL)),
            container("state", leaf("enabled", BOOL), config=False),
            container("proxy-arp",
                      container("config", leaf("mode", PROXY_ARP_MODES)),
                      container("state", leaf("mode", PROXY_ARP_MODES), config=False)),
            container("addresses", list_(
                "address", ("ip",),
                leaf("ip", IPV4),
                container("config", leaf("ip", IPV4), leaf("prefix-length", uint(8, 0, 32)),
                          leaf("type", ADDRESS_TYPES)),
                container("state", leaf("ip", IPV4), leaf("prefix-length", uint(8, 0, 32)),
                          leaf("type", ADDRESS_TYPES), leaf("origin", ADDRESS_ORIGINS), config=False),
            )),
            module=OC_IP,
        ),
        unique=(("vlan", "match", "single-tagged", "config", "vlan-id"),),
    )
    interfaces = container(
        "interfaces",
        list_(
            "interface", ("name",),
            leaf("name", STRING),
            container(
                "config",
                leaf("name", STRING),
                leaf("description", STRING),
                leaf("enabled", BOOL, default=True),
                leaf("mtu", uint(16, 68, 9216), default=1500),
                leaf("type", IF_TYPES),
            ),
            container(
                "state",
                leaf("name", STRING),
                leaf("type", IF_TYPES),
                leaf("description", STRING),
                leaf("enabled", BOOL),
                leaf("oper-status", OPER, operational=True),
                leaf("admin-status", OPER),
                leaf("mtu", UINT16),
                counters(),
                config=False,
            ),
            container("subinterfaces", subinterface),
            key_source="ports",
        ),
        module=OC_IF,
    )
    network_instances = container(
        "network-instances",
        list_(
            "network-instance", ("name",),
            leaf("name", STRING),
            container(
                "config",
                leaf("name", STRING),
                leaf("type", NI_TYPES),
                leaf("description", STRING),
                leaf("route-distinguisher", STRING),
                # removed in openconfig-network-instance 2.0.0; only lenient devices accept it
                leaf("enabled", BOOL),
            ),
            container("protocols", list_(
                "protocol", ("identifier", "name"),
                leaf("identifier", PROTOCOL_TYPES),
                leaf("name", STRING),
                container("config", leaf("identifier", PROTOCOL_TYPES), leaf("name", STRING)),
                container("bgp",
                          container("global", container("config", leaf("as", UINT32),
                                                        leaf("router-id", IPV4))),
                          container("neighbors", list_(
                              "neighbor", ("neighbor-address",),
                              leaf("neighbor-address", IPV4),
                              container("config", leaf("neighbor-address", IPV4), leaf("peer-as", UINT32),
                                        leaf("description", STRING), leaf("enabled", BOOL)),
                          ))),
            )),
            container("interfaces", list_(
                "interface", ("id",),
                leaf("id", STRING),
                container(
                    "config",
                    leaf("id", STRING),
                    leaf("interface", STRING),
                    leaf("subinterface", UINT32),
                    refs=(SUBIF_REF,),
                ),
            )),
        ),
        module=OC_NI,
    )
    qos = container(
        "qos",
        container("scheduler-policies", list_(
            "scheduler-policy", ("name",),
            leaf("name", STRING),
            container("config", leaf("name", STRING)),
            container("schedulers", list_(
                "scheduler", ("sequence",),
                leaf("sequence", UINT32),
                container("config", leaf("sequence", UINT32), leaf("type", SCHED_TYPES)),
                container("two-rate-three-color", container(
                    "config",
                    leaf("cir", UINT64, description="committed information rate, bits/s"),
                    leaf("pir", UINT64, description="peak information rate, bits/s"),
                    leaf("bc", UINT32, description="committed burst, bytes"),
                    leaf("be", UINT32, description="excess burst, bytes"),
                    musts=(AtLeast("pir", "cir"),),
                )),
            )),
        )),
        container("interfaces", list_(
            "interface", ("interface-id",),
            leaf("interface-id", STRING),
            container("config", leaf("interface-id", STRING)),
            container("interface-ref", container(
                "config",
                leaf("interface", STRING),
                leaf("subinterface", UINT32),
                refs=(SUBIF_REF,),
            )),
            container("output", container("scheduler-policy", container(
                "config",
                leaf("name", STRING),
                refs=(Reference(fields=("name",),
                                target="/qos/scheduler-policies/scheduler-policy[name={name}]"),),
            ))),
        )),
        module=OC_QOS,
    )
    root = container("", interfaces, network_instances, qos)
    _adopt(root, tuple(root.children.values()))
    return root


ROOT: Container = _build()


@dataclass(frozen=True)
class Model:
    name: str
    organization: str
    version: str


MODELS: tuple[Model, ...] = (
    Model(OC_IF, "OpenConfig working group", "3.7.1"),
    Model(OC_IP, "OpenConfig working group", "3.5.1"),
    Model(OC_VLAN, "OpenConfig working group", "3.2.2"),
    Model(OC_NI, "OpenConfig working group", "4.4.1"),
    Model(OC_QOS, "OpenConfig working group", "0.11.2"),
    Model("iana-if-type", "IANA", "2023-01-26"),
)
MODULE_NAMES = frozenset(m.name for m in MODELS) | {
    NI_TYPES.identity_module, SCHED_TYPES.identity_module}


def walk(node: SchemaNode | None = None) -> Iterator[SchemaNode]:
    """All schema nodes below (and including) ``node``, depth first."""
    node = ROOT if node is None else node
    yield node
    if isinstance(node, (Container, ListNode)):
        for ch in node.children.values():
            yield from walk(ch)


def schema_key(node: SchemaNode) -> tuple[str, ...]:
    """Names from the root to ``node``; list nodes are followed by the marker ``"[]"``."""
    parts: list[str] = []
    cur: Node | None = node
    while cur is not None and cur.name:
        if isinstance(cur, ListNode) and cur is not node:
            parts.append("[]")
        parts.append(cur.name)
        cur = cur.parent
    return tuple(reversed(parts))


def tree_text(node: SchemaNode | None = None, indent: str = "") -> Iterator[str]:
    """A readable rendering of the schema (used by ``devicesim schema`` and the docs)."""
    node = ROOT if node is None else node
    for ch in node.children.values() if isinstance(node, (Container, ListNode)) else ():
        ro = "ro" if not ch.config else "rw"
        mod = f"  <{ch.module}>" if ch.parent is not None and ch.module != ch.parent.module else ""
        if isinstance(ch, Leaf):
            extra = f" default {json.dumps(ch.default)}" if ch.default is not None else ""
            yield f"{indent}{ro} {ch.name}: {ch.type.describe()}{extra}"
        elif isinstance(ch, ListNode):
            uq = f" unique({', '.join('/'.join(u) for u in ch.unique)})" if ch.unique else ""
            if ch.key_source == "ports":
                uq += " (entries: the device's physical ports only)"
            yield f"{indent}{ro} {ch.name}[{','.join(ch.keys)}]{uq}{mod}"
            yield from tree_text(ch, indent + "  ")
        else:
            rules = [f"ref {r.target}" for r in ch.refs] + [f"must {m.leaf} >= {m.other}" for m in ch.musts]
            yield f"{indent}{ro} {ch.name}/{mod}" + (f"  ({'; '.join(rules)})" if rules else "")
            yield from tree_text(ch, indent + "  ")
