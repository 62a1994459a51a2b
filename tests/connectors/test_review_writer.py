"""Decisions go to a compacted topic on the real broker, keyed by incident id, and are read back."""

from __future__ import annotations

import orjson
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from connectors.broker import free_port
from connectors.review_writer import ReviewNotSaved, ReviewWriter
from connectors.topic_readers import TopicTail

pytestmark = pytest.mark.broker

REVIEW = {"incident_id": "INC-SYN1-20250512-2221902", "decision": "dismissed",
          "note": "known liquidity gap, see ticket 4411", "analyst": "Ada Lovelace",
          "reviewed_at": "2026-11-29T16:00:00.123456789Z", "symbol": "SYN1", "kind": "flash_crash", "level": "medium"}


def test_a_decision_is_written_keyed_by_incident_to_a_compacted_topic_it_creates(broker, topic_prefix):
    topic = f"{topic_prefix}-reviews"
    writer = ReviewWriter(broker, topic)
    changed_mind = {**REVIEW, "decision": "acknowledged"}
    writer.write(REVIEW["incident_id"], REVIEW)
    writer.write(changed_mind["incident_id"], changed_mind)
    writer.close()
    admin = AdminClient({"bootstrap.servers": broker})
    config = next(iter(admin.describe_configs([ConfigResource("topic", topic)]).values())).result(10)
    assert config["cleanup.policy"].value == "compact"
    tail = TopicTail(broker, topic, start_back=None)
    try:
        messages, _ = tail.read(max_seconds=10)
    finally:
        tail.close()
    assert [orjson.loads(message.value) for message in messages] == [REVIEW, changed_mind]
    assert {message.partition for message in messages} == {0}  # one key, one partition: the last one wins


def test_a_decision_the_broker_does_not_take_is_an_error_not_a_silent_loss():
    writer = ReviewWriter(f"127.0.0.1:{free_port()}", "incident-reviews")
    with pytest.raises(ReviewNotSaved, match="could not reach or create the topic incident-reviews"):
        writer.write(REVIEW["incident_id"], REVIEW)


def test_a_topic_creation_not_confirmed_in_time_is_an_error_not_a_crash(broker, topic_prefix, monkeypatch):
    """A broker that lists topics but leaves the creation unanswered (a controller election, a slow
    cluster): the page says the decision was not saved, rather than the section failing to draw."""
    from concurrent.futures import Future

    from connectors import review_writer

    class SlowToCreate(review_writer.AdminClient):
        def create_topics(self, topics, **_options):
            return {topic.topic: Future() for topic in topics}  # never confirmed

    monkeypatch.setattr(review_writer, "AdminClient", SlowToCreate)
    monkeypatch.setattr(review_writer, "WRITE_TIMEOUT_S", 0.2)
    writer = ReviewWriter(broker, f"{topic_prefix}-reviews")
    with pytest.raises(ReviewNotSaved, match=f"the topic {topic_prefix}-reviews was not created within 0.2 s"):
        writer.write(REVIEW["incident_id"], REVIEW)


def test_the_check_before_a_write_sees_every_value_under_the_key_and_can_stop_the_write(broker, topic_prefix):
    """On a topic of three partitions written by a plain producer (librdkafka's default partitioner,
    as older pages wrote), ``check`` gets exactly the values under the key, oldest first, delete
    included; a check that raises stops the write; a write that goes on lands on the key's partition."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic

    topic = f"{topic_prefix}-reviews"
    admin = AdminClient({"bootstrap.servers": broker})
    admin.create_topics([NewTopic(topic, 3, 1)])[topic].result(10)
    producer = Producer({"bootstrap.servers": broker})
    keys = [f"INC-SYN{number}-20250512-{number}" for number in range(12)]
    partitions: dict[str, set[int]] = {}

    def delivered(_error, message):
        partitions.setdefault(message.key().decode(), set()).add(message.partition())

    for round_ in range(2):
        for key in keys:
            producer.produce(topic, key=key.encode(), value=orjson.dumps({"round": round_, "key": key}),
                             on_delivery=delivered)
    producer.produce(topic, key=keys[0].encode(), value=None)
    assert producer.flush(10) == 0
    assert len(set().union(*partitions.values())) == 3  # the keys are spread over every partition

    class Refused(Exception):
        pass

    def refuse(values):
        raise Refused(values)

    writer = ReviewWriter(broker, topic)
    try:
        with pytest.raises(Refused) as refused:
            writer.write(keys[0], REVIEW, check=refuse)
        assert refused.value.args[0] == [orjson.dumps({"round": 0, "key": keys[0]}),
                                         orjson.dumps({"round": 1, "key": keys[0]}), None]
        seen = []
        writer.write(keys[5], REVIEW, check=seen.append)
        assert seen == [[orjson.dumps({"round": 0, "key": keys[5]}), orjson.dumps({"round": 1, "key": keys[5]})]]
    finally:
        writer.close()
    tail = TopicTail(broker, topic, start_back=None)
    try:
        messages, _ = tail.read(max_seconds=10)
    finally:
        tail.close()
    written = [message for message in messages if message.value == orjson.dumps(REVIEW)]
    assert [(message.key.decode(), message.partition) for message in written] == [
        (keys[5], next(iter(partitions[keys[5]])))]


def test_a_broker_that_stops_answering_before_the_write_bounds_the_check_and_writes_nothing(topic_prefix):
    """The read before the write counts within the writer's limit: a broker that takes connections
    and answers nothing (stopped with SIGSTOP) gives ``ReviewNotSaved`` (not 'not confirmed':
    nothing was sent) in about ``WRITE_TIMEOUT_S``, the check is never called, and once the broker
    goes on the topic holds only what was written before."""
    import os
    import signal
    import time

    from connectors.broker import EmbeddedBroker
    from connectors.review_writer import WRITE_TIMEOUT_S, ReviewNotConfirmed

    topic = f"{topic_prefix}-reviews"
    with EmbeddedBroker() as embedded:
        writer = ReviewWriter(embedded.bootstrap, topic)
        writer.write(REVIEW["incident_id"], REVIEW, check=lambda _values: None)
        checked = []
        os.kill(embedded._process.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            with pytest.raises(ReviewNotSaved, match="could not read the topic .* before writing") as refused:
                writer.write(REVIEW["incident_id"], {**REVIEW, "analyst": "Bob"}, check=checked.append)
            took = time.monotonic() - started
        finally:
            os.kill(embedded._process.pid, signal.SIGCONT)
        assert not isinstance(refused.value, ReviewNotConfirmed) and checked == []
        assert WRITE_TIMEOUT_S - 0.5 < took < WRITE_TIMEOUT_S + 2, took
        writer.close()
        tail = TopicTail(embedded.bootstrap, topic, start_back=None)
        try:
            messages, _ = tail.read(max_seconds=10)
        finally:
            tail.close()
        assert [orjson.loads(message.value)["analyst"] for message in messages] == ["Ada Lovelace"]
