"""The assign-only tail on the real broker: where it starts, what it reads, how it fails."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from connectors.broker import free_port
from dashboard.config import DashboardConfig
from dashboard.feed import LiveFeed
from dashboard.kafka_tail import BrokerUnreachable, TopicTail

pytestmark = pytest.mark.broker


def publish_one_by_one(brokers: str, topic: str, count: int) -> None:
    """One produce request per message: Tansu's high watermark counts request batches
    (20 messages sent in one batch report a high watermark of 1), so start-near-the-end
    is only checkable when each batch holds one message."""
    producer = Producer({"bootstrap.servers": brokers})
    for number in range(count):
        producer.produce(topic, value=b"%d" % number, partition=0)
        assert producer.flush(10) == 0


def test_a_new_tail_starts_start_back_messages_before_the_end(broker, topic_prefix):
    topic = f"{topic_prefix}-tail"
    publish_one_by_one(broker, topic, 30)
    tail = TopicTail(broker, topic, start_back=10)
    try:
        messages, state = tail.read(max_seconds=10)
        assert [message.value for message in messages] == [b"%d" % number for number in range(20, 30)]
        assert state.topic_exists and state.lag == 0
        publish_one_by_one(broker, topic, 2)
        messages, _ = tail.read(max_seconds=10)
        assert [message.offset for message in messages] == [30, 31]
    finally:
        tail.close()


def test_a_missing_topic_is_reported_not_raised(broker, topic_prefix):
    tail = TopicTail(broker, f"{topic_prefix}-never-written", start_back=10)
    try:
        messages, state = tail.read(max_seconds=1)
        assert messages == [] and not state.topic_exists
    finally:
        tail.close()


def test_no_broker_raises_broker_unreachable_quickly():
    tail = TopicTail(f"127.0.0.1:{free_port()}", "anomalies", start_back=10)
    try:
        with pytest.raises(BrokerUnreachable):
            tail.read(max_seconds=1)
    finally:
        tail.close()


def test_the_feed_turns_a_dead_broker_into_a_status_and_a_log_entry():
    brokers = f"127.0.0.1:{free_port()}"
    feed = LiveFeed(DashboardConfig(brokers=brokers))
    try:
        status = feed.refresh(max_seconds=0.5)
        assert not status.broker_up
        assert status.detail.startswith(f"no Kafka broker answered at {brokers}")
        assert feed.errors.entries()[0].kind == "broker unreachable"
    finally:
        feed.close()
