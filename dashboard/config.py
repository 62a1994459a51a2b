"""Dashboard settings: one frozen dataclass read from environment variables.

Every setting comes from the environment so ``streamlit run dashboard/app.py``,
docker compose and the tests configure the same way; a bad value stops the app
with a message naming the variable instead of a stack trace.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from connectors.kafka_settings import client_settings_from_env



class DashboardConfigError(ValueError):
    """An environment variable has a bad value; the message names it."""


@dataclass(frozen=True)
class DashboardConfig:
    brokers: str = "localhost:9092"
    """KAFKA_BROKERS: bootstrap servers, comma separated."""
    anomaly_topic: str = "anomalies"
    """ANOMALY_TOPIC: where the job publishes anomaly records."""
    summary_topic: str = "instrument-summaries"
    """SUMMARY_TOPIC: per-instrument summaries that draw the price line."""
    buffer_size: int = 1000
    """DASHBOARD_BUFFER_SIZE: anomalies kept in memory (the most recent ones)."""
    refresh_seconds: float = 1.5
    """DASHBOARD_REFRESH_SECONDS: how often the live part of the page re-reads Kafka."""
    lag_warning: int = 1000
    """DASHBOARD_LAG_WARNING: unread messages after a refresh that count as lagging."""
    client_settings: Mapping[str, str] = field(default_factory=dict)
    """Other KAFKA_* variables as librdkafka properties (KAFKA_SASL_USERNAME -> sasl.username),
    the same convention the job uses, so a secured cluster needs no code change."""

    def __post_init__(self) -> None:
        if not self.brokers.strip():
            raise DashboardConfigError("KAFKA_BROKERS must not be empty")
        for variable, topic in (("ANOMALY_TOPIC", self.anomaly_topic), ("SUMMARY_TOPIC", self.summary_topic)):
            if not topic.strip():
                raise DashboardConfigError(f"{variable} must not be empty")
        if not 1 <= self.buffer_size <= 1_000_000:
            raise DashboardConfigError(
                f"DASHBOARD_BUFFER_SIZE must be between 1 and 1000000, got {self.buffer_size}"
            )
        if not 0.2 <= self.refresh_seconds <= 60:
            raise DashboardConfigError(
                f"DASHBOARD_REFRESH_SECONDS must be between 0.2 and 60, got {self.refresh_seconds}"
            )
        if self.lag_warning < 1:
            raise DashboardConfigError(f"DASHBOARD_LAG_WARNING must be at least 1, got {self.lag_warning}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DashboardConfig:
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            brokers=env.get("KAFKA_BROKERS", defaults.brokers),
            anomaly_topic=env.get("ANOMALY_TOPIC", defaults.anomaly_topic),
            summary_topic=env.get("SUMMARY_TOPIC", defaults.summary_topic),
            buffer_size=_number(env, "DASHBOARD_BUFFER_SIZE", int, defaults.buffer_size),
            refresh_seconds=_number(env, "DASHBOARD_REFRESH_SECONDS", float, defaults.refresh_seconds),
            lag_warning=_number(env, "DASHBOARD_LAG_WARNING", int, defaults.lag_warning),
            client_settings=client_settings_from_env(env),
        )


def _number(env: Mapping[str, str], name: str, kind: type, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return kind(raw)
    except ValueError:
        wanted = "a whole number" if kind is int else "a number"
        raise DashboardConfigError(f"{name} must be {wanted}, got {raw!r}") from None
