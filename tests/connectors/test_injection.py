"""Injection keeps a tape valid, labels what it added, and places events where issue 12 asks."""

import copy
from collections import Counter
from datetime import time

import numpy as np
import pandas as pd
import pytest

from benchmarks import SHARED_NVDA
from benchmarks.scoring import symbol_sequences
from connectors.codec import TRADE_FIELDS, format_timestamp_ns
from connectors.files import iter_trades
from connectors.injection import (
    BLOCK_VS_P999, BURST_PRINTS, BURST_SPAN_MS, EARLY_CLOSE, EVENT_KINDS, FLASH_DEPTH, FLASH_TRADES,
    OFF_MARKET_AWAY, RAMP_MOVE, RAMP_PRINTS, SWEEP_LEVELS, SWEEP_MOVE, cut_to_early_close, inject_events,
)
from connectors.synthetic import generate_quiet_tape
from models.trades import validate_trades

REAL_TAPE = SHARED_NVDA / "xnas-itch-20250509.trades.csv.zst"
needs_real_tape = pytest.mark.skipif(not REAL_TAPE.exists(), reason=f"shared NVDA tape not available ({REAL_TAPE.name})")
NEW_YORK = "America/New_York"


@pytest.fixture(scope="module")
def original():
    if not REAL_TAPE.exists():
        pytest.skip(f"shared NVDA tape not available ({REAL_TAPE.name})")
    return list(iter_trades(REAL_TAPE))


@pytest.fixture(scope="module")
def injected(original):
    return inject_events(original, seed=3)


def local_time(ts: str) -> time:
    return pd.Timestamp(ts).tz_convert(NEW_YORK).time()


def assert_valid_tape(trades):
    stamps = pd.to_datetime(pd.Series([t["ts_event"] for t in trades]), format="ISO8601")
    assert stamps.is_monotonic_increasing
    for sequences in symbol_sequences(trades).values():
        assert (np.diff(sequences) > 0).all()
    assert all(tuple(t) == TRADE_FIELDS for t in trades)
    assert all(type(t["sequence"]) is int and type(t["size"]) is int and type(t["price"]) is float for t in trades)
    assert all(t["price"] >= 0.01 and t["size"] >= 1 and t["side"] in ("A", "B", "N") for t in trades)


@needs_real_tape
def test_the_injected_tape_is_a_valid_tape_the_engine_accepts(injected):
    trades, _ = injected
    assert_valid_tape(trades)
    _, rejections = validate_trades(trades)
    assert rejections == []


@needs_real_tape
def test_same_seed_same_result_other_seed_other_events(original, injected):
    assert inject_events(original, seed=3) == injected
    _, other_events = inject_events(original, seed=4)
    assert [e.first_sequence for e in other_events] != [e.first_sequence for e in injected[1]]


def test_the_input_is_not_changed():
    tape = generate_quiet_tape(symbols=2, trades=12_000, seed=1)
    before = copy.deepcopy(tape)
    inject_events(tape, seed=1, warmup_trades=100, spacing_trades=1_000)
    assert tape == before


@needs_real_tape
def test_every_real_trade_is_kept_and_only_the_events_add_trades(original, injected):
    trades, events = injected
    added = sum(e.trade_count for e in events if e.kind != "flash_crash")
    assert len(trades) == len(original) + added
    kinds = Counter(e.kind for e in events)
    assert set(kinds) == set(EVENT_KINDS)
    assert max(kinds.values()) - min(kinds.values()) <= 1  # whole rounds: balanced
    assert 45 <= len(events) <= 60


@needs_real_tape
def test_events_cover_the_whole_day_from_one_minute_after_the_open(injected):
    _, events = injected
    by_session = Counter(e.session for e in events)
    assert by_session["pre_market"] == 2 and by_session["after_hours"] == 2
    for event in events:
        at = local_time(event.ts_event)
        if event.session == "pre_market":
            assert at < time(9, 29)
        elif event.session == "after_hours":
            assert at >= time(16, 1)
        else:
            assert time(9, 31) <= at < time(15, 59)
    first_hour = [e for e in events if e.session == "regular" and local_time(e.ts_event) < time(10, 30)]
    assert len(first_hour) >= 8  # the busy first hour gets its share (about 60,000 of 209,000 trades)
    assert min(local_time(e.ts_event) for e in first_hour) < time(9, 35)


@needs_real_tape
def test_some_events_follow_each_other_within_a_few_hundred_trades_and_none_overlap(injected):
    trades, events = injected
    sequences = symbol_sequences(trades)["NVDA"]
    spans = sorted((np.searchsorted(sequences, e.first_sequence), np.searchsorted(sequences, e.last_sequence)) for e in events)
    gaps = [next_first - last for (_, last), (next_first, _) in zip(spans, spans[1:])]
    assert min(gaps) >= 1  # never on each other's trades
    close = [gap for gap in gaps if gap <= 500]
    assert 4 <= len(close) <= 20


def event_trades(trades, event):
    by_sequence = {t["sequence"]: i for i, t in enumerate(trades)}
    first, last = by_sequence[event.first_sequence], by_sequence[event.last_sequence]
    return first, trades[first: last + 1]


def market_before(trades, position):
    return float(np.median([t["price"] for t in trades[position - 10: position]]))


def assert_shape(event, trades, p999):
    """Each kind has the shape and the parameter ranges the module documents."""
    first, covered = event_trades(trades, event)
    market = market_before(trades, first)
    prices = np.array([t["price"] for t in covered])
    stamps = pd.to_datetime(pd.Series([t["ts_event"] for t in covered]), format="ISO8601")
    sign = {"up": 1, "down": -1}.get(event.direction, 0)
    if event.kind == "off_market":
        away = prices[0] / market - 1
        assert len(covered) == 1 and OFF_MARKET_AWAY[0] - 1e-4 <= sign * away <= OFF_MARKET_AWAY[1] + 1e-4
    elif event.kind == "block":
        assert len(covered) == 1 and abs(prices[0] / market - 1) < 0.001
        assert BLOCK_VS_P999[0] * p999 - 50 <= covered[0]["size"] <= BLOCK_VS_P999[1] * p999 + 50
    elif event.kind == "burst":
        assert BURST_PRINTS[0] <= len(covered) <= BURST_PRINTS[1]
        assert (stamps.iloc[-1] - stamps.iloc[0]).total_seconds() <= BURST_SPAN_MS[1] / 1e3
        assert np.all(np.abs(prices - market) <= 0.0151)  # the market and a tick either side
        assert prices.max() - prices.min() <= 0.0201
        assert {"A", "B"} <= {t["side"] for t in covered}
    elif event.kind == "ramp":
        assert RAMP_PRINTS[0] <= len(covered) <= RAMP_PRINTS[1]
        assert {t["side"] for t in covered} == {"B" if sign > 0 else "A"}
        assert np.all(sign * np.diff(prices) >= 0)
        assert RAMP_MOVE[0] - 0.0003 <= sign * (prices[-1] / market - 1) <= RAMP_MOVE[1] + 0.0003
    elif event.kind == "flash_crash":
        assert len(covered) <= FLASH_TRADES[1]
        extreme = prices.max() if sign > 0 else prices.min()
        assert FLASH_DEPTH[0] - 0.003 <= sign * (extreme / market - 1) <= FLASH_DEPTH[1] + 0.003
        assert abs(prices[-1] / market - 1) < 0.01  # back at the end
    elif event.kind == "sweep":
        assert SWEEP_LEVELS[0] <= len(covered) <= SWEEP_LEVELS[1] and stamps.nunique() == 1
        assert len({t["side"] for t in covered}) == 1
        assert SWEEP_MOVE[0] - 0.0002 <= sign * (prices[-1] / market - 1) <= SWEEP_MOVE[1] + 0.0002


@needs_real_tape
def test_each_kind_has_the_promised_shape_on_a_real_day(original, injected):
    trades, events = injected
    p999 = float(np.quantile([t["size"] for t in original], 0.999))
    for event in events:
        assert_shape(event, trades, p999)
    flash = [e for e in events if e.kind == "flash_crash"]
    assert all(FLASH_TRADES[0] <= e.trade_count for e in flash if e.session == "regular")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_each_kind_has_the_promised_shape_on_a_synthetic_tape(seed):
    tape = generate_quiet_tape(symbols=2, trades=30_000, seed=seed)
    trades, events = inject_events(tape, seed, warmup_trades=500, spacing_trades=2_000)
    assert_valid_tape(trades)
    by_symbol = {}
    for trade in trades:
        by_symbol.setdefault(trade["symbol"], []).append(trade)
    for event in events:
        original = [t for t in tape if t["symbol"] == event.symbol]
        assert_shape(event, by_symbol[event.symbol], float(np.quantile([t["size"] for t in original], 0.999)))


def test_prices_move_both_ways():
    tape = generate_quiet_tape(symbols=3, trades=60_000, seed=4)
    _, events = inject_events(tape, seed=4, warmup_trades=500, spacing_trades=1_000)
    for kind in ("off_market", "ramp", "flash_crash", "sweep"):
        assert {e.direction for e in events if e.kind == kind} == {"up", "down"}
    assert {e.direction for e in events if e.kind in ("block", "burst")} == {None}


@pytest.mark.parametrize("setting", [
    {"spacing_trades": 10}, {"warmup_trades": -1}, {"close_pair_share": 1.5}, {"close_pair_gap": (50, 10)},
    {"pre_market_events": -1}, {"session_close": time(9, 0)},
])
def test_a_bad_setting_is_refused_by_name(setting):
    tape = generate_quiet_tape(symbols=1, trades=2_000, seed=1)
    with pytest.raises(ValueError, match=next(iter(setting))):
        inject_events(tape, seed=1, **setting)


def test_no_pairs_and_no_extended_hours_when_asked():
    tape = generate_quiet_tape(symbols=1, trades=20_000, seed=6)
    trades, events = inject_events(tape, seed=6, warmup_trades=500, spacing_trades=2_000, close_pair_share=0.0)
    assert len(events) == (20_000 - 500) // 2_000 and {e.session for e in events} == {"regular"}
    _, paired = inject_events(tape, seed=6, warmup_trades=500, spacing_trades=2_000, close_pair_share=1.0)
    assert len(paired) == 2 * len(events)


def ns(day: str, clock: str) -> int:
    return int(pd.Timestamp(f"{day} {clock}", tz=NEW_YORK).tz_convert("UTC").value)


def hand_trade(at_ns: int, sequence: int, price: float, size: int = 100, side: str = "B") -> dict:
    return {
        "ts_recv": format_timestamp_ns(at_ns + 170_000), "ts_event": format_timestamp_ns(at_ns), "rtype": 0,
        "publisher_id": 2, "instrument_id": 7, "action": "T", "side": side, "depth": 0, "price": price,
        "size": size, "flags": 130, "ts_in_delta": 170_000, "sequence": sequence, "symbol": "XYZ",
    }


def test_an_early_close_keeps_the_morning_moves_the_cross_to_13_00_and_the_after_hours_three_hours_earlier():
    day = "2025-05-09"
    tape = [
        hand_trade(ns(day, "08:00:00"), 10, 100.00),
        hand_trade(ns(day, "12:59:59.5"), 20, 101.00),
        hand_trade(ns(day, "13:00:00"), 30, 101.50),      # dropped: the afternoon session
        hand_trade(ns(day, "15:59:59"), 40, 103.00),      # dropped
        hand_trade(ns(day, "16:00:00.5"), 50, 103.10),    # after-hours before the cross print
        hand_trade(ns(day, "16:00:01.9"), 60, 103.00, size=5_000_000, side="N"),  # the closing cross
        hand_trade(ns(day, "16:00:02"), 61, 103.00, size=300, side="N"),          # a smaller N print
        hand_trade(ns(day, "17:30:00"), 70, 102.50),
    ]
    cut = cut_to_early_close(tape, EARLY_CLOSE)
    assert [t["sequence"] for t in cut] == [10, 20, 50, 60, 61, 70]
    assert cut[:2] == tape[:2]
    cross = cut[3]
    assert cross["ts_event"] == format_timestamp_ns(ns(day, "13:00:01.9"))
    assert cross["ts_recv"] == format_timestamp_ns(ns(day, "13:00:01.9") + 170_000)
    assert cross["size"] == 5_000_000 and cross["price"] == 101.00  # at the last price before 13:00
    assert [t["price"] for t in cut[2:]] == [101.10, 101.00, 101.00, 100.50]  # shifted by -2.00 together
    assert cut[5]["ts_event"] == format_timestamp_ns(ns(day, "14:30:00"))
    assert_valid_tape(cut)


@needs_real_tape
def test_an_early_close_day_made_from_a_real_day(original):
    cut = cut_to_early_close(original)
    assert_valid_tape(cut)
    before = pd.to_datetime(pd.Series([t["ts_event"] for t in original]), format="ISO8601").dt.tz_convert(NEW_YORK).dt.time
    assert len(cut) == (before < time(13, 0)).sum() + (before >= time(16, 0)).sum()  # the afternoon is gone
    local = pd.to_datetime(pd.Series([t["ts_event"] for t in cut]), format="ISO8601").dt.tz_convert(NEW_YORK)
    clock = local.dt.time
    after = [t for t, c in zip(cut, clock) if c >= time(13, 0)]
    assert 1_000 < len(after) < 2_000 and all(c < time(17, 0) for c in clock)  # a thin extended session
    cross = max(after, key=lambda t: t["size"])
    assert cross["size"] == 6_693_219 and local_time(cross["ts_event"]) < time(13, 0, 5)
    last_morning = [t for t, c in zip(cut, clock) if c < time(13, 0)][-1]
    assert cross["price"] == last_morning["price"]
    trades, events = inject_events(cut, seed=0, session_close=EARLY_CLOSE)
    assert_valid_tape(trades)
    regular = [e for e in events if e.session == "regular"]
    assert regular and all(local_time(e.ts_event) < time(12, 59) for e in regular)
    assert {e.session for e in events} == {"pre_market", "regular", "after_hours"}
