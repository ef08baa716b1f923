"""devicesim: a gNMI network-device simulator (gNMI 0.8.0 over grpc.aio, an OpenConfig subset).

Start a fleet in-process (background thread with its own loop)::

    from devicesim import Fleet
    with Fleet(devices=3, workdir=tmp_path) as fleet:
        fleet.devices["dev1"].target, fleet.ca_path, fleet.admin_url, fleet.admin

or as a subprocess waiting for its ready line::

    from devicesim import FleetProcess
    with FleetProcess(["--devices", "3"], workdir=tmp_path) as proc:
        proc.devices["dev1"].port

See docs/devicesim.md.
"""

from devicesim.admin import AdminClient, AdminError
from devicesim.device import DEFAULT_PORTS, DeviceSpec
from devicesim.errors import GnmiError
from devicesim.fleet import DeviceInfo, Fleet, FleetProcess, launch, load_fleet_file, make_specs

__all__ = [
    "DEFAULT_PORTS",
    "AdminClient",
    "AdminError",
    "DeviceInfo",
    "DeviceSpec",
    "Fleet",
    "FleetProcess",
    "GnmiError",
    "launch",
    "load_fleet_file",
    "make_specs",
]
