"""The page's numbers and figures from hand-checked records, one of each level and side."""

from __future__ import annotations

import pytest

from dashboard.figures import (
    LEVEL_COLOURS, detector_figure, per_minute_counts, per_minute_figure, plain, price_figure, severity_figure,
)
from dashboard.metrics import (
    compute_metrics, detector_vote_counts, explanation_text, filter_records, latest_rows, level_counts,
)


def record(number: int, symbol: str, ts_event: str, side: str, severity: float, level: str,
           votes: tuple[bool, bool, bool]) -> dict:
    names = ("isolation_forest", "elliptic_envelope", "zscore")
    return {
        "anomaly_id": f"{symbol}-20250509-{number}", "symbol": symbol, "sequence": number, "ts_event": ts_event,
        "side": side, "price": 100.0 + number, "size": 100 * number, "kind": "trade", "severity": severity,
        "level": level, "votes": sum(votes),
        "detectors": {name: {"score": 1.0, "threshold": 0.5, "vote": vote} for name, vote in zip(names, votes)},
        "explanation": [{"feature": "current_size", "value": 1452275.0, "zscore": 9.84},
                        {"feature": "price_range", "value": 0.42, "zscore": 4.91}],
    }


RECORDS = [
    record(1, "NVDA", "2025-05-09T13:30:00.892370366Z", "N", 0.83, "critical", (True, True, True)),
    record(2, "NVDA", "2025-05-09T13:30:41.000000001Z", "A", 0.65, "high", (True, False, True)),
    record(3, "AAPL", "2025-05-09T13:31:02.500000000Z", "B", 0.45, "medium", (False, True, True)),
    record(4, "AAPL", "2025-05-09T13:31:59.999999999Z", "A", 0.31, "low", (True, True, False)),
    record(5, "NVDA", "2025-05-09T13:33:10.000000000Z", "B", 0.91, "critical", (True, True, False)),
]


def test_metrics_of_five_records():
    metrics = compute_metrics(RECORDS)
    assert metrics.total == 5
    assert metrics.average_severity == pytest.approx((0.83 + 0.65 + 0.45 + 0.31 + 0.91) / 5)  # 0.63
    assert metrics.max_severity == 0.91
    assert metrics.critical == 2
    assert metrics.by_side == {"Ask": 2, "Bid": 2, "None": 1}


def test_metrics_of_nothing_say_nothing_rather_than_zero_severity():
    metrics = compute_metrics([])
    assert (metrics.total, metrics.average_severity, metrics.max_severity, metrics.critical) == (0, None, None, 0)
    assert metrics.by_side == {"Ask": 0, "Bid": 0, "None": 0}


def test_an_unknown_side_counts_as_none():
    assert compute_metrics([dict(RECORDS[1], side="X")]).by_side == {"Ask": 0, "Bid": 0, "None": 1}


def test_filters_by_symbol_and_level_and_empty_means_all():
    assert filter_records(RECORDS) == RECORDS
    assert [r["sequence"] for r in filter_records(RECORDS, symbols=["NVDA"])] == [1, 2, 5]
    assert [r["sequence"] for r in filter_records(RECORDS, levels=["critical", "low"])] == [1, 4, 5]
    assert [r["sequence"] for r in filter_records(RECORDS, ["NVDA"], ["critical"])] == [1, 5]
    assert filter_records(RECORDS, ["MSFT"]) == []


def test_detector_votes_and_levels_are_counted():
    assert detector_vote_counts(RECORDS) == {"isolation_forest": 4, "elliptic_envelope": 4, "zscore": 3}
    assert level_counts(RECORDS) == {"low": 1, "medium": 1, "high": 1, "critical": 2}


def test_the_table_lists_the_newest_first_with_its_explanation():
    rows = latest_rows(RECORDS, limit=2)
    assert [row["anomaly_id"] for row in rows] == ["NVDA-20250509-5", "AAPL-20250509-4"]
    assert rows[0]["side"] == "Bid"
    assert rows[0]["detectors"] == "isolation_forest, elliptic_envelope"
    assert rows[0]["explanation"] == "current_size=1.45228e+06 (z 9.8); price_range=0.42 (z 4.9)"
    assert explanation_text({"explanation": None}) == ""


def test_anomalies_per_minute_by_level_use_event_time_in_utc():
    counts = per_minute_counts(RECORDS)
    as_tuples = [(str(row.minute), row.level, row.anomalies) for row in counts.itertuples()]
    assert as_tuples == [
        ("2025-05-09 13:30:00+00:00", "critical", 1),
        ("2025-05-09 13:30:00+00:00", "high", 1),
        ("2025-05-09 13:31:00+00:00", "low", 1),
        ("2025-05-09 13:31:00+00:00", "medium", 1),
        ("2025-05-09 13:33:00+00:00", "critical", 1),
    ]
    assert per_minute_counts([]).empty


def test_figures_carry_the_counts_and_colours():
    by_level = {trace.name: trace for trace in severity_figure(RECORDS).data}
    assert list(by_level["critical"].x) == [0.83, 0.91]
    assert by_level["critical"].marker.color == LEVEL_COLOURS["critical"]
    per_minute = {trace.name: list(trace.y) for trace in per_minute_figure(RECORDS).data}
    assert per_minute["critical"] == [1, 1]
    votes = detector_figure(RECORDS).data[0]
    assert list(votes.x) == ["isolation_forest", "elliptic_envelope", "zscore"] and list(votes.y) == [4, 4, 3]


def test_price_figure_has_a_line_per_instrument_and_markers_by_level():
    prices = {"NVDA": [("2025-05-09T13:30:00.000000000Z", 117.3), ("2025-05-09T13:31:00.000000000Z", 117.5)]}
    figure = price_figure(prices, RECORDS, ["NVDA", "AAPL"])
    lines = [trace for trace in figure.data if trace.mode == "lines"]
    assert len(lines) == 1 and list(lines[0].y) == [117.3, 117.5]
    markers = {(trace.name, trace.yaxis): list(trace.y) for trace in figure.data if trace.mode == "markers"}
    assert markers == {("critical", "y"): [101.0, 105.0], ("high", "y"): [102.0],
                       ("medium", "y2"): [103.0], ("low", "y2"): [104.0]}
    assert str(lines[0].x[0]) == "2025-05-09 13:30:00+00:00"


def test_untrusted_text_reaches_plotly_escaped():
    assert plain('<img src=x onerror="alert(1)">') == '&lt;img src=x onerror="alert(1)"&gt;'
    figure = price_figure({}, [dict(RECORDS[0], symbol="<b>X</b>")], ["<b>X</b>"])
    assert figure.layout.annotations[0].text == "&lt;b&gt;X&lt;/b&gt;"
