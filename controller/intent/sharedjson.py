"""One copy of each rendered JSON subtree, shared by every entry that has it.

Renders repeat most of their values: a scheduler policy or QoS interface depends only on the port,
VLAN and rates, so the same port and VLAN on a hundred devices render a hundred equal trees, and
every service with the same rates the same scheduler. The controller keeps each service's render for
as long as the service lives, so `shared` folds equal subtrees into one read-only object. Objects
are held weakly: a subtree no render uses any more is freed with its last user.
"""

from __future__ import annotations

import weakref
from typing import Any, NoReturn


def _read_only(*_: Any, **__: Any) -> NoReturn:
    raise TypeError("a shared rendered value is read-only; copy it to change it")


class SharedDict(dict[str, Any]):
    """A JSON object shared between renders: equal to, and used like, a plain dict, never changed."""

    __slots__ = ("__weakref__",)
    __setitem__ = __delitem__ = update = pop = popitem = setdefault = clear = __ior__ = _read_only

    def __reduce__(self) -> tuple[type[dict[str, Any]], tuple[dict[str, Any]]]:
        return dict, (dict(self),)  # copy and pickle as a plain (changeable) dict


class SharedList(list[Any]):
    """A JSON array shared between renders."""

    __slots__ = ("__weakref__",)
    __setitem__ = __delitem__ = append = extend = insert = pop = remove = clear = sort = reverse = _read_only
    __iadd__ = __imul__ = _read_only

    def __reduce__(self) -> tuple[type[list[Any]], tuple[list[Any]]]:
        return list, (list(self),)


_TABLE: weakref.WeakValueDictionary[tuple[Any, ...], SharedDict | SharedList] = weakref.WeakValueDictionary()
_SHARED_TYPES = (SharedDict, SharedList)


def shared(value: Any) -> Any:
    """`value` with every object and array replaced by the one shared copy of an equal one."""
    if isinstance(value, SharedDict | SharedList):
        return value
    if isinstance(value, dict):
        obj = SharedDict({k: shared(v) for k, v in value.items()})
        made: SharedDict | SharedList = obj
        key = _key(SharedDict, obj.items())
    elif isinstance(value, list):
        made = SharedList(shared(v) for v in value)
        key = _key(SharedList, enumerate(made))
    else:
        return value
    found = _TABLE.get(key)
    if found is None:
        _TABLE[key] = found = made
    return found


def _key(kind: type, items: Any) -> tuple[Any, ...]:
    """A value's identity, smaller than its text: each scalar by type and value (true is not 1, 1 is not
    1.0, as JSON equality must), each member (already shared) by id: a member outlives the entry, held
    by the value the entry maps to."""
    out: list[Any] = [kind]
    for k, v in items:
        t = type(v)
        out += (k, t, id(v) if t in _SHARED_TYPES else v)
    return tuple(out)
