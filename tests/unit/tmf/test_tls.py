"""The facade's TLS: a self-signed certificate when none is given, and a renewed one picked up."""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from cryptography import x509

from controller.tmf.tls import CertReloader, self_signed, server_context


def write(directory: Path, pair: tuple[bytes, bytes], mtime: float) -> None:
    for name, data in zip(("tls.crt", "tls.key"), pair, strict=True):
        (directory / name).write_bytes(data)
        os.utime(directory / name, (mtime, mtime))


def test_a_self_signed_certificate_names_loopback() -> None:
    cert_pem, _ = self_signed()
    cert = x509.load_pem_x509_certificate(cert_pem)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in names.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    context, pem = server_context(None)
    assert pem is not None and isinstance(context, ssl.SSLContext)


def test_a_renewed_pair_is_loaded_and_a_broken_one_kept_out(tmp_path: Path) -> None:
    write(tmp_path, self_signed(), 1_000_000)
    context, pem = server_context(str(tmp_path))
    assert pem is None
    reloader = CertReloader(context, str(tmp_path))
    assert reloader.check() is False  # unchanged
    write(tmp_path, (b"not a certificate", b"nor a key"), 1_000_100)
    assert reloader.check() is False  # half-written or broken: the old one stays
    write(tmp_path, self_signed(), 1_000_200)
    assert reloader.check() is True
    assert reloader.check() is False
