"""TMF622 productOrder -> Subscription and back (pure)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.tmf import inventory, ordering
from controller.tmf.conventions import TmfError

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
ENDPOINTS = [{"device": "pe1", "port": "Ethernet1", "vlanId": 101}]


def add(**over: Any) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": "1",
        "action": "add",
        "productOffering": {"id": "fiber-100", "name": "ignored"},
        "product": {"name": "hq", "productCharacteristic": [{"name": "endpoints", "value": ENDPOINTS}]},
    }
    return {"billingAccount": {"id": "acme.acme-001"}, "productOrderItem": [item], **over}


def test_an_add_order_becomes_a_subscription() -> None:
    request = ordering.parse_order(add(externalId="crm-1", requestedStartDate="2026-04-01T00:00:00Z"))
    assert (request.action, request.namespace, request.subscription, request.account) == (
        "add",
        "acme",
        "hq",
        "acme-001",
    )
    body = ordering.new_subscription(request, "hq", NOW)
    assert body["metadata"]["namespace"] == "acme" and body["metadata"]["name"] == "hq"
    assert body["spec"] == {
        "productOffering": {"name": "fiber-100"},
        "billingAccountRef": {"name": "acme-001"},
        "endpoints": ENDPOINTS,
        "requestedStartDate": "2026-04-01T00:00:00Z",
    }
    (record,) = json.loads(body["metadata"]["annotations"][inventory.ORDER_ANNOTATION])
    assert record == {
        "n": 1,
        "action": "add",
        "item": "1",
        "orderDate": "2026-03-01T12:00:00Z",
        "offering": "fiber-100",
        "externalId": "crm-1",
    }


@pytest.mark.parametrize(
    "body,status,word",
    [
        ([], 400, "JSON object"),
        ({"productOrderItem": []}, 400, "productOrderItem"),
        ({**add(), "hack": 1}, 400, "productOrder.hack: not an attribute"),
        ({"productOrderItem": [{"id": "1", "action": "add", "extra": True}]}, 400, "productOrderItem[0].extra"),
        ({"productOrderItem": [{"id": 1, "action": "add"}]}, 400, "productOrderItem[0].id"),
        ({"productOrderItem": [{"id": "1", "action": "noChange"}]}, 422, "noChange"),
        (add(billingAccount=None), 422, "billingAccount.id"),
        ({"productOrderItem": add()["productOrderItem"]}, 422, "billingAccount.id"),
        (add(billingAccount={"id": "no-namespace"}), 422, "billingAccount.id"),
        ({**add(), "productOrderItem": [{**add()["productOrderItem"][0], "product": {}}]}, 422, "endpoints"),
        (
            {
                **add(),
                "productOrderItem": [
                    {
                        **add()["productOrderItem"][0],
                        "product": {**add()["productOrderItem"][0]["product"], "name": "UPPER"},
                    }
                ],
            },
            422,
            ".name",
        ),
        ({"productOrderItem": [{"id": "1", "action": "delete"}]}, 422, "product.id"),
        (
            {
                "productOrderItem": [
                    {"id": "1", "action": "delete", "product": {"id": "acme.hq"}, "productOffering": {"id": "x"}}
                ]
            },
            422,
            "only product.id",
        ),
        (
            {
                "productOrderItem": [
                    {
                        "id": "1",
                        "action": "modify",
                        "product": {"id": "acme.hq", "productCharacteristic": [{"name": "endpoints", "value": []}]},
                    }
                ]
            },
            422,
            "not endpoints",
        ),
        (
            {
                "productOrderItem": [
                    {
                        "id": "1",
                        "action": "modify",
                        "product": {
                            "id": "acme.hq",
                            "productCharacteristic": [{"name": "bandwidthMbps", "value": "fast"}],
                        },
                    }
                ]
            },
            422,
            "whole number",
        ),
        (
            {
                "productOrderItem": [
                    {
                        "id": "1",
                        "action": "modify",
                        "product": {
                            "id": "acme.hq",
                            "productCharacteristic": [
                                {"name": "bandwidthMbps", "value": 1},
                                {"name": "bandwidthMbps", "value": 2},
                            ],
                        },
                    }
                ]
            },
            422,
            "twice",
        ),
    ],
)
def test_bad_orders_are_refused_naming_the_field(body: Any, status: int, word: str) -> None:
    with pytest.raises(TmfError) as caught:
        ordering.parse_order(body)
    assert caught.value.status == status and word in caught.value.message, caught.value.message


def test_a_spec_the_api_model_refuses_is_422_before_anything_is_sent() -> None:
    bad = add()
    bad["productOrderItem"][0]["product"]["productCharacteristic"] = [
        {"name": "endpoints", "value": [{"device": "pe1", "port": "Ethernet1", "vlanId": 9000}]}
    ]
    with pytest.raises(TmfError) as caught:
        ordering.new_subscription(ordering.parse_order(bad), "hq", NOW)
    assert caught.value.status == 422 and "endpoints.0.vlanId" in caught.value.message


def subscription(state: str | None, records: list[dict[str, Any]], **status: Any) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "hq",
            "namespace": "acme",
            "resourceVersion": "9",
            "annotations": {inventory.ORDER_ANNOTATION: json.dumps(records)},
        },
        "spec": {
            "productOffering": {"name": "fiber-100"},
            "billingAccountRef": {"name": "acme-001"},
            "endpoints": ENDPOINTS,
        },
        "status": {"state": state, **status},
    }


ADD = {"n": 1, "action": "add"}


@pytest.mark.parametrize(
    "state,record,status,expected",
    [
        (None, ADD, {}, "acknowledged"),
        ("created", ADD, {}, "acknowledged"),
        ("pendingActive", ADD, {}, "inProgress"),
        ("active", ADD, {}, "completed"),
        ("terminated", ADD, {}, "completed"),
        ("aborted", ADD, {}, "failed"),
        ("cancelled", ADD, {}, "cancelled"),
        ("pendingActive", {**ADD, "cancelled": "x"}, {}, "pendingCancellation"),
        ("cancelled", {**ADD, "cancelled": "x"}, {}, "cancelled"),
        ("active", {"n": 2, "action": "delete"}, {}, "inProgress"),
        ("terminated", {"n": 2, "action": "delete"}, {}, "completed"),
        (
            "active",
            {"n": 2, "action": "modify", "offering": "fiber-1g"},
            {"billing": {"plans": [{"offering": "fiber-100"}]}},
            "inProgress",
        ),
        (
            "active",
            {"n": 2, "action": "modify", "offering": "fiber-1g"},
            {"billing": {"plans": [{"offering": "fiber-100"}, {"offering": "fiber-1g"}]}},
            "completed",
        ),
        (
            "active",
            {"n": 2, "action": "modify", "offering": "fiber-10"},
            {"pendingChange": {"offering": "fiber-10", "state": "refused"}},
            "failed",
        ),
        (
            "active",
            {"n": 2, "action": "modify", "bandwidthMbps": 200},
            {"billing": {"plans": [{"offering": "fiber-100", "bandwidthMbps": 200}]}},
            "completed",
        ),
        ("terminated", {"n": 2, "action": "modify", "offering": "fiber-1g"}, {}, "failed"),
    ],
)
def test_an_order_state_follows_its_subscription(
    state: str | None, record: dict[str, Any], status: dict[str, Any], expected: str
) -> None:
    assert ordering.order_state(subscription(state, [record], **status), record) == expected


def test_a_change_is_a_version_checked_patch_recording_the_order() -> None:
    obj = subscription("active", [{**ADD, "orderDate": "2026-01-01T00:00:00Z"}])
    request = ordering.parse_order(
        {
            "productOrderItem": [
                {"id": "7", "action": "modify", "productOffering": {"id": "fiber-1g"}, "product": {"id": "acme.hq"}}
            ]
        }
    )
    patch = ordering.change_patch(request, obj, NOW)
    assert patch["metadata"]["resourceVersion"] == "9"
    assert patch["spec"] == {"productOffering": {"name": "fiber-1g"}}
    records = json.loads(patch["metadata"]["annotations"][inventory.ORDER_ANNOTATION])
    assert [r["n"] for r in records] == [1, 2] and records[1]["item"] == "7"
    ended = ordering.change_patch(
        ordering.parse_order({"productOrderItem": [{"id": "1", "action": "delete", "product": {"id": "acme.hq"}}]}),
        obj,
        NOW,
    )
    assert ended["spec"] == {"desiredState": "terminated"}
    with pytest.raises(TmfError) as caught:
        ordering.change_patch(request, subscription("terminated", [ADD]), NOW)
    assert caught.value.status == 409


def test_only_an_unfinished_add_can_be_cancelled() -> None:
    patch = ordering.cancel_patch(subscription("pendingActive", [ADD]), 1, NOW)
    assert patch["spec"] == {"desiredState": "terminated"}
    assert (
        json.loads(patch["metadata"]["annotations"][inventory.ORDER_ANNOTATION])[0]["cancelled"]
        == "2026-03-01T12:00:00Z"
    )
    for state, n, status in (("active", 1, 409), ("pendingActive", 2, 422)):
        with pytest.raises(TmfError) as caught:
            ordering.cancel_patch(subscription(state, [ADD]), n, NOW)
        assert caught.value.status == status


def test_a_rendered_order() -> None:
    obj = subscription(
        "active",
        [{**ADD, "orderDate": "2026-01-01T00:00:00Z", "offering": "fiber-100"}],
        startDate="2026-01-02T00:00:00Z",
    )
    (order,) = ordering.product_orders(obj)
    assert (
        order["id"] == "acme.hq~1"
        and order["state"] == "completed"
        and order["completionDate"] == "2026-01-02T00:00:00Z"
    )
    item = order["productOrderItem"][0]
    assert (
        item["action"] == "add" and item["product"]["id"] == "acme.hq" and item["productOffering"]["id"] == "fiber-100"
    )
