"""One simulated device: its committed tree, its levers, its statistics and change fan-out.

Everything here runs on the fleet's event loop and is synchronous: a Set is validated and
committed without awaiting, so no other RPC can observe a half-applied transaction and
subscribers are told about a change only after it is committed.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc

from devicesim import official as O
from devicesim import paths as P
from devicesim import schema as S
from devicesim import tree as T
from devicesim.errors import GnmiError

log = logging.getLogger("devicesim")

DEFAULT_PORTS = tuple(f"Ethernet{i}" for i in range(1, 9))
PROFILES = ("strict", "lenient")
ENCODINGS = ("JSON", "JSON_IETF")


@dataclass(frozen=True)
class DeviceSpec:
    """What a device is: the fleet file / CLI / API describe devices with this."""

    name: str
    port: int = 0  # 0: an ephemeral port, chosen at first start and kept across down/up
    platform: str = "devicesim-7000"
    ports: tuple[str, ...] = DEFAULT_PORTS
    username: str = "admin"
    password: str = "admin"
    tls_cert: str | None = None  # PEM files; default: issued by the fleet's generated CA
    tls_key: str | None = None
    # strict: behaves like a real router (official-model validation, YANG defaults, mirrored
    # state, gNMI status codes); lenient: the forgiving behaviour the controller grew up with
    profile: str = "strict"
    encodings: tuple[str, ...] = ENCODINGS  # gNMI encodings the device advertises and accepts

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"device {self.name}: profile {self.profile!r} is not one of {', '.join(PROFILES)}")
        bad = [e for e in self.encodings if e not in ENCODINGS]
        if bad or not self.encodings:
            raise ValueError(f"device {self.name}: encodings must be a non-empty list of {', '.join(ENCODINGS)}; "
                             f"got {list(self.encodings)}")

    @property
    def strict(self) -> bool:
        return self.profile == "strict"


class OpLabel:
    """``update[2] /interfaces/...``: formatted only when an error needs it (Sets are hot)."""

    __slots__ = ("index", "kind", "text")

    def __init__(self, kind: str, index: int, text: Callable[[], str]) -> None:
        self.kind, self.index, self.text = kind, index, text

    def __str__(self) -> str:
        return f"{self.kind}[{self.index}] {self.text()}"


@dataclass
class SetOp:
    kind: str  # "delete" | "replace" | "update"
    patterns: list[P.Pattern]
    value: Any = None
    ietf: bool = False
    label: object = ""


class SetFailed(Exception):
    """A Set that was rolled back: ``label`` names the failing operation, ``error`` its cause."""

    def __init__(self, label: str, error: GnmiError) -> None:
        super().__init__(f"{label}: {error}")
        self.label = label
        self.error = error


class Listener(Protocol):
    """An open Subscribe stream (see server.Session)."""

    def on_commit(self, diff: T.Diff, timestamp: int, tick: bool) -> None: ...

    def drop(self, error: GnmiError) -> None: ...


@dataclass
class Stats:
    set_rpcs: int = 0
    set_failed: int = 0
    set_updates: int = 0  # Update messages in the update field of Sets
    set_replaces: int = 0
    set_deletes: int = 0
    leaf_changes: int = 0  # committed leaf updates + deletes, all sources
    get_rpcs: int = 0
    subscribe_rpcs: int = 0
    capabilities_rpcs: int = 0
    auth_failures: int = 0
    notifications: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


SET_LOG_LIMIT = 20_000  # the most recent Sets each device remembers who sent


@dataclass(frozen=True)
class SetRecord:
    """Who sent one Set and when: the writer's own words (x-telco-replica, x-telco-tenure metadata, empty
    when not sent) and the gRPC peer address; `received`/`finished` are the device's wall clock, in ns."""

    received: int
    finished: int
    replica: str
    tenure: str
    peer: str
    ok: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def writer_overlaps(records: Sequence[dict[str, Any]]) -> list[str]:
    """What is wrong with one device's Set log (`SetRecord.as_dict()`s) if its writers ever overlapped:
    a Set without an identity, a tenure used by two replicas, an older tenure after a newer one, or a
    tenure's first Set received before the previous tenure's last one finished. Empty: one at a time."""
    log = sorted(records, key=lambda r: r["received"])
    problems = [f"a Set without x-telco-replica at {r['received']}" for r in log if not r["replica"]][:1]
    by_tenure: dict[int, list[dict[str, Any]]] = {}
    for r in log:
        by_tenure.setdefault(int(r["tenure"] or -1), []).append(r)
    for tenure, sets in by_tenure.items():
        writers = sorted({r["replica"] for r in sets})
        if len(writers) > 1:
            problems.append(f"tenure {tenure} used by {', '.join(writers)}")
    tenures = [int(r["tenure"] or -1) for r in log]
    if tenures != sorted(tenures):
        problems.append(f"a Set of an older tenure after a newer one: {tenures}")
    ordered = sorted(by_tenure)
    for older, newer in itertools.pairwise(ordered):
        if max(r["finished"] for r in by_tenure[older]) >= min(r["received"] for r in by_tenure[newer]):
            problems.append(
                f"tenure {older} ({by_tenure[older][0]['replica']}) still sending when tenure {newer}"
                f" ({by_tenure[newer][0]['replica']}) started"
            )
    return problems


@dataclass
class Levers:
    set_latency: float = 0.0  # seconds added before each Set is applied
    fail_sets: int = 0  # the next N Sets fail without being applied
    fail_code: str = "UNAVAILABLE"
    fail_message: str = "injected failure (devicesim fail-sets lever)"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _warm_models() -> O.OfficialModels:
    """The official models with every position of the subset resolved (once per process)."""
    global _warmed
    models = O.models()
    if not _warmed:
        models.warm([tuple(n for n in S.schema_key(node) if n != "[]") for node in S.walk() if node.name])
        _warmed = True
    return models


_warmed = False


@dataclass
class Device:
    spec: DeviceSpec
    state_dir: Path | None = None
    empty: bool = False
    root: dict[str, Any] = field(init=False)
    links: dict[str, bool] = field(init=False)
    listeners: set[Any] = field(init=False, default_factory=set)
    stats: Stats = field(init=False, default_factory=Stats)
    set_log: deque[SetRecord] = field(init=False, default_factory=lambda: deque(maxlen=SET_LOG_LIMIT))
    levers: Levers = field(init=False, default_factory=Levers)
    serving: bool = field(init=False, default=False)
    port: int = field(init=False)
    boot_ns: int = field(init=False)
    dirty: bool = field(init=False, default=False)
    _rates: dict[tuple[str, Any], int] | None = field(init=False, default=None)
    official: O.OfficialModels | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.port = self.spec.port
        self.links = {p: True for p in self.spec.ports}
        self.boot_ns = time.time_ns()
        self.official = _warm_models() if self.spec.strict else None
        self.root = self.factory_root()
        if not self.empty:
            self.load()

    @property
    def name(self) -> str:
        return self.spec.name

    def factory_root(self) -> dict[str, Any]:
        return T.factory_root(self.spec.ports, self.links, self.official)

    def txn(self) -> T.Txn:
        return T.Txn(self.root, self.spec.ports, self.links, self.official)

    @property
    def ports(self) -> Sequence[str]:
        return self.spec.ports

    # -- transactions ---------------------------------------------------------------------------

    def apply(self, ops: Sequence[SetOp], source: str = "gnmi") -> int:
        """Apply a Set atomically and notify subscribers. Raises SetFailed; returns timestamp."""
        txn = self.txn()
        try:
            for op in ops:
                if op.kind == "delete":
                    for pat in op.patterns:
                        txn.delete(pat, op.label)
                elif op.kind == "replace":
                    txn.replace(op.patterns[0], op.value, op.ietf, op.label)
                else:
                    txn.update(op.patterns[0], op.value, op.ietf, op.label)
            diff = txn.finish()
        except GnmiError as err:
            label = str(txn.current.label) if txn.current is not None else "commit"
            raise SetFailed(label, err) from None
        return self.commit(txn.root, diff)

    def commit(self, new_root: dict[str, Any], diff: T.Diff, tick: bool = False) -> int:
        ts = time.time_ns()
        self.root = new_root
        if not diff:
            return ts
        self.stats.leaf_changes += len(diff.updates) + len(diff.deletes)
        if not tick:
            self.dirty = True
            self._rates = None
        for listener in list(self.listeners):
            listener.on_commit(diff, ts, tick)
        return ts

    # -- levers ---------------------------------------------------------------------------------

    def set_link(self, port: str, up: bool) -> None:
        if port not in self.links:
            raise GnmiError(grpc.StatusCode.NOT_FOUND,
                            f"{self.name} has no port {port!r} (ports: {', '.join(self.ports)})")
        self.links[port] = up
        txn = self.txn()
        txn.touch_interface(port)
        self.commit(txn.root, txn.finish(validate=False))

    def tick(self, dt_ns: int) -> None:
        """Advance the octet counters of UP subinterfaces by ``dt_ns`` worth of traffic."""
        if self._rates is None:
            self._rates = T.traffic_rates(self.root)
        new = T.tick_counters(self.root, dt_ns, self._rates)
        if new is self.root:
            return
        diff = T.diff_trees(self.root, new) if self.listeners else T.Diff()
        self.commit(new, diff, tick=True)

    def reboot(self, empty: bool) -> None:
        """A restart: counters start again at zero; ``empty`` = a replaced box, factory config."""
        self.boot_ns = time.time_ns()
        if empty:
            new = self.factory_root()
            self.dirty = True
        else:
            new = T.reset_counters(self.root)
        diff = T.diff_trees(self.root, new) if self.listeners else T.Diff()
        self.commit(new, diff)
        if empty:
            self.save()

    def drop_streams(self, message: str = "connection dropped by devicesim operator") -> int:
        n = 0
        for listener in list(self.listeners):
            listener.drop(GnmiError(grpc.StatusCode.UNAVAILABLE, message))
            n += 1
        return n

    def take_injected_failure(self) -> GnmiError | None:
        lv = self.levers
        if lv.fail_sets <= 0:
            return None
        lv.fail_sets -= 1
        return GnmiError(getattr(grpc.StatusCode, lv.fail_code), lv.fail_message)

    # -- views ----------------------------------------------------------------------------------

    def config_json(self) -> dict[str, Any]:
        return T.config_json(self.root)

    def dump(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": "127.0.0.1",
            "port": self.port,
            "platform": self.spec.platform,
            "serving": self.serving,
            "links": dict(self.links),
            "levers": self.levers.as_dict(),
            "stats": self.stats.as_dict(),
            "subscriptions": len(self.listeners),
            "config": self.config_json(),
            "tree": T.encode(S.ROOT, self.root, entry=False) or {},
        }

    # -- persistence ----------------------------------------------------------------------------

    @property
    def state_file(self) -> Path | None:
        return self.state_dir / f"{self.name}.json" if self.state_dir is not None else None

    def load(self) -> None:
        path = self.state_file
        if path is None or not path.exists():
            return
        try:
            data = json.loads(path.read_text())
            txn = self.txn()
            txn.replace(P.Pattern((), S.ROOT), data.get("config", {}), label="load")
            diff = txn.finish()
        except (GnmiError, ValueError, OSError) as err:
            log.warning("%s: ignoring saved state %s: %s", self.name, path, err)
            return
        self.commit(txn.root, diff)
        self.dirty = False

    def save(self) -> None:
        path = self.state_file
        if path is None:
            self.dirty = False
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"name": self.name, "config": self.config_json()}, indent=1))
        os.replace(tmp, path)
        self.dirty = False
