"""The feed on the real topics: what it keeps of records anyone could have written."""

from __future__ import annotations

import time

import orjson
import pytest

from connectors.broker import EmbeddedBroker, free_port
from dashboard.config import DashboardConfig
from dashboard.feed import LiveFeed
from publishing import create_topics, publish, publish_world, topics_for

FUTURE_NS = 4_102_358_400_000_000_000  # 2099-12-31T00:00:00Z


def feed_on(topics) -> LiveFeed:
    """A page's feed on the test's topics (``publishing.topics_for``)."""
    return LiveFeed(DashboardConfig(brokers=topics.brokers, anomaly_topic=topics.anomalies,
                                    summary_topic=topics.summaries, incident_topic=topics.incidents,
                                    review_topic=topics.reviews, input_topic=topics.stocks))


@pytest.mark.broker
def test_anomalies_dated_past_the_clock_are_invalid_records_not_the_newest(published, publisher, world):
    """A thousand forged anomalies dated 2099 once filled a real instrument's place in the buffer
    and the table of the newest, for good: every real one after them looked older."""
    symbol = world.anomalies[0]["symbol"]
    forged = [orjson.dumps({**world.anomalies[number % len(world.anomalies)], "symbol": symbol,
                            "anomaly_id": f"FORGED-{number}", "ts_event": FUTURE_NS + number})
              for number in range(50)]
    publisher(published.anomalies, forged)
    topics = published
    feed = feed_on(topics)
    try:
        feed.refresh(10)
        view = feed.view()
        assert not [anomaly for anomaly in view.anomalies if anomaly.anomaly_id.startswith("FORGED")]
        assert view.invalid[topics.anomalies] == 50 + 1  # the world's own non-JSON message too
        assert {anomaly.anomaly_id for anomaly in view.anomalies} <= {a["anomaly_id"] for a in world.anomalies}
        assert any("past the dashboard's clock" in entry.message for entry in feed.log_entries())
    finally:
        feed.close()


@pytest.mark.broker
@pytest.mark.parametrize("republished_before_the_next_read", [False, True])
def test_a_broker_restarted_empty_makes_the_page_start_over(topic_prefix, world, republished_before_the_next_read,
                                                            monkeypatch):
    """A page open across a restart of the in-memory broker kept every record of the broker's
    previous life for as long as it stayed open, mixed with what the broker held afterwards."""
    monkeypatch.setattr(LiveFeed, "_start_reader", lambda self: None)  # the test's own reads only
    port = free_port()
    topics = topics_for(f"127.0.0.1:{port}", topic_prefix)
    symbol = world.anomalies[0]["symbol"]
    afterwards = [anomaly for anomaly in world.anomalies if anomaly["symbol"] == symbol][:5]

    def publish_afterwards() -> None:
        create_topics(topics.brokers, topics.anomalies, topics.summaries, topics.stocks)
        create_topics(topics.brokers, topics.incidents, compacted=True)
        publish(topics.brokers, topics.anomalies, world.lines(afterwards))

    feed = feed_on(topics)
    try:
        with EmbeddedBroker(port):
            publish_world(topics, world)
            feed.refresh(10)
            assert len(feed.view().anomalies) > len(afterwards) and feed.view().incidents
        with EmbeddedBroker(port):
            if republished_before_the_next_read:
                publish_afterwards()
            reasons = started_over_within(feed, 20)  # the topics gone, or other topics of the same names
            view = feed.view()
            assert (view.anomalies, view.incidents, view.summaries) == ([], {}, {})
            expected = "is another topic now" if republished_before_the_next_read else "no longer exists"
            assert len(reasons) == 1 and expected in reasons[0], reasons
            if not republished_before_the_next_read:
                publish_afterwards()
            feed.refresh(10)
            view = feed.view()
            assert sorted(anomaly.anomaly_id for anomaly in view.anomalies) == sorted(a["anomaly_id"] for a in afterwards)
            assert (view.incidents, view.summaries, view.invalid) == ({}, {}, {})
            feed.close()  # before the broker goes
    finally:
        feed.close()


@pytest.mark.broker
def test_the_feed_turns_a_dead_broker_into_a_status_and_a_log_entry():
    brokers = f"127.0.0.1:{free_port()}"
    feed = LiveFeed(DashboardConfig(brokers=brokers))
    try:
        feed.refresh(max_seconds=0.5)
        view = feed.view()
        assert not view.broker_up
        assert view.detail.startswith(f"no Kafka broker answered at {brokers}")
        assert feed.log_entries()[0].kind == "broker unreachable"
    finally:
        feed.close()


def started_over_within(feed: LiveFeed, seconds: float) -> list[str]:
    """The feed's reasons for starting over, once it has (the client needs a few reads to
    reconnect to the restarted broker and to be told its position is gone)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        feed.refresh(1)
        reasons = [entry.message for entry in feed.log_entries() if entry.kind == "topics started over"]
        if reasons:
            return reasons
    return []


@pytest.mark.broker
def test_a_record_longer_than_any_the_job_writes_is_logged_and_the_page_reads_past_it(published, world):
    """A record over 100,000,000 bytes stopped a new page's reading of its topic, every partition of it
    (librdkafka refused each fetch: "Invalid response size ... increase receive.message.max.bytes"), and the
    page now and then said the broker was down."""
    from confluent_kafka import Producer

    topics = published
    anomaly = next(a for a in world.anomalies if a["symbol"] == "NVDA")
    incident = world.incident_messages[0]
    producer = Producer({"bootstrap.servers": topics.brokers, "message.max.bytes": 200_000_000})
    for topic, value in [(topics.anomalies, b"x" * 110_000_000),
                         (topics.anomalies, orjson.dumps({**anomaly, "anomaly_id": "AFTER-THE-BIG-ONE"})),
                         (topics.incidents, b"y" * 2_000_000),
                         (topics.incidents, orjson.dumps({**incident, "incident_id": "INC-AFTER-THE-BIG-ONE"}))]:
        producer.produce(topic, value=value, partition=0)
        assert producer.flush(30) == 0
    feed = feed_on(topics)
    try:
        feed.refresh(10)
        feed.refresh(10)
        view = feed.view()
        assert {anomaly.anomaly_id for anomaly in view.anomalies} == {
            *(a["anomaly_id"] for a in world.anomalies), "AFTER-THE-BIG-ONE"}
        assert set(view.incidents) == {*(i["incident_id"] for i in world.incident_messages), "INC-AFTER-THE-BIG-ONE"}
        assert view.invalid == {topics.anomalies: 1 + 1, topics.incidents: 1}  # the world's non-JSON message too
        assert view.broker_up
        invalid = [entry.message for entry in feed.log_entries() if entry.kind == "invalid record"]
        for topic, size in [(topics.anomalies, "110,000,000"), (topics.incidents, "2,000,000")]:
            assert any(message.startswith(f"{topic} partition 0 offset ") and message.endswith(
                f": a record of {size} bytes, longer than any record the job writes: not read") for message in invalid)
        assert not [entry for entry in feed.log_entries() if entry.kind in ("kafka client", "broker unreachable")]
    finally:
        feed.close()


@pytest.mark.broker
@pytest.mark.parametrize("after_the_delete", ["nothing", "a later revision", "a delete of an unknown incident"])
def test_a_deleted_incident_leaves_the_page_as_a_deleted_decision_does(published, world, after_the_delete):
    """A delete on the compacted incidents topic (the incident's key, no value) was an invalid record, 'empty
    message (no value)', and the incident stayed in the queue."""
    from confluent_kafka import Producer

    topics = published
    deleted = world.incident_messages[0]["incident_id"]
    last = max((m for m in world.incident_messages if m["incident_id"] == deleted), key=lambda m: m["revision"])
    producer = Producer({"bootstrap.servers": topics.brokers})
    producer.produce(topics.incidents, key=deleted.encode(), value=None)
    if after_the_delete == "a later revision":  # the last message of a key is its state: here again
        producer.produce(topics.incidents, key=deleted.encode(),
                         value=orjson.dumps({**last, "revision": last["revision"] + 1, "status": "closed",
                                             "closed_by": "quiet"}))
    elif after_the_delete == "a delete of an unknown incident":
        producer.produce(topics.incidents, key=b"INC-NOT-KNOWN-20250509-1", value=None)
    assert producer.flush(10) == 0
    feed = feed_on(topics)
    try:
        feed.refresh(10)
        view = feed.view()
        others = {m["incident_id"] for m in world.incident_messages} - {deleted}
        if after_the_delete == "a later revision":
            assert set(view.incidents) == others | {deleted}
            assert (view.incidents[deleted].revision, view.incidents[deleted].status) == (last["revision"] + 1,
                                                                                          "closed")
        else:
            assert set(view.incidents) == others and len(others) > 0
        assert not view.invalid.get(topics.incidents)
        assert not [entry for entry in feed.log_entries() if topics.incidents in entry.message]
    finally:
        feed.close()
