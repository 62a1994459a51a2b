"""Decoding, the deduplicating ring buffer, the error log and the settings."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import orjson
import pytest

from dashboard.buffer import AnomalyBuffer, PriceHistory, UndecodableMessage, decode_anomaly, decode_summary
from dashboard.config import DashboardConfig, DashboardConfigError
from dashboard.error_log import ErrorLog


def anomaly(sequence: int, severity: float = 0.5, level: str = "medium") -> dict:
    return {"anomaly_id": f"NVDA-20250509-{sequence}", "symbol": "NVDA", "ts_event": "2025-05-09T13:30:00Z",
            "price": 117.33, "severity": severity, "level": level, "detectors": {}}


def test_a_recorded_line_decodes_and_bad_ones_say_why(recorded_anomalies):
    line = orjson.dumps(recorded_anomalies[0])
    assert decode_anomaly(line) == recorded_anomalies[0]
    cases = {
        None: "empty message",
        b"{not json": "not valid JSON",
        b"[1, 2]": "not a JSON object but list",
        orjson.dumps(dict(anomaly(1), anomaly_id="")): "missing or empty 'anomaly_id'",
        orjson.dumps(dict(anomaly(1), level="urgent")): "unknown level 'urgent'",
        orjson.dumps(dict(anomaly(1), severity="high")): "'severity' is not a number",
        orjson.dumps(dict(anomaly(1), severity=True)): "'severity' is not a number",
        orjson.dumps(dict(anomaly(1), price=None)): "'price' is not a number",
    }
    for raw, reason in cases.items():
        with pytest.raises(UndecodableMessage, match=reason):
            decode_anomaly(raw)


def test_fields_only_displayed_are_made_displayable_not_rejected():
    odd = dict(anomaly(1), side=["A"], size="a lot", votes=True)
    decoded = decode_anomaly(orjson.dumps(odd))
    assert (decoded["side"], decoded["size"], decoded["votes"]) == ("N", None, None)
    assert decode_anomaly(orjson.dumps(dict(anomaly(1), side="B", size=300, votes=2)))["size"] == 300


def test_summaries_need_symbol_time_and_price():
    # The job's summaries carry ts_event as integer nanoseconds.
    good = {"symbol": "NVDA", "ts_event": 1746797400892370366, "last_price": 117.3}
    assert decode_summary(orjson.dumps(good)) == dict(good, ts_event="2025-05-09T13:30:00.892370366Z")
    with pytest.raises(UndecodableMessage, match="ts_event"):
        decode_summary(orjson.dumps(dict(good, ts_event="yesterday")))
    with pytest.raises(UndecodableMessage, match="last_price"):
        decode_summary(orjson.dumps(dict(good, last_price="n/a")))


def test_event_times_become_one_fixed_width_utc_form():
    for ts_event in (1746797400892370366, "2025-05-09T13:30:00.892370366Z", "2025-05-09T09:30:00.892370366-04:00"):
        assert decode_anomaly(orjson.dumps(dict(anomaly(1), ts_event=ts_event)))["ts_event"] == (
            "2025-05-09T13:30:00.892370366Z")
    assert decode_anomaly(orjson.dumps(dict(anomaly(1), ts_event="2025-05-09T13:30:00Z")))["ts_event"] == (
        "2025-05-09T13:30:00.000000000Z")
    for bad in ("2025-05-09T13:30:00", None, -5, True):  # no time zone, missing, negative, not a time
        with pytest.raises(UndecodableMessage, match="ts_event"):
            decode_anomaly(orjson.dumps(dict(anomaly(1), ts_event=bad)))


def test_the_buffer_keeps_the_latest_distinct_anomalies():
    buffer = AnomalyBuffer(capacity=3)
    for sequence in (1, 2, 3, 2, 4, 5):
        buffer.add(anomaly(sequence))
    assert [r["anomaly_id"] for r in buffer.records()] == ["NVDA-20250509-3", "NVDA-20250509-4", "NVDA-20250509-5"]
    assert buffer.duplicates == 1
    assert len(buffer) == 3


def test_a_re_emitted_anomaly_replaces_the_first_copy_in_place():
    buffer = AnomalyBuffer(capacity=10)
    buffer.add(anomaly(1, 0.5))
    buffer.add(anomaly(2, 0.6))
    buffer.add(anomaly(1, 0.7))
    assert [(r["anomaly_id"], r["severity"]) for r in buffer.records()] == [
        ("NVDA-20250509-1", 0.7), ("NVDA-20250509-2", 0.6)]


def test_price_history_is_bounded_per_symbol_and_in_symbols():
    history = PriceHistory(points_per_symbol=2, max_symbols=2)
    for index, symbol in enumerate(("A", "A", "A", "B", "C")):
        history.add({"symbol": symbol, "ts_event": f"2025-05-09T13:30:0{index}Z", "last_price": float(index)})
    assert history.points() == {"B": [("2025-05-09T13:30:03Z", 3.0)], "C": [("2025-05-09T13:30:04Z", 4.0)]}


def test_the_error_log_folds_repeats_and_lists_the_most_recent_first():
    log = ErrorLog(capacity=2)
    start = datetime(2026, 11, 29, 2, 0, tzinfo=timezone.utc)
    log.add("kafka client", "connection refused", start)
    log.add("kafka client", "1/1 brokers are down", start + timedelta(seconds=1))
    log.add("kafka client", "connection refused", start + timedelta(seconds=2))
    entries = log.entries()
    assert [(e.message, e.count) for e in entries] == [("connection refused", 2), ("1/1 brokers are down", 1)]
    assert (entries[0].first_seen, entries[0].last_seen) == (start, start + timedelta(seconds=2))
    assert entries[0].last_seen.tzinfo is timezone.utc
    log.add("lag", "1500 behind", start + timedelta(seconds=3))
    assert [e.kind for e in log.entries()] == ["lag", "kafka client"]  # the oldest entry went
    assert len(log) == 2


def test_settings_come_from_the_environment():
    config = DashboardConfig.from_env({
        "KAFKA_BROKERS": "kafka-1:9092,kafka-2:9092", "ANOMALY_TOPIC": "a", "SUMMARY_TOPIC": "s",
        "DASHBOARD_BUFFER_SIZE": "50", "DASHBOARD_REFRESH_SECONDS": "2", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
    })
    assert (config.brokers, config.anomaly_topic, config.summary_topic) == ("kafka-1:9092,kafka-2:9092", "a", "s")
    assert (config.buffer_size, config.refresh_seconds) == (50, 2.0)
    assert config.client_settings == {"security.protocol": "SASL_SSL"}
    assert DashboardConfig.from_env({}) == DashboardConfig()


@pytest.mark.parametrize("name, value, message", [
    ("DASHBOARD_BUFFER_SIZE", "0", "DASHBOARD_BUFFER_SIZE must be between 1 and 1000000, got 0"),
    ("DASHBOARD_BUFFER_SIZE", "1e3", "DASHBOARD_BUFFER_SIZE must be a whole number, got '1e3'"),
    ("DASHBOARD_REFRESH_SECONDS", "0.01", "DASHBOARD_REFRESH_SECONDS must be between 0.2 and 60, got 0.01"),
    ("DASHBOARD_REFRESH_SECONDS", "nan", "DASHBOARD_REFRESH_SECONDS must be between 0.2 and 60, got nan"),
    ("KAFKA_BROKERS", " ", "KAFKA_BROKERS must not be empty"),
    ("ANOMALY_TOPIC", "", "ANOMALY_TOPIC must not be empty"),
])
def test_a_bad_setting_fails_naming_it(name, value, message):
    with pytest.raises(DashboardConfigError) as error:
        DashboardConfig.from_env({name: value})
    assert str(error.value) == message
