"""Never run blind: Kopf starts only once the API server's discovery serves every kind the controller
handles, and the process stops (exit code 3, so Kubernetes restarts it) if Kopf still finds one missing.

Kopf resolves its handlers' resources from discovery once, at start-up, and scans again only when a
CRD changes. A kube-apiserver that is starting serves /apis before its apiextensions controller has
put the CRDs in discovery; a controller started in that window (killed during an API server restart)
served none of its kinds until its next restart, minutes later (docs/reliability.md, item 17).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from .api import GROUP, KINDS, VERSION

log = logging.getLogger(__name__)

PLURALS: tuple[str, ...] = tuple(sorted(kind.PLURAL for kind in KINDS))
EXIT_UNRESOLVED = 3  # the process's exit code when Kopf could not resolve our kinds
_KOPF_OBSERVATION = "kopf._core.reactor.observation"
_UNRESOLVED = "Unresolved resources cannot be served"


def missing_plurals(served: Any, wanted: Iterable[str] = PLURALS) -> list[str]:
    """The plurals of `wanted` an APIResourceList (`/apis/<group>/<version>`, as JSON) does not list."""
    resources = served.get("resources") if isinstance(served, dict) else None
    names = {r.get("name") for r in resources or [] if isinstance(r, dict)}
    return [p for p in wanted if p not in names]


def _read_discovery(api: Any) -> Any:
    import kubernetes

    served = kubernetes.client.CustomObjectsApi(api).get_api_resources(GROUP, VERSION, _request_timeout=(2, 5))
    return served.to_dict() if hasattr(served, "to_dict") else served


def served_missing(api: Any) -> tuple[list[str], str]:
    """What discovery does not serve yet, and why (empty: everything is served)."""
    import urllib3
    from kubernetes.client.exceptions import ApiException

    try:
        return missing_plurals(_read_discovery(api)), "not listed by discovery"
    except ApiException as exc:
        reason = "discovery does not serve the group yet" if exc.status == 404 else f"discovery answered {exc.status}"
        return list(PLURALS), reason
    except (urllib3.exceptions.HTTPError, OSError) as exc:  # the API server is down or restarting
        return list(PLURALS), f"API server unreachable ({type(exc).__name__})"


def wait_for_kinds(
    api: Any,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    interval: float = 0.25,
    report_every: float = 30.0,
) -> None:
    """Block until discovery lists every kind the controller handles; a log line when it starts waiting and
    every `report_every` seconds, naming what is missing (a process that serves nothing says so). A check
    is one small GET: at 4 a second the kinds are seen within a quarter second of being served (at 1 a
    second the wait alone was up to a second of every restart that found them missing)."""
    started = clock()
    reported: float | None = None
    while True:
        missing, why = served_missing(api)
        if not missing:
            if reported is not None:
                log.info("API discovery serves %s/%s now (waited %.0f s): starting", GROUP, VERSION, clock() - started)
            return
        if reported is None or clock() - reported >= report_every:
            log.warning(
                "Waiting for the API server to serve %s/%s (%s: %s) before starting: nothing is served until then",
                GROUP,
                VERSION,
                why,
                ", ".join(missing),
            )
            reported = clock()
        sleep(interval)


def wait_until_served() -> None:
    """`wait_for_kinds` with the process's own credentials (in-cluster, else the kubeconfig)."""
    import kubernetes

    try:
        kubernetes.config.load_incluster_config()
    except kubernetes.config.ConfigException:
        kubernetes.config.load_kube_config()
    config = kubernetes.client.Configuration.get_default_copy()
    config.retries = 0  # one try per check (4 a second): an API server coming up is seen at once
    wait_for_kinds(kubernetes.client.ApiClient(config))


class UnresolvedGuard(logging.Handler):
    """Kopf logs, and then goes on serving nothing of them, when its start-up scan finds kinds of its
    handlers missing: an API server that restarted between `wait_for_kinds` and that scan. For our group
    this stops the operator (`stop`) and records that the process must exit with EXIT_UNRESOLVED."""

    def __init__(self, stop: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.stop = stop
        self.tripped = False

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.tripped or not message.startswith(_UNRESOLVED) or GROUP not in message:
            return
        self.tripped = True
        log.error(
            "Kopf's resource scan did not find the %s/%s kinds (%s); stopping with exit code %d so that the "
            "controller is restarted instead of serving nothing",
            GROUP,
            VERSION,
            message,
            EXIT_UNRESOLVED,
        )
        self.stop()

    @classmethod
    def install(cls, stop: Callable[[], None]) -> UnresolvedGuard:
        guard = cls(stop)
        logging.getLogger(_KOPF_OBSERVATION).addHandler(guard)
        return guard

    def uninstall(self) -> None:
        logging.getLogger(_KOPF_OBSERVATION).removeHandler(self)
