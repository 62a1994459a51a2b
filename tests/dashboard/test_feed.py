"""The feed on the real topics: what it keeps of records anyone could have written."""

from __future__ import annotations

import orjson
import pytest

from dashboard.config import DashboardConfig
from dashboard.feed import LiveFeed

FUTURE_NS = 4_102_358_400_000_000_000  # 2099-12-31T00:00:00Z


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
    feed = LiveFeed(DashboardConfig(brokers=topics.brokers, anomaly_topic=topics.anomalies,
                                    summary_topic=topics.summaries, incident_topic=topics.incidents,
                                    review_topic=topics.reviews, input_topic=topics.stocks))
    try:
        feed.refresh(10)
        view = feed.view()
        assert not [anomaly for anomaly in view.anomalies if anomaly.anomaly_id.startswith("FORGED")]
        assert view.invalid[topics.anomalies] == 50 + 1  # the world's own non-JSON message too
        assert {anomaly.anomaly_id for anomaly in view.anomalies} <= {a["anomaly_id"] for a in world.anomalies}
        assert any("past the dashboard's clock" in entry.message for entry in feed.log_entries())
    finally:
        feed.close()
