"""Proof of origin of outbox entries: HMAC sign/verify, key rotation, and the quarantine rule."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controller.billing.events import BillingEvent
from controller.billing.outbox import MAX_QUARANTINED, Entry, Outbox
from controller.billing.proof import BAD_PROOF, UNKNOWN_KEY, UNSIGNED, Keyring, SigningKeyError

T = datetime(2026, 3, 1, tzinfo=UTC)
OLD = b"old-key-0123456789abcdef"
NEW = b"new-key-0123456789abcdef"
EVENT = BillingEvent(
    id="e1",
    type="dev.intent.telco.subscription.charge.period.v1",
    source="/apis/telco.intent.dev/v1alpha1/namespaces/acme/subscriptions/hq",
    subject="acct-1",
    time=T,
    data={"amount": "10.00", "currency": "EUR"},
)


def test_a_signed_event_verifies_and_every_signed_attribute_is_covered() -> None:
    ring = Keyring((NEW,))
    proof = ring.sign(EVENT)
    assert proof is not None and proof.startswith("v1:")
    assert ring.problem(EVENT, proof) is None
    for change in (
        {"id": "e2"},
        {"source": "/apis/telco.intent.dev/v1alpha1/namespaces/acme/subscriptions/other"},
        {"subject": "acct-2"},
        {"type": "dev.intent.telco.subscription.sla.credit.v1"},
        {"time": datetime(2026, 3, 2, tzinfo=UTC)},
        {"data": {"amount": "-99999.00", "currency": "EUR"}},
    ):
        assert ring.problem(dataclasses.replace(EVENT, **change), proof) == BAD_PROOF, change


@pytest.mark.parametrize(
    ("signer", "verifier", "proof_override", "expected"),
    [
        ((NEW,), (NEW,), None, None),
        ((OLD,), (NEW, OLD), None, None),  # rotation: the old key still verifies while it is listed
        ((OLD,), (NEW,), None, UNKNOWN_KEY),  # rotated away before its entries drained
        ((NEW,), (NEW,), "", UNSIGNED),  # written before signing existed, or by someone else
        ((NEW,), (NEW,), "v1:deadbeef", BAD_PROOF),
        ((NEW,), (NEW,), "v0:x:y", BAD_PROOF),
        ((NEW,), (), "", None),  # signing not configured: nothing is checked
    ],
)
def test_the_verdict_on_a_proof(
    signer: tuple[bytes, ...], verifier: tuple[bytes, ...], proof_override: str | None, expected: str | None
) -> None:
    proof = Keyring(signer).sign(EVENT) if proof_override is None else proof_override
    assert Keyring(verifier).problem(EVENT, proof) == expected


def test_the_key_file_is_one_key_per_line_and_a_bad_one_is_named(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"{NEW.decode()}\n\n{OLD.decode()}\n")
    assert Keyring.load(str(path)).keys == (NEW, OLD)
    assert Keyring.load(None).enabled is False
    path.write_text("short\n")
    with pytest.raises(SigningKeyError, match="line 1 has 5 bytes"):
        Keyring.load(str(path))
    with pytest.raises(SigningKeyError, match="cannot be read"):
        Keyring.load(str(tmp_path / "missing"))
    with pytest.raises(SigningKeyError, match="holds no key"):
        Keyring.parse("\n")


def test_the_outbox_signs_what_it_adds_and_quarantines_what_it_cannot_prove() -> None:
    ring = Keyring((NEW,))
    box = Outbox(keyring=ring).add([EVENT], T)
    assert box.pending[0].proof == ring.sign(EVENT)
    forged = dataclasses.replace(EVENT, id="forged", data={"amount": "-99999.00"})
    box = Outbox(pending=(*box.pending, Entry(forged, T, None)), keyring=ring)
    assert [e.event.id for e in box.deliverable()] == ["e1"]
    assert [e.id for e in box.take()] == ["e1"]
    checked, moved = box.quarantine(T)
    assert [(q.entry.event.id, q.reason) for q in moved] == [("forged", UNSIGNED)]
    assert checked.ids == ("e1",)
    assert checked.condition(T).reason == "Quarantined"
    # It survives a round trip through the status, proof and reason included.
    again = Outbox.from_status(checked.to_status(), ring)
    assert again == checked
    assert again.quarantine(T)[1] == []  # nothing new to quarantine


def test_a_full_quarantine_keeps_the_entry_pending_and_undeliverable() -> None:
    ring = Keyring((NEW,))
    full = Outbox(keyring=ring, pending=tuple(Entry(dataclasses.replace(EVENT, id=f"q{n}"), T) for n in range(70)))
    box, moved = full.quarantine(T)
    assert len(moved) == MAX_QUARANTINED and box.depth == 70 - MAX_QUARANTINED
    assert box.deliverable() == []  # never dropped, never delivered


def test_an_operator_release_re_signs_only_the_named_entries() -> None:
    ring = Keyring((NEW,))
    box = Outbox(keyring=ring, pending=(Entry(EVENT, T), Entry(dataclasses.replace(EVENT, id="e2"), T)))
    box, _ = box.quarantine(T)
    released, ids = box.release(["e2", "unknown"])
    assert ids == ["e2"]
    assert [e.event.id for e in released.deliverable()] == ["e2"]
    assert [q.entry.event.id for q in released.quarantined] == ["e1"]
    assert released.release(["e2"])[1] == []  # a second release of the same id does nothing
