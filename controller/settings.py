"""Controller settings: one table from which `run`'s flags, their environment variables and help come.

Every field of `Settings` is a `run` flag `--<flag>` and an environment variable `TELCO_<FLAG>`
(dashes as underscores); a flag given on the command line beats the environment, which beats the
default written here. `run --help` renders each default from this table, so the help cannot drift.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

LOG_LEVELS = ("debug", "info", "warning", "error")
SINK_MODES = ("structured", "binary")


class SettingError(ValueError):
    """An environment variable holds a value its setting cannot take; the message names both."""


def _optional(text: str) -> str | None:
    return text or None


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(f"expected a port number 0-65535 (0 disables), got {text!r}")
    return value


_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:[^\s?#]+$")


def _absolute_uri(text: str) -> str | None:
    if not text:
        return None
    if not _SCHEME.match(text):
        raise ValueError(
            f"expected an absolute URI without query or fragment, e.g. https://k8s.example.net, got {text!r}"
        )
    return text.rstrip("/")


def _lifetime(text: str) -> int:
    value = int(text)
    if not 5 <= value <= 3600:
        raise ValueError(f"expected between 5 and 3600 seconds, got {text!r}")
    return value


def _setting(
    default: Any,
    help: str,
    *,
    parse: Callable[[str], Any] = str,
    flag: str | None = None,
    short: str | None = None,
    metavar: str | None = None,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A Settings field with what its flag needs; a list default makes a repeatable flag."""
    meta = {"help": help, "parse": parse, "flag": flag, "short": short, "metavar": metavar, "choices": choices}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Settings:
    # _setting returns a dataclasses.field (with a default_factory for a list), which ruff cannot see.
    namespaces: list[str] = _setting(  # noqa: RUF009
        [],
        "watch only this namespace (repeatable); none: all namespaces",
        flag="namespace",
        short="-n",
        metavar="NAMESPACE",
    )
    resync_seconds: float = _setting(
        30.0, "period of the level-triggered re-verification of every device", parse=_finite, metavar="SECONDS"
    )
    debounce_seconds: float = _setting(
        0.05,
        "how long a device's reconcile waits after a change for the rest of a burst of changes",
        parse=_finite,
        metavar="SECONDS",
    )
    retry_initial_seconds: float = _setting(
        0.5,
        "first delay before a failed reconcile (of a device, Subscription, Invoice or ProductOffering) is retried;"
        " doubles on each failure",
        parse=_finite,
        metavar="SECONDS",
    )
    retry_max_seconds: float = _setting(
        30.0, "the longest delay between those retries", parse=_finite, metavar="SECONDS"
    )
    metrics_port: int = _setting(
        0, "serve Prometheus metrics on --metrics-address:PORT; 0 disables", parse=_port, metavar="PORT"
    )
    metrics_address: str = _setting(
        "127.0.0.1", "address the metrics endpoint binds; 0.0.0.0 in a pod, for scraping", metavar="ADDRESS"
    )
    health_port: int = _setting(
        0, "serve /healthz on 127.0.0.1:PORT for liveness probes; 0 disables", parse=_port, metavar="PORT"
    )
    # Admission webhooks (docs/admission.md); the chart registers them with the API server.
    webhook_port: int = _setting(
        0,
        "serve the admission webhooks (validating; mutating: the finalizer) over HTTPS on --webhook-address:PORT;"
        " 0 disables",
        parse=_port,
        metavar="PORT",
    )
    webhook_address: str = _setting(
        "127.0.0.1", "address the webhook binds; 0.0.0.0 in a pod, for the API server", metavar="ADDRESS"
    )
    webhook_cert_dir: str | None = _setting(
        None,
        "directory with the webhook's serving certificate tls.crt and key tls.key (a kubernetes.io/tls Secret"
        " or cert-manager Certificate mounted there); re-read when they change; required with --webhook-port",
        parse=_optional,
        metavar="DIR",
    )
    web_port: int = _setting(
        0,
        "serve a read-only HTML page (customers, devices, what is not Ready and why) on --web-address:PORT; 0 disables",
        parse=_port,
        metavar="PORT",
    )
    web_address: str = _setting("127.0.0.1", "address the web page binds", metavar="ADDRESS")
    # TM Forum Open APIs (docs/tmf.md): TMF620/622/637/638/666/678 over the custom resources.
    tmf_port: int = _setting(
        0,
        "serve the TM Forum Open APIs (productOffering, productOrder, product, service, billingAccount,"
        " customerBill) over HTTPS on --tmf-address:PORT; 0 disables",
        parse=_port,
        metavar="PORT",
    )
    tmf_address: str = _setting(
        "127.0.0.1", "address the TM Forum APIs bind; 0.0.0.0 in a pod, behind its Service", metavar="ADDRESS"
    )
    tmf_cert_dir: str | None = _setting(
        None,
        "directory with the TM Forum APIs' serving certificate tls.crt and key tls.key (a kubernetes.io/tls"
        " Secret mounted there); unset: a self-signed certificate made at start (never plain HTTP)",
        parse=_optional,
        metavar="DIR",
    )
    peering: str | None = _setting(
        None, "Kopf peering object for active/standby replicas; unset: standalone", parse=_optional, metavar="NAME"
    )
    priority: int = _setting(
        0, "this replica's peering priority; give each replica a distinct one", parse=int, metavar="NUMBER"
    )
    # Kopf's settings.peering.lifetime; its own default is 60.
    peering_lifetime: int = _setting(
        15,
        "how long a replica's peering keep-alive counts: a standby takes over at most this long after the active"
        " replica dies; keep-alives are sent 5-10 s before it ends; Kopf's own default is 60",
        parse=_lifetime,
        metavar="SECONDS",
    )
    # Sharding by device over coordination.k8s.io Leases (controller/sharding.py, docs/sharding.md).
    shard_group: str | None = _setting(
        None,
        "run as one of N active replicas that share the devices through Leases named after GROUP; unset: one"
        " replica drives every device",
        parse=_optional,
        metavar="GROUP",
    )
    shard_namespace: str = _setting(
        "default", "namespace of the shard Leases (the chart gives the release's own)", metavar="NAMESPACE"
    )
    shard_lease_seconds: float = _setting(
        15.0,
        "how long the other replicas wait on a replica that stopped renewing before taking its devices",
        parse=_finite,
        metavar="SECONDS",
    )
    shard_renew_deadline_seconds: float = _setting(
        10.0,
        "a replica stops driving its devices this long after its last successful renew (less than"
        " --shard-lease-seconds: the difference covers a Set in flight)",
        parse=_finite,
        metavar="SECONDS",
    )
    shard_renew_seconds: float = _setting(
        2.0, "how often a replica renews its Lease and looks at the others'", parse=_finite, metavar="SECONDS"
    )
    log_level: str = _setting("info", "least severe log level printed", choices=LOG_LEVELS)
    # Billing (docs/commerce.md): where billing CloudEvents go, tax, and how often periods close.
    billing_sink_urls: list[str] = _setting(  # noqa: RUF009
        [], "POST billing CloudEvents to URL (repeatable)", flag="billing-sink-url", metavar="URL"
    )
    billing_sink_mode: str = _setting("structured", "CloudEvents HTTP content mode", choices=SINK_MODES)
    billing_jsonl: str | None = _setting(
        None, "also append every billing CloudEvent to this JSON Lines file", parse=_optional, metavar="PATH"
    )
    billing_signing_key_file: str | None = _setting(
        None,
        "file (a mounted Secret) with the HMAC keys that sign every outbox entry, one per line, the first"
        " signing; entries without a valid proof are quarantined, never delivered; unset: entries are neither"
        " signed nor checked (docs/billing.md)",
        parse=_optional,
        metavar="PATH",
    )
    billing_sink_auth_header: str | None = _setting(
        None,
        'Authorization header value sent to every --billing-sink-url, e.g. "Bearer <token>"; give it as the'
        " environment variable (from a Secret), not on the command line",
        parse=_optional,
        metavar="VALUE",
    )
    billing_sink_ca_file: str | None = _setting(
        None,
        "PEM file of the CA that signs the billing sinks' certificates; unset: the system's CAs",
        parse=_optional,
        metavar="PATH",
    )
    cluster_identity: str | None = _setting(
        None,
        "absolute URI naming this cluster, e.g. https://k8s.example.net; billing CloudEvents' source becomes"
        " it followed by the object's API path (an absolute URI, as the CloudEvents spec recommends);"
        " unset: the API path alone. Consumers deduplicate on source + id: set it before the first event",
        parse=_absolute_uri,
        metavar="URI",
    )
    tax_category: str = _setting("VAT", "tax applied to invoices", metavar="CATEGORY")
    tax_rate: str | None = _setting(
        None, 'tax rate in percent, e.g. "20"; unset: invoices carry no tax', parse=_optional, metavar="PERCENT"
    )
    billing_interval_seconds: float = _setting(
        60.0,
        "period of the billing pass: close ended periods, create and issue invoices, dunning",
        parse=_finite,
        metavar="SECONDS",
    )
    usage_interval_seconds: float = _setting(
        300.0,
        "period of the octet-counter samples for usage-priced subscriptions",
        parse=_finite,
        metavar="SECONDS",
    )
    billing_retry_seconds: float = _setting(
        5.0,
        "longest wait between billing delivery passes when nothing new is queued: how soon a sink that was down"
        " is tried again",
        parse=_finite,
        metavar="SECONDS",
    )
    subscription_progress_seconds: float = _setting(
        20.0,
        "longest wait of a Subscription's first status while its new NetworkService has reported nothing: an"
        " activation within it is the first write, with its event (refusals, facts and reports never wait)",
        parse=_finite,
        metavar="SECONDS",
    )
    # Test-only: move the controller's clock forward (controller.billing.clock.OffsetClock).
    clock_offset_seconds: float = _setting(
        0.0,
        "test only: run the controller's clock this far ahead of the wall clock",
        parse=float,
        metavar="SECONDS",
    )
    clock_offset_file: str | None = _setting(
        None,
        "test only: read the clock offset in seconds from this file whenever it changes (time never goes back)",
        parse=_optional,
        metavar="PATH",
    )


@dataclass(frozen=True)
class Option:
    """One setting as the command line sees it."""

    field: str
    flag: str  # without the leading dashes
    short: str | None
    env: str
    default: Any
    help: str
    parse: Callable[[str], Any]
    metavar: str | None
    choices: tuple[str, ...] | None

    @property
    def repeatable(self) -> bool:
        return isinstance(self.default, list)

    def from_env(self, environ: Mapping[str, str]) -> Any:
        """The value TELCO_<FLAG> gives, or the default when it is unset; a list is comma-separated."""
        raw = environ.get(self.env)
        if raw is None:
            return self.default
        try:
            if self.repeatable:
                return [self.parse(v.strip()) for v in raw.split(",") if v.strip()]
            value = self.parse(raw)
        except ValueError as exc:
            raise SettingError(f"{self.env}={raw!r}: {exc}") from None
        if self.choices is not None and value not in self.choices:
            raise SettingError(f"{self.env}={raw!r}: expected one of {', '.join(self.choices)}")
        return value


def describe(value: Any) -> str:
    """A default as `--help` prints it."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(str(v) for v in value) if value else "none"
    return str(value)


def options() -> list[Option]:
    """Every setting, in field order."""
    result = []
    for f in fields(Settings):
        meta = f.metadata
        flag = meta["flag"] or f.name.replace("_", "-")
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        result.append(
            Option(
                field=f.name,
                flag=flag,
                short=meta["short"],
                env="TELCO_" + flag.upper().replace("-", "_"),
                default=default,
                help=meta["help"],
                parse=meta["parse"],
                metavar=meta["metavar"],
                choices=meta["choices"],
            )
        )
    return result


def resolve(given: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
    """Settings from the flags given (field name -> value; absent: not on the command line), else the
    environment, else the defaults. Raises SettingError for an environment value a setting cannot take,
    or for settings that cannot go together."""
    settings = Settings(**{o.field: given[o.field] if o.field in given else o.from_env(environ) for o in options()})
    if settings.webhook_port and not settings.webhook_cert_dir:
        raise SettingError(
            "--webhook-port needs --webhook-cert-dir (TELCO_WEBHOOK_CERT_DIR): the API server calls webhooks"
            " over HTTPS only"
        )
    if settings.shard_group and settings.peering:
        raise SettingError(
            "--shard-group and --peering cannot go together: sharded replicas are all active (docs/sharding.md)"
        )
    if settings.shard_group and settings.namespaces:
        raise SettingError(
            "--shard-group and --namespace cannot go together: namespaces share devices, so every replica of"
            " the group must see every NetworkService (docs/sharding.md)"
        )
    if settings.shard_group and not (
        0 < settings.shard_renew_seconds < settings.shard_renew_deadline_seconds < settings.shard_lease_seconds
    ):
        raise SettingError(
            "--shard-renew-seconds, --shard-renew-deadline-seconds, --shard-lease-seconds: expected"
            f" 0 < renew < deadline < lease, got {settings.shard_renew_seconds:g} /"
            f" {settings.shard_renew_deadline_seconds:g} / {settings.shard_lease_seconds:g}"
        )
    return settings
