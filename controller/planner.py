"""`telco-controller plan -f service.yaml`: the gNMI Set a NetworkService would cause, against live devices.

Reads the devices' current configuration over gNMI, merges the service with the
NetworkServices already in the cluster (so conflicts show), and prints the plan
without sending anything.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .api.common import validation_message
from .api.networkdevice import NetworkDeviceSpec
from .api.networkservice import NetworkServiceSpec
from .gnmi.client import GnmiClient
from .intent import Claim, ServiceKey, merge, plan, preflight, render
from .kube import Kube, Ref
from .network.devices import target_for
from .network.session import fetch_config


class PlanError(Exception):
    """The plan cannot be computed; the message says why."""


def load_services(path: Path) -> list[tuple[ServiceKey, NetworkServiceSpec]]:
    services = []
    for doc in yaml.safe_load_all(path.read_text()):
        if not doc or doc.get("kind") != "NetworkService":
            continue
        meta = doc.get("metadata", {})
        key = ServiceKey(meta.get("namespace", "default"), meta["name"])
        try:
            services.append((key, NetworkServiceSpec.model_validate(doc.get("spec", {}))))
        except ValidationError as exc:
            raise PlanError(f"{key}: {validation_message(exc)}") from None
    if not services:
        raise PlanError(f"{path} holds no NetworkService")
    return services


async def compute(path: Path, kube: Kube) -> list[dict[str, Any]]:
    """One report per (service, device): the plan's operations and any refusal."""
    wanted = load_services(path)
    existing = await kube.list_all("networkservices")
    now = dt.datetime.now(dt.UTC)
    reports: list[dict[str, Any]] = []
    for key, spec in wanted:
        for device in sorted({e.device for e in spec.endpoints}):
            try:
                body = await kube.get(Ref("networkdevices", device))
            except Exception as exc:
                raise PlanError(f"NetworkDevice {device}: {exc}") from None
            client = GnmiClient(await target_for(NetworkDeviceSpec.model_validate(body["spec"]), kube), device)
            try:
                tree = await fetch_config(client)
            finally:
                await client.close()
            claims = []
            for other in existing:
                meta = other["metadata"]
                other_key = ServiceKey(meta["namespace"], meta["name"])
                if other_key == key or meta.get("deletionTimestamp"):
                    continue
                try:
                    other_spec = NetworkServiceSpec.model_validate(other["spec"])
                except ValidationError:
                    continue
                if other_spec.dryRun:
                    continue
                created = dt.datetime.fromisoformat(meta["creationTimestamp"].replace("Z", "+00:00"))
                claims.append(Claim(other_key, created, tuple(render(other_key, other_spec))))
            mine = tuple(e for e in render(key, spec) if e.device == device)
            problems = preflight(device, mine, tree).get(key, [])
            result = merge(device, [*claims, Claim(key, now, mine)])
            refused = [c.message for c in result.conflicts if c.service == key]
            ops = plan(result.intent, tree).for_owner(key)
            reports.append(
                {
                    "service": str(key),
                    "device": device,
                    "refused": problems + refused,
                    "operations": [] if problems or refused else ops.to_json(),
                }
            )
    return reports


def render_text(reports: list[dict[str, Any]]) -> str:
    lines = []
    for r in reports:
        lines.append(f"# {r['service']} on {r['device']}")
        for reason in r["refused"]:
            lines.append(f"  REFUSED: {reason}")
        if not r["refused"] and not r["operations"]:
            lines.append("  no change: the device already holds this intent")
        for op in r["operations"]:
            value = f" {op['value']}" if op["value"] is not None else ""
            lines.append(f"  {op['op']:<7} {op['path']}{value}")
    return "\n".join(lines)


def render_json(reports: list[dict[str, Any]]) -> str:
    return json.dumps(reports, indent=2)
