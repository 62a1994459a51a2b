"""Injection into a real NVDA tape keeps it a valid tape and labels what it added."""

import copy
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from benchmarks.scoring import symbol_sequences
from connectors.codec import TRADE_FIELDS
from benchmarks import SHARED_NVDA
from connectors.files import iter_trades
from connectors.injection import EVENT_KINDS, inject_events

REAL_TAPE = SHARED_NVDA / "xnas-itch-20250509.trades.csv.zst"
pytestmark = pytest.mark.skipif(not REAL_TAPE.exists(), reason="shared NVDA tape not available")


@pytest.fixture(scope="module")
def original():
    return list(iter_trades(REAL_TAPE))


@pytest.fixture(scope="module")
def injected(original):
    return inject_events(original, seed=3)


def test_the_injected_tape_is_a_valid_tape(injected):
    trades, _ = injected
    stamps = pd.to_datetime(pd.Series([t["ts_event"] for t in trades]), format="ISO8601")
    assert stamps.is_monotonic_increasing
    sequences = np.array([t["sequence"] for t in trades])
    assert (np.diff(sequences) > 0).all()
    assert all(tuple(t) == TRADE_FIELDS for t in trades)
    assert all(type(t["sequence"]) is int and type(t["size"]) is int for t in trades)


def test_the_engine_accepts_every_injected_trade(injected):
    trades_module = pytest.importorskip("models.trades")
    _, rejections = trades_module.validate_trades(injected[0])
    assert rejections == []


def test_same_seed_same_result_other_seed_other_events(original, injected):
    again = inject_events(original, seed=3)
    assert again == injected
    _, other_events = inject_events(original, seed=4)
    assert [e.first_sequence for e in other_events] != [e.first_sequence for e in injected[1]]


def test_the_input_is_not_changed(original):
    head = copy.deepcopy(original[:50_000])
    inject_events(head, seed=1, warmup_trades=100, spacing_trades=5_000)
    assert head == original[:50_000]


def test_every_real_trade_is_kept_and_only_the_events_add_trades(original, injected):
    trades, events = injected
    added = sum(e.trade_count for e in events if e.kind != "flash_crash")
    assert len(trades) == len(original) + added
    kinds = Counter(e.kind for e in events)
    assert set(kinds) == set(EVENT_KINDS)
    assert min(kinds.values()) >= 5 and max(kinds.values()) <= 6  # whole rounds: balanced


def test_events_are_spaced_apart_inside_the_session(injected):
    trades, events = injected
    sequences = symbol_sequences(trades)["NVDA"]
    spans = [(np.searchsorted(sequences, e.first_sequence), np.searchsorted(sequences, e.last_sequence)) for e in events]
    for (_, last), (next_first, _) in zip(spans, spans[1:]):
        assert next_first - last > 1_000
    for event in events:
        local = pd.Timestamp(event.ts_event).tz_convert("America/New_York")
        assert pd.Timestamp("09:40").time() <= local.time() < pd.Timestamp("15:50").time()


def _event_trades(trades, event):
    by_sequence = {t["sequence"]: i for i, t in enumerate(trades)}
    first, last = by_sequence[event.first_sequence], by_sequence[event.last_sequence]
    return first, trades[first: last + 1]


def _market_before(trades, position):
    return float(np.median([t["price"] for t in trades[position - 10: position]]))


def test_each_kind_has_the_promised_shape(injected):
    trades, events = injected
    for event in events:
        first, covered = _event_trades(trades, event)
        market = _market_before(trades, first)
        prices = np.array([t["price"] for t in covered])
        stamps = pd.to_datetime(pd.Series([t["ts_event"] for t in covered]), format="ISO8601")
        if event.kind == "off_market":
            assert len(covered) == 1 and 0.0045 <= abs(prices[0] / market - 1) <= 0.0205
        elif event.kind == "block":
            assert len(covered) == 1 and 20_000 <= covered[0]["size"] <= 90_000
            assert abs(prices[0] / market - 1) < 0.001
        elif event.kind == "burst":
            assert 200 <= len(covered) <= 500
            assert (stamps.iloc[-1] - stamps.iloc[0]).total_seconds() <= 0.020
            assert stamps.nunique() > 0.9 * len(covered)  # spread over the milliseconds, not stacked
        elif event.kind == "ramp":
            assert 30 <= len(covered) <= 80 and {t["side"] for t in covered} == {"B"}
            assert np.all(np.diff(prices) >= 0) and 0.0075 <= prices[-1] / market - 1 <= 0.0125
            assert stamps.nunique() > 0.9 * len(covered)
            after = trades[first + len(covered)]["price"]
            assert abs(after / market - 1) < 0.005  # snaps back to the market
        elif event.kind == "flash_crash":
            assert 200 <= len(covered) <= 500
            assert 0.013 <= 1 - prices.min() / market <= 0.033
            assert abs(prices[-1] / market - 1) < 0.01  # back up at the end
        elif event.kind == "sweep":
            assert 10 <= len(covered) <= 30 and stamps.nunique() == 1
            assert len({t["side"] for t in covered}) == 1
            assert 0.0028 <= abs(prices[-1] / market - 1) <= 0.0065
