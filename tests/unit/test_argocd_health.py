"""The Argo CD health scripts in deploy/argocd/health, run by a real Lua 5.1 (lupa's lua51 module)
with exactly the libraries Argo CD opens for them, on the table of live objects in tests/gitops_cases.py.

Argo CD (util/lua/lua.go, v3.6) runs a custom health script in a gopher-lua state made with
SkipOpenLibs and then opens only the package, base and table libraries and its own reduced `os`
(time and date only, also what `require("os")` returns). No string, math, coroutine, io or debug
library, and strings have no methods: `string.format` or `s:sub` in a script reads Unknown there.
tests/integration/test_gitops_tools.py runs the same table in Argo CD's own engine when it is built.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

# lupa (a test dependency) bundles several Lua versions; lua51 matches gopher-lua's semantics.
from lupa import lua51 as lua_module

from controller.api import GROUP, KINDS
from tests.gitops_cases import CASES, NO_STATUS, Case

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "deploy" / "argocd"
HEALTH = ARGOCD / "health"
STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
# What Argo CD's VM has: base, package (require, module), table, and os reduced to time and date.
ARGOCD_LIBRARIES = {"package", "table", "os"}
ABSENT_LIBRARIES = {"string", "math", "coroutine", "io", "debug"}


def test_lua_runtime_is_5_1() -> None:
    runtime = lua_module.LuaRuntime()
    assert runtime.eval("_VERSION") == "Lua 5.1", "lupa.lua51 is needed: gopher-lua has Lua 5.1 semantics"


def argocd_vm() -> Any:
    """A Lua state with the environment Argo CD gives custom health scripts (see the module doc).

    lupa opens every standard library; this takes away what Argo CD does not open, including the
    string metatable that gives strings their methods."""
    runtime = lua_module.LuaRuntime(unpack_returned_tuples=True)
    runtime.execute(
        """
        debug.setmetatable("", nil)
        local safe_os = { time = os.time, date = os.date }
        for _, name in ipairs({ "string", "math", "coroutine", "io", "debug", "os" }) do
          _G[name] = nil
          package.loaded[name] = nil
        end
        os = safe_os
        package.loaded.os = safe_os
        """
    )
    return runtime


def health(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """Run deploy/argocd/health/<kind>.lua on `obj` in a fresh Argo CD-like state; the returned table."""
    runtime = argocd_vm()
    runtime.globals().obj = runtime.table_from(obj, recursive=True)
    result = runtime.execute(_render_module().script(HEALTH / f"{kind}.lua"))
    assert result is not None, f"{kind}.lua returned nothing"
    out = dict(result.items())
    assert out.get("status") in STATUSES, (kind, out)
    assert isinstance(out.get("message"), str) and out["message"].strip(), f"{kind}.lua returned no message"
    return out


def test_the_harness_opens_what_argocd_opens_and_nothing_else() -> None:
    g = argocd_vm().globals()
    for name in ARGOCD_LIBRARIES:
        assert g[name] is not None, name
    for name in ABSENT_LIBRARIES:
        assert g[name] is None, name
    assert sorted(g.os.keys()) == ["date", "time"]
    for builtin in ("require", "module", "tostring", "tonumber", "ipairs", "pairs", "pcall", "error", "unpack"):
        assert g[builtin] is not None, builtin


@pytest.mark.parametrize(
    "script",
    [
        'return string.format("%d", 1)',
        'return ("abc"):sub(1, 1)',
        "return math.floor(1.5)",
        'return require("string")',
        "return coroutine.create(print)",
        "return os.getenv('HOME')",
    ],
)
def test_what_argocd_lacks_fails_in_the_harness_too(script: str) -> None:
    with pytest.raises(lua_module.LuaError):
        argocd_vm().execute(script)


@pytest.mark.parametrize("kind", [m.KIND for m in KINDS])
def test_every_kind_has_a_script(kind: str) -> None:
    assert (HEALTH / f"{kind}.lua").is_file()


@pytest.mark.parametrize("case", CASES + NO_STATUS, ids=lambda c: c.name)
def test_health_of_every_live_state(case: Case) -> None:
    hs = health(case.kind, case.obj)
    assert hs["status"] == case.argocd, (hs, case.obj.get("status"))
    assert hs["status"] != "Suspended", "Suspended never completes a sync wave"
    assert case.says in hs["message"], hs["message"]


@pytest.mark.parametrize("kind", [m.KIND for m in KINDS])
def test_deleting_objects_carry_argocds_deletion_message(kind: str) -> None:
    # Argo CD v3.6 replaces a deleting object's message by "Pending deletion" unless the script sets
    # deletionMessage; ours does, so the operator reads what the controller waits for.
    case = next(c for c in CASES if c.name == f"{kind}-deleting")
    hs = health(kind, case.obj)
    assert (
        hs["deletionMessage"]
        == hs["message"]
        == ("being deleted: waiting for the controller to clean up and release its finalizer")
    )


# -- child Applications (app-of-apps waves) -----------------------------------------------------


def test_application_health_passes_the_child_health_through() -> None:
    def verdict(app: dict[str, Any]) -> tuple[str, str]:
        hs = health("Application", app)
        return hs["status"], hs["message"]

    app: dict[str, Any] = {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "a"}}
    assert verdict(app) == ("Progressing", "waiting for the Application's health")
    app["status"] = {"health": {"status": "Healthy"}}
    assert verdict(app) == ("Healthy", "Application is Healthy")
    app["status"] = {"health": {"status": "Degraded", "message": "Deployment x exceeded its progress deadline"}}
    assert verdict(app) == ("Degraded", "Deployment x exceeded its progress deadline")


# -- the generated argocd-cm snippet and quickstart copies are current ---------------------------


@functools.cache
def _render_module() -> Any:
    spec = importlib.util.spec_from_file_location("argocd_render", ARGOCD / "render.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_files_are_current() -> None:
    render = _render_module()
    expected = render.expected()
    stale = [str(p.relative_to(ROOT)) for p, text in expected.items() if not p.is_file() or p.read_text() != text]
    extra = [str(p.relative_to(ROOT)) for p in (ARGOCD / "quickstart").glob("*.yaml") if p not in expected]
    assert not stale and not extra, f"run python deploy/argocd/render.py (stale: {stale}, extra: {extra})"


def test_configmap_holds_every_script_under_its_key() -> None:
    render = _render_module()
    cm = yaml.safe_load((ARGOCD / "argocd-cm-health.yaml").read_text())
    assert (cm["kind"], cm["metadata"]["name"]) == ("ConfigMap", "argocd-cm")
    for model in KINDS:
        key = f"resource.customizations.health.{GROUP}_{model.KIND}"
        assert cm["data"][key] == render.script(HEALTH / f"{model.KIND}.lua"), key
        assert "-- #include" not in cm["data"][key], "Argo CD needs self-contained scripts"
    assert cm["data"]["resource.customizations.health.argoproj.io_Application"] == render.script(
        HEALTH / "Application.lua"
    )


def test_quickstart_copies_carry_waves_and_leave_the_controller_namespace_alone() -> None:
    render = _render_module()
    seen = set()
    for path in sorted((ARGOCD / "quickstart").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            wave = int(doc["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"])
            assert wave >= 0, "custom resources come after the controller (waves -2 and -1)"
            assert not (doc["kind"] == "Namespace" and doc["metadata"]["name"] == render.CHART_NAMESPACE)
            seen.add(doc["kind"])
    assert {m.KIND for m in KINDS} <= seen
    waves = render.WAVES
    assert waves["ProductOffering"] < waves["Subscription"] < waves["Invoice"]
    assert waves["NetworkDevice"] < waves["Subscription"]
