"""A synthetic multi-symbol trade tape with labelled anomalies, for the demo and tests.

Real tapes cannot be shipped with the demo, and a demo is only convincing when the
detector has something to find. The tape imitates what matters to the detector in
a real NASDAQ tape (the shared NVDA days, ``../shared/data/nvda``): prices on a one-cent tick
around a random-walk mid with a one-tick spread, heavy-tailed sizes with round
lots (median about 40 shares, 99th percentile several hundred, rare blocks),
about 45% sell, 36% buy and 19% unattributed ("N") aggressors, irregular gaps with
quiet and busy spells and clusters of executions microseconds to milliseconds
apart, and multi-print executions sharing one nanosecond
timestamp (about half of all prints), the last of which carries flag 128 or 130.
It covers mid-session only (10:00 New York onwards), so there are no crosses.

Anomalies are injected by ``connectors.injection``, the same code the benchmark
uses on real tapes, and come back as labels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from connectors.codec import format_timestamp_ns
from connectors.injection import LabelledEvent, inject_events

SESSION_START_NS = 1_747_058_400_000_000_000  # 2025-05-12T14:00:00Z, 10:00 in New York
BASE_PRICES = (118.0, 42.5, 305.0, 18.25, 76.8)
SIDES = np.array(["A", "B", "N"])
SIDE_SHARES = (0.445, 0.361, 0.194)
MEAN_PRINTS_PER_EXECUTION = 2.2
MEAN_SECONDS_BETWEEN_EXECUTIONS = 0.45
REACTION_SHARE = 0.5
MID_STEP = 0.00004
"""Relative std of the mid per execution: 0.4 bp, so 100 trades move about as little as on
NVDA (median |move| over 100 trades: 1.7 bp here, 2.5 bp on both shared NVDA days)."""
SPACING_TRADES = 700
WARMUP_TRADES = 2_000
"""The engine reports nothing before its first models serve (trade 1,501 by default)."""


def generate_tape(
    symbols: int = 3, trades: int = 20_000, seed: int = 0
) -> tuple[list[dict[str, Any]], list[LabelledEvent]]:
    """Trades of ``symbols`` instruments (SYN0, SYN1, ...) in time order, and the injected events.

    ``trades`` is the size of the tape before injection, split evenly between the
    symbols; each event adds between 1 and 500 trades. Each symbol gets one event
    per 700 trades after a warm-up of 2,000 (six per symbol at the defaults).
    The same arguments give the same tape.
    """
    rng = np.random.default_rng(seed)
    base = _base_tape(symbols, trades, rng)
    injection_seed = int(rng.integers(2**31))
    return inject_events(base, injection_seed, spacing_trades=SPACING_TRADES, warmup_trades=WARMUP_TRADES)


def generate_quiet_tape(symbols: int = 3, trades: int = 20_000, seed: int = 0) -> list[dict[str, Any]]:
    """The same kind of tape with nothing injected: for benchmarks that inject their own events."""
    return _base_tape(symbols, trades, np.random.default_rng(seed))


def _base_tape(symbols: int, trades: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    if symbols < 1 or trades < symbols:
        raise ValueError("need at least one symbol and one trade per symbol")
    tapes = []
    for index in range(symbols):
        count = trades // symbols + (1 if index < trades % symbols else 0)
        tapes.append(_symbol_tape(index, count, rng))
    return _merge(tapes)


def _symbol_tape(
    index: int, count: int, rng: np.random.Generator, *, symbol: str | None = None,
    base_price: float | None = None, mean_gap_s: float = MEAN_SECONDS_BETWEEN_EXECUTIONS,
    start_ns: int = SESSION_START_NS,
) -> list[dict[str, Any]]:
    """One instrument's trades; the market generator (``connectors.market``) sets its own
    symbol, price level and pace, the demo tape keeps the defaults."""
    symbol = symbol or f"SYN{index}"
    if base_price is None:
        base_price = BASE_PRICES[index % len(BASE_PRICES)] * (1 + 0.5 * (index // len(BASE_PRICES)))
    prints_per_execution = rng.geometric(1 / MEAN_PRINTS_PER_EXECUTION, count)
    trades: list[dict[str, Any]] = []
    now_ns = start_ns + int(rng.integers(0, 10**9))
    mid = base_price
    sequence = int(rng.integers(100_000, 1_000_000))
    intensity = 1.0
    execution = 0
    while len(trades) < count:
        if execution % 200 == 0:
            intensity = float(rng.lognormal(0.0, 0.8))  # quiet and busy spells
        if rng.random() < REACTION_SHARE:
            gap_s = rng.lognormal(np.log(0.0005), 2.0)  # other orders reacting within milliseconds
        else:
            gap_s = rng.exponential(mean_gap_s / intensity)
        now_ns += max(1_000, int(gap_s * 1e9))
        mid = max(1.0, mid * (1 + rng.normal(0.0, MID_STEP)))
        side = str(rng.choice(SIDES, p=SIDE_SHARES))
        prints = int(min(prints_per_execution[execution % count], count - len(trades)))
        price = _touch_price(mid, side)
        step = 0.01 if side == "B" else -0.01 if side == "A" else 0.0
        for number in range(prints):
            if number and rng.random() < 0.3:
                price = round(price + step, 2)  # the order walks the book
            last = number == prints - 1
            trades.append(_trade(symbol, index, now_ns, side, price, _size(rng), sequence, last, rng))
            sequence += 1
        sequence += int(rng.integers(0, 2_000))  # other instruments share the feed's sequence space
        execution += 1
    return trades


def _touch_price(mid: float, side: str) -> float:
    """Buyers lift the ask, sellers hit the bid (one tick below); "N" prints near the mid."""
    bid = np.floor(mid * 100) / 100
    return float(round(bid + 0.01 if side == "B" else bid if side == "A" else round(mid, 2), 2))


def _size(rng: np.random.Generator) -> int:
    """Heavy-tailed: lognormal body, rare Pareto blocks, round lots for a third."""
    if rng.random() < 0.002:
        return int(100 * np.ceil(rng.pareto(1.5) * 20 + 20))
    size = max(1, int(rng.lognormal(np.log(40), 1.1)))
    if size >= 100 and rng.random() < 0.35:
        size = int(round(size, -2))
    return size


def _trade(
    symbol: str, index: int, event_ns: int, side: str, price: float, size: int, sequence: int,
    last: bool, rng: np.random.Generator,
) -> dict[str, Any]:
    delay_ns = 165_000 + int(rng.exponential(8_000))
    return {  # instrument_id: 20,000 + the symbol's index
        "ts_recv": format_timestamp_ns(event_ns + delay_ns),
        "ts_event": format_timestamp_ns(event_ns),
        "rtype": 0, "publisher_id": 2, "instrument_id": 20_000 + index, "action": "T",
        "side": side, "depth": 0, "price": float(price), "size": int(size),
        "flags": (130 if rng.random() < 0.7 else 128) if last else 0,
        "ts_in_delta": delay_ns, "sequence": sequence, "symbol": symbol,
    }


def _merge(tapes: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    keyed = [(trade["ts_event"], index, position) for index, tape in enumerate(tapes) for position, trade in enumerate(tape)]
    keyed.sort()
    return [tapes[index][position] for _, index, position in keyed]
