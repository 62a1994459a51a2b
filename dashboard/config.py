"""Dashboard settings: one frozen dataclass read from environment variables.

Every setting comes from the environment so ``streamlit run dashboard/app.py``,
docker compose and the tests configure the same way; a bad value stops the app
with a message naming the variable instead of a stack trace.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from connectors.kafka_settings import KafkaSettingsError, checked_client_settings
from connectors.topic_readers import viewer_settings
from models.config import parse_number

BROKER = re.compile(r"(?:[A-Za-z_]+://)?(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(?::([0-9]{1,5}))?")
"""One bootstrap server: ``host``, ``host:port``, ``[::1]:port``, optionally ``PROTOCOL://`` first."""
TOPIC_NAME = re.compile(r"(?!\.\.?$)[A-Za-z0-9._-]{1,249}")
"""What Kafka accepts as a topic name: ASCII letters, digits, '.', '_' and '-', not '.' or '..'."""


WHY_NEEDED = {
    "SUMMARY_TOPIC": ": the page's totals, instruments and the job's progress come from the job's summaries "
                     "(a job with SUMMARY_TOPIC empty writes none; give it one to watch it here)",
    "INCIDENT_TOPIC": ": the page's queue is the job's incidents (a job with INCIDENT_TOPIC empty writes none; "
                      "give it one to work its incidents here)",
}
"""Why the page cannot do without a topic the job may be told not to write."""


class DashboardConfigError(ValueError):
    """An environment variable has a bad value; the message names it."""


@dataclass(frozen=True)
class DashboardConfig:
    brokers: str = "localhost:9092"
    """KAFKA_BROKERS: bootstrap servers, comma separated."""
    anomaly_topic: str = "anomalies"
    """ANOMALY_TOPIC: where the job publishes anomaly records."""
    summary_topic: str = "instrument-summaries"
    """SUMMARY_TOPIC: per-instrument summaries: totals, price line, the job's input position."""
    incident_topic: str = "incidents"
    """INCIDENT_TOPIC: incidents, one message per state change (read from the beginning)."""
    review_topic: str = "incident-reviews"
    """REVIEW_TOPIC: analysts' decisions; the only topic the dashboard writes (created compacted)."""
    input_topic: str = "stocks"
    """INPUT_TOPIC: the job's input, whose end the job's progress is measured against; empty: not watched."""
    buffer_size: int = 1000
    """DASHBOARD_BUFFER_SIZE: anomalies kept in memory (the newest of every instrument)."""
    incident_limit: int = 2000
    """DASHBOARD_INCIDENT_LIMIT: incidents kept in memory (closed and old ones leave first)."""
    summary_history: int = 5000
    """DASHBOARD_SUMMARY_HISTORY: summaries read back per partition when a page opens."""
    stall_seconds: float = 30.0
    """DASHBOARD_STALL_SECONDS: no progress for this long while trades arrive means the job is stalled."""
    refresh_seconds: float = 1.5
    """DASHBOARD_REFRESH_SECONDS: how often the live part of the page re-reads Kafka."""
    lag_warning: int = 1000
    """DASHBOARD_LAG_WARNING: unread anomalies after a refresh that are logged as lag, and growth of the
    job's gap to the input end, over the stall time, that shows the job as falling behind (``health``)."""
    client_settings: Mapping[str, str] = field(default_factory=dict)
    """Other KAFKA_* variables as librdkafka properties (KAFKA_SASL_USERNAME -> sasl.username),
    the same convention the job uses, so a secured cluster needs no code change."""

    def __post_init__(self) -> None:
        if not self.brokers.strip():
            raise DashboardConfigError("KAFKA_BROKERS must not be empty")
        _check_brokers(self.brokers)
        for variable, topic in (
            ("ANOMALY_TOPIC", self.anomaly_topic), ("SUMMARY_TOPIC", self.summary_topic),
            ("INCIDENT_TOPIC", self.incident_topic), ("REVIEW_TOPIC", self.review_topic),
        ):
            if not topic.strip():
                raise DashboardConfigError(f"{variable} must not be empty{WHY_NEEDED.get(variable, '')}")
            _check_topic(variable, topic)
        if self.input_topic:  # empty: the job's progress is not watched
            _check_topic("INPUT_TOPIC", self.input_topic)
        for variable, value, low, high in (
            ("DASHBOARD_BUFFER_SIZE", self.buffer_size, 1, 1_000_000),
            ("DASHBOARD_INCIDENT_LIMIT", self.incident_limit, 10, 1_000_000),
            ("DASHBOARD_SUMMARY_HISTORY", self.summary_history, 1, 10_000_000),
            ("DASHBOARD_REFRESH_SECONDS", self.refresh_seconds, 0.2, 60),
            ("DASHBOARD_STALL_SECONDS", self.stall_seconds, 1, 86_400),
            ("DASHBOARD_LAG_WARNING", self.lag_warning, 1, 10**12),
        ):
            if not low <= value <= high:  # also false for nan
                raise DashboardConfigError(
                    f"{variable} must be between {_shown(low)} and {_shown(high)}, got {_shown(value)}")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DashboardConfig:
        env = os.environ if environ is None else environ
        defaults = cls()
        return cls(
            # stripped as the job strips them: "anomalies " would wait for a topic nobody writes
            brokers=env.get("KAFKA_BROKERS", defaults.brokers).strip(),
            anomaly_topic=env.get("ANOMALY_TOPIC", defaults.anomaly_topic).strip(),
            summary_topic=env.get("SUMMARY_TOPIC", defaults.summary_topic).strip(),
            incident_topic=env.get("INCIDENT_TOPIC", defaults.incident_topic).strip(),
            review_topic=env.get("REVIEW_TOPIC", defaults.review_topic).strip(),
            input_topic=env.get("INPUT_TOPIC", defaults.input_topic).strip(),
            buffer_size=_number(env, "DASHBOARD_BUFFER_SIZE", int, defaults.buffer_size),
            incident_limit=_number(env, "DASHBOARD_INCIDENT_LIMIT", int, defaults.incident_limit),
            summary_history=_number(env, "DASHBOARD_SUMMARY_HISTORY", int, defaults.summary_history),
            stall_seconds=_number(env, "DASHBOARD_STALL_SECONDS", float, defaults.stall_seconds),
            refresh_seconds=_number(env, "DASHBOARD_REFRESH_SECONDS", float, defaults.refresh_seconds),
            lag_warning=_number(env, "DASHBOARD_LAG_WARNING", int, defaults.lag_warning),
            client_settings=_client_settings(env),
        )


def _number(env: Mapping[str, str], name: str, kind: type, default: float) -> float:
    raw = env.get(name)
    if raw is None:  # an empty value is refused, as by the job: it is more likely a mistake than "default"
        return default
    try:
        return parse_number(raw, kind)
    except ValueError:
        wanted = "a whole number" if kind is int else "a (finite) number"
        raise DashboardConfigError(f"{name} must be {wanted}, got {raw!r}") from None


def _check_brokers(brokers: str) -> None:
    """Each comma-separated server a host with an optional port: librdkafka takes any text here and
    only fails to connect later, which the page would show as a broker that is down."""
    for server in brokers.split(","):
        match = BROKER.fullmatch(server.strip())
        if match is None or not 1 <= int(match.group(1) or 9092) <= 65535:
            raise DashboardConfigError(f"KAFKA_BROKERS must be servers as host or host:port (port 1 to 65535) "
                                       f"separated by commas, got {brokers!r}")


def _check_topic(variable: str, topic: str) -> None:
    """A name Kafka would refuse only fails when the topic is read: the page would wait for it forever."""
    if not TOPIC_NAME.fullmatch(topic):
        raise DashboardConfigError(f"{variable} must be a Kafka topic name (at most 249 ASCII letters, digits, "
                                   f"'.', '_' and '-'), got {topic!r}")


def _client_settings(env: Mapping[str, str]) -> dict[str, str]:
    """The other ``KAFKA_*`` variables as librdkafka properties, checked as the job and the replay check
    theirs (``checked_client_settings``) on clients built as the page's readers build theirs, so a bad
    one stops the page here, named, instead of failing every read later as a client error."""
    try:
        return checked_client_settings(env, viewer_settings("", lambda _error: None, None))
    except KafkaSettingsError as error:
        raise DashboardConfigError(str(error)) from None


def _shown(value: float) -> str:
    """1000000 rather than 1e+06, 0.2 as 0.2, nan as nan."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"
