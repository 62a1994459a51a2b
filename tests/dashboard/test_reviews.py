"""Decisions on the real broker as the page reads them: a deleted decision leaves the page."""

from __future__ import annotations

from dataclasses import replace

import pytest

from connectors.review_writer import ReviewWriter
from dashboard.records import Review

pytestmark = pytest.mark.broker

REVIEW = Review("INC-SYN1-20250512-2221902", "dismissed", "known liquidity gap, see ticket 4411", "Ada Lovelace",
                1_795_968_000_123_456_789, "SYN1", "flash_crash", "medium")


def test_a_deleted_decision_leaves_the_page(broker, topic_prefix):
    """A delete on the compacted topic (the incident's key, no value) retracts the decision; it was
    an invalid record and the decision stayed."""
    from confluent_kafka import Producer

    from dashboard.config import DashboardConfig
    from dashboard.feed import LiveFeed

    topic = f"{topic_prefix}-reviews"
    other = replace(REVIEW, incident_id="INC-SYN2-20250512-77")
    writer = ReviewWriter(broker, topic)
    writer.write(REVIEW.incident_id, REVIEW.to_dict())
    writer.write(other.incident_id, other.to_dict())
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
