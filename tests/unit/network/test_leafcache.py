from __future__ import annotations

from controller.intent import GPath
from controller.network.leafcache import LeafCache

SUB = "interfaces/interface[name=Ethernet1]/subinterfaces/subinterface[index={}]"


def filled(vlans: range) -> LeafCache:
    cache = LeafCache()
    for vlan in vlans:
        cache.set(GPath.parse(SUB.format(vlan) + "/config/description"), f"svc {vlan}")
        cache.set(GPath.parse(SUB.format(vlan) + "/config/enabled"), True)
    return cache


def test_a_subtree_holds_exactly_its_leaves_with_full_paths() -> None:
    cache = filled(range(1, 1001))
    found = dict(cache.items_under(GPath.parse(SUB.format(7))))
    assert found == {
        GPath.parse(SUB.format(7) + "/config/description"): "svc 7",
        GPath.parse(SUB.format(7) + "/config/enabled"): True,
    }
    assert len(cache) == 2000 and len(list(cache.items())) == 2000


def test_get_contains_set_again_and_delete_keep_the_count() -> None:
    cache = filled(range(1, 4))
    leaf = GPath.parse(SUB.format(2) + "/config/enabled")
    assert leaf in cache and cache.get(leaf) is True
    cache.set(leaf, False)
    assert cache.get(leaf) is False and len(cache) == 6
    cache.delete(GPath.parse(SUB.format(2)))
    assert leaf not in cache and cache.get(leaf, "gone") == "gone" and len(cache) == 4
    assert GPath.parse(SUB.format(2)) not in cache, "an inner node is not a leaf"
    cache.delete(GPath.parse(SUB.format(99)))  # absent: nothing happens
    assert len(cache) == 4
    cache.delete(GPath())
    assert len(cache) == 0 and list(cache.items()) == []


def test_an_absent_subtree_is_empty() -> None:
    assert list(filled(range(1, 3)).items_under(GPath.parse("qos"))) == []


def test_object_and_null_values_are_leaves_not_containers_or_absent() -> None:
    cache = LeafCache()
    obj = GPath.parse(SUB.format(1) + "/config/extra")
    null = GPath.parse(SUB.format(1) + "/config/nothing")
    cache.set(obj, {"a": 1})
    cache.set(null, None)
    assert obj in cache and cache.get(obj) == {"a": 1}
    assert null in cache and cache.get(null, "absent") is None
    assert dict(cache.items_under(GPath.parse(SUB.format(1)))) == {obj: {"a": 1}, null: None}
    assert len(cache) == 2
    cache.set(null, "now a string")
    assert cache.get(null) == "now a string" and len(cache) == 2
    cache.delete(obj)
    assert obj not in cache and len(cache) == 1


def test_random_writes_and_deletes_match_a_plain_map_of_leaves() -> None:
    """The compact containers (tuples up to SMALL children, then dicts) against a dict of path -> value."""
    import random

    rng = random.Random(16)
    names = [f"n{i}" for i in range(12)]  # more than SMALL children under one node
    cache, model = LeafCache(), {}
    for _ in range(3000):
        depth = rng.randint(1, 4)
        path = GPath.parse("/".join(rng.choice(names[: 3 + depth * 3]) for _ in range(depth)))
        if rng.random() < 0.75:
            value = rng.choice(["UP", "x" * 40, 7, None, {"a": 1}, (1, 2), [3], True])
            cache.set(path, value)
            # A leaf replaces whatever was at or under its path, and any leaf above it.
            model = {p: v for p, v in model.items() if not path.is_prefix_of(p) and not p.is_prefix_of(path)}
            model[path] = value
        else:
            cache.delete(path)
            model = {p: v for p, v in model.items() if not path.is_prefix_of(p)}
        assert len(cache) == len(model)
    assert dict(cache.items()) == model
    for path, value in model.items():
        assert path in cache and cache.get(path, "absent") == value


def test_containers_are_kept_at_their_size_and_repeated_numbers_once() -> None:
    import sys

    cache = LeafCache()
    for vlan in (100, 101):
        for leaf in ("index", "config/index", "config/enabled", "config/description", "state/oper-status"):
            value: object = True if leaf == "config/enabled" else int("70000")  # a fresh object each time
            cache.set(GPath.parse(SUB.format(vlan) + "/" + leaf), value)
    config = cache._held(GPath.parse(SUB.format(100) + "/config"))
    assert sys.getsizeof(config) == sys.getsizeof(list(config))  # no room kept for more children
    one, two = (cache.get(GPath.parse(SUB.format(v) + "/index")) for v in (100, 101))
    assert one == two == 70000 and one is two  # the same number, from two notifications: one object
    assert cache.get(GPath.parse(SUB.format(100) + "/config/enabled")) is True  # True is not the number 1
