from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pygnmi.spec.v080 import gnmi_pb2

from controller.intent import ROOT, GPath, PathElem

SUBINTERFACE = "interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index=100]"


def test_parse_and_print_the_canonical_form() -> None:
    path = GPath.parse(SUBINTERFACE)
    assert path == GPath.of(
        "interfaces", ("interface", {"name": "Ethernet1"}), "subinterfaces", ("subinterface", {"index": "100"})
    )
    assert path.to_string() == SUBINTERFACE
    assert str(path) == SUBINTERFACE
    assert GPath.parse("/" + SUBINTERFACE) == path


def test_key_values_may_contain_slashes() -> None:
    path = GPath.parse("interfaces/interface[name=ge-0/0/1]/config/description")
    assert [e.name for e in path.elems] == ["interfaces", "interface", "config", "description"]
    assert path.elems[1].keys == (("name", "ge-0/0/1"),)
    assert path.to_string() == "interfaces/interface[name=ge-0/0/1]/config/description"


def test_keys_are_sorted_by_name_whatever_order_they_come_in() -> None:
    a = GPath.parse("x/y[b=2][a=1]")
    assert a == GPath.of("x", ("y", {"a": "1", "b": "2"}))
    assert a.to_string() == "x/y[a=1][b=2]"
    assert hash(a) == hash(GPath.parse("x/y[a=1][b=2]"))


@pytest.mark.parametrize(
    "text",
    [
        "interfaces/interface[name=Eth]1]",
        "interfaces/interface[name=a=b]",
        "interfaces/interface[name=a[b]",
        "interfaces/interface[name=*]",
        "interfaces/*",
        "interfaces/interface[name=Ethernet1",
        "interfaces/interface[name]",
        "interfaces//config",
        "interfaces/",
        "interfaces/interface[name=]",
        "interfaces/interface[name=a][name=b]",
    ],
)
def test_malformed_or_wildcard_paths_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        GPath.parse(text)


@pytest.mark.parametrize("value", ["a]b", "a=b", "a[b", "*"])
def test_elements_refuse_forbidden_key_values(value: str) -> None:
    with pytest.raises(ValueError, match="not allowed in a gNMI path"):
        PathElem("interface", (("name", value),))


def test_root_parses_from_empty_and_slash() -> None:
    assert GPath.parse("") == ROOT
    assert GPath.parse("/") == ROOT
    assert ROOT.to_string() == ""


def test_proto_round_trip_with_unset_origin() -> None:
    path = GPath.parse("network-instances/network-instance[name=blue]/interfaces/interface[id=ge-0/0/1.5]")
    proto = path.to_proto()
    assert isinstance(proto, gnmi_pb2.Path)
    assert proto.origin == ""
    assert [e.name for e in proto.elem] == ["network-instances", "network-instance", "interfaces", "interface"]
    assert dict(proto.elem[3].key) == {"id": "ge-0/0/1.5"}
    assert GPath.from_proto(proto) == path


def test_from_proto_joins_a_notification_prefix_and_refuses_other_origins() -> None:
    prefix = gnmi_pb2.Path(origin="openconfig", elem=[gnmi_pb2.PathElem(name="interfaces")])
    path = gnmi_pb2.Path(elem=[gnmi_pb2.PathElem(name="interface", key={"name": "E1"})])
    assert GPath.from_proto(path, prefix) == GPath.parse("interfaces/interface[name=E1]")
    with pytest.raises(ValueError, match="not openconfig"):
        GPath.from_proto(gnmi_pb2.Path(origin="cli", elem=[gnmi_pb2.PathElem(name="show")]))


def test_child_parent_and_prefix() -> None:
    port = GPath.parse("interfaces/interface[name=Ethernet1]")
    sub = port.child("subinterfaces").child("subinterface", {"index": "100"})
    assert sub == GPath.parse(SUBINTERFACE)
    assert sub.parent.parent == port
    assert port.is_prefix_of(sub)
    assert sub.is_prefix_of(sub)
    assert not sub.is_prefix_of(port)
    assert not GPath.parse("interfaces/interface[name=Ethernet2]").is_prefix_of(sub)
    assert ROOT.is_prefix_of(sub)
    with pytest.raises(ValueError):
        _ = ROOT.parent


def test_a_container_sorts_right_before_what_lies_under_it() -> None:
    paths = [GPath.parse(t) for t in ["b/c", "a/x", "b", "a", "b/c/d"]]
    assert [p.to_string() for p in sorted(paths)] == ["a", "a/x", "b", "b/c", "b/c/d"]


NAMES = st.text(st.characters(codec="ascii", exclude_characters="/[]=*", min_codepoint=33), min_size=1, max_size=8)
VALUES = st.text(
    st.characters(codec="utf-8", exclude_characters="[]=*", exclude_categories=("Cs",)), min_size=1, max_size=8
)
ELEMS = st.builds(PathElem, NAMES, st.dictionaries(NAMES, VALUES, max_size=3).map(lambda d: tuple(d.items())))


@given(st.lists(ELEMS, max_size=6).map(lambda elems: GPath(tuple(elems))))
def test_string_and_proto_forms_round_trip(path: GPath) -> None:
    assert GPath.parse(path.to_string()) == path
    assert GPath.from_proto(path.to_proto()) == path


@given(st.lists(st.lists(ELEMS, max_size=5).map(lambda elems: GPath(tuple(elems))), max_size=12))
def test_sort_key_orders_as_the_paths_themselves(paths: list[GPath]) -> None:
    # The hot sorts (a device's merge, status.owned) use the key: it must give exactly the paths' own order.
    assert sorted(paths, key=GPath.sort_key) == sorted(paths)
    shared = [GPath.parse(t) for t in ["b/c", "a/x", "b", "a[k=2]", "a[k=10]", "a", "b/c/d"]]
    assert sorted(shared, key=GPath.sort_key) == sorted(shared)
