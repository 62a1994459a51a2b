"""Decisions go to a compacted topic on the real broker, keyed by incident id, and are read back."""

from __future__ import annotations

from dataclasses import replace

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from connectors.broker import free_port
from dashboard.kafka_tail import TopicTail
from dashboard.records import Review, decode_review
from dashboard.reviews import ReviewNotSaved, ReviewWriter

pytestmark = pytest.mark.broker

REVIEW = Review("INC-SYN1-20250512-2221902", "dismissed", "known liquidity gap, see ticket 4411", "Ada Lovelace",
                1_795_968_000_123_456_789, "SYN1", "flash_crash", "medium")


def test_a_decision_is_written_keyed_by_incident_to_a_compacted_topic_it_creates(broker, topic_prefix):
    topic = f"{topic_prefix}-reviews"
    writer = ReviewWriter(broker, topic)
    changed_mind = replace(REVIEW, decision="acknowledged")
    writer.write(REVIEW)
    writer.write(changed_mind)
    writer.close()
    admin = AdminClient({"bootstrap.servers": broker})
    config = next(iter(admin.describe_configs([ConfigResource("topic", topic)]).values())).result(10)
    assert config["cleanup.policy"].value == "compact"
    tail = TopicTail(broker, topic, start_back=None)
    try:
        messages, _ = tail.read(max_seconds=10)
    finally:
        tail.close()
    assert [decode_review(message.value) for message in messages] == [REVIEW, changed_mind]
    assert {message.partition for message in messages} == {0}  # one key, one partition: the last one wins


def test_a_decision_the_broker_does_not_take_is_an_error_not_a_silent_loss():
    writer = ReviewWriter(f"127.0.0.1:{free_port()}", "incident-reviews")
    with pytest.raises(ReviewNotSaved, match="could not reach or create the topic incident-reviews"):
        writer.write(REVIEW)


def test_a_topic_creation_not_confirmed_in_time_is_an_error_not_a_crash(broker, topic_prefix, monkeypatch):
    """A broker that lists topics but leaves the creation unanswered (a controller election, a slow
    cluster): the page says the decision was not saved, rather than the section failing to draw."""
    from concurrent.futures import Future

    from dashboard import reviews

    class SlowToCreate(reviews.AdminClient):
        def create_topics(self, topics, **_options):
            return {topic.topic: Future() for topic in topics}  # never confirmed

    monkeypatch.setattr(reviews, "AdminClient", SlowToCreate)
    monkeypatch.setattr(reviews, "WRITE_TIMEOUT_S", 0.2)
    writer = ReviewWriter(broker, f"{topic_prefix}-reviews")
    with pytest.raises(ReviewNotSaved, match=f"the topic {topic_prefix}-reviews was not created within 0.2 s"):
        writer.write(REVIEW)


def test_a_deleted_decision_leaves_the_page(broker, topic_prefix):
    """A delete on the compacted topic (the incident's key, no value) retracts the decision; it was
    an invalid record and the decision stayed."""
    from confluent_kafka import Producer

    from dashboard.config import DashboardConfig
    from dashboard.feed import LiveFeed

    topic = f"{topic_prefix}-reviews"
    other = replace(REVIEW, incident_id="INC-SYN2-20250512-77")
    writer = ReviewWriter(broker, topic)
    writer.write(REVIEW)
    writer.write(other)
    writer.close()
    producer = Producer({"bootstrap.servers": broker})
    producer.produce(topic, key=REVIEW.incident_id.encode(), value=None)
    assert producer.flush(10) == 0
    feed = LiveFeed(DashboardConfig(brokers=broker, review_topic=topic, anomaly_topic=f"{topic_prefix}-anomalies",
                                    incident_topic=f"{topic_prefix}-incidents",
                                    summary_topic=f"{topic_prefix}-summaries", input_topic=""))
    try:
        feed.refresh(5)
        view = feed.view()
        assert list(view.reviews) == [other.incident_id]
        assert not view.invalid.get(topic)
    finally:
        feed.close()
