"""Which events a change makes, with which ids, and which listeners want them (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from controller.tmf import account, events, inventory
from controller.tmf.conventions import TmfError

P = inventory.PRODUCT


def product(status: str, vrf: str | None = None) -> dict[str, Any]:
    return {"id": "acme.hq", "href": "/x", "status": status, "vrf": vrf, "@type": "Product"}


@pytest.mark.parametrize(
    "old,new,expected",
    [
        ([], [product("created")], ["ProductCreateEvent"]),
        ([product("created")], [], ["ProductDeleteEvent"]),
        ([product("created")], [product("active")], ["ProductStateChangeEvent"]),
        ([product("active")], [product("active", "blue")], ["ProductAttributeValueChangeEvent"]),
        (
            [product("active")],
            [product("suspended", "blue")],
            ["ProductStateChangeEvent", "ProductAttributeValueChangeEvent"],
        ),
        ([product("active")], [product("active")], []),
    ],
)
def test_changes_become_events(old: list[dict[str, Any]], new: list[dict[str, Any]], expected: list[str]) -> None:
    found = events.changes(P, old, new, "42", "acme", "2026-01-01T00:00:00Z")
    assert [e.event_type for e in found] == expected
    assert all(e.namespace == "acme" for e in found)


def test_only_the_events_a_document_defines() -> None:
    account_ = {"id": "acme.a", "state": "Active"}
    assert events.changes(account.BILLING_ACCOUNT, [], [account_], "1", "acme", "t") == []  # no create in TMF666


def test_ids_are_deterministic_per_change() -> None:
    one = events.changes(P, [product("created")], [product("active")], "42", "acme", "t1")
    again = events.changes(P, [product("created")], [product("active")], "42", "acme", "t2")
    later = events.changes(P, [product("active")], [product("suspended")], "43", "acme", "t3")
    assert one[0].id == again[0].id != later[0].id
    assert one[0].payload() == {
        "eventId": one[0].id,
        "eventTime": "t1",
        "eventType": "ProductStateChangeEvent",
        "event": {"product": product("active")},
    }


TYPES = frozenset({"ProductStateChangeEvent", "ProductCreateEvent"})


@pytest.mark.parametrize(
    "query,types,paths",
    [
        ("", frozenset(), []),
        ("eventType=ProductStateChangeEvent", {"ProductStateChangeEvent"}, []),
        ("eventType = ProductStateChangeEvent,ProductCreateEvent", TYPES, []),
        ("eventType=ProductCreateEvent&product.status=active", {"ProductCreateEvent"}, [("status",)]),
        ("event.product.relatedParty.id=acme", frozenset(), [("relatedParty", "id")]),
    ],
)
def test_listener_queries(query: str, types: frozenset[str], paths: list[tuple[str, ...]]) -> None:
    wanted, filters = events.listener_filters(query, TYPES, P.attributes)
    assert wanted == types and [f.path for f in filters] == paths


@pytest.mark.parametrize(
    "body,word",
    [
        ({}, "callback"),
        ({"callback": "/relative"}, "absolute"),
        ({"callback": "javascript:alert(1)"}, "absolute"),
        ({"callback": "http://x/" + "a" * 3000}, "callback"),
        ({"callback": "http://x", "query": 5}, "query"),
        ({"callback": "http://x", "query": "eventType="}, "eventType"),
        ({"callback": "http://x", "query": "password=1"}, "password"),
        ({"callback": "http://x", "id": "mine"}, "id"),
    ],
)
def test_bad_registrations_are_400(body: dict[str, Any], word: str) -> None:
    with pytest.raises(TmfError) as caught:
        events.parse_listener("TMF637", body, TYPES, P.attributes)
    assert caught.value.status == 400 and word in caught.value.message


def test_a_listener_wants_its_api_types_and_attributes() -> None:
    wanted, filters = events.listener_filters("eventType=ProductStateChangeEvent&status=active", TYPES, P.attributes)
    listener = events.Listener("l1", "TMF637", "http://x", "", wanted, filters, {})
    (change,) = events.changes(P, [product("created")], [product("active")], "1", "acme", "t")
    (other,) = events.changes(P, [product("active")], [product("suspended")], "2", "acme", "t")
    assert events.wanted_by(listener, change) and not events.wanted_by(listener, other)
    assert not events.wanted_by(events.Listener("l2", "TMF638", "http://x", "", frozenset(), (), {}), change)
