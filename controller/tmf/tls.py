"""The facade's TLS: the certificate and key in a directory (a kubernetes.io/tls Secret mounted there, as
for the admission webhook), or, when none is given, a self-signed one made at start, so that the API is
never served in the clear by default."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SELF_SIGNED_DAYS = 365


def self_signed(hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> tuple[bytes, bytes]:
    """A (certificate PEM, key PEM) pair naming `hosts`, valid from now for SELF_SIGNED_DAYS."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "telco-intent TMF API")])
    alt: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt.append(x509.DNSName(host))
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=SELF_SIGNED_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class CertReloader:
    """Re-reads tls.crt and tls.key of a directory into the serving context when either changes (a
    renewed Secret is remounted there): new connections get the new certificate, no restart."""

    def __init__(self, context: ssl.SSLContext, cert_dir: str) -> None:
        self.context = context
        self.directory = Path(cert_dir)
        self.seen = self._stamp()

    def _stamp(self) -> tuple[float, float]:
        return ((self.directory / "tls.crt").stat().st_mtime, (self.directory / "tls.key").stat().st_mtime)

    def check(self) -> bool:
        """Reload if the files changed; True when a new certificate is in use. A pair that cannot be
        loaded (half written) keeps the old one and is tried again next time."""
        try:
            stamp = self._stamp()
            if stamp == self.seen:
                return False
            self.context.load_cert_chain(str(self.directory / "tls.crt"), str(self.directory / "tls.key"))
        except (OSError, ssl.SSLError):
            return False
        self.seen = stamp
        return True


def server_context(cert_dir: str | None) -> tuple[ssl.SSLContext, bytes | None]:
    """The serving context, and the self-signed certificate's PEM when one was made (else None)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert_dir:
        directory = Path(cert_dir)
        context.load_cert_chain(str(directory / "tls.crt"), str(directory / "tls.key"))
        return context, None
    cert_pem, key_pem = self_signed()
    # ssl loads chains from files only: write them where only this process can read, and remove them.
    with tempfile.TemporaryDirectory(prefix="tmf-tls-") as tmp:
        cert_file, key_file = Path(tmp) / "tls.crt", Path(tmp) / "tls.key"
        cert_file.write_bytes(cert_pem)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem)
        context.load_cert_chain(str(cert_file), str(key_file))
    return context, cert_pem
