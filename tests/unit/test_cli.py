"""`python -m controller`: every flag documented with its default (and, for `run`, its environment
variable), every setting a `run` flag, and the values reaching the Settings the controller runs with."""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any

import pytest

from controller import __main__ as cli
from controller import discovery
from controller.settings import SettingError, Settings, describe, options, resolve

SETTINGS_DEFAULTS = {
    f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    for f in dataclasses.fields(Settings)
}


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def flag_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The help line of one flag as `--help` prints it, on one line."""
    return " ".join(parser._get_formatter()._expand_help(action).split())


def flags(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]


def test_every_subcommand_is_walked() -> None:
    assert set(subparsers()) == {"run", "tmf-api", "plan", "status", "crds", "demo"}


@pytest.mark.parametrize("command", sorted(subparsers()))
def test_every_flag_has_help_with_its_default(command: str) -> None:
    parser = subparsers()[command]
    for action in flags(parser):
        name = action.option_strings[-1]
        assert action.help and action.help != argparse.SUPPRESS, f"{command} {name} has no help"
        text = flag_help(parser, action)
        if action.required:
            assert text.endswith("(required)"), f"{command} {name}: {text}"
        elif command in ("run", "tmf-api"):  # the settings table's flags
            default = describe(SETTINGS_DEFAULTS[action.dest])
            assert f"; default {default})" in text, f"{command} {name} does not show default {default}: {text}"
        else:
            default = describe(action.default)
            assert text.endswith(f"(default {default})"), f"{command} {name} does not show {default}: {text}"
    assert "usage:" in parser.format_help()  # renders (a stray % in a help text would raise here)


def test_every_run_flag_names_its_environment_variable() -> None:
    run = subparsers()["run"]
    for action in flags(run):
        env = "TELCO_" + action.option_strings[-1].removeprefix("--").upper().replace("-", "_")
        assert f"(env {env}" in flag_help(run, action), action.option_strings


def test_help_shows_the_settings_defaults_literally() -> None:
    run = subparsers()["run"]
    by_flag = {a.option_strings[-1]: flag_help(run, a) for a in flags(run)}
    assert by_flag["--debounce-seconds"].endswith("(env TELCO_DEBOUNCE_SECONDS; default 0.05)")
    assert by_flag["--billing-retry-seconds"].endswith("(env TELCO_BILLING_RETRY_SECONDS; default 5)")
    assert by_flag["--clock-offset-seconds"].endswith("(env TELCO_CLOCK_OFFSET_SECONDS; default 0)")
    assert by_flag["--log-level"].endswith("(env TELCO_LOG_LEVEL; default info)")
    assert by_flag["--namespace"].endswith("(env TELCO_NAMESPACE, comma-separated; default none)")
    assert by_flag["--tax-rate"].endswith("(env TELCO_TAX_RATE; default unset)")
    # The metrics endpoint binds --metrics-address, not always loopback.
    assert "--metrics-address:PORT" in by_flag["--metrics-port"] and "127.0.0.1" not in by_flag["--metrics-port"]
    assert by_flag["--metrics-address"].endswith("default 127.0.0.1)")


def test_every_setting_has_a_run_flag() -> None:
    dests = {a.dest for a in flags(subparsers()["run"])}
    assert set(SETTINGS_DEFAULTS) <= dests, set(SETTINGS_DEFAULTS) - dests


def _other_value(option: Any) -> tuple[list[str], Any]:
    """Command-line words giving `option` a value other than its default, and the value expected."""
    flag = f"--{option.flag}"
    if option.choices:
        choice = next(c for c in option.choices if c != option.default)
        return [flag, choice], choice
    if option.repeatable:
        return [flag, "a", flag, "b"], ["a", "b"]
    if option.default is None or isinstance(option.default, str):
        given = "urn:telco:given" if option.metavar == "URI" else "given"  # a URI setting takes only URIs
        return [flag, given], given
    text = str(option.default + 1)
    return [flag, text], option.parse(text)


# Sharded replicas refuse --peering and --namespace (docs/sharding.md): their flags go in a run of their own.
EXCLUSIVE = ({"peering", "priority", "peering_lifetime", "namespaces"}, {"shard_group"})


@pytest.mark.parametrize("left_out", EXCLUSIVE, ids=["sharded", "peering-and-namespaces"])
def test_every_flag_reaches_settings(left_out: set[str]) -> None:
    argv, expected = ["run"], {}
    for option in options():
        if option.field in left_out:
            expected[option.field] = option.default
            continue
        words, value = _other_value(option)
        assert value != option.default
        argv += words
        expected[option.field] = value
    settings = cli.settings_from_args(cli.build_parser().parse_args(argv), environ={})
    assert dataclasses.asdict(settings) == expected


@pytest.mark.parametrize(
    ("argv", "named"),
    [
        (["--shard-group", "g", "--peering", "p"], "--peering"),
        (["--shard-group", "g", "-n", "a"], "--namespace"),
        (["--shard-group", "g", "--shard-renew-deadline-seconds", "20"], "renew < deadline < lease"),
        (["--shard-group", "g", "--shard-renew-seconds", "0"], "renew < deadline < lease"),
    ],
)
def test_sharding_refuses_what_would_let_two_replicas_drive_one_device(argv: list[str], named: str) -> None:
    with pytest.raises(SettingError, match=re.escape(named)):
        cli.settings_from_args(cli.build_parser().parse_args(["run", *argv]), environ={})


def test_no_flags_no_environment_gives_the_defaults() -> None:
    settings = cli.settings_from_args(cli.build_parser().parse_args(["run"]), environ={})
    assert settings == Settings()


def test_environment_fills_what_the_command_line_leaves_out() -> None:
    environ = {
        "TELCO_DEBOUNCE_SECONDS": "0.2",
        "TELCO_RETRY_INITIAL_SECONDS": "1",
        "TELCO_RETRY_MAX_SECONDS": "8",
        "TELCO_BILLING_RETRY_SECONDS": "0.5",
        "TELCO_CLOCK_OFFSET_SECONDS": "86400",
        "TELCO_CLOCK_OFFSET_FILE": "/tmp/offset",
        "TELCO_NAMESPACE": "a, b",
        "TELCO_LOG_LEVEL": "debug",
    }
    args = cli.build_parser().parse_args(["run", "--log-level", "warning", "-n", "c"])
    settings = cli.settings_from_args(args, environ)
    assert (settings.debounce_seconds, settings.retry_initial_seconds, settings.retry_max_seconds) == (0.2, 1.0, 8.0)
    assert settings.billing_retry_seconds == 0.5
    assert (settings.clock_offset_seconds, settings.clock_offset_file) == (86400.0, "/tmp/offset")
    assert settings.log_level == "warning", "a flag wins over the environment"
    assert settings.namespaces == ["c"], "a repeatable flag replaces the environment's list"
    assert resolve({}, environ).namespaces == ["a", "b"]


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        ("TELCO_PEERING_LIFETIME", "2", "expected between 5 and 3600 seconds"),
        ("TELCO_LOG_LEVEL", "loud", "expected one of debug, info, warning, error"),
        ("TELCO_DEBOUNCE_SECONDS", "soon", "could not convert"),
        ("TELCO_RESYNC_SECONDS", "-1", "expected a number of seconds >= 0"),
        ("TELCO_METRICS_PORT", "70000", "expected a port number 0-65535"),
        ("TELCO_CLUSTER_IDENTITY", "k8s.example.net", "expected an absolute URI"),
        ("TELCO_CLUSTER_IDENTITY", "https://k8s.example.net/?x=1", "without query or fragment"),
    ],
)
def test_a_bad_environment_value_names_the_variable(env: str, value: str, expected: str) -> None:
    with pytest.raises(SettingError) as caught:
        resolve({}, {env: value})
    assert str(caught.value).startswith(f"{env}={value!r}: ") and expected in str(caught.value)


def test_main_refuses_a_bad_environment_value(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.setenv("TELCO_PEERING_LIFETIME", "1")
    assert cli.main(["run"]) == 2
    assert "TELCO_PEERING_LIFETIME='1': expected between 5 and 3600" in capsys.readouterr().err


def test_a_bad_flag_value_says_what_is_expected(capsys: Any) -> None:
    with pytest.raises(SystemExit) as caught:
        cli.build_parser().parse_args(["run", "--peering-lifetime", "2"])
    assert caught.value.code == 2
    assert "--peering-lifetime: expected between 5 and 3600 seconds" in capsys.readouterr().err


def test_run_hands_the_settings_to_the_handlers_and_kopf(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `run` parsed is what the handlers' Controller is built from (lifecycle.SETTINGS) and what
    Kopf is started with; nothing is read from the flags a second time."""
    import kopf

    from controller.handlers import lifecycle

    monkeypatch.setattr(lifecycle, "SETTINGS", lifecycle.SETTINGS)
    started: dict[str, Any] = {}

    async def operator(**kwargs: Any) -> None:
        started.update(kwargs)

    monkeypatch.setattr(kopf, "operator", operator)
    waited: list[bool] = []
    monkeypatch.setattr(discovery, "wait_until_served", lambda: waited.append(not started))
    monkeypatch.setenv("TELCO_BILLING_RETRY_SECONDS", "0.25")
    argv = ["run", "-n", "shop", "--debounce-seconds", "0.3", "--health-port", "8181", "--clock-offset-seconds", "60"]
    assert cli.main(argv) == 0
    settings = lifecycle.SETTINGS
    assert (settings.debounce_seconds, settings.clock_offset_seconds, settings.billing_retry_seconds) == (
        0.3,
        60.0,
        0.25,
    )
    assert started["namespaces"] == ["shop"] and started["clusterwide"] is False
    assert started["liveness_endpoint"] == "http://127.0.0.1:8181/healthz"
    assert started["standalone"] is True
    assert waited == [True], "Kopf starts only after discovery serves our kinds"
    assert started["stop_flag"] is not None, "a stop flag, for the guard against a scan that misses them"


def test_a_webhook_port_without_a_certificate_is_refused() -> None:
    with pytest.raises(SettingError, match="--webhook-port needs --webhook-cert-dir"):
        resolve({"webhook_port": 9443}, {})
    assert resolve({"webhook_port": 9443}, {"TELCO_WEBHOOK_CERT_DIR": "/certs"}).webhook_cert_dir == "/certs"
    assert resolve({}, {}).webhook_port == 0  # off unless asked for


def test_run_serves_the_webhook_only_when_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    """With --webhook-port the admission handlers are registered with Kopf; without, Kopf would refuse
    to start (admission handlers but no server), so they are not."""
    import sys

    import kopf

    from controller.handlers import lifecycle

    monkeypatch.setattr(lifecycle, "SETTINGS", lifecycle.SETTINGS)
    monkeypatch.delitem(sys.modules, "controller.handlers.admission", raising=False)

    async def operator(**kwargs: Any) -> None:
        return None

    monkeypatch.setattr(kopf, "operator", operator)
    monkeypatch.setattr(discovery, "wait_until_served", lambda: None)
    assert cli.main(["run"]) == 0
    assert "controller.handlers.admission" not in sys.modules
    assert cli.main(["run", "--webhook-port", "9443", "--webhook-cert-dir", str(tmp_path)]) == 0
    assert "controller.handlers.admission" in sys.modules
    assert lifecycle.SETTINGS.webhook_port == 9443
