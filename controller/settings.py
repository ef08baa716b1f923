"""Controller settings: flags with environment defaults (TELCO_*), documented in `run --help`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(f"TELCO_{name}", default)


def _env_list(name: str) -> list[str]:
    """A comma-separated TELCO_<name> as a list (the environment form of a repeatable flag)."""
    return [v.strip() for v in os.environ.get(f"TELCO_{name}", "").split(",") if v.strip()]


@dataclass
class Settings:
    namespaces: list[str] = field(default_factory=list)  # empty: all namespaces
    resync_seconds: float = float(_env("RESYNC_SECONDS", "30"))
    debounce_seconds: float = float(_env("DEBOUNCE_SECONDS", "0.05"))
    retry_initial_seconds: float = float(_env("RETRY_INITIAL_SECONDS", "0.5"))
    retry_max_seconds: float = float(_env("RETRY_MAX_SECONDS", "30"))
    metrics_port: int = int(_env("METRICS_PORT", "0"))  # 0: no metrics endpoint
    metrics_address: str = _env("METRICS_ADDRESS", "127.0.0.1")  # 0.0.0.0 in a pod, for scraping
    health_port: int = int(_env("HEALTH_PORT", "0"))
    peering: str | None = os.environ.get("TELCO_PEERING") or None
    priority: int = int(_env("PRIORITY", "0"))
    # Seconds a replica's peering keep-alive counts (Kopf's settings.peering.lifetime; its default is
    # 60): a standby takes over at most this long after the active replica dies.
    peering_lifetime: int = int(_env("PEERING_LIFETIME", "15"))
    # Billing (docs/commerce.md): where billing CloudEvents go, tax, and how often periods close.
    billing_sink_urls: list[str] = field(default_factory=lambda: _env_list("BILLING_SINK_URL"))
    billing_sink_mode: str = _env("BILLING_SINK_MODE", "structured")  # structured | binary
    billing_jsonl: str | None = os.environ.get("TELCO_BILLING_JSONL") or None
    tax_category: str = _env("TAX_CATEGORY", "VAT")
    tax_rate: str | None = os.environ.get("TELCO_TAX_RATE") or None  # unset: bills carry no tax
    billing_interval_seconds: float = float(_env("BILLING_INTERVAL_SECONDS", "60"))
    usage_interval_seconds: float = float(_env("USAGE_INTERVAL_SECONDS", "300"))
    billing_retry_seconds: float = float(_env("BILLING_RETRY_SECONDS", "5"))  # sink down: next attempt
    # Test-only: move the controller's clock forward (controller.billing.clock.OffsetClock).
    clock_offset_seconds: float = float(_env("CLOCK_OFFSET_SECONDS", "0"))
    clock_offset_file: str | None = os.environ.get("TELCO_CLOCK_OFFSET_FILE") or None
