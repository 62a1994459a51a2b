"""Incident-level scoring on hand-built incident files, counted by hand."""

import numpy as np
import orjson
import pytest

from benchmarks.incident_scoring import combine_incident_scores, read_incidents, score_incidents
from connectors.injection import LabelledEvent

# One symbol, 2,000 trades: position i has sequence 10 * i + 3.
SEQUENCES = {"XYZ": np.arange(2_000) * 10 + 3}


def seq(position: int) -> int:
    return position * 10 + 3


def event(kind: str, first: int, last: int, direction: str | None = None) -> LabelledEvent:
    return LabelledEvent(kind, "XYZ", seq(first), seq(last), last - first + 1, "2025-05-09T15:00:00.000000000Z", "",
                         direction)


def incident(first: int, last: int, kind: str, level: str = "high", direction: str | None = None,
             symbol: str = "XYZ") -> dict:
    return {"incident_id": f"INC-{symbol}-{first}", "symbol": symbol, "kind": kind, "direction": direction,
            "status": "closed", "first_sequence": seq(first), "last_sequence": seq(last), "level": level}


EVENTS = [
    event("off_market", 100, 100, "up"),
    event("flash_crash", 300, 600, "down"),
    event("burst", 900, 1_200),
    event("sweep", 1_500, 1_520, "up"),
]


def test_coverage_kinds_false_incidents_and_levels_counted_by_hand():
    incidents = [
        incident(100, 100, "off_market_print", "critical", "up"),   # the off-market print, right kind
        incident(350, 450, "flash_crash", "high", "down"),         # the crash, right kind and direction
        incident(500, 700, "ramp", "medium", "down"),              # a second incident on the crash
        incident(1_250, 1_290, "burst", "high"),                   # in the 100 trades after the burst
        incident(1_800, 1_810, "block", "medium"),                 # false
        incident(1_950, 1_960, "other", "critical"),               # false
        incident(0, 2, "auction", "critical"),                     # apart
    ]
    score = score_incidents(SEQUENCES, EVENTS, incidents)
    assert score.events == 4 and score.covered == 3  # the sweep is missed
    assert score.covered_share == 0.75
    assert sorted(score.covering_counts) == [1, 1, 2]
    assert score.incidents_per_event == pytest.approx(4 / 3)
    assert score.kind_checks == {"burst": (1, 1), "flash_crash": (1, 1), "off_market": (1, 1), "sweep": (0, 0)}
    assert score.kind_right == 1.0
    assert score.false_incidents == 2 and score.false_per_100k == pytest.approx(100.0)
    assert score.auctions == 1
    assert score.true_levels == {"critical": 1, "high": 2, "medium": 1}
    assert score.true_urgent == 0.75 and score.false_urgent == 0.5


@pytest.mark.parametrize("found, right", [
    (incident(310, 590, "flash_crash", direction="up"), False),   # wrong direction
    (incident(310, 590, "flash_crash", direction="down"), True),
    (incident(310, 590, "ramp", direction="down"), False),        # wrong kind
])
def test_a_flash_crash_needs_its_kind_and_direction(found, right):
    score = score_incidents(SEQUENCES, [EVENTS[1]], [found])
    assert score.kind_checks == {"flash_crash": (int(right), 1)}


def test_a_sweep_is_expected_as_a_ramp_and_the_main_incident_is_the_one_on_its_trades():
    incidents = [incident(1_505, 1_515, "ramp"), incident(1_530, 1_600, "block")]
    score = score_incidents(SEQUENCES, [EVENTS[3]], incidents)
    assert score.covering_counts == [2] and score.kind_checks == {"sweep": (1, 1)}
    after_only = score_incidents(SEQUENCES, [EVENTS[3]], [incident(1_560, 1_600, "block"), incident(1_530, 1_540, "ramp")])
    assert after_only.kind_checks == {"sweep": (1, 1)}  # neither on its trades: the earliest counts


def test_the_window_after_an_event_ends_100_trades_later_and_other_symbols_do_not_count():
    at_edge = score_incidents(SEQUENCES, [EVENTS[0]], [incident(200, 210, "other")])
    beyond = score_incidents(SEQUENCES, [EVENTS[0]], [incident(201, 210, "other")])
    assert at_edge.covered == 1 and beyond.covered == 0 and beyond.false_incidents == 1
    elsewhere = score_incidents(SEQUENCES | {"ABC": np.arange(10)}, [EVENTS[0]], [incident(100, 100, "block", symbol="ABC")])
    assert elsewhere.covered == 0 and elsewhere.false_incidents == 1


def test_one_incident_over_two_close_events_covers_both():
    events = [event("block", 100, 100), event("ramp", 150, 190, "up")]
    score = score_incidents(SEQUENCES, events, [incident(100, 180, "ramp")])
    assert score.covered == 2 and score.covering_counts == [1, 1]
    assert score.kind_checks == {"block": (0, 1), "ramp": (1, 1)}
    assert score.true_levels == {"high": 1}


def test_reading_a_file_skips_unreadable_lines_and_an_absent_file_is_none(tmp_path):
    path = tmp_path / "out.incidents.jsonl"
    assert read_incidents(path) is None
    lines = [orjson.dumps(incident(100, 100, "block")), b"not json", b"", orjson.dumps({"symbol": "XYZ"}),
             orjson.dumps(incident(5, 3, "block")), orjson.dumps([1, 2])]
    path.write_bytes(b"\n".join(lines) + b"\n")
    incidents, unreadable = read_incidents(path)
    assert len(incidents) == 1 and unreadable == 4


def test_combining_adds_counts():
    first = score_incidents(SEQUENCES, EVENTS[:2], [incident(100, 100, "block"), incident(1_900, 1_900, "other", "low")])
    second = score_incidents(SEQUENCES, EVENTS[2:], [incident(900, 950, "burst", "critical")])
    total = combine_incident_scores([first, second])
    assert total.trades == 4_000 and total.events == 4 and total.covered == 2
    assert total.kind_checks == {"burst": (1, 1), "flash_crash": (0, 0), "off_market": (0, 1), "sweep": (0, 0)}
    assert total.false_incidents == 1 and total.false_per_100k == pytest.approx(25.0)
    assert total.true_urgent == pytest.approx(1.0) and total.false_urgent == 0.0
