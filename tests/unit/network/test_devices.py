"""From a NetworkDevice's spec and Secrets to a gNMI target: which failures are the device's configuration
(InvalidConfiguration) and which only mean "not now" (the API server is down: keep the session). Pure
logic on a fake Kube: no API server, no device."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any
from unittest.mock import patch

import pytest
from kubernetes.client import ApiException
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError, ReadTimeoutError

from controller.api.networkdevice import MAX_LISTED_PORTS, NetworkDeviceSpec
from controller.gnmi.client import Target
from controller.intent import GPath
from controller.kube import NotFound, Ref
from controller.network.devices import (
    DeviceConfigError,
    SecretUnavailable,
    device_status,
    is_definitive,
    port_names,
    target_for,
)
from controller.network.leafcache import LeafCache
from controller.runtime import Controller, DeviceRecord
from controller.settings import Settings
from devicesim.certs import CertAuthority

NS = "telco-system"
CA_PEM = CertAuthority.generate().pem
GARBAGE_CA = b"-----BEGIN CERTIFICATE-----\nnot a cert\n-----END CERTIFICATE-----\n"


class FakeKube:
    """Secrets by (namespace, name); a Secret whose value is an exception raises it when read."""

    def __init__(self, secrets: dict[str, dict[str, bytes] | Exception]) -> None:
        self.secrets = secrets
        self.reads = 0

    async def read_secret(self, namespace: str, name: str) -> dict[str, bytes]:
        self.reads += 1
        found = self.secrets.get(name, NotFound("Not Found"))
        if isinstance(found, Exception):
            raise found
        return found

    def close(self) -> None:
        pass


def spec(ca: bool = True) -> NetworkDeviceSpec:
    tls: dict[str, Any] = {"serverName": "pe1"}
    if ca:
        tls["caSecretRef"] = {"namespace": NS, "name": "pe1-ca"}
    return NetworkDeviceSpec.model_validate(
        {
            "address": "127.0.0.1",
            "port": 9339,
            "credentialsSecretRef": {"namespace": NS, "name": "pe1-creds"},
            "tls": tls,
        }
    )


CREDS = {"username": b"admin", "password": b"secret"}


def secrets(creds: dict[str, bytes] | Exception = CREDS, ca: dict[str, bytes] | Exception | None = None) -> FakeKube:
    return FakeKube({"pe1-creds": creds, "pe1-ca": {"ca.crt": CA_PEM} if ca is None else ca})


def build(kube: FakeKube, with_ca: bool = True) -> Target:
    return asyncio.run(target_for(spec(with_ca), kube))  # type: ignore[arg-type]


def refused() -> MaxRetryError:
    """What the kubernetes client raises while the API server is down (connection refused)."""
    cause = NewConnectionError(None, "Failed to establish a new connection: [Errno 111] Connection refused")  # type: ignore[arg-type]
    return MaxRetryError(None, "/api/v1/namespaces/telco-system/secrets/pe1-creds", cause)  # type: ignore[arg-type]


DEFINITIVE = {
    "not-found": NotFound("Not Found"),
    "forbidden": ApiException(status=403, reason="Forbidden"),
    "bad-request": ApiException(status=400, reason="Bad Request"),
}
TRANSIENT = {
    "connection-refused": refused(),
    "connection-reset": ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
    "read-timeout": ReadTimeoutError(None, "/api", "Read timed out."),  # type: ignore[arg-type]
    "timeout": TimeoutError(),
    "os-error": ConnectionRefusedError(111, "Connection refused"),
    "internal-error": ApiException(status=500, reason="Internal Server Error"),
    "unavailable": ApiException(status=503, reason="Service Unavailable"),
    "gateway-timeout": ApiException(status=504, reason="Gateway Timeout"),
    "throttled": ApiException(status=429, reason="Too Many Requests"),
    "request-timeout": ApiException(status=408, reason="Request Timeout"),
    "our-token-refused": ApiException(status=401, reason="Unauthorized"),
    "no-status": ApiException(status=0, reason="SSLError"),
    "pool-closed": RuntimeError("cannot schedule new futures after shutdown"),
}


@pytest.mark.parametrize("exc", DEFINITIVE.values(), ids=DEFINITIVE.keys())
def test_the_api_servers_answer_about_a_secret_is_definitive(exc: Exception) -> None:
    assert is_definitive(exc)


@pytest.mark.parametrize("exc", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_failures_that_say_nothing_about_the_secret_are_transient(exc: Exception) -> None:
    assert not is_definitive(exc)


def test_a_readable_configuration_gives_the_target() -> None:
    target = build(secrets())
    assert (target.username, target.password, target.ca_pem, target.server_name) == ("admin", "secret", CA_PEM, "pe1")
    assert build(secrets(), with_ca=False).ca_pem is None


@pytest.mark.parametrize("which", ["creds", "ca"])
@pytest.mark.parametrize("exc", DEFINITIVE.values(), ids=DEFINITIVE.keys())
def test_a_definitive_answer_is_a_configuration_error_naming_the_secret(exc: Exception, which: str) -> None:
    kube = secrets(creds=exc) if which == "creds" else secrets(ca=exc)
    with pytest.raises(DeviceConfigError, match=f"cannot read Secret {NS}/pe1-{which}: "):
        build(kube)


@pytest.mark.parametrize("which", ["creds", "ca"])
@pytest.mark.parametrize("exc", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_a_transient_failure_is_not_a_configuration_error(exc: Exception, which: str) -> None:
    kube = secrets(creds=exc) if which == "creds" else secrets(ca=exc)
    with pytest.raises(SecretUnavailable, match=f"cannot read Secret {NS}/pe1-{which} for now: ") as info:
        build(kube)
    assert not isinstance(info.value, DeviceConfigError)


def test_missing_keys_and_bad_contents_are_configuration_errors() -> None:
    with pytest.raises(DeviceConfigError, match=f"Secret {NS}/pe1-creds lacks key\\(s\\) password"):
        build(secrets(creds={"username": b"admin"}))
    with pytest.raises(DeviceConfigError, match=f"Secret {NS}/pe1-ca lacks key ca.crt"):
        build(secrets(ca={"tls.crt": CA_PEM}))
    with pytest.raises(DeviceConfigError, match=f"Secret {NS}/pe1-creds key password is not printable ASCII"):
        build(secrets(creds={"username": b"admin", "password": b"s\xffcret"}))


@pytest.mark.parametrize(
    "data",
    [GARBAGE_CA, b"garbage", b"", b"\xff\xfe", CA_PEM[:60] + CA_PEM[-30:]],
    ids=["pem-framed-garbage", "text", "empty", "binary", "truncated"],
)
def test_a_ca_that_holds_no_certificate_is_a_configuration_error_naming_secret_and_key(data: bytes) -> None:
    with pytest.raises(DeviceConfigError, match=f"^Secret {NS}/pe1-ca key ca.crt holds no PEM certificate: .+") as info:
        build(secrets(ca={"ca.crt": data}))
    assert "https://" not in str(info.value)  # cryptography's FAQ link is left out


def test_a_ca_bundle_is_accepted() -> None:
    bundle = CA_PEM + CertAuthority.generate().pem
    assert build(secrets(ca={"ca.crt": bundle})).ca_pem == bundle


# -- Controller.refresh_device: what a transient failure leaves alone --------------------------------


class FakeSession:
    """What device_status reads of a DeviceSession; started and closed without any network I/O."""

    connected = True
    synced = True
    error = None
    capabilities = None
    encoding = "JSON"

    def __init__(self, name: str = "pe1", target: Target | None = None, **callbacks: Any) -> None:
        self.name, self.target = name, target
        self.leaves = LeafCache()

    def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


def device_body() -> dict[str, Any]:
    return {
        "metadata": {"name": "pe1", "generation": 1, "uid": "u1"},
        "spec": spec().model_dump(mode="json", exclude_none=True),
    }


def refresh(kube: FakeKube, target: Target | None, config_error: str | None = None) -> dict[str, Any]:
    """Refresh device pe1 whose record holds `target` (and a session when there is one); what happened."""

    async def main() -> dict[str, Any]:
        ctl = Controller(Settings(), kube=kube)  # type: ignore[arg-type]
        happened: dict[str, Any] = {"detached": 0, "attached": [], "statuses": []}
        session = FakeSession()
        if target is not None:
            ctl.network.sessions["pe1"] = session  # type: ignore[assignment]

        def detach(name: str) -> FakeSession | None:
            happened["detached"] += 1
            return ctl.network.sessions.pop(name, None)  # type: ignore[return-value]

        def attach(session: FakeSession) -> None:
            happened["attached"].append(session)

        def submit(ref: Ref, desired: dict[str, Any], stored: dict[str, Any] | None) -> bool:
            happened["statuses"].append(desired)
            return True

        ctl.network.take_session = detach  # type: ignore[method-assign,assignment]
        ctl.network.attach_session = attach  # type: ignore[method-assign,assignment]
        ctl.writer.submit = submit  # type: ignore[method-assign]
        record = ctl.devices["pe1"] = DeviceRecord("pe1", device_body(), target=target, config_error=config_error)
        with patch("controller.runtime.DeviceSession", FakeSession):
            await ctl.refresh_device("pe1")
        happened["record"] = record
        happened["session kept"] = ctl.network.sessions.get("pe1") is session
        return happened

    return asyncio.run(main())


TARGET = build(secrets())


@pytest.mark.parametrize(
    "exc", [refused(), ApiException(status=503, reason="Service Unavailable")], ids=["refused", "503"]
)
def test_a_transient_failure_keeps_the_target_the_session_and_the_status(exc: Exception) -> None:
    happened = refresh(secrets(creds=exc), TARGET)
    record = happened["record"]
    assert record.target == TARGET and record.config_error is None
    assert happened["session kept"] and happened["detached"] == 0 and happened["attached"] == []
    assert happened["statuses"] == []  # the device status is not touched
    assert record.secret_unavailable and "pe1-creds" in record.secret_unavailable


def test_a_transient_failure_keeps_a_known_configuration_error() -> None:
    happened = refresh(
        secrets(creds=refused()), None, config_error="cannot read Secret telco-system/pe1-creds: Not Found"
    )
    assert happened["record"].config_error == "cannot read Secret telco-system/pe1-creds: Not Found"
    assert happened["detached"] == 0
    if happened["statuses"]:
        assert happened["statuses"][-1]["conditions"][0]["reason"] == "InvalidConfiguration"


def test_a_device_that_never_had_a_target_shows_it_is_waiting_not_invalid() -> None:
    happened = refresh(secrets(creds=refused()), None)
    assert happened["record"].target is None and happened["record"].config_error is None
    ready = next(c for c in happened["statuses"][-1]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("Unknown", "WaitingForSecret")
    assert f"cannot read Secret {NS}/pe1-creds for now" in ready["message"]


def test_a_definitive_answer_still_detaches_the_session() -> None:
    happened = refresh(secrets(creds=NotFound("Not Found")), TARGET)
    record = happened["record"]
    assert record.target is None and record.config_error == f"cannot read Secret {NS}/pe1-creds: Not Found"
    assert happened["detached"] == 1 and not happened["session kept"]
    ready = next(c for c in happened["statuses"][-1]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidConfiguration")


def test_recovery_after_a_transient_failure_clears_the_waiting_state() -> None:
    happened = refresh(secrets(), None)
    record = happened["record"]
    assert record.target == TARGET and record.secret_unavailable is None
    assert [s.target for s in happened["attached"]] == [TARGET]


def test_waiting_is_shown_only_without_a_session_or_a_configuration_error() -> None:
    now = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)

    def ready(**kwargs: Any) -> tuple[str, str]:
        args: dict[str, Any] = {"session": None, "config_error": None, "waiting": "cannot read Secret x/y for now"}
        status = device_status(generation=1, current={}, services=0, now=now, **{**args, **kwargs})
        cond = next(c for c in status["conditions"] if c["type"] == "Ready")
        return cond["status"], cond["reason"]

    assert ready() == ("Unknown", "WaitingForSecret")
    assert ready(config_error="bad") == ("False", "InvalidConfiguration")
    assert ready(session=FakeSession()) == ("False", "MissingModels")
    assert ready(waiting=None) == ("Unknown", "Connecting")


# -- the ports a device reports, listed in its status (admission refuses others) ---------------------------


def synced_with(*paths: str, synced: bool = True) -> FakeSession:
    session = FakeSession()
    session.synced = synced
    for path in paths:
        session.leaves.set(GPath.parse(path), "x")
    return session


def test_port_names_are_the_interfaces_the_device_reports_once_in_sync() -> None:
    session = synced_with(
        "interfaces/interface[name=Ethernet2]/config/name",
        "interfaces/interface[name=Ethernet1]/state/oper-status",
        "interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=100]/config/index",
        "network-instances/network-instance[name=red]/config/name",
    )
    assert port_names(session) == ["Ethernet1", "Ethernet2"]  # type: ignore[arg-type]
    assert port_names(synced_with("interfaces/interface[name=Ethernet1]/config/name", synced=False)) is None  # type: ignore[arg-type]
    assert port_names(None) is None


def test_a_device_with_more_ports_than_a_status_lists_lists_none() -> None:
    many = [f"interfaces/interface[name=et{i}]/config/name" for i in range(MAX_LISTED_PORTS + 1)]
    assert port_names(synced_with(*many)) is None  # type: ignore[arg-type]
    assert len(port_names(synced_with(*many[:MAX_LISTED_PORTS])) or []) == MAX_LISTED_PORTS  # type: ignore[arg-type]


def test_the_status_lists_the_ports_and_keeps_them_while_they_are_unknown() -> None:
    now = dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    listed = device_status(1, {}, FakeSession(), None, 0, now, ports=["Ethernet1", "Ethernet2"])  # type: ignore[arg-type]
    assert listed["ports"] == ["Ethernet1", "Ethernet2"]
    disconnected = FakeSession()
    disconnected.connected, disconnected.synced = False, False
    kept = device_status(1, listed, disconnected, None, 0, now, ports=None)  # type: ignore[arg-type]
    assert kept["ports"] == ["Ethernet1", "Ethernet2"]
    assert "ports" not in device_status(1, {}, None, None, 0, now)


def test_a_change_of_the_service_count_alone_is_written_after_the_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    # In a burst of applies every pass changes a device's status.services: that alone waits
    # DEVICE_COUNT_DELAY_SECONDS and is written once, with the count as it is then; other changes go at once.
    monkeypatch.setattr("controller.runtime.DEVICE_COUNT_DELAY_SECONDS", 0.2)

    async def main() -> list[dict[str, Any]]:
        ctl = Controller(Settings(), kube=secrets())  # type: ignore[arg-type]
        written: list[dict[str, Any]] = []
        stored: dict[str, Any] = {}

        def submit(ref: Ref, desired: dict[str, Any], current: dict[str, Any] | None) -> bool:
            written.append(desired)
            stored.clear()
            stored.update(desired)
            return True

        ctl.writer.submit = submit  # type: ignore[method-assign]
        ctl.writer.latest = lambda ref, status: dict(stored)  # type: ignore[method-assign]
        ctl.network.sessions["pe1"] = FakeSession()  # type: ignore[assignment]
        ctl.devices["pe1"] = DeviceRecord("pe1", device_body())
        counts = iter([0, 1, 2, 3])
        ctl.network.members = lambda device: [None] * next(counts)  # type: ignore[method-assign,misc]
        ctl.publish_device("pe1")  # first status: written at once (0 services)
        ctl.publish_device("pe1")  # 1: only the count changed, waits
        ctl.publish_device("pe1")  # 2: still waiting, one timer
        assert [w["services"] for w in written] == [0]
        await asyncio.sleep(0.4)  # the delayed write, with the count then (3)
        await ctl.close()
        return written

    assert [w["services"] for w in asyncio.run(main())] == [0, 3]
