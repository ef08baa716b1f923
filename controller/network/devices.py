"""NetworkDevice: from its spec and Secrets to a gNMI target, and from the session to its status."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ..api.networkdevice import NetworkDeviceSpec
from ..conditions import Cond, merge_conditions
from ..gnmi.client import Target
from ..kube import Kube
from .session import DeviceSession

# Models whose presence makes a device usable by this controller.
REQUIRED_MODELS = ("openconfig-interfaces", "openconfig-vlan", "openconfig-if-ip")


class DeviceConfigError(Exception):
    """The NetworkDevice cannot be turned into a target (missing Secret or key); says which."""


async def target_for(spec: NetworkDeviceSpec, kube: Kube) -> Target:
    ref = spec.credentialsSecretRef
    try:
        creds = await kube.read_secret(ref.namespace, ref.name)
    except Exception as exc:
        raise DeviceConfigError(f"cannot read Secret {ref.namespace}/{ref.name}: {_short(exc)}") from None
    missing = [k for k in ("username", "password") if k not in creds]
    if missing:
        raise DeviceConfigError(f"Secret {ref.namespace}/{ref.name} lacks key(s) {', '.join(missing)}")
    ca: bytes | None = None
    if spec.tls.caSecretRef is not None:
        ca_ref = spec.tls.caSecretRef
        try:
            ca_data = await kube.read_secret(ca_ref.namespace, ca_ref.name)
        except Exception as exc:
            raise DeviceConfigError(f"cannot read Secret {ca_ref.namespace}/{ca_ref.name}: {_short(exc)}") from None
        if "ca.crt" not in ca_data:
            raise DeviceConfigError(f"Secret {ca_ref.namespace}/{ca_ref.name} lacks key ca.crt")
        ca = ca_data["ca.crt"]
    return Target(
        address=spec.address,
        port=spec.port,
        username=_text(creds, "username", ref.namespace, ref.name),
        password=_text(creds, "password", ref.namespace, ref.name),
        insecure=spec.tls.insecure,
        ca_pem=ca,
        server_name=spec.tls.serverName,
        timeout=float(spec.timeoutSeconds),
    )


def _text(data: dict[str, bytes], key: str, namespace: str, name: str) -> str:
    """A credential as gRPC metadata can carry it: printable ASCII, no line breaks."""
    try:
        value = data[key].decode("ascii")
    except UnicodeDecodeError:
        raise DeviceConfigError(f"Secret {namespace}/{name} key {key} is not printable ASCII") from None
    if not value.isprintable():
        raise DeviceConfigError(f"Secret {namespace}/{name} key {key} holds control characters")
    return value


def _short(exc: Exception) -> str:
    reason = getattr(exc, "reason", None)
    return str(reason or exc).splitlines()[0][:200]


def device_status(
    generation: int,
    current: dict[str, Any],
    session: DeviceSession | None,
    config_error: str | None,
    services: int,
    now: dt.datetime,
) -> dict[str, Any]:
    conds: list[Cond]
    caps_status: dict[str, Any] | None = None
    if config_error is not None:
        conds = [
            Cond("Ready", "False", "InvalidConfiguration", config_error),
            Cond("Reachable", "Unknown", "InvalidConfiguration", config_error),
        ]
    elif session is None or (not session.connected and session.error is None):
        conds = [Cond("Ready", "Unknown", "Connecting", ""), Cond("Reachable", "Unknown", "Connecting", "")]
    elif not session.connected:
        assert session.error is not None
        reason = "Unauthenticated" if session.error.unauthenticated else "Unreachable"
        conds = [
            Cond("Ready", "False", reason, session.error.message),
            Cond("Reachable", "False", reason, session.error.message),
        ]
    else:
        caps = session.capabilities
        names = {m[0] for m in caps.models} if caps else set()
        missing = [m for m in REQUIRED_MODELS if m not in names]
        reach = Cond("Reachable", "True", "Connected", f"gNMI {caps.gnmi_version if caps else '?'}")
        if missing:
            conds = [Cond("Ready", "False", "MissingModels", f"device lacks {', '.join(missing)}"), reach]
        elif not session.synced:
            conds = [Cond("Ready", "False", "Syncing", "waiting for the subscription's initial state"), reach]
        else:
            conds = [Cond("Ready", "True", "Connected", "session up and state in sync"), reach]
        if caps is not None:
            relevant = [m for m in caps.models if m[0].startswith("openconfig-")][:64]
            caps_status = {
                "gnmiVersion": caps.gnmi_version,
                "encodings": caps.encodings[:8],
                "models": [{"name": n, "organization": o, "version": v} for n, o, v in relevant],
                "modelCount": len(caps.models),
            }
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": merge_conditions(current.get("conditions"), conds, generation, now),
        "services": services,
    }
    if caps_status is not None:
        status["capabilities"] = caps_status
    return status
