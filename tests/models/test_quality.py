"""Detection quality floors: a regression in finding labelled events fails CI.

The full measurement (every shared day, several seeds, peers) is ``benchmarks.evaluate``;
these are the cheap checks that run with every test run: the synthetic tape, and a
committed slice of a real day with events from the broader injector and from the second
one (``benchmarks.second_injector``).

The floors sit a margin below what the engine did when they were set (recorded in
each test), so small changes pass and a real regression does not. Raise them when
the detectors improve.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.scoring import score_anomalies, symbol_sequences
from benchmarks.second_injector import inject_second
from connectors.files import iter_trades
from connectors.injection import inject_events
from connectors.synthetic import generate_quiet_tape, generate_tape
from models.engine import DetectionEngine
from models.records import AnomalyRecord

REAL_SLICE = Path(__file__).resolve().parent.parent / "fixtures" / "nvda-20250509-morning.csv.zst"
"""20,000 NVDA trades of 2025-05-09 from 10:00:00 New York (rows 36,015-56,014 of the shared
day's file, 10:00-10:26), prices written with two decimals, zstd level 19: 226 kB."""


def detect(tape: list[dict], batch: int = 1_000) -> list[dict]:
    """The engine's anomaly records (auction prints excluded) for a tape fed in batches."""
    engine, states, records = DetectionEngine(), {}, []
    for start in range(0, len(tape), batch):
        by_symbol: dict[str, list[dict]] = {}
        for trade in tape[start:start + batch]:
            by_symbol.setdefault(trade["symbol"], []).append(trade)
        for symbol, trades in by_symbol.items():
            state = states.setdefault(symbol, engine.new_state(symbol))
            records += [o.to_dict() for o in engine.process(state, trades) if isinstance(o, AnomalyRecord)]
    return [record for record in records if record["kind"] != "auction"]


@pytest.fixture(scope="module")
def scored():
    tape, events = generate_tape(symbols=3, trades=30_000, seed=0)
    records = detect(tape)
    return score_anomalies(symbol_sequences(tape), events, records), records


def test_most_injected_events_are_found(scored):
    # When set: 26 of 33 found (0.79); off_market 5/5, ramp 5/5, flash_crash 5/5, burst 4/6.
    score, _ = scored
    assert score.events >= 30
    assert score.recall >= 0.7
    by_kind = score.by_kind()
    assert by_kind["off_market"].recall == by_kind["ramp"].recall == by_kind["flash_crash"].recall == 1.0
    assert by_kind["burst"].recall >= 0.5


def test_few_false_alarms_on_the_injected_tape(scored):
    score, _ = scored  # when set: 1
    assert score.false_alarms <= 3


def test_a_tape_without_injected_events_raises_few_alarms():
    # The quiet tape still has its natural rare blocks (tens of thousands of shares),
    # which the product does flag; 5 alarms in 90,000 trades is the budget.
    tape = generate_quiet_tape(symbols=3, trades=30_000, seed=1)
    score = score_anomalies(symbol_sequences(tape), [], detect(tape))
    assert score.false_alarms <= 5


@pytest.fixture(scope="module")
def real_slice_scores():
    trades = list(iter_trades(REAL_SLICE))
    scores = []
    for seed in (0, 1):
        tape, events = inject_events(trades, seed, spacing_trades=1_500)
        scores.append(score_anomalies(symbol_sequences(tape), events, detect(tape)))
    return scores


def test_a_real_slice_keeps_a_recall_floor(real_slice_scores):
    # Measured 2026-12-05 (seeds 0 and 1): 28 of 29 events found (0.966; the miss a block), every
    # off_market print and flash crash; the floor leaves one more miss.
    found = sum(score.found for score in real_slice_scores)
    events = sum(score.events for score in real_slice_scores)
    assert events >= 25
    assert found / events >= 0.9
    for score in real_slice_scores:
        for kind in ("off_market", "flash_crash"):
            assert kind in score.by_kind()
            assert score.by_kind()[kind].recall == 1.0


def test_a_real_slice_keeps_a_false_alarm_ceiling(real_slice_scores):
    # Measured 2026-12-05: 3 false alarms per seed (6 in total) in about 21,000 trades (natural
    # blocks, among them the 20,000-49,987-share prints of 10:19-10:20, and bursts); the ceiling
    # leaves one more per seed.
    assert sum(score.false_alarms for score in real_slice_scores) <= 8


@pytest.fixture(scope="module")
def second_injector_scores(morning_trades):
    scores = []
    for seed in (0, 1):
        tape, events = inject_second(morning_trades, seed, per_kind=2, min_gap_trades=1_000)
        scores.append(score_anomalies(symbol_sequences(tape), events, detect(tape)))
    return scores


def test_a_real_slice_with_the_second_injectors_events_keeps_its_floors(second_injector_scores):
    # When set (seeds 0 and 1): 20 of 20 events found, 3 false alarms per seed. Before the one-vote
    # rules for bursts and off-market prints (2026-12-05) the second injector's bursts were missed
    # about half the time on the full days.
    found = sum(score.found for score in second_injector_scores)
    events = sum(score.events for score in second_injector_scores)
    assert events == 20
    assert found / events >= 0.9
    for kind in ("burst", "off_market", "block"):
        assert all(score.by_kind()[kind].recall == 1.0 for score in second_injector_scores)
    assert sum(score.false_alarms for score in second_injector_scores) <= 8
