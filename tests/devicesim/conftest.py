"""Fixtures for the devicesim suite: one TLS fleet per session, real gNMI clients only."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from pygnmi.client import gNMIclient

from devicesim import DeviceInfo, Fleet
from tests.devicesim.devicesim_testlib import Raw, secure_channel

# pygnmi attaches a stdout handler and logs INFO (and CRITICAL for every expected error)
logging.getLogger("pygnmi.client").setLevel(logging.CRITICAL + 1)


# ---------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    f = Fleet(devices=3, workdir=tmp_path_factory.mktemp("devicesim"), counter_interval=0.2)
    try:
        f.start(timeout=30)
    except Exception as err:
        pytest.fail(f"devicesim fleet could not start: {err}")
    yield f
    f.stop()


@pytest.fixture
def dev(fleet: Fleet) -> DeviceInfo:
    """dev1, reset to factory state (config, links, levers, stats)."""
    fleet.admin.reset("dev1")
    return fleet.devices["dev1"]


@pytest.fixture
def dev2(fleet: Fleet) -> DeviceInfo:
    fleet.admin.reset("dev2")
    return fleet.devices["dev2"]


@pytest.fixture
def raw(dev: DeviceInfo, fleet: Fleet) -> Iterator[Raw]:
    assert fleet.ca_path is not None
    ch = secure_channel(dev, fleet.ca_path)
    yield Raw(ch, dev.username, dev.password)
    ch.close()


@pytest.fixture
def gnmi(dev: DeviceInfo, fleet: Fleet) -> Iterator[gNMIclient]:
    """pygnmi verifying the server against the fleet CA (path_cert = trusted root for pygnmi)."""
    client = gNMIclient(target=dev.target, username=dev.username, password=dev.password,
                        path_cert=fleet.ca_path, gnmi_timeout=10)
    client.connect()
    yield client
    client.close()
