"""Which managed entry a path lies in (the innermost), and which shared entry (a VRF)."""

from __future__ import annotations

import pytest

from controller.intent import GPath
from controller.intent.ownership import entry_root, shared_root

SUB = "interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=100]"
VRF = "network-instances/network-instance[name=cust-a]"
MEMBER = f"{VRF}/interfaces/interface[id=Ethernet1.100]"


@pytest.mark.parametrize(
    ("path", "entry", "shared"),
    [
        (f"{SUB}/config/description", SUB, None),
        (SUB, SUB, None),
        (f"{SUB}/ipv4/addresses/address[ip=100.64.0.1]/config/prefix-length", SUB, None),
        ("interfaces/interface[name=Ethernet1]/config/mtu", None, None),  # a port is never a managed entry
        (f"{VRF}/config/name", VRF, VRF),
        (f"{MEMBER}/config/interface", MEMBER, VRF),  # the member is its own entry, inside the shared VRF
        ("", None, None),
    ],
)
def test_entry_and_shared_roots(path: str, entry: str | None, shared: str | None) -> None:
    found = entry_root(GPath.parse(path))
    assert (found.to_string() if found else None) == entry
    vrf = shared_root(GPath.parse(path))
    assert (vrf.to_string() if vrf else None) == shared
