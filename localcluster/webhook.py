"""A serving certificate for an admission webhook on loopback, from a CA made for it.

The local control plane's kube-apiserver calls webhooks by URL (https://127.0.0.1:PORT/...) and
verifies them against the caBundle of their configuration: the PEM this returns.
"""

from __future__ import annotations

from pathlib import Path

from .pki import CertificateAuthority


def serving_certificate(directory: Path, hosts: tuple[str, ...] = ("127.0.0.1", "localhost")) -> bytes:
    """Write tls.crt and tls.key (as a kubernetes.io/tls Secret would mount them) into `directory`,
    signed by a new CA; return that CA's PEM for the webhook configuration's caBundle."""
    directory.mkdir(parents=True, exist_ok=True)
    ca = CertificateAuthority("telco-intent webhook CA")
    ca.issue("telco-intent-webhook", hosts=list(hosts)).write(directory, "tls")
    return ca.cert_pem
