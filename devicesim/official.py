"""The official OpenConfig models, as third-party code holds them: strict devices check against these.

The models are the pyangbind bindings of openconfig/public that the ``oc-config-validate``
package ships (PyPI). devicesim's own subset schema (``schema.py``) says which nodes a device
serves and how to store them; this module answers, for a node of that subset, what the
published models say: does the node exist (a leaf OpenConfig removed does not), is a value
valid for its type (ranges, patterns, enums, identityrefs), what is its YANG default.

The bindings are imported once per process (about 0.5 s, ~150 MB shared by every device of a
fleet) and only when a strict device exists. Answers are cached per schema position, and
validity per (position, value): pyangbind type checks cost 0.1 to 4 ms each, and a fleet's
Sets repeat the same values.
"""

from __future__ import annotations

import importlib
import re
import threading
from typing import Any

# the binding module that holds each top-level container of the subset, and its root class
_ROOTS = {
    "interfaces": ("interfaces", "openconfig_interfaces"),
    "network-instances": ("network_instance", "openconfig_network_instance"),
    "qos": ("qos", "openconfig_qos"),
}

# modules whose nodes the subset serves (advertised by Capabilities with the bindings' revisions)
SERVED_MODULES = (
    "openconfig-interfaces",
    "openconfig-if-ip",
    "openconfig-vlan",
    "openconfig-network-instance",
    "openconfig-network-instance-types",
    "openconfig-bgp",
    "openconfig-policy-types",
    "openconfig-qos",
    "openconfig-qos-types",
)

_NO_DEFAULT: Any = object()
_CHECK_CACHE_MAX = 200_000


def model_revisions() -> dict[str, str]:
    """module name -> revision date of every module the bindings were generated from."""
    models = importlib.import_module("oc_config_validate.models")
    text: str = models.__model_versions__
    return {m.group(1): m.group(2) for m in re.finditer(r"^([\w-]+)@(\S+)", text, re.M)}


def served_models() -> list[tuple[str, str]]:
    """(module, revision) for Capabilities: only modules the bindings really hold."""
    revs = model_revisions()
    return [(m, revs[m]) for m in SERVED_MODULES if m in revs]


class _Node:
    """A binding object at one schema position: a container, a list entry, or a leaf's parent."""

    __slots__ = ("attr", "obj")

    def __init__(self, obj: Any, attr: str | None = None) -> None:
        self.obj = obj  # the container / entry object; for a leaf, its parent
        self.attr = attr  # for a leaf: the attribute name in ``obj``


class OfficialModels:
    """Existence, type checks and defaults for schema positions (tuples of YANG names)."""

    def __init__(self) -> None:
        self._roots: dict[str, Any] = {}
        self._nodes: dict[tuple[str, ...], _Node | None] = {}
        self._checks: dict[tuple[Any, ...], str | None] = {}
        self._defaults: dict[tuple[str, ...], Any] = {}
        self.revisions = model_revisions()

    # -- navigation -------------------------------------------------------------------------------

    def _root(self, name: str) -> Any | None:
        if name not in _ROOTS:
            return None
        got = self._roots.get(name)
        if got is None:
            module, cls = _ROOTS[name]
            bindings = importlib.import_module(f"oc_config_validate.models.{module}")
            got = self._roots[name] = getattr(getattr(bindings, cls)(), module_attr(name))
        return got

    @staticmethod
    def _child(obj: Any, yang_name: str) -> tuple[Any, str] | None:
        for attr in getattr(obj, "_pyangbind_elements", ()):
            child = getattr(obj, attr)
            if getattr(child, "_yang_name", None) == yang_name:
                return child, attr
        return None

    def node(self, shape: tuple[str, ...]) -> _Node | None:
        """The binding node at ``shape`` (names only, list keys left out), or None if absent."""
        try:
            return self._nodes[shape]
        except KeyError:
            pass
        got: _Node | None
        if not shape:
            return None
        if len(shape) == 1:
            root = self._root(shape[0])
            got = None if root is None else _Node(_entry_of(root))
        else:
            parent = self.node(shape[:-1])
            found = None if parent is None or parent.attr is not None else self._child(parent.obj, shape[-1])
            if found is None or parent is None:
                got = None
            elif getattr(found[0], "_is_leaf", False):
                got = _Node(parent.obj, found[1])  # a leaf: its parent object and attribute
            else:
                got = _Node(_entry_of(found[0]))
        self._nodes[shape] = got
        return got

    def warm(self, shapes: list[tuple[str, ...]]) -> None:
        """Load the bindings and resolve ``shapes`` now (before the fleet freezes its GC-tracked
        objects at start-up: the bindings are ~10^6 objects the cyclic GC should not rescan)."""
        for shape in shapes:
            self.node(shape)
            self.default(shape)

    def has(self, shape: tuple[str, ...]) -> bool:
        return self.node(shape) is not None

    # -- leaves -----------------------------------------------------------------------------------

    def check(self, shape: tuple[str, ...], value: Any, identity_module: str = "") -> str | None:
        """Why ``value`` is not valid for the leaf at ``shape`` per the models, or None if it is."""
        key = (shape, type(value), value)
        try:
            return self._checks[key]
        except KeyError:
            pass
        n = self.node(shape)
        if n is None or n.attr is None:
            reason: str | None = "not in the OpenConfig models (unknown, or removed from them)"
        else:
            given = f"{identity_module}:{value}" if identity_module and ":" not in str(value) else value
            try:
                getattr(n.obj, f"_set_{n.attr}")(given)
                reason = None
            except (ValueError, TypeError, KeyError) as err:
                reason = _reason(err)
            finally:
                _unset(n.obj, n.attr)
        if len(self._checks) >= _CHECK_CACHE_MAX:
            self._checks.clear()
        self._checks[key] = reason
        return reason

    def is_config(self, shape: tuple[str, ...]) -> bool:
        n = self.node(shape)
        return n is not None and n.attr is not None and bool(getattr(getattr(n.obj, n.attr), "_is_config", True))

    def default(self, shape: tuple[str, ...]) -> Any:
        """The YANG default of the leaf at ``shape`` as a plain value, or None if it has none."""
        try:
            got = self._defaults[shape]
        except KeyError:
            got = self._defaults[shape] = self._default(shape)
        return None if got is _NO_DEFAULT else got

    def _default(self, shape: tuple[str, ...]) -> Any:
        n = self.node(shape)
        if n is None or n.attr is None:
            return _NO_DEFAULT
        d = getattr(getattr(n.obj, n.attr), "_default", False)
        if type(d) is bool:  # pyangbind's "no default" is the bare False
            return _NO_DEFAULT
        if type(d).__name__ == "YANGBool":
            return bool(d)
        if isinstance(d, int):
            return int(d)
        text = str(d)
        return text.partition(":")[2] if ":" in text else text


def module_attr(name: str) -> str:
    return name.replace("-", "_")


def _entry_of(obj: Any) -> Any:
    """A container itself; for a list, a scratch entry of it (never added to the list)."""
    cls = getattr(obj, "_contained_class", None)
    return obj if cls is None else cls()


def _unset(obj: Any, attr: str) -> None:
    unset = getattr(obj, f"_unset_{attr}", None)
    if unset is not None:
        unset()


def _reason(err: BaseException) -> str:
    arg = err.args[0] if err.args else err
    if isinstance(arg, dict):
        return f"{arg.get('error-string', 'invalid value')} (type {arg.get('defined-type', '?')})"
    return str(arg)


_models: OfficialModels | None = None
_lock = threading.Lock()


def models() -> OfficialModels:
    """The process-wide instance (loaded on first use)."""
    global _models
    if _models is None:
        with _lock:
            if _models is None:
                _models = OfficialModels()
    return _models
