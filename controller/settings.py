"""Controller settings: flags with environment defaults (TELCO_*), documented in `run --help`."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _env(name: str, default: str) -> str:
    return os.environ.get(f"TELCO_{name}", default)


@dataclass
class Settings:
    namespaces: list[str] = field(default_factory=list)  # empty: all namespaces
    resync_seconds: float = float(_env("RESYNC_SECONDS", "30"))
    debounce_seconds: float = float(_env("DEBOUNCE_SECONDS", "0.02"))
    retry_initial_seconds: float = float(_env("RETRY_INITIAL_SECONDS", "0.5"))
    retry_max_seconds: float = float(_env("RETRY_MAX_SECONDS", "30"))
    metrics_port: int = int(_env("METRICS_PORT", "0"))  # 0: no metrics endpoint
    metrics_address: str = _env("METRICS_ADDRESS", "127.0.0.1")  # 0.0.0.0 in a pod, for scraping
    health_port: int = int(_env("HEALTH_PORT", "0"))
    peering: str | None = os.environ.get("TELCO_PEERING") or None
    priority: int = int(_env("PRIORITY", "0"))
