"""The pure domain core between NetworkServices and device configuration; no I/O.

Per device: render (service -> entries) -> preflight (problems only the observed device reveals) ->
merge (the services left -> DeviceIntent, Conflicts) -> plan (minimal SetRequest over the leaves the
controller owns, see ownership) and verify (drift).
"""

from .merge import Claim, Conflict, DeviceEntry, DeviceIntent, MergeResult, merge
from .normalise import Change, JsonObject, JsonValue, Observed, build_tree, extract, normalise, observe
from .ownership import OwnedLeaves, leaf_paths
from .paths import ROOT, GPath, PathElem
from .plan import Assessment, Drift, SetOp, SetPlan, assess, plan, verify
from .preflight import preflight
from .render import ManagedEntry, ServiceKey, render

__all__ = [
    "ROOT",
    "Assessment",
    "Change",
    "Claim",
    "Conflict",
    "DeviceEntry",
    "DeviceIntent",
    "Drift",
    "GPath",
    "JsonObject",
    "JsonValue",
    "ManagedEntry",
    "MergeResult",
    "Observed",
    "OwnedLeaves",
    "PathElem",
    "ServiceKey",
    "SetOp",
    "SetPlan",
    "assess",
    "build_tree",
    "extract",
    "leaf_paths",
    "merge",
    "normalise",
    "observe",
    "plan",
    "preflight",
    "render",
    "verify",
]
