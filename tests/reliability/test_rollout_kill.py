"""The controller SIGKILLed at random points while 200 services roll out, and again while they are
deleted: everything converges, every device holds exactly the intended entries (none twice, none
left over), and nothing is left on the devices after the deletions. Seeded: TELCO_CHAOS_SEED."""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.harness import is_ready
from tests.reliability.rig import Recorder, Rig, ep, rig, wait_for

pytestmark = pytest.mark.full

DEVICES = ("ro-r1", "ro-r2", "ro-r3", "ro-r4")
SERVICES = 200
SEED = int(os.environ.get("TELCO_CHAOS_SEED", "20261125"))


@pytest.fixture(scope="module")
def r(kubeconfig: Path, crds: object, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(kubeconfig, tmp_path_factory.mktemp("rollout"), "ro", DEVICES) as the_rig:
        yield the_rig


def endpoint(i: int) -> tuple[str, str, int]:
    return (DEVICES[i % len(DEVICES)], f"Ethernet{1 + (i // len(DEVICES)) % 8}", 1000 + i)


def name(i: int) -> str:
    return f"ro-{i:03d}"


class Killer:
    """Kills the controller with SIGKILL at random moments and starts it again, until stopped."""

    def __init__(self, r: Rig, rng: random.Random, low: float, high: float, max_kills: int) -> None:
        self.r, self.rng, self.low, self.high, self.max_kills = r, rng, low, high, max_kills
        self.kills: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        while len(self.kills) < self.max_kills and not self._stop.wait(self.rng.uniform(self.low, self.high)):
            assert self.r.controller is not None
            self.r.controller.kill9()
            self.kills.append(round(time.monotonic() - self.started, 2))
            time.sleep(self.rng.uniform(0, 0.5))
            self.r.controller.start()


def listing(r: Rig) -> dict[str, dict]:  # type: ignore[type-arg]
    items = r.api.custom.list_namespaced_custom_object("telco.intent.dev", "v1alpha1", r.namespace, "networkservices")
    return {i["metadata"]["name"]: i for i in items["items"]}


def test_sigkill_during_a_200_service_rollout(r: Rig, measure) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(SEED)
    print(f"chaos seed {SEED} (TELCO_CHAOS_SEED)")
    bodies = [r.service(name(i), [ep(*endpoint(i))]) for i in range(SERVICES)]

    # -- rollout, with kills at random points ---------------------------------------------------
    with Killer(r, rng, 0.5, 3.0, max_kills=5) as killer, ThreadPoolExecutor(4) as pool:
        list(pool.map(r.apply, bodies))
        wait_for("the kills", lambda: len(killer.kills) >= 5, 60, 0.2)
    assert r.controller is not None and r.controller.alive()
    started = time.monotonic()
    r.all_ready([name(i) for i in range(SERVICES)], timeout=180)
    converged = time.monotonic() - started
    measure("SIGKILL x5 during a 200-service rollout", converged,
            f"from the last restart to all Ready; kills at {killer.kills} s (seed {SEED})")

    expected = {name(i): [endpoint(i)] for i in range(SERVICES)}
    for device in DEVICES:
        assert r.managed(device) == r.expected(device, expected), f"{device} does not hold exactly the intent"
        dump = r.admin.dump(device)["config"]
        assert all(
            len(i.get("subinterfaces", {}).get("subinterface", []))
            == len({s["index"] for s in i.get("subinterfaces", {}).get("subinterface", [])})
            for i in dump["interfaces"]["interface"]
        )
    objects = listing(r)
    assert all(is_ready(objects[name(i)]) for i in range(SERVICES))
    assert all(objects[name(i)]["status"]["endpoints"][0]["applied"] for i in range(SERVICES))


def test_a_quiet_restart_adopts_everything_without_a_flap(r: Rig) -> None:
    """After a restart with nothing to change: no Set, no status write, Ready never leaves True."""
    objects = listing(r)
    assert len(objects) == SERVICES and all(is_ready(o) for o in objects.values()), "runs after the rollout"
    assert r.controller is not None
    sets = {d: r.sets(d) for d in DEVICES}
    versions = {n: o["metadata"]["resourceVersion"] for n, o in objects.items()}
    with Recorder(r.api, "networkservices", r.namespace) as rec:
        time.sleep(1)
        r.controller.kill9()
        r.controller.start()
        r.wait_devices_ready()
        time.sleep(8)  # more than one resync period
    assert {d: r.sets(d) for d in DEVICES} == sets, "correct config must be adopted, not re-sent"
    flaps = {n: rec.reasons(n) for n in versions if len(rec.reasons(n)) > 1}
    changed = [n for n, o in listing(r).items() if o["metadata"]["resourceVersion"] != versions[n]]
    assert not changed and not flaps, f"status rewritten by a restart that changed nothing: {flaps}"


def test_teardown_of_200_services_with_sigkills(r: Rig, measure) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(SEED + 1)
    assert len(listing(r)) == SERVICES, "runs after the rollout test"
    assert r.controller is not None
    with Killer(r, rng, 0.5, 3.0, max_kills=4) as killer, ThreadPoolExecutor(4) as pool:
        list(pool.map(r.delete, [name(i) for i in range(SERVICES)]))
        wait_for("the kills", lambda: len(killer.kills) >= 4, 60, 0.2)
    started = time.monotonic()
    wait_for("every service gone", lambda: not listing(r), 180, 0.5)
    measure("SIGKILL x4 during the teardown of 200 services", time.monotonic() - started,
            f"from the last restart to all deleted; kills at {killer.kills} s")
    leftovers = {d: r.managed(d) for d in DEVICES}
    assert all(not any(v.values()) for v in leftovers.values()), f"config left on the devices: {leftovers}"
