"""The second injector on a real slice: valid tape, labels that say where each event is, its ranges."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks import second_injector
from benchmarks.second_injector import KINDS, inject_second
from connectors.files import iter_trades
from models.config import DetectorConfig
from models.engine import DetectionEngine
from models.trades import Rejection

SLICE = Path(__file__).resolve().parents[1] / "fixtures" / "nvda-20250509-morning.csv.zst"


@pytest.fixture(scope="module")
def morning() -> list[dict]:
    return list(iter_trades(SLICE))


@pytest.fixture(scope="module", params=[0, 1])
def injected(request, morning):
    tape, events = inject_second(morning, request.param, per_kind=2, min_gap_trades=1_000)
    return morning, tape, events


def _stamps(trades: list[dict]) -> np.ndarray:
    return pd.to_datetime(pd.Series([t["ts_event"] for t in trades]), utc=True, format="ISO8601").astype("int64").to_numpy()


def test_the_tape_stays_valid_and_the_engine_rejects_none_of_it(injected):
    morning, tape, events = injected
    sequences = np.array([t["sequence"] for t in tape])
    assert (np.diff(sequences) == 1).all()
    assert (np.diff(_stamps(tape)) >= 0).all()
    inserted = sum(e.trade_count for e in events if e.kind != "flash_crash")
    assert len(tape) == len(morning) + inserted
    engine = DetectionEngine(DetectorConfig(background_training=False))
    state = engine.new_state("NVDA")
    outcomes = [o for start in range(0, len(tape), 5_000) for o in engine.process(state, tape[start:start + 5_000])]
    assert not [o for o in outcomes if isinstance(o, Rejection)]


def test_every_kind_is_placed_apart_and_after_the_warm_up(injected):
    _, tape, events = injected
    assert sorted(e.kind for e in events) == sorted(KINDS * 2)
    first = [e.first_sequence - tape[0]["sequence"] for e in events]
    assert min(first) > 1_500
    assert all(b - a >= 1_000 for a, b in zip(first, first[1:]))


def test_each_event_is_what_its_label_says(injected):
    morning, tape, events = injected
    by_sequence = {t["sequence"]: i for i, t in enumerate(tape)}
    for event in events:
        first, last = by_sequence[event.first_sequence], by_sequence[event.last_sequence]
        prints = tape[first:last + 1]
        before = float(tape[first - 1]["price"])
        assert len(prints) == event.trade_count
        if event.kind == "block":
            assert 20_000 <= prints[0]["size"] <= 100_000 and prints[0]["price"] == round(before, 2)
        elif event.kind == "off_market":
            assert 0.004 <= abs(prints[0]["price"] / before - 1) <= 0.0201
        elif event.kind == "burst":
            assert 150 <= len(prints) <= 300
            assert set(np.diff(_stamps([tape[first - 1]] + prints))) == {100_000}
            assert max(abs(p["price"] - before) for p in prints) <= 0.0100001
            assert {p["side"] for p in prints} == {"A", "B"}
        elif event.kind == "ramp":
            moves = np.array([p["price"] for p in prints]) / before - 1
            assert 30 <= len(prints) <= 150 and 0.0039 <= abs(moves[-1]) <= 0.0201
            assert len({p["side"] for p in prints}) == 1
        else:
            inserted_before = sum(e.trade_count for e in events
                                  if e.kind != "flash_crash" and e.first_sequence < event.first_sequence)
            originals = morning[first - inserted_before:first - inserted_before + len(prints)]
            assert 200 <= len(prints) <= 800
            assert [p["ts_event"] for p in prints] == [t["ts_event"] for t in originals]
            ratios = [p["price"] / t["price"] - 1 for p, t in zip(prints, originals)]
            assert 0.007 <= max(abs(r) for r in ratios) <= 0.031


def test_the_seed_decides_everything(morning):
    once, events = inject_second(morning, 3, per_kind=1)
    again, same = inject_second(morning, 3, per_kind=1)
    other, different = inject_second(morning, 4, per_kind=1)
    assert once == again and events == same
    assert [e.first_sequence for e in events] != [e.first_sequence for e in different]


def test_one_symbol_only(morning):
    with pytest.raises(ValueError, match="one symbol"):
        inject_second(morning[:10] + [dict(morning[10], symbol="AAPL")], 0)


def test_the_draws_are_not_the_broad_injectors(morning):
    assert second_injector.SEED_OFFSET != 0


def test_integer_timestamps_stay_integers(morning):
    as_integers = [dict(t, ts_event=int(pd.Timestamp(t["ts_event"]).value), ts_recv=int(pd.Timestamp(t["ts_recv"]).value))
                   for t in morning]
    tape, events = inject_second(as_integers, 0, per_kind=1)
    text, same = inject_second(morning, 0, per_kind=1)
    assert all(isinstance(t["ts_event"], int) for t in tape)
    assert [e.first_sequence for e in events] == [e.first_sequence for e in same]
    assert [e.ts_event for e in events] == [e.ts_event for e in same]
