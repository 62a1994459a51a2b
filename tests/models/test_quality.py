"""Detection quality guard: the engine must keep finding labelled events in a synthetic tape.

The full measurement (real tapes, several seeds, peers) is ``benchmarks.evaluate``;
this is the cheap regression check that runs with every test run.
"""

from __future__ import annotations

import pytest

from benchmarks.scoring import score_anomalies, symbol_sequences
from connectors.synthetic import generate_quiet_tape, generate_tape
from models.engine import DetectionEngine


def detect(tape: list[dict], batch: int = 1_000) -> list[dict]:
    engine, states, records = DetectionEngine(), {}, []
    for start in range(0, len(tape), batch):
        by_symbol: dict[str, list[dict]] = {}
        for trade in tape[start:start + batch]:
            by_symbol.setdefault(trade["symbol"], []).append(trade)
        for symbol, trades in by_symbol.items():
            state = states.setdefault(symbol, engine.new_state(symbol))
            records += [record.to_dict() for record in engine.process(state, trades)]
    return records


@pytest.fixture(scope="module")
def scored():
    tape, events = generate_tape(symbols=3, trades=30_000, seed=0)
    records = detect(tape)
    return score_anomalies(symbol_sequences(tape), events, records), records


def test_most_injected_events_are_found(scored):
    score, _ = scored
    assert score.events >= 30
    assert score.recall >= 0.6
    assert score.by_kind()["off_market"].recall == 1.0
    assert score.by_kind()["burst"].recall == 1.0


def test_few_false_alarms_on_the_injected_tape(scored):
    score, _ = scored
    assert score.false_alarms <= 3


def test_a_tape_without_injected_events_raises_few_alarms():
    # The quiet tape still has its natural rare blocks (tens of thousands of shares),
    # which the product does flag; 5 alarms in 90,000 trades is the budget.
    tape = generate_quiet_tape(symbols=3, trades=30_000, seed=1)
    score = score_anomalies(symbol_sequences(tape), [], detect(tape))
    assert score.false_alarms <= 5
