"""Real processes for integration tests: the controller as `python -m controller run`,
and helpers to read and wait on objects through the Kubernetes API."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import kubernetes
from kubernetes.client import ApiException

from controller.admission import mutating_webhook_configuration, webhook_configuration
from localcluster.cluster import free_port
from localcluster.webhook import serving_certificate

ROOT = Path(__file__).resolve().parent.parent
GROUP, VERSION = "telco.intent.dev", "v1alpha1"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.05) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` and the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except ApiException as exc:
            last = f"API error {exc.status}: {exc.reason}"
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")


class Api:
    """A thin typed view of the custom resources for tests."""

    def __init__(self, kubeconfig: Path) -> None:
        self.client = kubernetes.config.new_client_from_config(str(kubeconfig))
        self.custom = kubernetes.client.CustomObjectsApi(self.client)
        self.core = kubernetes.client.CoreV1Api(self.client)

    def get(self, plural: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        try:
            if namespace is None:
                return dict(self.custom.get_cluster_custom_object(GROUP, VERSION, plural, name))
            return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def apply(self, body: dict[str, Any]) -> dict[str, Any]:
        """Create, or replace the spec of an existing object (what `kubectl apply` amounts to here)."""
        plural = body["kind"].lower() + "s"
        meta = body["metadata"]
        ns = meta.get("namespace")
        existing = self.get(plural, meta["name"], ns)
        if existing is None:
            if ns is None:
                return dict(self.custom.create_cluster_custom_object(GROUP, VERSION, plural, body))
            return dict(self.custom.create_namespaced_custom_object(GROUP, VERSION, ns, plural, body))
        patch = {"spec": body["spec"], "metadata": {"labels": meta.get("labels", {})}}
        if ns is None:
            return dict(self.custom.patch_cluster_custom_object(GROUP, VERSION, plural, meta["name"], patch))
        return dict(self.custom.patch_namespaced_custom_object(GROUP, VERSION, ns, plural, meta["name"], patch))

    def delete(self, plural: str, name: str, namespace: str | None = None) -> None:
        try:
            if namespace is None:
                self.custom.delete_cluster_custom_object(GROUP, VERSION, plural, name)
            else:
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def ensure_namespace(self, name: str) -> None:
        try:
            self.core.create_namespace({"metadata": {"name": name}})
        except ApiException as exc:
            if exc.status != 409:
                raise

    def put_secret(self, namespace: str, name: str, data: dict[str, str]) -> None:
        self.ensure_namespace(namespace)
        body = {"metadata": {"name": name, "namespace": namespace}, "stringData": data}
        try:
            self.core.create_namespaced_secret(namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_secret(name, namespace, body)

    def events(self, namespace: str, name: str) -> list[Any]:
        items = self.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
        return list(items)


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any] | None:
    for cond in ((obj or {}).get("status") or {}).get("conditions", []) or []:
        if cond["type"] == type_:
            return dict(cond)
    return None


def is_ready(obj: dict[str, Any] | None) -> bool:
    cond = condition(obj, "Ready")
    return bool(
        obj
        and cond
        and cond["status"] == "True"
        and obj["status"].get("observedGeneration") == obj["metadata"].get("generation")
    )


class ControllerProcess:
    """`python -m controller run` against the test cluster, logging to a file.

    With `webhook=True` it also serves the admission webhook on a free port of 127.0.0.1, with a
    certificate from a CA made for it (`webhook_url`, `webhook_ca`); a restart keeps both.
    `registered_webhook` registers it with the API server.
    """

    def __init__(
        self, kubeconfig: Path, log_path: Path, *args: str, env: dict[str, str] | None = None, webhook: bool = False
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_path = log_path
        self.killed = False  # the last stop() had to SIGKILL it
        self.returncode: int | None = None  # its exit status at the last stop()
        self.args = list(args)
        # The billing signing key (a mounted Secret in a cluster): every test controller signs its outbox entries
        # unless the test names its own key file. Kept across restarts, as a Secret would be.
        key_file = log_path.parent / f"{log_path.stem}-billing-signing-key"
        if not key_file.exists():
            key_file.write_text(secrets.token_hex(32) + "\n")
        self.signing_key_file = key_file
        self.env = {"TELCO_BILLING_SIGNING_KEY_FILE": str(key_file), **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        self.webhook_url: str | None = None
        self.webhook_ca: bytes | None = None
        if webhook:
            certs = log_path.parent / f"{log_path.stem}-webhook-certs"
            self.webhook_ca = serving_certificate(certs)
            port = free_port()
            self.webhook_url = f"https://127.0.0.1:{port}"
            self.args += ["--webhook-port", str(port), "--webhook-cert-dir", str(certs)]

    @property
    def webhook_port(self) -> int:
        assert self.webhook_url is not None, "started without webhook=True"
        return int(self.webhook_url.rsplit(":", 1)[1])

    def start(self) -> ControllerProcess:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1", **self.env}
        # Byte-code cached as the image has it (pip compiles there): with PYTHONDONTWRITEBYTECODE set and the
        # project installed editable, every start compiled all of controller/ again (a restart's first
        # ~0.3 s of CPU, docs/reliability.md "Start-up time"). The cache goes to the gitignored __pycache__/.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "controller", "run", "--resync-seconds", "5", *self.args],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def stop(self) -> None:
        """SIGTERM, as Kubernetes stops a pod; SIGKILL after 20 s (`killed`: it did not exit by itself)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.proc.kill()
                self.proc.wait()
            self.returncode = self.proc.returncode
        self.proc = None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@contextlib.contextmanager
def registered_webhook(
    api: Api, proc: ControllerProcess, name: str, controller_username: str | None = None
) -> Iterator[None]:
    """The controller's webhooks registered with the API server by URL, removed afterwards: while registered,
    every create and spec change of the five kinds goes through the validating ones (failurePolicy Fail, 5 s),
    and Subscriptions and NetworkServices are created with the controller's finalizer (mutating, Ignore, 2 s),
    as the chart registers them."""
    assert proc.webhook_url is not None and proc.webhook_ca is not None, "started without webhook=True"
    admission = kubernetes.client.AdmissionregistrationV1Api(api.client)
    admission.create_validating_webhook_configuration(
        webhook_configuration(name, proc.webhook_url, proc.webhook_ca, controller_username=controller_username)
    )
    try:
        admission.create_mutating_webhook_configuration(
            mutating_webhook_configuration(name, proc.webhook_url, proc.webhook_ca)
        )
        yield
    finally:
        for delete in (
            admission.delete_mutating_webhook_configuration,
            admission.delete_validating_webhook_configuration,
        ):
            try:
                delete(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise


@contextlib.contextmanager
def serving(
    proc: ControllerProcess, api: Api, devices: Iterable[str], log_tail: int = 8000
) -> Iterator[ControllerProcess]:
    """Start the controller, wait until every named device is Ready; afterwards stop it and print its log."""
    proc.start()
    try:
        for name in devices:
            wait_for(f"NetworkDevice {name} Ready", lambda n=name: is_ready(api.get("networkdevices", n)), 30)
        yield proc
    finally:
        proc.stop()
        print(f"--- controller log ({proc.log_path}) ---\n" + proc.logs()[-log_tail:])
