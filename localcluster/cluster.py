"""Start and stop a real etcd + kube-apiserver on loopback (the project's envtest).

The binaries are built from their Go modules by `make bin` (hack/localcluster).
`LocalCluster` owns every process and file it creates: `stop()` (also run at
interpreter exit) leaves no process, port or directory behind. Children get
PR_SET_PDEATHSIG when `tie_to_parent` is set, so even a SIGKILLed test run does
not leak an API server.
"""

from __future__ import annotations

import atexit
import base64
import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .pki import CertificateAuthority, rsa_signing_key

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BIN_DIR = PROJECT_ROOT / "bin"


# The user name of the kubeconfig this plane writes (its client certificate's CN): the identity every
# process started with that kubeconfig has, the controller included.
ADMIN_USER = "admin"


class ClusterError(RuntimeError):
    """The control plane could not be built, started or reached; the message says which and why."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    # PR_SET_PDEATHSIG = 1: the kernel sends SIGKILL when the parent thread exits.
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)


@dataclass
class LocalCluster:
    """etcd + kube-apiserver in `workdir`; `kubeconfig` is written on start."""

    bin_dir: Path = DEFAULT_BIN_DIR
    workdir: Path | None = None
    kubeconfig: Path | None = None
    tie_to_parent: bool = True
    ready_timeout: float = 90.0
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _owns_workdir: bool = False
    api_port: int = 0
    etcd_port: int = 0
    server: str = ""

    # -- lifecycle -----------------------------------------------------------------
    def start(self) -> LocalCluster:
        for binary in ("etcd", "kube-apiserver"):
            if not (self.bin_dir / binary).is_file():
                raise ClusterError(
                    f"{self.bin_dir / binary} is missing: build it with `make bin` "
                    "(compiles kube-apiserver and etcd from hack/localcluster)"
                )
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="telco-cluster-"))
            self._owns_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.kubeconfig is None:
            self.kubeconfig = self.workdir / "kubeconfig"
        atexit.register(self.stop)
        try:
            self._write_pki()
            self._start_etcd()
            self._start_apiserver()
            self._write_kubeconfig()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop both processes (TERM, then KILL) and remove what start() created."""
        for name in ("kube-apiserver", "etcd"):
            proc = self._procs.pop(name, None)
            if proc is not None:
                _terminate(proc)
        if self._owns_workdir and self.workdir is not None and self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)
        atexit.unregister(self.stop)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def pids(self) -> dict[str, int]:
        return {name: p.pid for name, p in self._procs.items()}

    # -- steps -----------------------------------------------------------------------
    @property
    def _pki(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "pki"

    def _write_pki(self) -> None:
        self._pki.mkdir(exist_ok=True)
        ca = CertificateAuthority("telco-intent local cluster CA")
        (self._pki / "ca.crt").write_bytes(ca.cert_pem)
        hosts = [
            "127.0.0.1",
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "10.0.0.1",
        ]
        ca.issue("kube-apiserver", hosts=hosts).write(self._pki, "apiserver")
        ca.issue(ADMIN_USER, organizations=["system:masters"], server=False, client=True).write(self._pki, "admin")
        private, public = rsa_signing_key()
        (self._pki / "sa.key").write_bytes(private)
        (self._pki / "sa.pub").write_bytes(public)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen[bytes]:
        assert self.workdir is not None
        log = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child process
        try:
            proc = subprocess.Popen(
                [str(self.bin_dir / name), *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_die_with_parent if self.tie_to_parent else None,
            )
        finally:
            log.close()
        self._procs[name] = proc
        return proc

    def _start_etcd(self) -> None:
        assert self.workdir is not None
        self.etcd_port, peer = free_port(), free_port()
        client_url, peer_url = f"http://127.0.0.1:{self.etcd_port}", f"http://127.0.0.1:{peer}"
        self._spawn(
            "etcd",
            [
                "--name=local",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=local={peer_url}",
                "--listen-metrics-urls=",
                "--log-level=warn",
                # Tests want speed over durability; a crash loses only throw-away test data.
                "--unsafe-no-fsync",
            ],
        )
        self._wait_for("etcd", f"{client_url}/health", lambda body: b'"health":"true"' in body, ssl_ctx=None)

    def _start_apiserver(self) -> None:
        pki = self._pki
        self.api_port = free_port()
        self.server = f"https://127.0.0.1:{self.api_port}"
        self._spawn(
            "kube-apiserver",
            [
                f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.api_port}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={pki / 'sa.pub'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                "--service-cluster-ip-range=10.0.0.0/24",
                f"--cert-dir={pki}",
                "--profiling=false",
                "--v=0",
            ],
        )

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self._pki / "ca.crt"))
        ctx.load_cert_chain(str(self._pki / "admin.crt"), str(self._pki / "admin.key"))
        return ctx

    def _wait_ready(self) -> None:
        self._wait_for(
            "kube-apiserver",
            f"{self.server}/readyz",
            lambda body: body.strip() == b"ok",
            ssl_ctx=self._ssl_context(),
        )

    def _wait_for(self, name: str, url: str, ok: object, ssl_ctx: ssl.SSLContext | None) -> None:
        deadline = time.monotonic() + self.ready_timeout
        last = "no answer yet"
        while time.monotonic() < deadline:
            proc = self._procs[name]
            if proc.poll() is not None:
                raise ClusterError(f"{name} exited with code {proc.returncode}:\n{self._log_tail(name)}")
            try:
                with urllib.request.urlopen(url, timeout=2, context=ssl_ctx) as resp:
                    body = resp.read()
                if callable(ok) and ok(body):
                    return
                last = body.decode(errors="replace")[-500:]
            except (urllib.error.URLError, OSError) as exc:
                last = f"{exc}"
            time.sleep(0.2)
        raise ClusterError(
            f"{name} not ready at {url} after {self.ready_timeout:.0f}s (last: {last}):\n{self._log_tail(name)}"
        )

    def _log_tail(self, name: str, lines: int = 30) -> str:
        assert self.workdir is not None
        path = self.workdir / f"{name}.log"
        if not path.exists():
            return "(no log)"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    def _write_kubeconfig(self) -> None:
        assert self.kubeconfig is not None
        pki = self._pki

        def b64(name: str) -> str:
            return base64.b64encode((pki / name).read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": self.server, "certificate-authority-data": b64("ca.crt")},
                }
            ],
            "users": [
                {
                    "name": "admin",
                    "user": {
                        "client-certificate-data": b64("admin.crt"),
                        "client-key-data": b64("admin.key"),
                    },
                }
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": "admin"}}],
            "current-context": "local",
        }
        self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)


def _terminate(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def supervise(cluster: LocalCluster, state: Path) -> None:
    """Run the cluster until SIGTERM/SIGINT, recording it in `state` while it is up.

    `make cluster-up` runs this in a detached process so that it, not PID 1, is the
    parent that reaps etcd and kube-apiserver when `make cluster-down` stops them.
    """
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: stop.set())
    try:
        cluster.start()
        state.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    "children": cluster.pids,
                    "server": cluster.server,
                    "kubeconfig": str(cluster.kubeconfig),
                }
            )
        )
        while not stop.wait(1.0):
            crashed = [n for n, p in cluster._procs.items() if p.poll() is not None]
            if crashed:
                print(f"{', '.join(crashed)} exited unexpectedly; stopping", file=sys.stderr)
                break
    finally:
        cluster.stop()
        state.unlink(missing_ok=True)
        if cluster.kubeconfig is not None:
            cluster.kubeconfig.unlink(missing_ok=True)


def stop_supervisor(state: Path, timeout: float = 30.0) -> str:
    """Ask the supervisor recorded in `state` to stop, and wait until its children are gone."""
    if not state.exists():
        return "nothing to stop"
    info = json.loads(state.read_text())
    pid = int(info["pid"])
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        state.unlink(missing_ok=True)
        return f"supervisor {pid} was already gone"
    deadline = time.monotonic() + timeout
    children = [int(p) for p in info["children"].values()]
    while time.monotonic() < deadline and (state.exists() or any(_alive(c) for c in children)):
        time.sleep(0.1)
    left = [c for c in children if _alive(c)]
    if left:
        raise ClusterError(f"processes {left} still running {timeout:.0f}s after SIGTERM")
    return "stopped " + ", ".join(f"{n} (pid {p})" for n, p in info["children"].items())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0) but holds no port or file.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
