"""TMF630 conventions: query parsing, filtering, selection, paging, error bodies."""

from __future__ import annotations

import pytest

from controller.tmf.conventions import DEFAULT_LIMIT, Filter, TmfError, error_body, matches, page, parse_query, select

ATTRS = {"id", "name", "status", "relatedParty", "isBundle", "href", "@type"}


@pytest.mark.parametrize(
    "params,fields,offset,limit,filters",
    [
        ([], None, 0, DEFAULT_LIMIT, ()),
        ([("fields", "name,status")], ("name", "status"), 0, DEFAULT_LIMIT, ()),
        ([("offset", "5"), ("limit", "10")], None, 5, 10, ()),
        ([("status", "active,suspended")], None, 0, DEFAULT_LIMIT, (Filter(("status",), ("active", "suspended")),)),
        (
            [("relatedParty.role", "customer")],
            None,
            0,
            DEFAULT_LIMIT,
            (Filter(("relatedParty", "role"), ("customer",)),),
        ),
    ],
)
def test_queries_parse(params: list[tuple[str, str]], fields: object, offset: int, limit: int, filters: object) -> None:
    query = parse_query(params, ATTRS)
    assert (query.fields, query.offset, query.limit, query.filters) == (fields, offset, limit, filters)


@pytest.mark.parametrize(
    "params,listing,word",
    [
        ([("offset", "-1")], True, "offset"),
        ([("offset", "1e3")], True, "offset"),
        ([("limit", "1001")], True, "at most 1000"),
        ([("limit", "9999999999")], True, "limit"),
        ([("limit", "1"), ("limit", "2")], True, "more than once"),
        ([("fields", "")], True, "empty"),
        ([("fields", "password")], True, "'password'"),
        ([("secret", "x")], True, "'secret'"),
        ([("status.", "x")], True, "'status.'"),
        ([("sort", "name")], True, "sort"),
        ([("status", ",".join("x" * 40))], True, "at most 32"),
        ([("name", "a" * 2000)], True, "longer"),
        ([("status", "active")], False, "only fields"),
        ([("offset", "1")], False, "only a list"),
    ],
)
def test_bad_queries_are_400_naming_the_parameter(params: list[tuple[str, str]], listing: bool, word: str) -> None:
    with pytest.raises(TmfError) as caught:
        parse_query(params, ATTRS, listing=listing)
    assert caught.value.status == 400 and word in caught.value.message


PRODUCT = {
    "id": "acme.hq",
    "status": "active",
    "isBundle": False,
    "relatedParty": [{"id": "acme", "role": "customer"}, {"id": "bob", "role": "technical"}],
    "productCharacteristic": [{"name": "vrf", "value": {"nested": 1}}],
}


@pytest.mark.parametrize(
    "path,values,expected",
    [
        (("status",), ("active",), True),
        (("status",), ("suspended", "active"), True),
        (("status",), ("Active",), False),
        (("isBundle",), ("false",), True),
        (("relatedParty", "role"), ("technical",), True),
        (("relatedParty", "id"), ("globex",), False),
        (("productCharacteristic", "value"), ("{'nested': 1}",), False),  # objects match nothing
        (("missing",), ("x",), False),
        (("status",), ("active' OR '1'='1",), False),
    ],
)
def test_filters_compare_text(path: tuple[str, ...], values: tuple[str, ...], expected: bool) -> None:
    assert matches(PRODUCT, [Filter(path, values)]) is expected


def test_selection_keeps_id_href_and_type() -> None:
    resource = {"id": "a", "href": "/x/a", "@type": "Product", "name": "n", "status": "active"}
    assert select(resource, ("status",)) == {"id": "a", "href": "/x/a", "@type": "Product", "status": "active"}
    assert select(resource, None) == resource


def test_paging_counts_every_match_and_is_stable() -> None:
    resources = [{"id": f"ns.{i:02d}", "status": "active" if i % 2 else "terminated"} for i in range(10)]
    query = parse_query([("status", "active"), ("offset", "1"), ("limit", "2")], {"id", "status"})
    result = page(reversed(resources), query)
    assert [r["id"] for r in result.items] == ["ns.03", "ns.05"]
    assert result.headers == {"X-Total-Count": "5", "X-Result-Count": "2"}


def test_error_bodies_carry_code_reason_message_status() -> None:
    assert error_body(422, "spec.x: bad") == {
        "code": "422",
        "reason": "Unprocessable Entity",
        "message": "spec.x: bad",
        "status": "422",
        "@type": "Error",
    }
