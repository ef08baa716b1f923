"""`telco-controller plan -f PATH`: the gNMI Set that NetworkServices and Subscriptions would cause.

Reads the devices' current configuration over gNMI, merges the wanted services with the
NetworkServices already in the cluster (so conflicts show), and prints the plan without sending
anything. A Subscription is planned as the NetworkService the controller would make of it
(`order.network_service_for`, with its ProductOffering from the manifests given or else the cluster).

The exit code is for CI: 0 every service would apply cleanly, 1 one would be refused, conflicts or is
invalid, 2 the plan could not be made (a `PlanError`: unreadable input, API server or device down).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .api.common import validation_message
from .api.networkdevice import NetworkDeviceSpec
from .api.networkservice import NetworkServiceSpec
from .api.productoffering import ProductOfferingSpec
from .api.subscription import SubscriptionSpec
from .commerce import order
from .commerce.offering import sellability
from .gnmi.client import GnmiClient
from .intent import GPath, ManagedEntry, ServiceKey, observe, render
from .intent.ownership import from_status, shared_root
from .intent.render import uses_legacy_vlan, with_legacy_vlan
from .intent.rfc7951 import negotiate
from .kube import Kube, NotFound, Ref
from .network.devicepass import Member, applied_in_status, device_pass, precedence
from .network.devices import target_for
from .network.session import fetch_config
from .times import parse_time

EXIT_CLEAN, EXIT_REFUSED, EXIT_ERROR = 0, 1, 2
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
PLANNED_KINDS = ("NetworkService", "Subscription")


class PlanError(Exception):
    """The plan cannot be made (exit 2); the message says why."""


@dataclass(frozen=True)
class Document:
    """One manifest object and where it came from (for messages)."""

    source: str
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body.get("kind") or "")


@dataclass
class Wanted:
    """A NetworkService to plan; `problems` non-empty: it is invalid and is not planned on any device."""

    key: ServiceKey
    origin: str  # "NetworkService" or "Subscription ns/name"
    spec: NetworkServiceSpec | None = None
    problems: list[str] = field(default_factory=list)


def _documents_of(source: str, text: str) -> list[Document]:
    try:
        loaded = list(yaml.safe_load_all(text))  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise PlanError(f"{source}: not valid YAML or JSON: {exc}") from None
    docs: list[Document] = []
    for item in loaded:
        if item is None:
            continue
        if not isinstance(item, dict):
            raise PlanError(f"{source}: expected Kubernetes objects (mappings), found a {type(item).__name__}")
        if item.get("kind") == "List":  # what `kubectl get -o yaml` prints
            docs.extend(_documents_of(source, yaml.safe_dump_all(item.get("items") or [])))
        else:
            docs.append(Document(source, item))
    return docs


def manifest_files(path: Path) -> list[Path]:
    """`path` itself, or for a directory every *.yaml, *.yml and *.json directly in it, by name."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix in MANIFEST_SUFFIXES and p.is_file())
        if not files:
            raise PlanError(f"{path}: the directory holds no *.yaml, *.yml or *.json file")
        return files
    if not path.exists():
        raise PlanError(f"{path}: no such file or directory")
    return [path]


def load_documents(path: Path) -> list[Document]:
    docs: list[Document] = []
    for file in manifest_files(path):
        try:
            text = file.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise PlanError(f"{file}: cannot read: {exc}") from None
        docs.extend(_documents_of(str(file), text))
    if not any(d.kind in PLANNED_KINDS for d in docs):
        raise PlanError(f"{path} holds no NetworkService or Subscription")
    return docs


def _key_of(doc: Document) -> ServiceKey | str:
    """The object's (namespace, name), or why it has none."""
    meta = doc.body.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not name:
        return f"{doc.source}: a {doc.kind} without metadata.name (expected a DNS name)"
    namespace = meta.get("namespace") if isinstance(meta, dict) else None
    return ServiceKey(namespace if isinstance(namespace, str) and namespace else "default", name)


def network_services(docs: Iterable[Document]) -> list[Wanted]:
    """The NetworkServices of the manifests, each parsed or marked invalid (naming the field)."""
    wanted = []
    for doc in docs:
        if doc.kind != "NetworkService":
            continue
        key = _key_of(doc)
        if isinstance(key, str):
            raise PlanError(key)
        try:
            wanted.append(Wanted(key, "NetworkService", NetworkServiceSpec.model_validate(doc.body.get("spec") or {})))
        except ValidationError as exc:
            wanted.append(Wanted(key, "NetworkService", problems=[validation_message(exc)]))
    return wanted


def exit_code(reports: Iterable[Mapping[str, Any]]) -> int:
    """0 when every service would apply cleanly, 1 when any is refused or invalid."""
    return EXIT_REFUSED if any(r["refused"] or r["invalid"] for r in reports) else EXIT_CLEAN


class _Cluster:
    """The cluster's objects the plan reads, each read at most once; failures become PlanError."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self._lists: dict[str, list[dict[str, Any]]] = {}
        self._configs: dict[str, dict[str, Any] | str] = {}
        self.legacy_vlan: dict[str, bool] = {}  # devices advertising openconfig-vlan < 3.0.0

    async def list(self, plural: str) -> list[dict[str, Any]]:
        if plural not in self._lists:
            try:
                self._lists[plural] = await self.kube.list_all(plural)
            except Exception as exc:
                raise PlanError(f"cannot list {plural} from the API server: {exc}") from None
        return self._lists[plural]

    async def get(self, ref: Ref) -> dict[str, Any] | None:
        try:
            return await self.kube.get(ref)
        except NotFound:
            return None
        except Exception as exc:
            raise PlanError(f"cannot read {ref} from the API server: {exc}") from None

    async def device_config(self, device: str) -> dict[str, Any] | str:
        """The device's configuration tree, or why the controller would not configure it (a string)."""
        if device not in self._configs:
            self._configs[device] = await self._fetch(device)
        return self._configs[device]

    async def _fetch(self, device: str) -> dict[str, Any] | str:
        body = await self.get(Ref("networkdevices", device))
        if body is None:
            return f"NetworkDevice {device} does not exist"
        try:
            spec = NetworkDeviceSpec.model_validate(body.get("spec") or {})
            target = await target_for(spec, self.kube)
        except Exception as exc:
            raise PlanError(f"NetworkDevice {device}: {exc}") from None
        client = GnmiClient(target, device)
        try:
            caps = await client.capabilities()
            self.legacy_vlan[device] = uses_legacy_vlan(caps.models)
            return await fetch_config(client, negotiate(target.encoding, caps.encodings))
        except Exception as exc:
            raise PlanError(
                f"NetworkDevice {device} at {spec.address}:{spec.port}: cannot read its config: {exc}"
            ) from None
        finally:
            await client.close()


async def _from_subscription(
    doc: Document, offerings: Mapping[str, dict[str, Any]], cluster: _Cluster, now: dt.datetime
) -> Wanted:
    """The NetworkService the controller would make of a Subscription, or why it would make none."""
    key = _key_of(doc)
    if isinstance(key, str):
        raise PlanError(key)
    origin = f"Subscription {key}"
    try:
        spec = SubscriptionSpec.model_validate(doc.body.get("spec") or {})
    except ValidationError as exc:
        return Wanted(key, origin, problems=[validation_message(exc)])
    offering_name = spec.productOffering.name
    offering_body = offerings.get(offering_name) or await cluster.get(Ref("productofferings", offering_name))
    if offering_body is None:
        return Wanted(key, origin, problems=[f"ProductOffering {offering_name} does not exist; the order would wait"])
    try:
        offering = ProductOfferingSpec.model_validate(offering_body.get("spec") or {})
    except ValidationError as exc:
        return Wanted(key, origin, problems=[f"ProductOffering {offering_name}: {validation_message(exc)}"])
    stored = next(
        (s for s in await cluster.list("subscriptions") if _key_of(Document("cluster", s)) == key),
        None,
    )
    record = order.order_record(stored) if stored is not None else None
    problems: list[str] = []
    verdict = sellability(offering, now)
    if not verdict.sellable and not (record is not None and record.accepted):
        problems.append(f"ProductOffering {offering_name}: {verdict.message}")
    current = next(
        (s for s in await cluster.list("networkservices") if _key_of(Document("cluster", s)) == key),
        None,
    )
    current_spec = (current or {}).get("spec")
    errors = order.validate_order(key.name, spec, offering, current_spec)
    problems += [str(e) for e in errors]
    mine = order.OrderRecord(
        key.namespace,
        key.name,
        record.created if record is not None else now,
        tuple(order.endpoint_key(e.device, e.port, e.vlanId) for e in spec.endpoints),
        record.state if record is not None else None,
    )
    others = []
    for body in await cluster.list("subscriptions"):
        try:
            other = order.order_record(body)
        except ValueError:
            continue
        if not other.same_subscription(mine):
            others.append(other)
    claims = order.endpoint_claims([*others, mine])
    problems += [c.message for c in order.endpoint_conflicts(mine, claims)]
    if problems:
        return Wanted(key, origin, problems=problems)
    uid = str(((stored or {}).get("metadata") or {}).get("uid") or "")
    body = order.network_service_for(key.name, key.namespace, uid, spec, offering, True, current_spec)
    return Wanted(key, origin, NetworkServiceSpec.model_validate(body["spec"]))


async def wanted_services(docs: list[Document], cluster: _Cluster, now: dt.datetime) -> list[Wanted]:
    """Every NetworkService the manifests ask for, directly or through a Subscription, in manifest order."""
    offerings = {
        str(d.body["metadata"]["name"]): d.body
        for d in docs
        if d.kind == "ProductOffering" and isinstance(d.body.get("metadata"), dict) and d.body["metadata"].get("name")
    }
    direct = iter(network_services(docs))
    wanted = []
    for doc in docs:
        if doc.kind == "NetworkService":
            wanted.append(next(direct))
        elif doc.kind == "Subscription":
            wanted.append(await _from_subscription(doc, offerings, cluster, now))
    return wanted


def _report(want: Wanted, device: str | None, refused: list[str], ops: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "service": str(want.key),
        "from": want.origin,
        "device": device,
        "invalid": list(want.problems),
        "refused": refused,
        "operations": ops,
    }


@dataclass(frozen=True)
class _Existing:
    """A live NetworkService of the cluster (one the manifests do not replace), as the device pass sees it."""

    key: ServiceKey
    created: dt.datetime
    entries: tuple[ManagedEntry, ...]
    status: dict[str, Any]


def _existing_services(existing: list[dict[str, Any]], wanted_keys: set[ServiceKey]) -> list[_Existing]:
    found = []
    for other in existing:
        meta = other.get("metadata") or {}
        key = ServiceKey(meta.get("namespace", ""), meta.get("name", ""))
        created = parse_time(meta.get("creationTimestamp"))
        if key in wanted_keys or meta.get("deletionTimestamp") or created is None:
            continue
        try:
            spec = NetworkServiceSpec.model_validate(other.get("spec") or {})
        except ValidationError:
            continue
        if not spec.dryRun:
            found.append(_Existing(key, created, tuple(render(key, spec)), other.get("status") or {}))
    return found


def _created_shared(existing: list[_Existing], device: str) -> set[GPath]:
    """The shared entries (VRFs) the controller created on `device`, as the services' status.owned records."""
    return {
        root
        for e in existing
        for leaf in from_status(e.status.get("owned")).get(device, ())
        if (root := shared_root(leaf)) is not None
    }


async def compute(docs: list[Document], kube: Kube) -> list[dict[str, Any]]:
    """One report per (service, device), and one per invalid service: the plan's operations and any refusal.

    The manifests' services are planned as if applied together in manifest order: each is merged with
    the cluster's NetworkServices and with the manifests' services before it, by the same device pass the
    controller runs (so a service configured on a device keeps its claim there, as it does in the controller).
    """
    cluster = _Cluster(kube)
    now = dt.datetime.now(dt.UTC)
    wanted = await wanted_services(docs, cluster, now)
    planned = {w.key for w in wanted if w.spec is not None}
    existing = _existing_services(await cluster.list("networkservices"), planned)
    earlier: list[tuple[ServiceKey, dt.datetime, tuple[ManagedEntry, ...]]] = []
    reports: list[dict[str, Any]] = []
    for i, want in enumerate(wanted):
        if want.spec is None:
            reports.append(_report(want, None, [], []))
            continue
        # Later than anything in the cluster, and in manifest order among themselves.
        created = now + dt.timedelta(milliseconds=i)
        entries = tuple(render(want.key, want.spec))
        for device in sorted({e.device for e in want.spec.endpoints}):
            tree = await cluster.device_config(device)
            if isinstance(tree, str):
                reports.append(_report(want, device, [tree], []))
                continue

            def on_device(all_entries: tuple[ManagedEntry, ...], device: str = device) -> tuple[ManagedEntry, ...]:
                mine = tuple(e for e in all_entries if e.device == device)
                return with_legacy_vlan(mine) if cluster.legacy_vlan.get(device) else mine

            members = [
                Member(e.key, precedence(e.created, applied_in_status(e.status, device)), on_device(e.entries))
                for e in existing
            ]
            members += [Member(key, at, on_device(es)) for key, at, es in earlier]
            members.append(Member(want.key, created, on_device(entries), dry_run=True))
            result = device_pass(device, observe(tree), members, created=_created_shared(existing, device))
            refusal = result.refused.get(want.key)
            refused = [refusal[1]] if refusal else []
            ops = [] if refused else result.dry_runs[want.key].to_json()
            reports.append(_report(want, device, refused, ops))
        earlier.append((want.key, created, entries))
    return reports


def render_text(reports: list[dict[str, Any]]) -> str:
    lines = []
    for r in reports:
        origin = "" if r["from"] == "NetworkService" else f" (from {r['from']})"
        lines.append(f"# {r['service']}{origin}" + (f" on {r['device']}" if r["device"] else ""))
        for reason in r["invalid"]:
            lines.append(f"  INVALID: {reason}")
        for reason in r["refused"]:
            lines.append(f"  REFUSED: {reason}")
        if not r["invalid"] and not r["refused"] and not r["operations"]:
            lines.append("  no change: the device already holds this intent")
        for op in r["operations"]:
            value = f" {op['value']}" if op["value"] is not None else ""
            lines.append(f"  {op['op']:<7} {op['path']}{value}")
    verdict = exit_code(reports)
    lines.append(
        "plan: every service would apply cleanly"
        if verdict == EXIT_CLEAN
        else "plan: some service would be refused or is invalid (exit 1)"
    )
    return "\n".join(lines)


def render_json(reports: list[dict[str, Any]]) -> str:
    return json.dumps(reports, indent=2)
