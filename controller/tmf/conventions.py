"""TMF630 REST conventions, pure: `fields=` selection, `offset`/`limit` paging, attribute filtering and
the Error body every refusal carries.

A query is parsed once into a `Query` (or a `TmfError` naming the parameter and what was expected); the
resources a list returns are then filtered, counted, paged and trimmed here, never in the handlers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Parameters TMF630 reserves that this facade does not implement: refused rather than ignored, so a
# caller never mistakes an unsorted or unexpanded answer for the one it asked for.
UNSUPPORTED = frozenset({"sort", "expand", "depth"})
RESERVED = frozenset({"fields", "offset", "limit"})
# Every resource carries these whatever `fields=` asks for (TMF630: id and href identify it).
ALWAYS = ("id", "href", "@type")
MAX_FILTER_VALUES = 32
MAX_QUERY_VALUE = 1024

REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Entity",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class TmfError(Exception):
    """A refusal: the HTTP status and a message naming what was wrong and what was expected."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def body(self) -> dict[str, str]:
        return error_body(self.status, self.message)


def error_body(status: int, message: str) -> dict[str, str]:
    """The TMF630 Error resource (code and reason are required by every TMF document)."""
    return {
        "code": str(status),
        "reason": REASONS.get(status, "Error"),
        "message": message,
        "status": str(status),
        "@type": "Error",
    }


@dataclass(frozen=True)
class Filter:
    """`path=value[,value...]`: the attribute at the dotted path equals one of the values."""

    path: tuple[str, ...]
    values: tuple[str, ...]


@dataclass(frozen=True)
class Query:
    fields: tuple[str, ...] | None = None  # None: every attribute
    offset: int = 0
    limit: int = DEFAULT_LIMIT
    filters: tuple[Filter, ...] = field(default_factory=tuple)


def _count(name: str, text: str, maximum: int | None = None) -> int:
    if not text.isdigit() or len(text) > 9:
        raise TmfError(400, f"query parameter {name}: expected a whole number >= 0, got {text[:40]!r}")
    value = int(text)
    if maximum is not None and value > maximum:
        raise TmfError(400, f"query parameter {name}: expected at most {maximum}, got {value}")
    return value


def parse_query(params: Iterable[tuple[str, str]], attributes: Iterable[str], *, listing: bool = True) -> Query:
    """The TMF630 query of a list (or, with listing=False, a retrieve: `fields` only).

    `attributes` are the top-level attributes the resource can have: `fields=` and filters may name only
    those, so a typo is a 400 naming it instead of a silently empty answer."""
    known = set(attributes)
    seen: dict[str, str] = {}
    filters: list[Filter] = []
    for name, value in params:
        if len(value) > MAX_QUERY_VALUE or len(name) > 256:
            raise TmfError(400, f"query parameter {name[:40]!r}: longer than {MAX_QUERY_VALUE} characters")
        if name in RESERVED:
            if name in seen:
                raise TmfError(400, f"query parameter {name}: given more than once")
            seen[name] = value
            continue
        if name in UNSUPPORTED:
            raise TmfError(400, f"query parameter {name}: not supported by this API")
        if not listing:
            raise TmfError(400, f"query parameter {name[:40]!r}: a retrieve takes only fields")
        path = tuple(name.split("."))
        if not all(path) or path[0] not in known:
            raise TmfError(
                400, f"query parameter {name[:40]!r}: not an attribute of this resource; expected one of {_list(known)}"
            )
        values = tuple(value.split(","))
        if len(values) > MAX_FILTER_VALUES:
            raise TmfError(400, f"query parameter {name[:40]!r}: at most {MAX_FILTER_VALUES} comma-separated values")
        filters.append(Filter(path, values))
    selected: tuple[str, ...] | None = None
    if "fields" in seen:
        names = tuple(n.strip() for n in seen["fields"].split(",") if n.strip())
        unknown = [n for n in names if n not in known]
        if not names or unknown:
            raise TmfError(
                400,
                f"query parameter fields: {', '.join(repr(n[:40]) for n in unknown[:5]) or 'empty'} is not an"
                f" attribute of this resource; expected a comma-separated list of {_list(known)}",
            )
        selected = names
    if not listing and ("offset" in seen or "limit" in seen):
        raise TmfError(400, "query parameters offset and limit: only a list takes them")
    offset = _count("offset", seen["offset"]) if "offset" in seen else 0
    limit = _count("limit", seen["limit"], MAX_LIMIT) if "limit" in seen else DEFAULT_LIMIT
    return Query(selected, offset, limit, tuple(filters))


def _list(names: Iterable[str]) -> str:
    return ", ".join(sorted(names))


def _values_at(resource: Any, path: Sequence[str]) -> list[Any]:
    """Every value at the dotted path; a list on the way fans out (relatedParty.role matches any party's)."""
    found = [resource]
    for step in path:
        following: list[Any] = []
        for item in found:
            for element in item if isinstance(item, list) else [item]:
                if isinstance(element, Mapping) and step in element:
                    following.append(element[step])
        found = following
    flat: list[Any] = []
    for item in found:
        flat.extend(item if isinstance(item, list) else [item])
    return flat


def _text(value: Any) -> str | None:
    """A scalar as the query string spells it; objects match nothing."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (str, int, float)):
        return str(value)
    return None


def matches(resource: Mapping[str, Any], filters: Iterable[Filter]) -> bool:
    """Whether the resource satisfies every filter (values are compared as text, never interpreted)."""
    for f in filters:
        found = {_text(v) for v in _values_at(resource, f.path)}
        if not found.intersection(f.values):
            return False
    return True


def select(resource: Mapping[str, Any], fields: Sequence[str] | None) -> dict[str, Any]:
    """The resource trimmed to `fields` (and id, href, @type, always)."""
    if fields is None:
        return dict(resource)
    keep = set(fields).union(ALWAYS)
    return {k: v for k, v in resource.items() if k in keep}


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int  # X-Total-Count: every resource the filters match

    @property
    def headers(self) -> dict[str, str]:
        return {"X-Total-Count": str(self.total), "X-Result-Count": str(len(self.items))}


def page(resources: Iterable[Mapping[str, Any]], query: Query) -> Page:
    """Filter, count, page (in id order, so pages are stable) and trim."""
    matching = sorted((r for r in resources if matches(r, query.filters)), key=lambda r: str(r.get("id")))
    chosen = matching[query.offset : query.offset + query.limit]
    return Page([select(r, query.fields) for r in chosen], len(matching))
