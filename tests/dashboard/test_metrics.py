"""The page's numbers, tables and figures from hand-checked records, one of each level and side."""

from __future__ import annotations

from array import array
from collections import Counter

import orjson
import pytest

from dashboard.buffer import PriceLine
from dashboard.clock import both_text, duration_text, new_york_text, utc_text
from dashboard.figures import (
    LEVEL_COLOURS, detector_figure, incident_figure, per_minute_counts, per_minute_figure, plain, price_figure,
    severity_figure,
)
from dashboard.metrics import (
    compute_metrics, decision_rows, detector_vote_counts, filter_records, incident_label, latest_rows,
    member_rows, members_text, price_move_text, queue_rows, review_text,
)
from dashboard.records import Anomaly, DetectorVerdict, PricePath, Review, decode_anomaly, decode_incident

NAMES = ("isolation_forest", "elliptic_envelope", "zscore")


def record(number: int, symbol: str, ts_ns: int, side: str, severity: float, level: str,
           votes: tuple[bool, bool, bool], kind: str = "trade") -> Anomaly:
    return Anomaly(
        anomaly_id=f"{symbol}-20250509-{number}", incident_id=f"INC-{symbol}", symbol=symbol, ts_ns=ts_ns, side=side,
        price=100.0 + number, size=100 * number, kind=kind, severity=severity, level=level,
        detectors=tuple(DetectorVerdict(name, 1.0 + index, 0.5, vote) for index, (name, vote) in enumerate(zip(NAMES, votes))),
        explanation=("size 49,987 = 96x the median of the last 100 trades", "price 0.4% above the window mean"),
    )


def numbers(records: list[Anomaly]) -> list[int]:
    """The ``number`` each record was made with (the end of its id)."""
    return [int(record.anomaly_id.rsplit("-", 1)[1]) for record in records]


T0 = 1746797400892370366  # 2025-05-09 13:30:00.892370366 UTC, 09:30:00.892 in New York
RECORDS = [
    record(1, "NVDA", T0, "N", 0.83, "critical", (True, True, True), kind="auction"),
    record(2, "NVDA", T0 + 40_107_629_635, "A", 0.65, "high", (True, False, True)),
    record(3, "AAPL", T0 + 61_607_629_634, "B", 0.45, "medium", (False, True, True)),
    record(4, "AAPL", T0 + 119_107_629_633, "A", 0.31, "low", (True, True, False)),
    record(5, "NVDA", T0 + 189_107_629_634, "B", 0.91, "critical", (True, True, False)),
]


def test_metrics_of_five_records():
    metrics = compute_metrics(RECORDS)
    assert metrics.total == 5
    assert metrics.average_severity == pytest.approx((0.83 + 0.65 + 0.45 + 0.31 + 0.91) / 5)
    assert (metrics.max_severity, metrics.critical) == (0.91, 2)
    assert metrics.by_side == {"A": 2, "B": 2, "N": 1}


def test_metrics_of_nothing_say_nothing_rather_than_zero_severity():
    metrics = compute_metrics([])
    assert (metrics.total, metrics.average_severity, metrics.max_severity, metrics.critical) == (0, None, None, 0)


def test_filters_by_symbol_and_level_and_empty_means_all():
    assert filter_records(RECORDS) == RECORDS
    assert numbers(filter_records(RECORDS, symbols=["NVDA"])) == [1, 2, 5]
    assert numbers(filter_records(RECORDS, levels=["critical", "low"])) == [1, 4, 5]
    assert numbers(filter_records(RECORDS, ["NVDA"], ["critical"])) == [1, 5]
    assert filter_records(RECORDS, ["MSFT"]) == []


def test_detector_votes_are_counted():
    assert detector_vote_counts(RECORDS) == {"isolation_forest": 4, "elliptic_envelope": 4, "zscore": 3}


def test_times_read_in_new_york_and_utc():
    assert new_york_text(T0) == "2025-05-09 09:30:00.892"
    assert utc_text(T0) == "2025-05-09 13:30:00.892"
    assert both_text(T0) == "09:30:00.892 New York (13:30:00.892 UTC) on 2025-05-09"
    winter = 1736778600_000000000  # 2025-01-13 14:30 UTC: New York is UTC-5 in January
    assert new_york_text(winter) == "2025-01-13 09:30:00.000"
    assert [duration_text(s) for s in (0, 0.0042, 4.2, 41.4, 185, 7800)] == [
        "0 s", "0.0042 s", "4.2 s", "41 s", "3 min 05 s", "2 h 10 min"]


def test_the_table_lists_the_newest_first_with_both_times_and_the_explanation():
    rows = latest_rows(RECORDS, limit=2)
    assert [row["anomaly_id"] for row in rows] == ["NVDA-20250509-5", "AAPL-20250509-4"]
    assert rows[0]["time (New York)"] == "2025-05-09 09:33:10.000" and rows[0]["time (UTC)"] == "2025-05-09 13:33:10.000"
    assert rows[0]["side"] == "Bid" and rows[0]["detectors voting"] == "isolation_forest, elliptic_envelope"
    assert rows[0]["explanation"] == "size 49,987 = 96x the median of the last 100 trades; price 0.4% above the window mean"


def test_member_rows_carry_each_detectors_score_threshold_and_vote():
    rows = member_rows(RECORDS[:2])
    assert rows[0]["isolation_forest"] == "1 / 0.5 VOTE"
    assert rows[1]["elliptic_envelope"] == "2 / 0.5 no"
    assert rows[0]["kind"] == "auction" and rows[0]["time (New York)"] == "2025-05-09 09:30:00.892"


@pytest.fixture
def incidents(world):
    return {message["incident_id"]: decode_incident(orjson.dumps(message))
            for message in world.final_incidents().values()}


def test_queue_rows_mark_auctions_and_show_move_duration_and_review(incidents):
    queue = sorted(incidents.values(), key=lambda i: i.incident_id)
    auction = next(i for i in queue if i.kind == "auction")
    crash = next(i for i in queue if i.kind == "flash_crash")
    reviews = {crash.incident_id: Review(crash.incident_id, "dismissed", "", "Ada", T0)}
    rows = {row["incident_id"]: row for row in queue_rows(queue, reviews)}
    assert rows[auction.incident_id]["kind"] == "AUCTION (opening/closing cross)"
    assert rows[crash.incident_id]["kind"] == f"flash crash ({crash.direction})"
    assert rows[crash.incident_id]["review"] == "dismissed (false positive) by Ada"
    assert rows[crash.incident_id]["price move"] == f"{crash.price_move_bps:+,.0f} bp ({crash.price_move_bps / 100:+.2f}%)"
    assert rows[crash.incident_id]["duration"] == duration_text(crash.duration_s) != ""
    assert rows[crash.incident_id]["trades"] == crash.trades
    assert rows[crash.incident_id]["start (New York)"] == new_york_text(crash.first_ns)
    assert incident_label(crash) == (f"{crash.level.upper()} · {crash.symbol} · flash crash ({crash.direction}) · "
                                     f"{new_york_text(crash.first_ns)} New York · {crash.status}")
    assert review_text(None) == "" and price_move_text(auction).endswith("%)")


def test_decisions_per_kind_list_the_most_dismissed_first():
    rows = decision_rows({"burst": Counter(dismissed=1), "auction": Counter(dismissed=3, acknowledged=1)})
    assert rows == [{"kind": "auction", "dismissed as false positive": 3, "acknowledged": 1},
                    {"kind": "burst", "dismissed as false positive": 1, "acknowledged": 0}]


def test_anomalies_per_minute_by_level_use_new_york_event_time():
    counts = per_minute_counts(RECORDS)
    assert [(str(row.minute), row.level, row.anomalies) for row in counts.itertuples()] == [
        ("2025-05-09 09:30:00-04:00", "critical", 1),
        ("2025-05-09 09:30:00-04:00", "high", 1),
        ("2025-05-09 09:31:00-04:00", "low", 1),
        ("2025-05-09 09:31:00-04:00", "medium", 1),
        ("2025-05-09 09:33:00-04:00", "critical", 1),
    ]
    assert per_minute_counts([]).empty


def test_figures_carry_the_counts_and_colours():
    by_level = {trace.name: trace for trace in severity_figure(RECORDS).data}
    assert list(by_level["critical"].x) == [0.83, 0.91]
    assert by_level["critical"].marker.color == LEVEL_COLOURS["critical"]
    assert {trace.name: list(trace.y) for trace in per_minute_figure(RECORDS).data}["critical"] == [1, 1]
    votes = detector_figure(RECORDS).data[0]
    assert list(votes.x) == list(NAMES) and list(votes.y) == [4, 4, 3]


def test_price_figure_has_a_line_per_instrument_and_markers_by_level():
    # As read: a replayed summary comes again, after a newer one.
    prices = {"NVDA": PriceLine(array("q", [T0, T0 + 60_000_000_000, T0]), array("d", [117.3, 117.5, 117.3]))}
    figure = price_figure(prices, RECORDS, ["NVDA", "AAPL"])
    lines = [trace for trace in figure.data if trace.mode == "lines"]
    assert len(lines) == 1 and list(lines[0].y) == [117.3, 117.5]
    markers = {(trace.name, trace.yaxis): list(trace.y) for trace in figure.data if trace.mode == "markers"}
    assert markers == {("critical", "y"): [101.0, 105.0], ("high", "y"): [102.0],
                       ("medium", "y2"): [103.0], ("low", "y2"): [104.0]}
    assert str(lines[0].x[0]) == "2025-05-09 09:30:00.892370-04:00"


def test_the_incident_chart_is_zoomed_to_its_price_path_with_its_anomalies(world, incidents):
    crash = next(i for i in incidents.values() if i.kind == "flash_crash")
    members = [record(n, "SYN1", crash.price_path.times[60 + n], "A", 0.5, "medium", (True, False, True))
               for n in range(3)]
    figure = incident_figure(crash, members)
    path = figure.data[0]
    assert len(path.y) == len(crash.price_path) and path.y[0] == crash.price_path.prices[0]
    assert [trace.name for trace in figure.data[1:]] == ["medium"] and len(figure.data[1].y) == 3
    left, right = figure.layout.xaxis.range
    assert left < path.x[0] and right > path.x[-1]
    shown_ns = max(crash.price_path.times[-1], crash.last_ns) - min(crash.price_path.times[0], crash.first_ns)
    assert shown_ns / 1e9 < (right - left).total_seconds() < 1.1 * shown_ns / 1e9  # the path and the incident, little else
    assert figure.layout.shapes[0].type == "rect"  # the incident's span
    assert figure.layout.shapes[1].y0 == crash.reference_price


@pytest.fixture
def members_of(world):
    records = [decode_anomaly(orjson.dumps(record)) for record in world.anomalies]
    return lambda incident_id: [record for record in records if record.incident_id == incident_id]


def test_members_read_after_an_open_incidents_last_message_are_shown_and_said(incidents, members_of):
    """An open incident is republished when its members double: the job has written more members
    than its last message counts. The chart takes them in and the count says so."""
    lagging = [i for i in incidents.values() if len(members_of(i.incident_id)) > i.anomalies]
    assert lagging and all(incident.is_open for incident in lagging)
    for incident in lagging:
        members = members_of(incident.incident_id)
        assert max(r.ts_ns for r in members) > max(incident.last_ns, incident.price_path.times[-1])
        figure = incident_figure(incident, members)
        left, right = figure.layout.xaxis.range
        marked = [x for trace in figure.data[1:] for x in trace.x]
        assert len(marked) == len(members) and all(left <= x <= right for x in marked)
        assert members_text(len(members), incident) == (
            f"{len(members):,} in memory; the incident's last message (revision {incident.revision}) "
            f"counted {incident.anomalies:,}")
    complete = next(i for i in incidents.values() if len(members_of(i.incident_id)) == i.anomalies >= 2)
    assert members_text(2, complete) == f"2 in memory of {complete.anomalies:,}"


def test_an_incident_without_a_price_path_still_draws(incidents):
    bare = next(iter(incidents.values()))
    from dataclasses import replace

    figure = incident_figure(replace(bare, price_path=PricePath(), reference_price=None), [])
    assert figure.data == () and figure.layout.xaxis.range is not None


def test_untrusted_text_reaches_plotly_escaped():
    assert plain('<img src=x onerror="alert(1)">') == '&lt;img src=x onerror="alert(1)"&gt;'
    hostile = Anomaly(**{**{f: getattr(RECORDS[0], f) for f in RECORDS[0].__slots__}, "symbol": "<b>X</b>"})
    figure = price_figure({}, [hostile], ["<b>X</b>"])
    assert figure.layout.annotations[0].text == "&lt;b&gt;X&lt;/b&gt;"
    assert "&lt;b&gt;X&lt;/b&gt;" in figure.data[0].hovertext[0]
