"""NetworkDevice: from its spec and Secrets to a gNMI target, and from the session to its status."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from cryptography import x509
from kubernetes.client import ApiException

from ..api.networkdevice import MAX_LISTED_PORTS, NetworkDeviceSpec
from ..conditions import NOT_STALLED, Cond, merge_conditions, stalled
from ..gnmi.client import Target
from ..intent.paths import GPath
from ..kube import Kube, NotFound
from .session import DeviceSession

# Models whose presence makes a device usable by this controller.
REQUIRED_MODELS = ("openconfig-interfaces", "openconfig-vlan", "openconfig-if-ip")


class DeviceConfigError(Exception):
    """The NetworkDevice cannot be turned into a target (missing Secret or key, bad contents); says which."""


class SecretUnavailable(Exception):
    """A Secret could not be read for a reason that says nothing about the Secret (the API server is down
    or overloaded, a timeout, our own token refused): keep what was built from it before and try again."""


# API answers that are not about the Secret: timeout, our own credentials refused, throttled.
_TRANSIENT_STATUSES = frozenset({401, 408, 429})


def is_definitive(exc: Exception) -> bool:
    """Whether a failed Secret read is the API server's answer about that Secret: it does not exist (404),
    we may not read it (403), or another 4xx. Anything else (no connection, a timeout, 5xx, 429, 401, an
    unexpected error) is transient: it may well succeed on the next try."""
    if isinstance(exc, NotFound):
        return True
    if isinstance(exc, ApiException) and isinstance(exc.status, int):
        return 400 <= exc.status < 500 and exc.status not in _TRANSIENT_STATUSES
    return False


async def _read_secret(kube: Kube, namespace: str, name: str) -> dict[str, bytes]:
    try:
        return await kube.read_secret(namespace, name)
    except Exception as exc:
        if is_definitive(exc):
            raise DeviceConfigError(f"cannot read Secret {namespace}/{name}: {_short(exc)}") from None
        raise SecretUnavailable(f"cannot read Secret {namespace}/{name} for now: {_short(exc)}") from None


async def target_for(spec: NetworkDeviceSpec, kube: Kube) -> Target:
    """The gNMI target the spec and its Secrets describe. Raises DeviceConfigError when they are wrong
    (a definitive answer: fix the configuration), SecretUnavailable when a Secret cannot be read now."""
    ref = spec.credentialsSecretRef
    creds = await _read_secret(kube, ref.namespace, ref.name)
    missing = [k for k in ("username", "password") if k not in creds]
    if missing:
        raise DeviceConfigError(f"Secret {ref.namespace}/{ref.name} lacks key(s) {', '.join(missing)}")
    ca: bytes | None = None
    if spec.tls.caSecretRef is not None:
        ca_ref = spec.tls.caSecretRef
        ca_data = await _read_secret(kube, ca_ref.namespace, ca_ref.name)
        if "ca.crt" not in ca_data:
            raise DeviceConfigError(f"Secret {ca_ref.namespace}/{ca_ref.name} lacks key ca.crt")
        ca = ca_data["ca.crt"]
        _check_pem_certificates(ca, ca_ref.namespace, ca_ref.name)
    return Target(
        address=spec.address,
        port=spec.port,
        username=_text(creds, "username", ref.namespace, ref.name),
        password=_text(creds, "password", ref.namespace, ref.name),
        insecure=spec.tls.insecure,
        ca_pem=ca,
        server_name=spec.tls.serverName,
        timeout=float(spec.timeoutSeconds),
        encoding=spec.encoding,
        reports_oper_status=spec.reportsOperStatus,
    )


_FAQ_LINK = re.compile(r"\s*See https?://\S+ for more details\.")  # in cryptography's messages


def _check_pem_certificates(data: bytes, namespace: str, name: str) -> None:
    """gRPC reports a CA it cannot use only as a failed handshake; say what is wrong instead."""
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError as exc:
        detail = " ".join(_FAQ_LINK.sub("", str(exc)).split())[:200] or type(exc).__name__
        raise DeviceConfigError(f"Secret {namespace}/{name} key ca.crt holds no PEM certificate: {detail}") from None


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
    lines = str(reason or exc).splitlines()
    return lines[0][:200] if lines and lines[0] else type(exc).__name__


_UNREACHABLE_ADVICE = {
    "Unreachable": "check spec.address and that the device is up and serves gNMI; the controller keeps retrying",
    "Unauthenticated": "fix the credentials in the Secret spec.credentialsSecretRef names",
}


_INTERFACES = GPath.parse("interfaces")


def port_names(session: DeviceSession | None) -> list[str] | None:
    """The interface names the device reports (its subscription's view, once in sync), sorted; None while
    unknown (no session, not synced yet) or when there are more than MAX_LISTED_PORTS."""
    if session is None or not session.synced:
        return None
    names = sorted(
        {v for e in session.leaves.children(_INTERFACES) if e.name == "interface" for k, v in e.keys if k == "name"}
    )
    return names if len(names) <= MAX_LISTED_PORTS else None


def device_status(
    generation: int,
    current: dict[str, Any],
    session: DeviceSession | None,
    config_error: str | None,
    services: int,
    now: dt.datetime,
    waiting: str | None = None,
    ports: list[str] | None = None,
) -> dict[str, Any]:
    """`waiting`: why no target could be built yet although nothing says the configuration is wrong
    (a Secret that cannot be read for now); shown only while there is no session. `ports`: the device's
    interface names (port_names); None keeps what the status listed (a disconnected device keeps its ports)."""
    conds: list[Cond]
    caps_status: dict[str, Any] | None = None
    if config_error is not None:
        conds = [
            Cond("Ready", "False", "InvalidConfiguration", config_error),
            Cond("Reachable", "Unknown", "InvalidConfiguration", config_error),
            stalled("InvalidConfiguration", f"{config_error}; fix spec or the Secret it names"),
        ]
    elif session is None and waiting is not None:
        conds = [
            Cond("Ready", "Unknown", "WaitingForSecret", waiting),
            Cond("Reachable", "Unknown", "WaitingForSecret", waiting),
        ]
    elif session is None or (not session.connected and session.error is None):
        conds = [Cond("Ready", "Unknown", "Connecting", ""), Cond("Reachable", "Unknown", "Connecting", "")]
    elif not session.connected:
        assert session.error is not None
        reason = "Unauthenticated" if session.error.unauthenticated else "Unreachable"
        conds = [
            Cond("Ready", "False", reason, session.error.message),
            Cond("Reachable", "False", reason, session.error.message),
            stalled(reason, f"{session.error.message}; {_UNREACHABLE_ADVICE[reason]}"),
        ]
    else:
        caps = session.capabilities
        names = {m[0] for m in caps.models} if caps else set()
        missing = [m for m in REQUIRED_MODELS if m not in names]
        reach = Cond("Reachable", "True", "Connected", f"gNMI {caps.gnmi_version if caps else '?'}")
        if missing:
            lacks = f"device lacks {', '.join(missing)}"
            advice = "; upgrade the device's software or remove it from the fleet"
            conds = [Cond("Ready", "False", "MissingModels", lacks), reach, stalled("MissingModels", lacks + advice)]
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
    if not any(c.type == "Stalled" for c in conds):
        conds.append(NOT_STALLED)
    status: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": merge_conditions(current.get("conditions"), conds, generation, now),
        "services": services,
    }
    if caps_status is not None:
        status["capabilities"] = caps_status
    if session is not None and session.connected:
        status["encoding"] = session.encoding
    listed = ports if ports is not None else current.get("ports")
    if listed:
        status["ports"] = list(listed)
    return status
