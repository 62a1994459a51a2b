"""Recorded messages and a way to put them on the real broker for the dashboard tests.

The shared ``broker`` fixture (tests/conftest.py) gives the address; these helpers
create each test's own topics and publish the recorded anomaly records and
summaries exactly as the job would: keyed by symbol, JSON bytes as recorded.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ANOMALY_LINES = (FIXTURES / "anomalies_recorded.jsonl").read_bytes().splitlines()
SUMMARY_LINES = (FIXTURES / "summaries_recorded.jsonl").read_bytes().splitlines()
PARTITIONS = 3
REPUBLISHED = 100
"""Anomalies published twice by ``published_topics``, as a restarted job would."""


def create_topics(brokers: str, *topics: str) -> None:
    admin = AdminClient({"bootstrap.servers": brokers})
    for future in admin.create_topics([NewTopic(topic, PARTITIONS, 1) for topic in topics]).values():
        future.result(timeout=10)


def publish(brokers: str, topic: str, lines: list[bytes]) -> None:
    """Each line as one message keyed by its symbol, as the job's sinks do."""
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 5})
    for line in lines:
        try:
            key = orjson.loads(line)["symbol"].encode()
        except (orjson.JSONDecodeError, KeyError, TypeError):
            key = None
        producer.produce(topic, key=key, value=line)
    assert producer.flush(15) == 0, f"messages to {topic} were not delivered"


def expected_metrics(records: list[dict]) -> dict[str, str]:
    """What the page must show for ``records``, computed the plain way.

    Deliberately independent of ``dashboard.metrics``: the page is compared with
    this, so a wrong metric function in the dashboard fails the tests.
    """
    unique = list({record["anomaly_id"]: record for record in records}.values())
    severities = [record["severity"] for record in unique]
    sides = [record["side"] for record in unique]
    return {
        "Anomalies": str(len(severities)),
        "Average severity": f"{sum(severities) / len(severities):.3f}",
        "Max severity": f"{max(severities):.3f}",
        "Critical": str(sum(record["level"] == "critical" for record in unique)),
        "Side Ask": str(sides.count("A")),
        "Side Bid": str(sides.count("B")),
        "Side None": str(sides.count("N")),
    }


@pytest.fixture
def page_expectations():
    """``expected_metrics`` for the tests (under --import-mode=importlib they cannot import conftest)."""
    return expected_metrics


@pytest.fixture
def publish_to():
    """``publish_to(brokers, topic, lines)``, for a broker the test starts itself."""
    return publish


@pytest.fixture
def publisher(broker):
    """``publisher(topic, lines)`` publishes to the session broker like the job does."""
    return lambda topic, lines: publish(broker, topic, lines)


@pytest.fixture
def republished() -> int:
    return REPUBLISHED


@pytest.fixture
def recorded_anomalies() -> list[dict]:
    return [orjson.loads(line) for line in ANOMALY_LINES]


@pytest.fixture
def published_topics(broker, topic_prefix):
    """Anomaly and summary topics holding the recordings; every anomaly is published twice
    (a restarted job re-emits) and one message is not JSON, so dedupe and the error log
    have something to do."""
    anomaly_topic, summary_topic = f"{topic_prefix}-anomalies", f"{topic_prefix}-summaries"
    create_topics(broker, anomaly_topic, summary_topic)
    publish(broker, anomaly_topic, ANOMALY_LINES[:REPUBLISHED])
    publish(broker, anomaly_topic, [b"this is not an anomaly record"])
    publish(broker, anomaly_topic, ANOMALY_LINES)
    publish(broker, summary_topic, SUMMARY_LINES)
    return anomaly_topic, summary_topic
