"""Hostile input that exposed controller bugs (the passing corpus is in
tests/integration/test_hostile_input.py). Tests marked `bug` reproduce a bug listed in
docs/reliability.md and fail until it is fixed; the others are regressions of fixed ones. All run in
`make reliability` only."""

from __future__ import annotations

import base64
import contextlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes.client import ApiException

from tests.reliability.rig import SYSTEM, Rig, condition, ep, rig, unique, wait_for

pytestmark = pytest.mark.full

DEVICES = ("hb-r1",)
RESYNC = 5.0


@pytest.fixture(scope="module")
def r(kubeconfig: Path, crds: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(kubeconfig, tmp_path_factory.mktemp("hostile-bugs"), "hb", DEVICES) as the_rig:
        yield the_rig


def raw_secret(r: Rig, name: str, data: dict[str, bytes]) -> None:
    with contextlib.suppress(ApiException):
        r.api.core.delete_namespaced_secret(name, SYSTEM)
    body = {"metadata": {"name": name, "namespace": SYSTEM},
            "data": {k: base64.b64encode(v).decode() for k, v in data.items()}}
    r.api.core.create_namespaced_secret(SYSTEM, body)


def aimed_at_r1(r: Rig, name: str, secret: str | None = None, ca: str | None = None) -> dict:  # type: ignore[type-arg]
    body = r.device("hb-r1")
    body["metadata"]["name"] = name
    body["spec"]["tls"]["serverName"] = "hb-r1"
    if secret:
        body["spec"]["credentialsSecretRef"]["name"] = secret
    if ca:
        body["spec"]["tls"]["caSecretRef"]["name"] = ca
    return body


def device_cond(r: Rig, name: str, type_: str = "Ready") -> dict | None:  # type: ignore[type-arg]
    return condition(r.api.get("networkdevices", name), type_)


def test_non_utf8_credentials_are_reported_and_do_not_stop_the_resync(r: Rig) -> None:
    """Regression of bug 7 (docs/reliability.md), fixed in d148b55."""
    # A device whose Secret does not exist yet: only the periodic resync re-reads Secrets.
    r.api.apply(aimed_at_r1(r, "hb-later", secret="hb-later-creds"))
    wait_for("hb-later InvalidConfiguration", lambda: (c := device_cond(r, "hb-later")) and
             c["reason"] == "InvalidConfiguration", 20)
    raw_secret(r, "hb-latin1", {"username": b"adm\xffin", "password": b"admin"})
    r.api.apply(aimed_at_r1(r, "hb-latin1", secret="hb-latin1"))
    try:
        time.sleep(RESYNC + 2)  # a resync pass meets the bad Secret
        r.api.put_secret(SYSTEM, "hb-later-creds", {"username": "admin", "password": r.password})
        fixed = _ready_soon(r, "hb-later")
        bad = device_cond(r, "hb-latin1")
        problems = []
        if not fixed:
            problems.append(f"the periodic resync stopped: hb-later stayed {device_cond(r, 'hb-later')}")
        if not bad or bad["reason"] != "InvalidConfiguration" or "hb-latin1" not in bad["message"]:
            problems.append(f"hb-latin1 has no clear condition: {bad}")
        if r.tracebacks():
            problems.append("traceback in the log:\n" + r.tracebacks()[0][:600])
        assert not problems, "\n".join(problems)
    finally:
        for name in ("hb-later", "hb-latin1"):
            r.api.delete("networkdevices", name)


def _ready_soon(r: Rig, name: str) -> bool:
    try:
        wait_for(f"{name} Ready", lambda: (c := device_cond(r, name)) and c["status"] == "True", 3 * RESYNC, 0.2)
    except AssertionError:
        return False
    return True


@pytest.mark.parametrize(
    "creds",
    [
        {"username": b"admin", "password": b"adm\nin"},
        {"username": b"admin", "password": b"ad\x00min"},
        {"username": "\u0430dmin".encode(), "password": b"admin"},  # Cyrillic a
    ],
    ids=["newline", "nul", "cyrillic"],
)
def test_credentials_grpc_cannot_send_are_a_clear_configuration_error(r: Rig, creds: dict[str, bytes]) -> None:
    """Regression of bug 8 (docs/reliability.md), fixed in d148b55."""
    name = unique("hb-meta")
    raw_secret(r, name, creds)
    r.api.apply(aimed_at_r1(r, name, secret=name))
    try:
        cond = wait_for(f"{name} not Ready", lambda: (c := device_cond(r, name)) and c["status"] == "False" and c, 20)
        time.sleep(2)
        version = r.api.get("networkdevices", name)["metadata"]["resourceVersion"]  # type: ignore[index]
        before = len(r.tracebacks())
        time.sleep(20)
        after = r.api.get("networkdevices", name)
        cond = condition(after, "Ready")
        problems = []
        if cond is None or cond["reason"] != "InvalidConfiguration" or name not in cond["message"]:
            problems.append(f"no clear condition naming the Secret: {cond}")
        if "object at 0x" in str(cond):
            problems.append("the condition quotes gRPC internals")
        if after["metadata"]["resourceVersion"] != version:  # type: ignore[index]
            problems.append("the status keeps being rewritten while nothing changes")
        if len(r.tracebacks()) > before or before:
            problems.append(f"{len(r.tracebacks())} tracebacks in the log, e.g.:\n{r.tracebacks()[-1][:500]}")
        assert not problems, "\n".join(problems)
    finally:
        r.api.delete("networkdevices", name)


def test_a_service_on_a_misconfigured_device_names_the_real_problem(r: Rig) -> None:
    r.api.apply(aimed_at_r1(r, "hb-noconfig", secret="hb-absent-secret"))
    name = unique("on-bad")
    r.apply(r.service(name, [ep("hb-noconfig", "Ethernet1", 100)]))
    try:
        cond = r.wait_cond(name, "Progressing", "True")
        assert "does not exist" not in cond["message"] and "hb-absent-secret" in cond["message"], (
            f"NetworkDevice hb-noconfig exists (its problem: Secret hb-absent-secret is missing); the service "
            f"says: {cond['reason']}: {cond['message']}"
        )
    finally:
        r.api.delete("networkdevices", "hb-noconfig")
        r.delete(name)
        r.gone(name)


def test_a_garbage_ca_is_a_configuration_error_naming_the_secret(r: Rig) -> None:
    """Regression of bug 11 (docs/reliability.md): it was `Unreachable: Failed to create security handshaker`."""
    raw_secret(r, "hb-garbage-ca", {"ca.crt": b"-----BEGIN CERTIFICATE-----\nnot a cert\n-----END CERTIFICATE-----\n"})
    r.api.apply(aimed_at_r1(r, "hb-garbage", ca="hb-garbage-ca"))
    try:
        cond = wait_for("hb-garbage not Ready", lambda: (c := device_cond(r, "hb-garbage")) and
                        c["status"] == "False" and c, 20)
        assert cond["reason"] == "InvalidConfiguration" and "hb-garbage-ca" in cond["message"], cond
    finally:
        r.api.delete("networkdevices", "hb-garbage")


def test_a_ready_service_keeps_its_claim_against_a_same_second_contender(r: Rig) -> None:
    """Regression (found by the hostile corpus): precedence is creationTimestamp (whole seconds), then
    namespace/name, so a contender whose name sorts first, created in the same second as an already
    configured service, took the device over from it. A configured claim must win."""
    for attempt in range(5):
        holder, contender = unique("zz-holder"), unique("aa-contender")
        while time.time() % 1 > 0.2:  # start early in a second, so both fit in it
            time.sleep(0.01)
        r.apply(r.service(holder, [ep("hb-r1", "Ethernet2", 150 + attempt)]))
        r.ready(holder, timeout=5)
        r.apply(r.service(contender, [ep("hb-r1", "Ethernet2", 150 + attempt, third=2)]))
        same_second = (r.get(holder) or {})["metadata"]["creationTimestamp"] == (
            r.get(contender) or {})["metadata"]["creationTimestamp"]
        if same_second:
            break
        r.delete(contender)
        r.delete(holder)
        r.gone(contender)
        r.gone(holder)
    else:
        pytest.fail("could not create both services within one second in 5 attempts", pytrace=False)
    try:
        time.sleep(2)
        on_device = {s[2].rsplit("/", 1)[1] for s in r.managed("hb-r1")["subinterfaces"]
                     if (s[0], s[1]) == ("Ethernet2", 150 + attempt)}
        held = r.cond(holder)
        assert on_device == {holder} and held and held["status"] == "True", (
            f"{holder} was Ready and configured before {contender} existed; now the device holds "
            f"{on_device} and {holder} says {held and (held['reason'], held['message'])}"
        )
    finally:
        for name in (contender, holder):
            r.delete(name)
        for name in (contender, holder):
            r.gone(name)
