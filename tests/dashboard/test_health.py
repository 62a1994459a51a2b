"""The job's progress against the input topic's end: caught up, processing, falling behind, stalled.

Time is passed in, never waited for: ``observe(now, ends, claims)`` with ``now`` in seconds.
"""

from __future__ import annotations

import orjson
import pytest
from confluent_kafka import Producer

from dashboard.config import DashboardConfig
from dashboard.feed import LiveFeed
from dashboard.health import ProgressMonitor
from publishing import create_topics


def monitor() -> ProgressMonitor:
    return ProgressMonitor(stall_seconds=30, lag_warning=1000)


def test_a_job_that_keeps_up_is_caught_up_or_processing():
    watch = monitor()
    assert watch.observe(0, {0: 100, 1: 50}, [(0, 100), (1, 50)]).state == "caught up"
    progress = watch.observe(5, {0: 180, 1: 60}, [(0, 150), (1, 60)])
    assert (progress.state, progress.gap) == ("processing", 30)
    assert progress.message == "30 trades behind the input end"
    assert watch.observe(10, {0: 180, 1: 60}, [(0, 180), (1, 60)]).state == "caught up"


def test_no_progress_while_trades_keep_arriving_is_a_stall():
    watch = monitor()
    watch.observe(0, {0: 100}, [(0, 100)])
    assert watch.observe(10, {0: 150}, [(0, 100)]).state == "processing"  # not for long enough yet
    assert watch.observe(29, {0: 200}, [(0, 100)]).state == "processing"
    stalled = watch.observe(31, {0: 220}, [(0, 100)])
    assert (stalled.state, stalled.gap) == ("stalled", 120)
    assert stalled.message == "no progress for 31 s while trades keep arriving; 120 trades behind the input end"
    assert watch.observe(32, {0: 230}, [(0, 101)]).state == "processing"  # it moved again


def test_a_gap_without_new_trades_is_not_a_stall():
    """The last trades before a pause may never get a summary (one per second of event time)."""
    watch = monitor()
    watch.observe(0, {0: 100}, [(0, 97)])
    watch.observe(1, {0: 103}, [(0, 97)])  # trades of the same second arrive just after
    progress = watch.observe(300, {0: 103}, [(0, 97)])
    assert (progress.state, progress.gap) == ("processing", 6)


def test_a_growing_gap_is_falling_behind():
    watch = monitor()
    watch.observe(0, {0: 1000}, [(0, 1000)])
    assert watch.observe(10, {0: 2000}, [(0, 1500)]).state == "processing"
    behind = watch.observe(20, {0: 4000}, [(0, 2000)])
    assert (behind.state, behind.gap) == ("falling behind", 2000)
    assert behind.message == "2,000 trades behind the input end, 2,000 more than 20 s ago"


def test_no_input_topic_or_no_positions_yet():
    watch = monitor()
    assert watch.observe(0, None, []).state == "unknown"
    assert watch.observe(0, {0: 10}, []).state == "waiting"
    # Summaries without input positions (a job older than the contract) are not a stall.
    assert watch.observe(40, {0: 50}, []).state == "waiting"


@pytest.mark.parametrize("forged, stalled_at, gap", [
    ((0, 2**63), [31, 35, 45, 55], 220),  # far past the input's end: never believed
    ((0, 10**6), [31, 35, 45, 55], 220),
    ((7, 400), [31, 35, 45, 55], 220),  # a partition the input topic does not have
    ((0, 150), [45, 55], 170),  # within the end: one moment of progress, then a stall time again
    ((0, 151), [55], 169),  # past the end when read, believed once the end reaches it
])
def test_one_forged_position_does_not_hide_a_stall(forged, stalled_at, gap):
    """The job stops at offset 100 while trades keep arriving; one summary claims another position.
    The largest position ever claimed used to be the job's: 2**63 read as caught up for good."""
    watch = monitor()
    watch.observe(0, {0: 100}, [(0, 100)])
    states = {now: watch.observe(now, {0: end}, [(0, 100), forged])
              for now, end in [(10, 150), (20, 200), (31, 220), (35, 250), (45, 300), (55, 320)]}
    assert [now for now, progress in states.items() if progress.state == "stalled"] == stalled_at
    assert states[55].gap == gap


def test_a_forged_position_does_not_hide_the_gap_of_a_working_job():
    watch = monitor()
    for now, end, position in [(0, 1000, 900), (5, 1100, 1000), (10, 1200, 1100)]:
        progress = watch.observe(now, {0: end}, [(0, position), (0, 2**63), (1, 2**63)])
    assert (progress.state, progress.gap) == ("processing", 100)


def test_a_forged_claim_of_the_only_instrument_of_a_partition_does_not_hide_a_stall():
    """The forged summary is the instrument's newest (no real one follows from a stalled job)."""
    watch = monitor()
    assert watch.observe(0, {0: 5}, [(0, 5)]).state == "caught up"
    assert watch.observe(1, {0: 5}, [(0, 2**62)]).state == "caught up"
    assert (watch.observe(20, {0: 8}, [(0, 2**62)]).gap) == 3
    stalled = watch.observe(40, {0: 10}, [(0, 2**62)])
    assert (stalled.state, stalled.gap) == ("stalled", 5)


def test_only_forged_positions_are_nothing_to_measure():
    """A job whose summaries carry no position, and one forged summary that does."""
    watch = monitor()
    assert watch.observe(0, {0: 10}, [(0, 2**63)]).state == "waiting"
    assert watch.observe(60, {0: 500}, [(0, 2**63)]).state == "waiting"


def publish_one_by_one(brokers: str, topic: str, count: int, partition: int = 0) -> None:
    """One produce request per message, so the development broker's high watermark is exact."""
    producer = Producer({"bootstrap.servers": brokers})
    for number in range(count):
        producer.produce(topic, value=b"trade %d" % number, partition=partition)
        assert producer.flush(10) == 0


def summary(symbol: str, second: int, offset: int, topic: str, partition: int = 0) -> bytes:
    return orjson.dumps({"symbol": symbol, "ts_event": 1746797400_000000000 + second * 1_000_000_000,
                         "last_price": 117.0, "trades_processed": offset + 1, "anomalies": 0,
                         "source": topic, "partition": partition, "offset": offset})


@pytest.mark.broker
@pytest.mark.parametrize("forger", [None, "EVIL", "NVDA"])  # NVDA: the forged summary is its newest from then on
def test_the_feed_reports_a_stalled_job_from_the_real_topics(topics, publisher, forger):
    """The input topic's end moves, the summaries' positions do not: stalled, and in the error log;
    a summary claiming a position past the end does not hide it."""
    create_topics(topics.brokers, topics.stocks, topics.summaries, partitions=1)
    publish_one_by_one(topics.brokers, topics.stocks, 5)
    forged = [] if forger is None else [orjson.dumps({**orjson.loads(summary(forger, 3, 0, topics.stocks)),
                                                      "offset": 2**62})]
    publisher(topics.summaries, [summary("NVDA", 1, 2, topics.stocks), summary("NVDA", 2, 4, topics.stocks),
                                 *forged])
    now = [0.0]
    feed = LiveFeed(DashboardConfig(brokers=topics.brokers, summary_topic=topics.summaries,
                                    input_topic=topics.stocks, anomaly_topic=topics.anomalies,
                                    incident_topic=topics.incidents, review_topic=topics.reviews,
                                    stall_seconds=30), clock=lambda: now[0])
    try:
        feed.refresh(5)
        assert feed.view().progress.state == "caught up"
        publish_one_by_one(topics.brokers, topics.stocks, 3)
        now[0] = 20.0
        feed.refresh(5)
        assert (feed.view().progress.state, feed.view().progress.gap) == ("processing", 3)
        now[0] = 40.0
        feed.refresh(5)
        progress = feed.view().progress
        assert (progress.state, progress.gap) == ("stalled", 3)
        assert any(entry.kind == "job stalled" and topics.stocks in entry.message for entry in feed.log_entries())
        publisher(topics.summaries, [summary("NVDA", 3, 7, topics.stocks)])  # the job moves again
        now[0] = 41.0
        feed.refresh(5)
        assert feed.view().progress.state == "caught up"
    finally:
        feed.close()




@pytest.mark.broker
def test_summaries_of_another_input_topic_are_not_progress(topics, publisher):
    create_topics(topics.brokers, topics.stocks, topics.summaries, partitions=1)
    publish_one_by_one(topics.brokers, topics.stocks, 2)
    publisher(topics.summaries, [summary("NVDA", 1, 1, "some-other-topic")])
    feed = LiveFeed(DashboardConfig(brokers=topics.brokers, summary_topic=topics.summaries,
                                    input_topic=topics.stocks, anomaly_topic=topics.anomalies,
                                    incident_topic=topics.incidents, review_topic=topics.reviews))
    try:
        feed.refresh(5)
        assert feed.view().progress.state == "waiting"
    finally:
        feed.close()
