"""The incident tracker: grouping and closing, determinism, recovery, bounds, severity, output."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import datetime, timezone

import numpy as np
import pytest

from incident_support import (
    columns, comparable, engine_like_flags, final_states, injected, quiet_tape, random_runs, record, track,
)
from connectors.injection import inject_events
from models.config import ConfigError
from models.incidents import EarlierBlock, IncidentSettings, IncidentTracker, TradeColumns
from models.severity import SEVERITY_WEIGHTS, incident_severity, log_scale, magnitude
from models.kinds import KindEvidence

CONTRACT_FIELDS = {
    "incident_id", "symbol", "instrument_id", "publisher_id", "status", "revision", "kind", "direction",
    "first_sequence", "last_sequence", "first_ts_event", "last_ts_event", "duration_s", "anomalies", "trades",
    "reference_price", "price_move_bps", "recovered", "max_size", "size_vs_median", "severity", "level",
    "peak_anomaly_id", "peak_severity", "anomaly_ids", "summary", "explanation", "price_path", "updated_at",
}


def regular_tape(count: int, spacing_s: float, start_ns: int = 1_747_058_400_000_000_000) -> list[dict]:
    """A flat tape with one trade every ``spacing_s`` seconds: the quiet clock is easy to read."""
    trades = []
    for i in range(count):
        ns = start_ns + round(i * spacing_s * 1e9)
        stamp = datetime.fromtimestamp(ns // 10**9, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
        trades.append({
            "ts_recv": f"{stamp}.{ns % 10**9:09d}Z", "ts_event": f"{stamp}.{ns % 10**9:09d}Z", "rtype": 0,
            "publisher_id": 2, "instrument_id": 7, "action": "T", "side": "ABN"[i % 3], "depth": 0,
            "price": 100.0 + 0.01 * (i % 2), "size": 100, "flags": 130, "ts_in_delta": 0, "sequence": 1_000 + i,
            "symbol": "FLAT",
        })
    return trades


def statuses(updates):
    return [(row, update.status, update.revision) for row, update in updates]


# --- grouping and closing ----------------------------------------------------------------


@pytest.mark.parametrize(("spacing_s", "closing_row"), [
    (0.1, 5 + 20),   # 10 trades pass after 1 s: the 2 s of quiet decide (trade 20 after the anomaly)
    (1.0, 5 + 10),   # 2 s pass after 2 trades: the 10 quiet trades decide
    (0.2, 5 + 10),   # both are met on the same trade
])
def test_an_incident_closes_on_the_first_trade_that_meets_both_quiet_conditions(spacing_s, closing_row):
    tape = regular_tape(60, spacing_s)
    settings = IncidentSettings(quiet_trades=10, quiet_seconds=2.0)
    updates, tracker, records = track(tape, [5], tracker=IncidentTracker("FLAT", settings))
    assert statuses(updates) == [(5, "open", 0), (closing_row, "closed", 1)]
    closed = updates[-1][1]
    assert closed.closed_by == "quiet"
    assert closed.incident_id == "INC-FLAT-1005" == records[5].incident_id
    assert (closed.first_sequence, closed.last_sequence, closed.anomalies, closed.trades) == (1005, 1005, 1, 1)
    assert tracker.open_incident_id is None


@pytest.mark.parametrize("spacing_s", [0.1, 1.0])
def test_an_anomaly_one_trade_before_the_close_joins_the_incident(spacing_s):
    tape = regular_tape(80, spacing_s)
    settings = IncidentSettings(quiet_trades=10, quiet_seconds=2.0)
    closing_row = {0.1: 25, 1.0: 15}[spacing_s]
    updates, _, records = track(tape, [5, closing_row - 1], tracker=IncidentTracker("FLAT", settings))
    assert records[closing_row - 1].incident_id == records[5].incident_id
    last = final_states(updates)[records[5].incident_id]
    assert (last.status, last.anomalies, last.trades) == ("closed", 2, closing_row - 5)
    assert updates[-1][0] == closing_row - 1 + (closing_row - 5)  # quiet again, counted from the second


def test_an_anomaly_on_the_closing_trade_joins_because_that_trade_is_not_quiet():
    tape = regular_tape(60, 1.0)
    settings = IncidentSettings(quiet_trades=10, quiet_seconds=2.0)
    updates, _, records = track(tape, [5, 15], tracker=IncidentTracker("FLAT", settings))
    assert records[15].incident_id == records[5].incident_id
    assert [u.status for _, u in updates] == ["open", "updated", "closed"]
    assert updates[-1][0] == 25


def test_an_anomaly_after_the_close_opens_a_new_incident_named_after_it():
    tape = regular_tape(60, 1.0)
    settings = IncidentSettings(quiet_trades=10, quiet_seconds=2.0)
    updates, tracker, records = track(tape, [5, 16], tracker=IncidentTracker("FLAT", settings))
    assert (records[5].incident_id, records[16].incident_id) == ("INC-FLAT-1005", "INC-FLAT-1016")
    assert statuses(updates) == [(5, "open", 0), (15, "closed", 1), (16, "open", 0), (26, "closed", 1)]
    assert tracker.incidents_opened == 2


def test_an_incident_still_quiet_at_the_end_of_the_input_stays_open():
    tape = regular_tape(30, 1.0)
    updates, tracker, _ = track(tape, [25], tracker=IncidentTracker("FLAT", IncidentSettings(quiet_trades=10)))
    assert statuses(updates) == [(25, "open", 0)]
    assert tracker.open_incident_id == "INC-FLAT-1025"
    assert tracker.open_incident_level == updates[0][1].level
    assert tracker.incidents_opened == 1


def test_a_tracker_without_open_incident_reports_no_level():
    tracker = IncidentTracker("FLAT")
    assert (tracker.open_incident_id, tracker.open_incident_level, tracker.incidents_opened) == (None, None, 0)


def test_updated_is_sent_when_members_double_or_the_view_changes_not_per_anomaly():
    tape, event = injected("flash_crash", 0)
    updates, _, records = track(tape, engine_like_flags(tape, event))
    incident = final_states(updates)
    assert len(incident) == 1
    (incident_id, last), = incident.items()
    assert last.status == "closed" and last.anomalies == len(records) > 50
    assert [u.revision for _, u in updates] == list(range(len(updates)))
    assert [u.status for _, u in updates][0] == "open" and [u.status for _, u in updates][-1] == "closed"
    assert len(updates) <= 12  # log2 of the members, a few view changes, the close
    members = [u.anomalies for _, u in updates]
    assert members == sorted(members)
    assert {record.incident_id for record in records.values()} == {incident_id}


# --- determinism and recovery --------------------------------------------------------------


@pytest.fixture(scope="module")
def busy_tape():
    """A flash crash, a block and a burst in one tape, with their engine-like flags."""
    tape, events = inject_events(quiet_tape(9_000, 3), 3, kinds=("flash_crash", "block", "burst"),
                                 spacing_trades=2_400, warmup_trades=1_500, close_pair_share=0.0,
                                 pre_market_events=0, after_hours_events=0)
    assert sorted(event.kind for event in events) == ["block", "burst", "flash_crash"]
    return tape, sorted(row for event in events for row in engine_like_flags(tape, event))


def _ns(trade):
    return int(np.datetime64(trade["ts_event"].rstrip("Z"), "ns").astype(np.int64))


@pytest.fixture(scope="module")
def one_run(busy_tape):
    tape, flagged = busy_tape
    updates, _, records = track(tape, flagged)
    return updates, records


def test_the_busy_tape_has_three_closed_incidents_of_the_right_kinds(one_run):
    updates, _ = one_run
    assert sorted((u.kind, u.status) for u in final_states(updates).values()) == [
        ("block", "closed"), ("burst", "closed"), ("flash_crash", "closed")]


@pytest.mark.parametrize("runs", ["ones", "random-1", "random-2", "thousands"])
def test_updates_are_the_same_whatever_the_runs(busy_tape, one_run, runs):
    tape, flagged = busy_tape
    sizes = {"ones": [1] * len(tape), "thousands": [1000] * (len(tape) // 1000 + 1),
             "random-1": random_runs(len(tape), 1), "random-2": random_runs(len(tape), 2)}[runs]
    updates, _, records = track(tape, flagged, runs=sizes)
    assert comparable(updates) == comparable(one_run[0])
    assert {r: rec.incident_id for r, rec in records.items()} == {r: rec.incident_id for r, rec in one_run[1].items()}


def _cuts(updates):
    """Rows inside each incident: a trade after its first anomaly, one just before it closes."""
    opened = {u.incident_id: row for row, u in updates if u.status == "open"}
    closed = {u.incident_id: row for row, u in updates if u.status == "closed"}
    return sorted(row for i in opened for row in (opened[i] + 1, opened[i] + 37, closed[i] - 1))


def test_a_tracker_pickled_mid_incident_continues_exactly(busy_tape, one_run):
    tape, flagged = busy_tape
    for cut in _cuts(one_run[0]):
        records = {row: record(tape[row]) for row in flagged}
        before, tracker, _ = track(tape[:cut], [r for r in flagged if r < cut], records=records,
                                   runs=random_runs(cut, cut))
        assert tracker.open_incident_id is not None
        restored = pickle.loads(pickle.dumps(tracker))
        after, _, _ = track(tape, flagged, tracker=restored, records=records, start=cut,
                            runs=random_runs(len(tape), cut + 1))
        assert comparable(before + after) == comparable(one_run[0]), cut


# --- bounds ----------------------------------------------------------------------------------


def test_an_incident_that_never_goes_quiet_is_split_and_the_state_stays_bounded():
    tape = regular_tape(12_000, 0.01)
    settings = IncidentSettings(quiet_trades=50, quiet_seconds=1.0, max_trades=2_000)
    tracker = IncidentTracker("FLAT", settings)
    flagged = list(range(10, len(tape), 20))
    records = {row: record(tape[row]) for row in flagged}
    sizes, updates, whole = [], [], columns(tape)
    for start in range(0, len(tape), 500):
        part, tracker, _ = track(tape, flagged, tracker=tracker, records=records, start=start, runs=[500],
                                 whole=whole)
        updates += part
        sizes.append(len(pickle.dumps(tracker)))
    closed = [u for _, u in updates if u.status == "closed"]
    assert len(closed) == 5 and all(u.closed_by == "limit" for u in closed)
    assert all(u.trades <= 2_000 for u in closed)
    assert max(len(u.anomaly_ids) for _, u in updates) == settings.listed_anomalies
    assert max(len(u.price_path) for _, u in updates) == settings.path_trades
    assert max(sizes) < 200_000
    assert max(sizes[len(sizes) // 2:]) <= 1.2 * max(sizes[: len(sizes) // 2])


def test_an_incident_is_split_after_max_seconds_of_event_time():
    tape = regular_tape(400, 1.0)
    settings = IncidentSettings(quiet_trades=50, quiet_seconds=30.0, max_seconds=100.0)
    updates, _, _ = track(tape, list(range(10, 400, 10)), tracker=IncidentTracker("FLAT", settings))
    closed = [(row, u) for row, u in updates if u.status == "closed"]
    assert [row for row, _ in closed] == [110, 220, 330]
    assert all(u.closed_by == "limit" and u.duration_s <= 100.0 for _, u in closed)


def test_the_price_path_is_context_then_incident_and_at_most_path_trades():
    tape, event = injected("flash_crash", 1)
    updates, _, _ = track(tape, engine_like_flags(tape, event))
    last = updates[-1][1]
    settings = IncidentSettings()
    path = last.price_path
    assert len(path) == settings.path_trades
    first_ns = _ns({"ts_event": last.first_ts_event})
    assert all(point[0] <= first_ns for point in path[: settings.path_context])
    assert path[settings.path_context][0] == first_ns
    assert [point[0] for point in path] == sorted(point[0] for point in path)
    assert {point[3] for point in path} <= {"A", "B", "N"}
    assert min(point[1] for point in path) < last.reference_price * (1 + last.price_move_bps / 1e4) + 0.02


def test_a_run_without_anomaly_and_without_open_incident_only_keeps_the_context():
    tape = quiet_tape(3_000, 0)
    tracker = IncidentTracker("SYN0", IncidentSettings(context_trades=150))
    updates, tracker, _ = track(tape, [], tracker=tracker, runs=[1000] * 3)
    assert updates == []
    assert tracker.trades_seen == 3_000
    assert len(tracker._context) == 150
    assert len(pickle.dumps(tracker)) < 10_000


@pytest.mark.parametrize("run_size", [1, 3, 7, 149, 150])
def test_small_runs_are_joined_to_the_context_late_and_it_is_still_the_last_trades(run_size):
    tape = quiet_tape(1_000, 1)
    tracker = IncidentTracker("SYN0", IncidentSettings(context_trades=150))
    updates, tracker, _ = track(tape, [], tracker=tracker, runs=[run_size] * (1_000 // run_size + 1))
    restored = pickle.loads(pickle.dumps(tracker))
    last = [trade["price"] for trade in tape[-150:]]
    assert restored._unjoined == () and restored._context.prices.tolist() == last
    tracker._join_context()
    assert tracker._context.prices.tolist() == last and tracker.trades_seen == 1_000


# --- hostile input ---------------------------------------------------------------------------


def test_flags_outside_the_run_repeated_or_unordered_are_ignored_not_raised():
    tape = regular_tape(40, 1.0)
    tracker = IncidentTracker("FLAT", IncidentSettings(quiet_trades=10, quiet_seconds=1.0))
    first, second = record(tape[5]), record(tape[8])
    updates = tracker.observe(columns(tape), [(8, second), (5, first), (5, first), (-1, first), (40, first)])
    assert [(row, u.status) for row, u in updates] == [(5, "open"), (8, "updated"), (18, "closed")]


def test_an_empty_run_and_odd_record_values_do_not_raise():
    tape = regular_tape(30, 1.0)
    tracker = IncidentTracker("FLAT", IncidentSettings(quiet_trades=10, quiet_seconds=1.0))
    empty = TradeColumns(np.empty(0), np.empty(0), np.empty(0, np.int64), np.empty(0, np.int8), np.empty(0, np.int64))
    assert tracker.observe(empty, []) == []
    odd = record(tape[3], anomaly_score=float("nan"))
    odd.trade = {"instrument_id": "not a number"}
    updates = tracker.observe(columns(tape), [(3, odd)])
    opened = updates[0][1].to_dict()
    assert opened["instrument_id"] is None and 0.0 <= opened["severity"] <= 1.0


def test_timestamps_going_backwards_do_not_reopen_or_break_the_quiet_clock():
    tape = regular_tape(40, 1.0)
    tape[12]["ts_event"] = tape[2]["ts_event"]  # a late print
    settings = IncidentSettings(quiet_trades=10, quiet_seconds=5.0)
    updates, _, _ = track(tape, [5], tracker=IncidentTracker("FLAT", settings))
    assert statuses(updates) == [(5, "open", 0), (15, "closed", 1)]


# --- severity -------------------------------------------------------------------------------------


def test_log_scale_is_zero_below_one_above_and_monotone_between():
    values = [log_scale(v, 5.0, 100.0) for v in (0, 5, 6, 10, 50, 99, 100, 1e6)]
    assert values[:2] == [0.0, 0.0] and values[-2:] == [1.0, 1.0]
    assert values == sorted(values)
    assert log_scale(float("nan"), 5.0, 100.0) == 0.0


def test_incident_severity_is_monotone_in_each_part_and_in_zero_one():
    grid = np.linspace(0, 1, 11)
    for other in (0.0, 0.5, 1.0):
        by_magnitude = [incident_severity(m, other, 10) for m in grid]
        by_confidence = [incident_severity(other, c, 10) for c in grid]
        assert by_magnitude == sorted(by_magnitude) and by_confidence == sorted(by_confidence)
    assert incident_severity(1, 1, 10**6) == pytest.approx(sum(SEVERITY_WEIGHTS.values())) == pytest.approx(1.0)
    assert incident_severity(-1, -1, 0) == 0.0


def _evidence(**changes) -> KindEvidence:
    base = dict(reference_price=100.0, move_bps=2.0, extreme_price=100.02, extreme_size=100, away_prints=1,
                walk_prints=0, return_prints=0, walk_trades=1, return_step=1.0, recovered=1.0, walk_seconds=0.0,
                walk_side_share=0.5, max_size=100.0, max_size_price=100.0, median_size=100.0, burst_stamps=5,
                burst_prints=5, burst_ms=10.0, burst_buy_share=0.5, burst_sell_share=0.5)
    return KindEvidence(**{**base, **changes})


@pytest.mark.parametrize(("field", "values"), [
    ("move_bps", [5, 20, 50, 100, 200, 400]),
    ("move_bps", [-5, -20, -50, -100, -200]),
    ("max_size", [1_000, 5_000, 20_000, 50_000, 100_000]),
    ("burst_stamps", [20, 60, 120, 250, 500]),
])
def test_magnitude_grows_with_the_move_the_size_and_the_burst(field, values):
    scores = [magnitude(_evidence(**{field: value})) for value in values]
    assert scores == sorted(scores) and scores[-1] > scores[0]


@pytest.mark.parametrize(("kind", "builder"), [
    ("flash_crash", lambda tape, at, scale: _v_shape(tape, at, 300, 0.005 * scale)),
    ("block", lambda tape, at, scale: _block(tape, at, 5_000 * scale)),
])
def test_severity_of_whole_incidents_is_monotone_in_their_magnitude(kind, builder):
    severities = []
    for scale in (1, 2, 4, 8):
        tape = quiet_tape(3_000, 7)
        rows = builder(tape, 2_000, scale)
        updates, _, _ = track(tape, rows)
        last = final_states(updates)
        assert len(last) == 1
        incident, = last.values()
        assert incident.kind == kind
        severities.append(incident.severity)
    assert severities == sorted(severities) and severities[-1] > severities[0]


def _v_shape(tape, at, length, depth):
    for step in range(length):
        shape = step / (length / 2) if step <= length / 2 else 2 - step / (length / 2)
        tape[at + step]["price"] = round(tape[at + step]["price"] * (1 - depth * shape), 2)
    return list(range(at + 20, at + length, 5))


def _block(tape, at, size):
    tape[at]["size"] = int(size)
    return [at]


def _two_blocks(first_size, second_size, second_later_s=0.0):
    """Blocks at trades 2,000 and 4,000 of one quiet tape; the second one's final state.

    ``second_later_s`` moves the second half of the tape that much later in event time.
    """
    tape = quiet_tape(6_000, 7)
    rows = _block(tape, 2_000, first_size) + _block(tape, 4_000, second_size)
    for trade in tape[3_000:]:
        for name in ("ts_event", "ts_recv"):
            trade[name] = _later(trade[name], second_later_s)
    updates, tracker, records = track(tape, rows)
    return final_states(updates)[records[4_000].incident_id]


def _later(stamp, seconds):
    whole, nanos = stamp.rstrip("Z").split(".")
    moment = datetime.fromisoformat(whole).replace(tzinfo=timezone.utc).timestamp() + seconds
    return datetime.fromtimestamp(moment, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S") + f".{nanos}Z"


def _block_alone(size):
    tape = quiet_tape(6_000, 7)
    updates, _, records = track(tape, _block(tape, 4_000, size))
    return final_states(updates)[records[4_000].incident_id]


@pytest.mark.parametrize(("second_size", "size_part"), [
    (10_000, 0.0),    # half the earlier block: no news in its size
    (14_142, 0.25),   # 0.71x
    (20_000, 0.5),    # as large as the earlier one
    (40_000, None),   # twice as large: ranks as if alone
    (80_000, None),
])
def test_a_block_ranks_by_its_size_against_the_instruments_earlier_block(second_size, size_part):
    second, alone = _two_blocks(20_000, second_size), _block_alone(second_size)
    assert second.kind == alone.kind == "block"
    if size_part is None:
        assert second.severity == alone.severity
    else:
        assert second.severity < alone.severity
        assert second.severity == pytest.approx(
            SEVERITY_WEIGHTS["magnitude"] * max(size_part, log_scale(abs(second.price_move_bps), 5.0, 100.0))
            + SEVERITY_WEIGHTS["confidence"] * second.confidence, abs=1e-3)
    assert "the largest earlier block (20,000 shares at" in second.summary
    assert second.explanation[1]["input"] == "size_vs_earlier_block"
    assert second.explanation[1]["value"] == pytest.approx(second_size / 20_000, rel=1e-3)


@pytest.mark.parametrize(("later_s", "remembered"), [(86_000, True), (87_000, False)])
def test_a_block_is_remembered_for_one_day_of_event_time(later_s, remembered):
    second, alone = _two_blocks(40_000, 20_000, later_s), _block_alone(20_000)
    assert (second.severity < alone.severity) is remembered
    assert ("largest earlier block" in second.summary) is remembered


def test_the_largest_block_of_the_day_is_the_one_remembered():
    tracker = IncidentTracker("SYN0")
    for at_s, size in [(0, 30_000), (10, 50_000), (20, 20_000), (30, 40_000)]:
        tracker._remember_block(EarlierBlock(at_s * 10**9, size))
    assert [b.size for b in tracker._blocks] == [50_000, 40_000]
    assert tracker._earlier_block(40 * 10**9).size == 50_000
    assert tracker._earlier_block(round((10 + 86_400.5) * 1e9)).size == 40_000
    assert tracker._earlier_block(round((30 + 86_400.5) * 1e9)) is None


def test_events_rank_above_noise():
    tape, event = injected("ramp", 2)
    updates, _, _ = track(tape, engine_like_flags(tape, event))
    ramp, = final_states(updates).values()
    noise_tape = quiet_tape(4_000, 2)
    noise_updates, _, _ = track(noise_tape, [2_500])
    noise, = final_states(noise_updates).values()
    assert ramp.level in ("high", "critical") and noise.level in ("low", "medium")
    assert noise.kind == "other" and ramp.severity > noise.severity + 0.3


# --- output ------------------------------------------------------------------------------------


def test_the_message_has_every_contract_field_and_plain_types(one_run):
    import json
    updates, _ = one_run
    for _, update in updates:
        message = update.to_dict()
        assert CONTRACT_FIELDS <= set(message)
        assert json.loads(json.dumps(message)) == message
        assert message["incident_id"].startswith("INC-SYN0-")
        assert message["first_ts_event"].endswith("Z") and len(message["first_ts_event"]) == 30
        assert message["direction"] in ("up", "down", None)
        assert message["level"] in ("low", "medium", "high", "critical")


def test_settings_are_read_from_the_environment_and_a_bad_value_names_the_variable():
    settings = IncidentSettings.from_env({"DETECTOR_INCIDENT_QUIET_TRADES": "300",
                                          "DETECTOR_INCIDENT_QUIET_SECONDS": "2.5", "OTHER": "x"})
    assert (settings.quiet_trades, settings.quiet_seconds) == (300, 2.5)
    assert settings.context_trades == IncidentSettings().context_trades
    with pytest.raises(ConfigError, match="DETECTOR_INCIDENT_QUIET_TRADES"):
        IncidentSettings.from_env({"DETECTOR_INCIDENT_QUIET_TRADES": "many"})
    with pytest.raises(ConfigError, match="DETECTOR_INCIDENT_PATH_CONTEXT"):
        IncidentSettings.from_env({"DETECTOR_INCIDENT_PATH_CONTEXT": "400"})
    with pytest.raises(ConfigError, match="DETECTOR_INCIDENT_MAX_SECONDS"):
        IncidentSettings.from_env({"DETECTOR_INCIDENT_MAX_SECONDS": "inf"})


@pytest.mark.parametrize("variable, value", [
    ("DETECTOR_INCIDENT_QUIET_SECONDS", "1e300"), ("DETECTOR_INCIDENT_QUIET_SECONDS", "-1"),
    ("DETECTOR_INCIDENT_MAX_SECONDS", "1e300"),
    ("DETECTOR_INCIDENT_MAX_SECONDS", "0"), ("DETECTOR_INCIDENT_MAX_SECONDS", "3153600001"),
])
def test_a_span_beyond_100_years_or_not_a_span_is_refused_at_start(variable, value):
    """1e300 seconds passed once and every batch with an anomaly then failed (its nanoseconds overflow)."""
    with pytest.raises(ConfigError, match=f"{variable}: must be .* 3153600000 seconds \\(100 years\\)"):
        IncidentSettings.from_env({variable: value})


def test_the_longest_span_is_accepted_and_fits_a_timestamp():
    settings = IncidentSettings.from_env({"DETECTOR_INCIDENT_MAX_SECONDS": "3153600000"})
    assert 1_800_000_000 * 10**9 + round(settings.max_seconds * 1e9) < 2**63


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        IncidentSettings().quiet_trades = 5


@pytest.mark.parametrize("held, added, keep", [(0, 3, 5), (4, 3, 5), (9, 3, 5), (9, 5, 5), (2, 8, 5), (9, 1, 200)])
def test_the_context_followed_by_a_run_is_the_tail_of_both(held, added, keep):
    from models.incidents import _Tape

    def tape(start, count, sizes_dtype):
        at = np.arange(start, start + count)
        return _Tape(100.0 + at, (10 * at).astype(sizes_dtype), 1_700_000_000_000_000_000 + at,
                     (at % 3).astype(np.int8))

    context, run = tape(0, held, np.float64), tape(held, added, np.int64)  # the engine's sizes are integers
    joined = context.followed_by(run, keep)
    expected = _Tape.joined([context, run]).tail(keep)
    for name, dtype in [("prices", np.float64), ("sizes", np.float64), ("timestamps_ns", np.int64),
                        ("sides", np.int8)]:
        assert getattr(joined, name).dtype == dtype
        assert getattr(joined, name).tolist() == getattr(expected, name).tolist()
        assert not np.shares_memory(getattr(joined, name), getattr(run, name))
    assert len(joined) == min(keep, held + added)


@pytest.mark.parametrize("held, runs, keep", [
    (0, [3, 4], 5), (4, [1, 1, 1], 5), (9, [2, 2], 5), (9, [5, 1], 5), (2, [8, 3], 5), (9, [1] * 8, 200),
    (150, [13] * 8, 200), (0, [300, 2], 200), (50, [1, 250, 1], 200),
])
def test_the_context_followed_by_several_runs_is_the_tail_of_all(held, runs, keep):
    from models.incidents import _Tape

    def tape(start, count, sizes_dtype):
        at = np.arange(start, start + count)
        return _Tape(100.0 + at, (10 * at).astype(sizes_dtype), 1_700_000_000_000_000_000 + at,
                     (at % 3).astype(np.int8))

    context, parts, start = tape(0, held, np.float64), [], held
    for count in runs:
        parts.append(tape(start, count, np.int64))  # the engine's sizes are integers
        start += count
    joined = context.followed_by_runs(parts, keep)
    expected = _Tape.joined([context, *parts]).tail(keep)
    for name, dtype in [("prices", np.float64), ("sizes", np.float64), ("timestamps_ns", np.int64),
                        ("sides", np.int8)]:
        assert getattr(joined, name).dtype == dtype
        assert getattr(joined, name).tolist() == getattr(expected, name).tolist()
        assert not any(np.shares_memory(getattr(joined, name), getattr(part, name)) for part in parts)
    assert len(joined) == min(keep, held + sum(runs))
