"""A LocalCluster whose kube-apiserver can be stopped and started again on the same port and the same
etcd, so clients (the controller) keep their kubeconfig. Only this test-owned instance is touched."""

from __future__ import annotations

import signal
import time
from unittest import mock

from localcluster import cluster as cluster_module
from localcluster.cluster import LocalCluster


class RestartableCluster(LocalCluster):
    def stop_apiserver(self, hard: bool = False) -> None:
        """Stop kube-apiserver only (etcd keeps the data): SIGKILL when `hard`, else SIGTERM."""
        proc = self._procs.pop("kube-apiserver")
        if hard:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        else:
            cluster_module._terminate(proc)

    def start_apiserver(self) -> float:
        """Start kube-apiserver again on the same port; returns the seconds until /readyz said ok."""
        port = self.api_port
        started = time.monotonic()
        with mock.patch.object(cluster_module, "free_port", lambda: port):
            self._start_apiserver()
        assert self.api_port == port
        self._wait_ready()
        return time.monotonic() - started
