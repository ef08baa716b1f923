"""Proof of origin for billing events in an outbox (pure).

Status can be written by anyone holding */status (it should be the controller alone, but RBAC is the
cluster operator's), and an outbox entry is delivered to the billing system. So every entry the
controller records carries `proof`: an HMAC-SHA-256 over the event's id, source, subject, type, time
and data, under a key from a Secret (--billing-signing-key-file). An entry whose proof is missing, made
with a key no longer configured, or wrong, is never delivered: it is quarantined (docs/billing.md).

The key file holds one key per line: the first signs, every line verifies (rotation: put the new key
first, keep the old one until no pending entry names it). The proof names its key by a short id, so a
rotated-away key is told apart from a forgery.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from pathlib import Path

from ..times import rfc3339
from .events import BillingEvent

VERSION = "v1"
MIN_KEY_BYTES = 16

UNSIGNED = "Unsigned"  # no proof: recorded before signing was configured, or written by someone else
UNKNOWN_KEY = "UnknownKey"  # signed with a key that is no longer configured (rotated away too early)
BAD_PROOF = "BadProof"  # the proof does not match the event: altered or forged


class SigningKeyError(ValueError):
    """The signing key file cannot be used; the message names it and what was expected."""


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"telco-intent billing key id\n" + key).hexdigest()[:8]


def canonical(event: BillingEvent) -> bytes:
    """The signed bytes: every attribute a consumer acts on, in a fixed order and encoding."""
    fields = [event.id, event.source, event.subject or "", event.type, rfc3339(event.time), dict(event.data)]
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


@dataclass(frozen=True)
class Keyring:
    """The signing keys; empty means signing is not configured (entries are neither signed nor checked)."""

    keys: tuple[bytes, ...] = ()

    @classmethod
    def load(cls, path: str | None) -> Keyring:
        if not path:
            return cls()
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise SigningKeyError(f"--billing-signing-key-file {path}: cannot be read ({exc.strerror})") from exc
        return cls.parse(text, path)

    @classmethod
    def parse(cls, text: str, where: str = "key file") -> Keyring:
        keys = tuple(line.strip().encode() for line in text.splitlines() if line.strip())
        if not keys:
            raise SigningKeyError(f"{where}: holds no key (expected one key per line, the first signs)")
        for n, key in enumerate(keys, 1):
            if len(key) < MIN_KEY_BYTES:
                raise SigningKeyError(
                    f"{where}: key on line {n} has {len(key)} bytes, expected at least {MIN_KEY_BYTES}"
                )
        return cls(keys)

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def sign(self, event: BillingEvent) -> str | None:
        if not self.keys:
            return None
        key = self.keys[0]
        mac = hmac.new(key, canonical(event), hashlib.sha256).hexdigest()
        return f"{VERSION}:{key_id(key)}:{mac}"

    def problem(self, event: BillingEvent, proof: str | None) -> str | None:
        """Why `proof` does not show the controller recorded `event` (None: it does, or signing is off)."""
        if not self.keys:
            return None
        if not proof:
            return UNSIGNED
        version, _, rest = proof.partition(":")
        kid, _, mac = rest.partition(":")
        if version != VERSION or not mac:
            return BAD_PROOF
        for key in self.keys:
            if key_id(key) == kid:
                good = hmac.new(key, canonical(event), hashlib.sha256).hexdigest()
                return None if hmac.compare_digest(good, mac) else BAD_PROOF
        return UNKNOWN_KEY


EXPLANATIONS = {
    UNSIGNED: "it carries no proof of origin (recorded before signing was configured, or not by the controller)",
    UNKNOWN_KEY: "its proof names a signing key that is no longer configured",
    BAD_PROOF: "its proof does not match the event (altered or forged)",
}
