"""The dashboard's assign-only readers on the real broker: where they start, what they read, how they fail."""

from __future__ import annotations

import pytest
from confluent_kafka import Producer

from connectors.broker import BrokerUnreachable, free_port
from connectors.kafka import ensure_topics
from connectors.topic_readers import TopicEnds, TopicHistory, TopicTail

pytestmark = pytest.mark.broker


def publish_one_by_one(brokers: str, topic: str, count: int, partition: int = 0) -> None:
    """One produce request per message: Tansu's high watermark counts request batches
    (20 messages sent in one batch report a high watermark of 1), so start-near-the-end
    is only checkable when each batch holds one message."""
    producer = Producer({"bootstrap.servers": brokers})
    for number in range(count):
        producer.produce(topic, value=b"%d" % number, partition=partition)
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


def test_history_walks_back_from_where_a_tail_started_without_reading_twice(broker, topic_prefix):
    topic = f"{topic_prefix}-history"
    publish_one_by_one(broker, topic, 25)
    tail = TopicTail(broker, topic, start_back=10)
    history = None
    try:
        tail.read(max_seconds=10)
        assert tail.first_offsets[0] == 15
        history = TopicHistory(broker, topic, {0: tail.first_offsets[0]})
        assert [message.value for message in history.read_before(8, max_seconds=10)] == [
            b"%d" % number for number in range(7, 15)]
        assert not history.exhausted()
        assert [message.offset for message in history.read_before(8, max_seconds=10)] == list(range(7))
        assert history.exhausted() and history.read_before(8, max_seconds=10) == []
    finally:
        tail.close()
        if history is not None:
            history.close()


def test_a_tail_without_start_back_reads_from_the_beginning(broker, topic_prefix):
    topic = f"{topic_prefix}-compacted"
    publish_one_by_one(broker, topic, 12)
    tail = TopicTail(broker, topic, start_back=None)
    try:
        messages, _ = tail.read(max_seconds=10)
        assert [message.offset for message in messages] == list(range(12))
    finally:
        tail.close()


def test_topic_ends_are_the_high_watermarks_of_every_partition(broker, topic_prefix):
    topic = f"{topic_prefix}-input"
    ensure_topics(broker, {topic: 2})
    publish_one_by_one(broker, topic, 4, partition=0)
    publish_one_by_one(broker, topic, 7, partition=1)
    ends = TopicEnds(broker, topic)
    missing = TopicEnds(broker, f"{topic_prefix}-never-created")
    try:
        assert ends.read() == {0: 4, 1: 7}
        publish_one_by_one(broker, topic, 1, partition=0)
        assert ends.read() == {0: 5, 1: 7}
        assert missing.read() is None
    finally:
        ends.close()
        missing.close()


def test_a_missing_topic_is_reported_not_raised(broker, topic_prefix):
    tail = TopicTail(broker, f"{topic_prefix}-never-written", start_back=10)
    try:
        messages, state = tail.read(max_seconds=1)
        assert messages == [] and not state.topic_exists
    finally:
        tail.close()


def test_no_broker_raises_broker_unreachable_quickly():
    tail = TopicTail(f"127.0.0.1:{free_port()}", "anomalies", start_back=10)
    ends = TopicEnds(f"127.0.0.1:{free_port()}", "stocks")
    try:
        with pytest.raises(BrokerUnreachable):
            tail.read(max_seconds=1)
        with pytest.raises(BrokerUnreachable):
            ends.read()
    finally:
        tail.close()
        ends.close()


@pytest.mark.parametrize("client_settings", [
    {"enable.auto.commit": "true"}, {"enable.auto.offset.store": "true", "security.protocol": "plaintext"},
])
def test_a_client_setting_cannot_make_the_page_commit_offsets(client_settings):
    from connectors.topic_readers import viewer_settings

    def errors(_error):
        return None

    settings = viewer_settings("localhost:9092", errors, client_settings)
    assert (settings["enable.auto.commit"], settings["enable.auto.offset.store"], settings["error_cb"]) == (
        False, False, errors)
    assert {name: settings[name] for name in client_settings if not name.startswith("enable.")} == {
        name: value for name, value in client_settings.items() if not name.startswith("enable.")}


@pytest.mark.parametrize("size", [2_000_000, 110_000_000])  # the second is past librdkafka's default receive limit
def test_a_record_too_long_to_be_anybodys_is_told_by_its_length_and_the_readers_go_past_it(broker, topic_prefix,
                                                                                           size):
    """A record over 100,000,000 bytes failed every fetch of its topic's consumer ("Invalid response size ...
    increase receive.message.max.bytes"): a new page read nothing more of any partition of the topic."""
    import time

    topic = f"{topic_prefix}-big"
    ensure_topics(broker, {topic: 2})
    producer = Producer({"bootstrap.servers": broker, "message.max.bytes": 200_000_000})
    for partition, value in [(0, b"before"), (0, b"x" * size), (0, b"after"), (1, b"other")]:
        producer.produce(topic, value=value, partition=partition)
        assert producer.flush(30) == 0
    expected = [(0, 0, b"before", 0), (0, 1, None, size), (0, 2, b"after", 0), (1, 0, b"other", 0)]
    errors: list[str] = []
    tail = TopicTail(broker, topic, start_back=None, on_client_error=errors.append)
    history = TopicHistory(broker, topic, {0: 3, 1: 1}, on_client_error=errors.append)
    try:
        read, deadline = [], time.monotonic() + 20
        while len(read) < len(expected) and time.monotonic() < deadline:
            messages, state = tail.read(max_seconds=2)
            read += messages
        assert sorted((m.partition, m.offset, m.value, m.too_large) for m in read) == expected
        assert state.lag == 0
        before = history.read_before(10, max_seconds=20)
        assert sorted((m.partition, m.offset, m.value, m.too_large) for m in before) == expected
        assert errors == []
    finally:
        tail.close()
        history.close()
