"""The Kopf settings the controller relies on for its CPU per event."""

from __future__ import annotations

import importlib

import kopf

from controller.handlers.lifecycle import NoDiffBase


def test_no_change_handlers_so_the_diff_base_may_stay_empty() -> None:
    # NoDiffBase keeps Kopf's diff base empty (no deep copy of every object on every event): only change
    # handlers read it. A change handler added later must bring the real diff base back.
    importlib.import_module("controller.handlers")
    importlib.import_module("controller.handlers.admission")
    registry = kopf.get_default_registry()
    assert registry._watching.get_all_handlers(), "the controller's raw event handlers are registered"
    assert not registry._changing.get_all_handlers()
    assert not registry._spawning.get_all_handlers()


def test_the_empty_diff_base() -> None:
    storage = NoDiffBase()
    body = kopf.Body({"metadata": {"name": "a", "annotations": {"x": "y"}}, "spec": {"a": 1}, "status": {"b": 2}})
    assert storage.build(body=body) == {}
    assert storage.fetch(body=body) is None
    patch = kopf.Patch()
    storage.store(body=body, patch=patch, essence=storage.build(body=body))
    assert not patch
