"""Putting what the job would publish on the real broker: topics, messages keyed as the job keys them.

A plain module (not a conftest) so the dashboard tests can import it: tests/dashboard is
put on ``sys.path`` by its conftest.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from recordings import World

PARTITIONS = 3
REPUBLISHED = 100
"""Anomalies published twice by ``published``, as a restarted job would."""
JUNK = b"this is not an anomaly record"


def create_topics(brokers: str, *topics: str, compacted: bool = False, partitions: int = PARTITIONS) -> None:
    admin = AdminClient({"bootstrap.servers": brokers})
    config = {"cleanup.policy": "compact"} if compacted else {}
    for future in admin.create_topics([NewTopic(topic, partitions, 1, config=config) for topic in topics]).values():
        future.result(timeout=10)


def publish(brokers: str, topic: str, lines: list[bytes], key_field: str = "symbol") -> None:
    """Each line as one message keyed by its ``key_field``, as the job's sinks do."""
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 5})
    for line in lines:
        try:
            key = orjson.loads(line)[key_field].encode()
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            key = None
        producer.produce(topic, key=key, value=line)
    assert producer.flush(15) == 0, f"messages to {topic} were not delivered"


@dataclass(frozen=True)
class Topics:
    brokers: str
    anomalies: str
    summaries: str
    incidents: str
    reviews: str
    stocks: str

    def environment(self, **extra: str) -> dict[str, str]:
        return {
            "KAFKA_BROKERS": self.brokers, "ANOMALY_TOPIC": self.anomalies, "SUMMARY_TOPIC": self.summaries,
            "INCIDENT_TOPIC": self.incidents, "REVIEW_TOPIC": self.reviews, "INPUT_TOPIC": self.stocks, **extra,
        }


def topics_for(brokers: str, prefix: str) -> Topics:
    return Topics(brokers, f"{prefix}-anomalies", f"{prefix}-summaries", f"{prefix}-incidents",
                  f"{prefix}-reviews", f"{prefix}-stocks")


def publish_world(topics: Topics, world: World, summaries: list[dict] | None = None, create: bool = True) -> None:
    """The world on ``topics``: every anomaly (the first ``REPUBLISHED`` twice, plus one message
    that is not JSON), every incident state change, ``summaries`` (default: every summary);
    the input topic empty. ``create``: the topics do not exist yet."""
    if create:
        create_topics(topics.brokers, topics.anomalies, topics.summaries, topics.stocks)
        create_topics(topics.brokers, topics.incidents, compacted=True)
    lines = world.lines(world.anomalies)
    publish(topics.brokers, topics.anomalies, lines[:REPUBLISHED])
    publish(topics.brokers, topics.anomalies, [JUNK])
    publish(topics.brokers, topics.anomalies, lines)
    publish(topics.brokers, topics.incidents, world.lines(world.incident_messages), key_field="incident_id")
    chosen = world.summaries if summaries is None else summaries
    publish(topics.brokers, topics.summaries, world.lines([dict(s, source=topics.stocks) for s in chosen]))
