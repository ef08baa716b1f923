"""TMF635 usage from a Subscription's usage meter (pure)."""

from __future__ import annotations

from controller.tmf.usage import usages


def test_each_measured_period_is_one_usage() -> None:
    windows = [
        {"start": "2026-01-01T00:00:00Z", "end": "2026-02-01T00:00:00Z", "octets": "1000"},
        {"start": "2026-02-01T00:00:00Z", "end": "2026-03-01T00:00:00Z", "octets": "0"},
    ]
    obj = {"metadata": {"name": "hq", "namespace": "acme"}, "status": {"billing": {"usage": {"windows": windows}}}}
    first, second = usages(obj)
    assert first["id"] == "acme.hq~1767225600" and second["id"] == "acme.hq~1769904000"
    assert first["href"] == "/tmf-api/usageManagement/v4/usage/acme.hq~1767225600"
    assert first["usageDate"] == "2026-02-01T00:00:00Z" and first["status"] == "rated"
    assert first["usageCharacteristic"][0] == {"name": "octets", "valueType": "integer", "value": 1000}
    assert first["ratedProductUsage"][0]["productRef"]["id"] == "acme.hq"
    assert first["relatedParty"][0]["id"] == "acme"


def test_a_product_without_a_meter_has_no_usage() -> None:
    assert usages({"metadata": {"name": "hq", "namespace": "acme"}, "status": {"state": "active"}}) == []
    assert usages({"metadata": {"name": "hq", "namespace": "acme"}}) == []
