"""The statuses the status writer keeps per object: compact, and one copy of each value."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from controller.kube import Ref
from controller.statuswriter import StatusWriter, _Shared, compact

REF = Ref("networkservices", "a", "ns")


def parsed(value: Any) -> Any:
    """As a watch event brings it: every string a fresh object of its own."""
    return json.loads(json.dumps(value))


STATUS = {
    "observedGeneration": 1,
    "conditions": [
        {"type": "Ready", "status": "True", "reason": "Applied", "lastTransitionTime": "2026-12-02T14:30:00Z"}
    ],
    "endpoints": [{"device": "leaf-001", "port": "Ethernet1", "vlanId": 100, "applied": True}],
    "message": "x" * 100,
}


def test_two_parsed_statuses_share_their_keys_and_short_strings_once_compact() -> None:
    one, two = compact(parsed(STATUS)), compact(parsed(STATUS))
    assert one == two == STATUS
    c1, c2 = one["conditions"][0], two["conditions"][0]
    assert all(k1 is k2 for k1, k2 in zip(c1, c2, strict=True))  # the keys
    assert c1["reason"] is c2["reason"] and c1["lastTransitionTime"] is c2["lastTransitionTime"]
    assert one["endpoints"][0]["device"] is two["endpoints"][0]["device"]
    assert one["message"] is not two["message"]  # long text is not interned: it seldom repeats
    raw1, raw2 = parsed(STATUS), parsed(STATUS)
    assert raw1["conditions"][0]["reason"] is not raw2["conditions"][0]["reason"]  # what it saves


def test_equal_parts_of_two_statuses_are_one_object_once_compact() -> None:
    # e.g. the conditions of two services that went Ready in the same second
    one, two = compact(parsed(STATUS)), compact(parsed(STATUS))
    assert one is not two  # each object's status is its own (the top level is never shared)
    assert one["conditions"] is two["conditions"] and one["conditions"][0] is two["conditions"][0]
    assert one["endpoints"][0] is two["endpoints"][0]
    other = compact(parsed({**STATUS, "endpoints": [{**STATUS["endpoints"][0], "vlanId": 101}]}))
    assert other["conditions"] is one["conditions"]
    assert other["endpoints"] is not one["endpoints"] and other["endpoints"][0]["vlanId"] == 101


def test_sharing_tells_true_from_one_and_keeps_types() -> None:
    flag, number, real = compact({"a": [{"v": True}]}), compact({"a": [{"v": 1}]}), compact({"a": [{"v": 1.0}]})
    assert flag["a"][0]["v"] is True and type(number["a"][0]["v"]) is int and type(real["a"][0]["v"]) is float
    assert compact({"a": {}})["a"] == {} and compact({"a": []})["a"] == []
    assert compact({"a": {"b": []}})["a"] is not compact({"a": {"b": {}}})["a"]


def test_the_sharing_table_stays_bounded_and_keeps_what_is_in_use() -> None:
    table = _Shared(2)
    kept = {"x": 1}
    assert table.get(("k",), kept) is kept
    for i in range(10):
        table.get(("other", i), {"i": i})
        assert table.get(("k",), {"x": 1}) is kept  # in use: found again every time, never evicted
        assert len(table._young) + len(table._old) <= 4
    assert table.get(("new",), {}) == {}


def test_compact_drops_nulls_as_a_merge_patch_does() -> None:
    assert compact({"a": None, "b": [{"c": None, "d": 1}], "e": {"f": None}}) == {"b": [{"d": 1}], "e": {}}


class FakeKube:
    def __init__(self) -> None:
        self.stored: dict[str, Any] = {}

    async def patch_status(self, ref: Ref, status: dict[str, Any], resource_version: str | None = None) -> Any:
        self.stored = {k: v for k, v in {**self.stored, **status}.items() if v is not None}
        return parsed({"metadata": {"resourceVersion": "7"}, "status": self.stored})


def test_a_write_that_removed_a_key_keeps_one_copy_of_what_it_shares_with_the_stored_status() -> None:
    async def run() -> tuple[StatusWriter, dict[str, Any]]:
        kube = FakeKube()
        kube.stored = parsed({"plan": [{"op": "update"}]})
        writer = StatusWriter(kube)  # type: ignore[arg-type]
        desired = {**parsed(STATUS), "plan": None}  # a dry run ended: its plan goes
        writer.submit(REF, desired, kube.stored)
        await writer.flush()
        return writer, desired

    writer, desired = asyncio.run(run())
    written, (_, landed) = writer._written[REF], writer._landed[REF]
    assert landed == STATUS and "plan" not in landed
    assert written == desired  # what was written, as before
    for key in STATUS:
        assert written[key] is landed[key], key  # but each value once
    # The watch echo of that write costs nothing of its own either.
    assert writer.shared(REF, parsed(STATUS)) is landed


def test_a_status_not_written_by_this_run_is_kept_compact() -> None:
    # e.g. every service listed after a restart: no write of ours to share with, so each is compacted.
    writer = StatusWriter(FakeKube())  # type: ignore[arg-type]
    one = writer.shared(REF, parsed(STATUS))
    two = writer.shared(Ref("networkservices", "b", "ns"), parsed(STATUS))
    assert one == two == STATUS
    assert one["conditions"][0]["reason"] is two["conditions"][0]["reason"]


def test_a_spec_keeps_interned_strings_and_one_fields_set_per_shape() -> None:
    from controller.api.networkservice import NetworkServiceSpec
    from controller.runtime import interned, lean_spec

    raw = {
        "serviceType": "l2vpn",
        "bandwidthMbps": 10,
        "endpoints": [{"device": "pe1", "port": "Ethernet1", "vlanId": 7}],
    }
    one, two = (lean_spec(NetworkServiceSpec.model_validate(interned(parsed(raw)))) for _ in range(2))
    assert one == two and one.endpoints[0].device is two.endpoints[0].device
    assert one.model_fields_set is two.model_fields_set == {"serviceType", "bandwidthMbps", "endpoints"}
    assert one.endpoints[0].model_fields_set is two.endpoints[0].model_fields_set
    changed = one.model_copy(update={"dryRun": True})  # copies the set before adding to it
    assert "dryRun" in changed.model_fields_set and "dryRun" not in two.model_fields_set
