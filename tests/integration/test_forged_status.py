"""Status is the controller's (issue 19, case 9): forged status against the real API server, the running
controller, devicesim and a real CloudEvents receiver.

Each case forges a status with `kubectl patch --subresource=status` -- what any holder of */status can do
-- and checks the controller rewrites it from its own records (Warning Event StatusForged), that a forged
billing event never reaches the sink, both while the controller runs and across a restart (proof of
origin: the entry is quarantined, reported and kept), and that an operator's force-release completes a
deletion a billing error or a quarantined entry holds, leaving an Event.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.billing.proof import key_id
from tests.harness import Api, ControllerProcess, condition, is_ready, wait_for
from tests.integration import test_commerce as commerce
from tests.integration.test_api import SERVICE, variant
from tests.integration.test_commerce import (
    DEVICES,
    adhoc_invoice,
    controller_now,
    daily,
    money,
    offering,
    source_of,
    subscription,
    ts,
    unique,
    wait_state,
)
from tests.kube import Kubectl
from tests.support.cloudevents_receiver import CloudEventsReceiver

pytestmark = pytest.mark.cluster
# The commerce module's fixtures: a devicesim fleet, a CloudEvents receiver and a controller of this module.
fleet, receiver, clock_file, web_port, api, controller, ns, admin = (
    commerce.fleet,
    commerce.receiver,
    commerce.clock_file,
    commerce.web_port,
    commerce.api,
    commerce.controller,
    commerce.ns,
    commerce.admin,
)
FORCE_RELEASE = "telco.intent.dev/force-release"


def forge(kubectl: Kubectl, kind: str, namespace: str, name: str, status: dict[str, Any]) -> None:
    """A status write by someone other than the controller, through the status subresource."""
    kubectl.run(
        "patch",
        kind,
        name,
        "-n",
        namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": status}),
    )


def events_of(api: Api, namespace: str, name: str, reason: str) -> list[Any]:
    return [e for e in api.events(namespace, name) if e.reason == reason]


def wait_event_reason(api: Api, namespace: str, name: str, reason: str, timeout: float = 20) -> Any:
    found = wait_for(f"Event {reason} on {namespace}/{name}", lambda: events_of(api, namespace, name, reason), timeout)
    return found[-1]


def stays(what: str, probe: Callable[[], bool], seconds: float) -> None:
    """`probe` holds for `seconds` (checked every 0.2 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert probe(), what
        time.sleep(0.2)


def ready_cond(api: Api, plural: str, namespace: str | None, name: str) -> dict[str, Any] | None:
    return condition(api.get(plural, name, namespace), "Ready")


def test_a_forged_ready_on_a_service_whose_port_does_not_exist_is_rewritten(
    api: Api, kubectl: Kubectl, controller: ControllerProcess, ns: str
) -> None:
    body = variant(variant(SERVICE, "metadata.namespace", ns), "metadata.name", "no-port")
    endpoint = {"device": DEVICES[0], "port": "Ethernet99", "vlanId": 700, "ipv4Address": "100.70.0.1/30"}
    body = variant(body, "spec.endpoints.0", endpoint)
    api.apply(body)
    before = wait_for(
        "no-port Ready=False",
        lambda: (c := ready_cond(api, "networkservices", ns, "no-port")) and c["status"] == "False" and c,
        30,
    )
    forged = {**before, "status": "True", "reason": "Configured", "message": "forged"}
    forge(kubectl, "networkservice", ns, "no-port", {"conditions": [forged], "state": "active"})
    after = wait_for(
        "the forged Ready rewritten",
        lambda: (c := ready_cond(api, "networkservices", ns, "no-port")) and c["status"] == "False" and c,
        20,
    )
    assert after["reason"] == before["reason"]
    assert (api.get("networkservices", "no-port", ns) or {})["status"].get("state") != "active"
    message = wait_event_reason(api, ns, "no-port", "StatusForged").message
    assert "status.conditions" in message and "status.state" in message
    stays(
        "the rewrite holds",
        lambda: (ready_cond(api, "networkservices", ns, "no-port") or {}).get("status") == "False",
        3,
    )
    api.delete("networkservices", "no-port", ns)


def draft_invoice(api: Api, clock_file: Any, ns: str, name: str, device: str, port: str, vlan: int) -> dict[str, Any]:
    """A draft offCycle Invoice (its period ends after the test) of an active subscription's account."""
    off = unique(f"fs-{name}")
    account = f"acct-forge-{name}"
    api.apply(offering(off, daily()))
    api.apply(subscription(ns, name, off, account, device, port, vlan))
    sub = wait_state(api, ns, name, "active")
    start = ts(sub["status"]["startDate"]) - timedelta(minutes=1)
    end = (controller_now(clock_file) + timedelta(hours=1)).replace(microsecond=0)
    api.apply(adhoc_invoice(ns, f"{name}-draft", account, start, end))
    return wait_for(
        "the draft computed",
        lambda: (i := api.get("invoices", f"{name}-draft", ns)) and (i.get("status") or {}).get("amountDue") and i,
        30,
    )


def test_a_draft_invoice_forged_to_settled_with_nothing_due_is_rewritten(
    api: Api, kubectl: Kubectl, controller: ControllerProcess, clock_file: Any, ns: str
) -> None:
    draft = draft_invoice(api, clock_file, ns, "inv", DEVICES[0], "Ethernet7", 702)
    genuine = draft["status"]
    assert genuine["state"] != "settled"
    forge(kubectl, "invoice", ns, "inv-draft", {"state": "settled", "amountDue": money("0.00")})

    def restored() -> dict[str, Any] | None:
        status = (api.get("invoices", "inv-draft", ns) or {}).get("status") or {}
        return status if status.get("state") == genuine["state"] and status.get("amountDue") != money("0.00") else None

    wait_for("the forged settlement rewritten", restored, 20)
    wait_event_reason(api, ns, "inv-draft", "StatusForged")
    assert not events_of(api, ns, "inv-draft", "Settled"), "the forged settlement was adopted"
    stays("the draft stays unsettled", lambda: restored() is not None, 3)


def test_a_forged_active_state_on_an_order_for_a_missing_offering_is_rewritten(
    api: Api, kubectl: Kubectl, controller: ControllerProcess, ns: str
) -> None:
    api.apply(subscription(ns, "orphan", unique("fs-missing"), "acct-forge-orphan", DEVICES[0], "Ethernet8", 703))
    genuine = wait_for(
        "the order judged",
        lambda: (s := api.get("subscriptions", "orphan", ns)) and (s.get("status") or {}).get("state") and s,
        20,
    )["status"]["state"]
    assert genuine != "active"
    forge(kubectl, "subscription", ns, "orphan", {"state": "active"})
    wait_state(api, ns, "orphan", genuine, 20)
    wait_event_reason(api, ns, "orphan", "StatusForged")
    assert api.get("networkservices", "orphan", ns) is None  # nothing was built on the forged state


def forged_entry(namespace: str, victim: str, event_id: str, key_file: Path) -> dict[str, Any]:
    """A charge of -99999.00 under another subscription's source, with a proof naming the controller's key
    (its id is no secret) but not made with it."""
    now = datetime.now(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    return {
        "id": event_id,
        "type": "dev.intent.telco.subscription.charge.period.v1",
        "source": source_of(namespace, victim),
        "subject": "acct-victim",
        "time": now,
        "data": {"amount": "-99999.00", "currency": "EUR"},
        "queuedAt": now,
        "proof": f"v1:{key_id(key_file.read_text().strip().encode())}:" + "0" * 64,
    }


def outbox(api: Api, namespace: str, name: str) -> dict[str, Any]:
    return ((((api.get("subscriptions", name, namespace) or {}).get("status") or {}).get("billing")) or {}).get(
        "outbox"
    ) or {}


def test_a_forged_outbox_entry_never_reaches_the_sink_while_running_or_after_a_restart(
    api: Api, kubectl: Kubectl, controller: ControllerProcess, receiver: CloudEventsReceiver, ns: str
) -> None:
    off = unique("fs-box")
    api.apply(offering(off))
    api.apply(subscription(ns, "box", off, "acct-forge-box", DEVICES[0], "Ethernet5", 704))
    wait_state(api, ns, "box", "active")
    wait_for("its activation delivered", lambda: not outbox(api, ns, "box").get("pending"), 30)
    counted = outbox(api, ns, "box").get("deliveredCount")

    # While it runs: the forged status is not the one the controller wrote; it is rewritten away.
    forge(
        kubectl,
        "subscription",
        ns,
        "box",
        {"billing": {"outbox": {"pending": [forged_entry(ns, "victim", "f-1", controller.signing_key_file)]}}},
    )
    wait_event_reason(api, ns, "box", "StatusForged")
    wait_for("the forged entry removed", lambda: not outbox(api, ns, "box").get("pending"), 20)

    # Across a restart the controller has no memory of its last write: the proof of origin decides.
    controller.stop()
    forge(
        kubectl,
        "subscription",
        ns,
        "box",
        {"billing": {"outbox": {"pending": [forged_entry(ns, "victim", "f-2", controller.signing_key_file)]}}},
    )
    controller.start()
    wait_for(f"NetworkDevice {DEVICES[0]} Ready", lambda: is_ready(api.get("networkdevices", DEVICES[0])), 30)
    quarantined = wait_for("f-2 quarantined", lambda: outbox(api, ns, "box").get("quarantined"), 30)
    assert [(q["id"], q["reason"]) for q in quarantined] == [("f-2", "BadProof")]
    assert not outbox(api, ns, "box").get("pending")
    assert "does not match" in wait_event_reason(api, ns, "box", "EventQuarantined").message
    delivered = condition(api.get("subscriptions", "box", ns), "BillingDelivered")
    assert delivered is not None and (delivered["status"], delivered["reason"]) == ("False", "Quarantined")
    time.sleep(2)  # several delivery rounds (TELCO_BILLING_RETRY_SECONDS=0.5)
    assert not [e for e in receiver.events if e.get_id() in ("f-1", "f-2")], "a forged entry was delivered"
    assert outbox(api, ns, "box").get("deliveredCount") == counted, "a forged entry was counted as delivered"

    # A quarantined entry holds the deletion (it may be genuine); the operator's step completes it.
    api.delete("subscriptions", "box", ns)
    held = wait_for(
        "the deletion held, and why",
        lambda: (c := condition(api.get("subscriptions", "box", ns), "Released")) and c["status"] == "False" and c,
        30,
    )
    assert held["reason"] == "Quarantined" and FORCE_RELEASE in held["message"]
    kubectl.run("annotate", "subscription", "box", "-n", ns, f"{FORCE_RELEASE}=forged entries inspected, not ours")
    wait_for("the Subscription gone", lambda: api.get("subscriptions", "box", ns) is None, 30)
    released = wait_event_reason(api, ns, "box", "ForceReleased")
    assert "forged entries inspected, not ours" in released.message and "f-2" in released.message
    assert "abandoned billing event" in controller.logs()


def test_force_release_is_refused_on_a_live_subscription(
    api: Api, kubectl: Kubectl, controller: ControllerProcess, ns: str
) -> None:
    """Honoured only on a terminating object: on a live one it is refused, said so, and changes nothing.
    (The hold by a billing error and its release: tests/unit/commerce/test_runtime.py; the hold by a
    quarantined entry and its release against the real API server: the outbox test above.)"""
    off = unique("fs-live")
    api.apply(offering(off))
    api.apply(subscription(ns, "live", off, "acct-forge-live", DEVICES[0], "Ethernet4", 705))
    wait_state(api, ns, "live", "active")
    kubectl.run("annotate", "subscription", "live", "-n", ns, f"{FORCE_RELEASE}=too early")
    refused = wait_event_reason(api, ns, "live", "ForceReleaseRefused")
    assert "only on a terminating object" in refused.message and FORCE_RELEASE in refused.message
    sub = api.get("subscriptions", "live", ns) or {}
    assert sub["status"]["state"] == "active" and "telco.intent.dev/cleanup" in sub["metadata"]["finalizers"]
    assert controller.alive()
    kubectl.run("annotate", "subscription", "live", "-n", ns, f"{FORCE_RELEASE}-")  # or the deletion would honour it


# --- neighbours: other kinds, other forged shapes -------------------------------------------------


@pytest.mark.parametrize(
    "forged",
    [
        pytest.param({"conditions": []}, id="conditions-removed"),
        pytest.param(
            {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "Forged",
                        "message": "forged",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ]
            },
            id="ready-false",
        ),
    ],
)
def test_a_forged_device_status_is_rewritten_from_its_session(
    api: Api, kubectl: Kubectl, controller: ControllerProcess, forged: dict[str, Any]
) -> None:
    name = DEVICES[1]
    wait_for(f"{name} Ready", lambda: is_ready(api.get("networkdevices", name)), 30)
    kubectl.run(
        "patch", "networkdevice", name, "--subresource=status", "--type=merge", "-p", json.dumps({"status": forged})
    )
    wait_for(f"{name} Ready again", lambda: is_ready(api.get("networkdevices", name)), 20)
    assert (ready_cond(api, "networkdevices", None, name) or {}).get("reason") != "Forged"


def test_a_forged_offering_status_is_rewritten(api: Api, kubectl: Kubectl, controller: ControllerProcess) -> None:
    off = unique("fs-off")
    api.apply(offering(off))
    wait_for(f"{off} Ready", lambda: is_ready(api.get("productofferings", off)), 20)
    kubectl.run(
        "patch",
        "productoffering",
        off,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"conditions": [], "activeSubscriptions": 999}}),
    )
    wait_for(f"{off} Ready again", lambda: is_ready(api.get("productofferings", off)), 20)
    assert (api.get("productofferings", off) or {})["status"].get("activeSubscriptions") != 999
    api.delete("productofferings", off)


def test_a_forged_invoice_outbox_entry_is_never_delivered(
    api: Api, kubectl: Kubectl, controller: ControllerProcess, receiver: CloudEventsReceiver, clock_file: Any, ns: str
) -> None:
    draft_invoice(api, clock_file, ns, "ibox", DEVICES[1], "Ethernet3", 706)
    entry = forged_entry(ns, "v", "f-inv", controller.signing_key_file)
    entry["type"] = "dev.intent.telco.invoice.issued.v1"
    kubectl.run(
        "patch",
        "invoice",
        "ibox-draft",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": {"outbox": {"pending": [entry]}}}),
    )
    wait_event_reason(api, ns, "ibox-draft", "StatusForged")
    wait_for(
        "the forged entry removed",
        lambda: (
            not (
                (((api.get("invoices", "ibox-draft", ns) or {}).get("status") or {}).get("outbox") or {}).get("pending")
            )
        ),
        20,
    )
    time.sleep(1.5)
    assert not [e for e in receiver.events if e.get_id() == "f-inv"]


def test_after_the_forgeries_the_controller_is_alive_quiet_and_sent_nothing_malformed(
    api: Api, controller: ControllerProcess, admin: Any
) -> None:
    assert controller.alive()
    logs = controller.logs()
    assert "Traceback" not in logs, logs[logs.index("Traceback") - 400 :][:3000]
    for name in DEVICES:
        stats = admin.stats(name)
        assert stats.get("set_failed", 0) == 0, (name, stats)
    # Bounded: no rewrite loop -- a quiet window costs (almost) no Set and no forgery report.
    before = {name: admin.stats(name)["set_rpcs"] for name in DEVICES}
    reports = controller.logs().count("changed by a writer other than the controller")
    time.sleep(6)  # more than one resync period (5 s)
    assert all(admin.stats(name)["set_rpcs"] - before[name] <= 2 for name in DEVICES)
    assert controller.logs().count("changed by a writer other than the controller") == reports
