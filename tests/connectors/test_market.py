"""The market tape: Zipf activity with an illiquid floor, time order, determinism, labelled events."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from connectors.market import EVENT_BLOCK_FACTOR, FLOOR_TRADES, generate_market, main, symbol_counts
from models.trades import validate_trades


@pytest.mark.parametrize("symbols, trades", [(1, 5_000), (10, 400_000), (1_000, 400_000), (50, 3_000)])
def test_counts_add_up_skewed_with_a_floor(symbols, trades):
    counts = symbol_counts(symbols, trades)
    assert counts.sum() == trades and len(counts) == symbols
    assert (np.diff(counts) <= 0).all()  # most active first
    assert counts.min() >= min(FLOOR_TRADES, trades // symbols)


def test_a_thousand_symbols_have_an_illiquid_tail_and_a_busy_head():
    counts = symbol_counts(1_000, 400_000)
    assert 120 <= counts[-1] and counts[100] <= 1_500
    assert counts[:10].sum() > 0.2 * 400_000  # a few trade most
    assert (symbol_counts(1_000, 400_000, even=True) == 400).all()


@pytest.fixture(scope="module")
def market():
    return generate_market(40, 12_000, seed=3, events=True)


def test_the_tape_is_valid_in_time_order_and_deterministic(market):
    tape, events = market
    assert len(tape) == 12_000
    assert [t["ts_event"] for t in tape] == sorted(t["ts_event"] for t in tape)
    valid, rejections = validate_trades(tape)
    assert not rejections
    again, again_events = generate_market(40, 12_000, seed=3, events=True)
    assert again == tape and again_events == events
    assert generate_market(40, 12_000, seed=4)[0] != tape
    counts = Counter(t["symbol"] for t in tape)
    assert counts == dict(zip([f"M{i:04d}" for i in range(40)], symbol_counts(40, 12_000)))
    prices = {symbol: np.median([t["price"] for t in tape if t["symbol"] == symbol]) for symbol in list(counts)[:10]}
    assert len(set(np.round(list(prices.values())))) > 5  # each symbol at its own price level


def test_events_are_obvious_and_on_illiquid_symbols(market):
    tape, events = market
    assert events and {e.kind for e in events} == {"off_market", "block"}
    by_sequence = {(t["symbol"], t["sequence"]): (position, t) for position, t in enumerate(tape)}
    for event in events:
        position, trade = by_sequence[(event.symbol, event.first_sequence)]
        before = [t for t in tape[:position] if t["symbol"] == event.symbol]
        assert len([t for t in tape if t["symbol"] == event.symbol]) < 1_500
        if event.kind == "block":
            assert trade["size"] == EVENT_BLOCK_FACTOR * max(t["size"] for t in before)
        else:
            market_price = np.median([t["price"] for t in before[-10:]])
            assert abs(trade["price"] / market_price - 1) == pytest.approx(0.05, abs=0.002)


def test_command_line_writes_a_csv_the_backtest_reads(tmp_path):
    from connectors.files import iter_trades

    out = tmp_path / "market.csv"
    assert main(["--symbols", "5", "--trades", "2000", "--events", "--out", str(out)]) == 0
    trades = list(iter_trades(out))
    assert len(trades) == 2_000 and not validate_trades(trades)[1]
    assert (tmp_path / "market.events.json").exists()
