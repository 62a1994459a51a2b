"""The synthetic demo tape: valid trades, realistic shape, labelled events, one tape per seed."""

from collections import Counter, defaultdict

import numpy as np
import pandas as pd
import pytest

from connectors.codec import TRADE_FIELDS
from connectors.injection import EVENT_KINDS, OFF_MARKET_AWAY
from connectors.synthetic import generate_tape
from models.trades import validate_trades


@pytest.fixture(scope="module")
def tape():
    return generate_tape(symbols=3, trades=20_000, seed=11)


def test_same_seed_same_tape_and_other_seed_other_tape(tape):
    trades, events = tape
    again_trades, again_events = generate_tape(symbols=3, trades=20_000, seed=11)
    assert again_trades == trades
    assert again_events == events
    other_trades, _ = generate_tape(symbols=3, trades=20_000, seed=12)
    assert [t["price"] for t in other_trades[:500]] != [t["price"] for t in trades[:500]]


def test_every_trade_has_the_contract_fields_and_types(tape):
    trades, _ = tape
    for trade in trades:
        assert tuple(trade) == TRADE_FIELDS
        assert trade["action"] == "T" and trade["side"] in ("A", "B", "N")
        assert isinstance(trade["price"], float) and trade["price"] > 0
        assert isinstance(trade["size"], int) and trade["size"] >= 1
        assert trade["flags"] in (0, 128, 130)
        assert trade["ts_event"].endswith("Z") and len(trade["ts_event"]) == 30
        assert trade["ts_recv"] >= trade["ts_event"]


def test_time_order_and_unique_increasing_sequence_per_symbol(tape):
    trades, _ = tape
    stamps = [t["ts_event"] for t in trades]
    assert stamps == sorted(stamps)
    sequences = defaultdict(list)
    for trade in trades:
        sequences[trade["symbol"]].append(trade["sequence"])
    assert sorted(sequences) == ["SYN0", "SYN1", "SYN2"]
    for values in sequences.values():
        assert all(b > a for a, b in zip(values, values[1:]))


def test_shape_resembles_a_real_tape(tape):
    trades, _ = tape
    frame = pd.DataFrame(trades)
    sides = frame["side"].value_counts(normalize=True)
    assert 0.15 < sides["N"] < 0.23
    assert sides["A"] > sides["B"] > sides["N"]
    cents = frame["price"] * 100
    assert np.allclose(cents, cents.round())
    sizes = frame["size"]
    assert sizes.quantile(0.99) > 8 * sizes.median()  # heavy tail
    assert (sizes % 100 == 0).mean() > 0.05  # round lots
    stamps = pd.to_datetime(frame["ts_event"])
    shared = (frame["symbol"] == frame["symbol"].shift()) & (stamps == stamps.shift())
    assert 0.3 < shared.mean() < 0.7  # multi-print executions share a timestamp
    gaps = stamps.groupby(frame["symbol"]).diff().dt.total_seconds().dropna()
    assert gaps[gaps > 0].quantile(0.95) > 10 * gaps[gaps > 0].median()  # irregular


def test_events_are_labelled_on_the_trades_they_cover(tape):
    trades, events = tape
    for symbol in ("SYN0", "SYN1", "SYN2"):  # 6 events each: every kind once
        kinds = Counter(e.kind for e in events if e.symbol == symbol)
        assert set(kinds) == set(EVENT_KINDS) and sum(kinds.values()) == 6
    by_symbol = defaultdict(list)
    for trade in trades:
        by_symbol[trade["symbol"]].append(trade)
    for event in events:
        covered = [
            t for t in by_symbol[event.symbol]
            if event.first_sequence <= t["sequence"] <= event.last_sequence
        ]
        assert len(covered) == event.trade_count
        assert covered[0]["ts_event"] == event.ts_event


def test_an_off_market_print_is_away_from_the_trades_before_it(tape):
    trades, events = tape
    for event in (e for e in events if e.kind == "off_market"):
        symbol_trades = [t for t in trades if t["symbol"] == event.symbol]
        position = next(i for i, t in enumerate(symbol_trades) if t["sequence"] == event.first_sequence)
        market = np.median([t["price"] for t in symbol_trades[position - 10: position]])
        away = abs(symbol_trades[position]["price"] / market - 1)
        assert OFF_MARKET_AWAY[0] - 1e-4 < away < OFF_MARKET_AWAY[1] + 1e-4


def test_the_engine_accepts_every_trade(tape):
    trades, _ = tape
    _, rejections = validate_trades(trades)
    assert rejections == []


def test_injection_can_be_limited_to_some_kinds_and_refuses_unknown_ones():
    from connectors.injection import inject_events
    from connectors.synthetic import generate_quiet_tape

    quiet = generate_quiet_tape(symbols=1, trades=6_000, seed=3)
    _, events = inject_events(quiet, seed=1, kinds=("block", "sweep"), spacing_trades=1_000, close_pair_share=0)
    assert len(events) == 4 and {e.kind for e in events} == {"block", "sweep"}
    with pytest.raises(ValueError, match="unknown event kinds"):
        inject_events(quiet, seed=1, kinds=("spoofing",))
