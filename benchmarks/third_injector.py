"""A third injector, written blind, so quality is not judged by the team's injectors alone.

It was written from issue 12's description of an independent evaluation only, without reading
the product's detectors, ``connectors.injection`` or ``benchmarks.second_injector``: a third
opinion on whether the engine generalizes beyond the events it was tuned on. Only its style
was brought in line with the other modules; its parameters, placement and random draws are
the blind-written ones (the same seed gives the same tape and labels).

| kind | what is injected | size (shares) | price | timing, side |
|---|---|---|---|---|
| block | 1 print | 20,000-100,000 log-uniform, in round lots | the market | side A 40%, B 40%, N 20% |
| burst | 100-500 prints | 1-99, or 10, 20, 50 or 100 | the market +0/1/2 ticks (B) or -0/1/2 (A) | over 5-50 ms, sides 50/50 |
| off_market | 1 print | a nearby real print's (10th-90th percentile) | the market x (1 +/- 0.4-3%) | side A 25%, B 25%, N 50% |
| ramp | 20-120 prints | nearby real sizes (30th-95th percentile) | a one-way path of cents, 0.4-1.5% | over 0.5-3 s; up B, down A |
| flash_crash | 200-800 real trades re-priced | unchanged | a V 0.8-3% away and back, the extreme at 25-55% | times unchanged; down 60%, up 40% |

"The market" is the median of the last 15 real prices; "nearby" is the last 500 real trades.

Placement: 8 events of each kind (40 a day), placed biggest kind first; per kind 1-2 in the
pre-market, 1-2 in the after-hours, the rest in the regular session (two of the blocks in its
first hour). An event aims at a time drawn uniformly over its window and goes into the first
gap between real trades at or after it (wrapping) where it fits; a full window sends it to
the regular session. Never in the first 2,000 trades, never within 60 s of 09:30,
``session_close`` or 16:00 New York; at least 10 untouched real trades between events.
Injected prints get times between their real neighbours (``ts_recv`` interpolated the same
way, so ``ts_in_delta`` stays realistic), the preceding real print's other fields, and
sequences spread evenly inside the real sequence gap (a gap too small for the prints is
skipped, so real sequences are never renumbered). Real trades falling inside an event's span
are kept and counted in it: at most a tenth as many as a burst's injected prints, a quarter as
many as a ramp's.

A seed draws the same 40 event shapes (kinds, sizes, moves, target times of day) on every tape;
tapes differ in where the events land and in the market around them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from connectors.codec import format_timestamp_ns
from connectors.injection import (
    NEW_YORK, SESSION_CLOSE, SESSION_OPEN, TICK, LabelledEvent, session_of, timestamps_ns,
)
from models.session import DAY_NS

KINDS = ("flash_crash", "ramp", "burst", "block", "off_market")
"""In placement order, biggest first, so the small events fill the gaps left."""
PER_KIND = 8
WARMUP_TRADES = 2_000
MIN_GAP_TRADES = 10
"""Untouched real trades between two events."""
CROSS_MARGIN_NS = 60 * 10**9
"""No event's trade within this of the open, ``session_close`` or 16:00 New York."""
MARKET_TRADES, NEARBY_TRADES = 15, 500
"""The market is the median of the last 15 real prices; sizes are drawn from the last 500."""
REAL_SHARE = {"block": 0, "off_market": 0, "burst": 0.10, "ramp": 0.25}
"""Most real trades that may fall inside an event's span, as a share of its injected prints."""

BLOCK_SHARES, ROUND_LOT, BLOCK_SIDES = (20_000, 100_000), 100, (("A", "B", "N"), (0.4, 0.4, 0.2))
OFF_MARKET_AWAY, OFF_MARKET_SIZE_QUANTILE = (0.004, 0.03), (0.1, 0.9)
OFF_MARKET_SIDES = (("A", "B", "N"), (0.25, 0.25, 0.5))
BURST_PRINTS, BURST_SPAN_NS = (100, 500), (5e6, 50e6)
BURST_ODD_SIZES, BURST_ROUND_SIZES = (1, 99), (10, 20, 50, 100)
BURST_TICKS, BURST_TICK_ODDS = (0, 1, 2), (0.6, 0.3, 0.1)
RAMP_PRINTS, RAMP_SPAN_NS, RAMP_MOVE, RAMP_SIZE_QUANTILE = (20, 120), (0.5e9, 3e9), (0.004, 0.015), (0.3, 0.95)
CRASH_TRADES, CRASH_DEPTH, CRASH_APEX, CRASH_UP_ODDS = (200, 800), (0.008, 0.03), (0.25, 0.55), 0.4

HOUR_NS = 3_600 * 10**9


@dataclass(frozen=True)
class _Tape:
    """The real trades as arrays, and the windows events go in."""

    stamps: np.ndarray  # ts_event, ns
    received: np.ndarray  # ts_recv, ns
    sequences: np.ndarray
    prices: np.ndarray
    sizes: np.ndarray
    time_of_day: np.ndarray  # ns since New York midnight
    spare_sequences: np.ndarray  # unused sequence numbers before each trade (-1 before the first)
    eligible: np.ndarray  # after the warm-up and away from the crosses
    windows: dict[str, tuple[int, int]]  # name -> time of day [from, to)


class _Spot(NamedTuple):
    """Where an event fits: real trades ``first``..``last`` (a crash re-prices them; a burst or a
    ramp goes from before ``first`` to before ``last``), the injected prints' times (None for a
    crash), and its footprint (real trade k is 2k+1, the gap before it 2k)."""

    first: int
    last: int
    stamps: np.ndarray | None
    footprint: tuple[int, int]


@dataclass
class _Event:
    kind: str
    first: dict[str, Any]  # its first and last trade (sequences of injected prints are set last)
    last: dict[str, Any]
    trade_count: int
    time_of_day: int  # of its first trade, ns since New York midnight
    description: str
    direction: str | None


def inject_third(
    trades: Sequence[dict[str, Any]], seed: int, session_close: time = SESSION_CLOSE,
) -> tuple[list[dict[str, Any]], list[LabelledEvent]]:
    """A copy of one symbol's ``trades`` (in time order, ISO timestamps) with events added, and their labels."""
    rng = np.random.default_rng(seed)
    if len(trades) < WARMUP_TRADES + 1_000:
        raise ValueError(f"tape too short for injection: {len(trades)} trades")
    tape = _tape(trades, session_close)
    occupied: list[tuple[int, int]] = []
    inserted: dict[int, list[dict[str, Any]]] = {}  # real trade position -> prints going before it
    repriced: dict[int, float] = {}
    events = []
    for kind in KINDS:
        for window in _windows_of(kind, rng):
            shape, fraction, target = _shape(kind, rng), rng.random(), rng.random()
            spot = _place(kind, shape, window, fraction, target, tape, occupied)
            if spot is None:
                raise RuntimeError(f"no room for {kind} event (seed {seed})")
            occupied.append(spot.footprint)
            if spot.stamps is None:
                events.append(_flash_crash(shape, spot, trades, tape, repriced))
            else:
                events.append(_inserted(kind, shape, spot, trades, tape, inserted))
    _number(inserted, tape.sequences)
    labels = [_label(event, trades[0]["symbol"], session_close) for event in events]
    return _laid_out(trades, inserted, repriced), sorted(labels, key=lambda e: e.first_sequence)


def _tape(trades: Sequence[dict[str, Any]], session_close: time) -> _Tape:
    stamps = timestamps_ns([t["ts_event"] for t in trades])
    sequences = np.array([t["sequence"] for t in trades], np.int64)
    local = pd.DatetimeIndex(pd.to_datetime(stamps, utc=True)).tz_convert(NEW_YORK).tz_localize(None)
    time_of_day = np.asarray((local - local.normalize()).asi8, np.int64)
    spare = np.full(len(trades), -1, np.int64)
    spare[1:] = sequences[1:] - sequences[:-1] - 1
    opening, closing = _ns_of_day(SESSION_OPEN), _ns_of_day(session_close)
    eligible = np.arange(len(trades)) >= WARMUP_TRADES
    for cross in {opening, closing, _ns_of_day(SESSION_CLOSE)}:
        eligible &= np.abs(time_of_day - cross) >= CROSS_MARGIN_NS
    windows = {"pre": (0, opening), "open_hour": (opening, opening + HOUR_NS), "regular": (opening, closing),
               "after": (closing, DAY_NS)}
    return _Tape(stamps, timestamps_ns([t["ts_recv"] for t in trades]), sequences,
                 np.array([t["price"] for t in trades], float), np.array([t["size"] for t in trades], np.int64),
                 time_of_day, spare, eligible, windows)


def _ns_of_day(at: time) -> int:
    return ((at.hour * 60 + at.minute) * 60 + at.second) * 10**9


def _windows_of(kind: str, rng: np.random.Generator) -> list[str]:
    """The window of each of the kind's events: some in each extended session, so they are tested there."""
    pre, after = rng.integers(1, 3, size=2)
    windows = ["pre"] * pre + ["after"] * after + (["open_hour"] * 2 if kind == "block" else [])
    return windows + ["regular"] * (PER_KIND - len(windows))


def _shape(kind: str, rng: np.random.Generator) -> dict[str, Any]:
    """The event's drawn parameters, whatever its place; ``offsets_ns`` are its prints' times from the first."""
    if kind == "block":
        shares = np.exp(rng.uniform(np.log(BLOCK_SHARES[0]), np.log(BLOCK_SHARES[1])))
        size = int(round(shares / ROUND_LOT)) * ROUND_LOT
        return {"offsets_ns": np.zeros(1, np.int64), "size": min(max(size, BLOCK_SHARES[0]), BLOCK_SHARES[1]),
                "side": str(rng.choice(BLOCK_SIDES[0], p=BLOCK_SIDES[1]))}
    if kind == "off_market":
        return {"offsets_ns": np.zeros(1, np.int64), "away": rng.uniform(*OFF_MARKET_AWAY),
                "up": bool(rng.random() < 0.5), "side": str(rng.choice(OFF_MARKET_SIDES[0], p=OFF_MARKET_SIDES[1])),
                "size_quantile": rng.uniform(*OFF_MARKET_SIZE_QUANTILE)}
    if kind == "burst":
        count, span = int(rng.integers(*BURST_PRINTS, endpoint=True)), rng.uniform(*BURST_SPAN_NS)
        offsets = np.sort(rng.uniform(0, span, count)).astype(np.int64)
        sizes = np.where(rng.random(count) < 0.5, rng.integers(*BURST_ODD_SIZES, count, endpoint=True),
                         rng.choice(BURST_ROUND_SIZES, count))
        return {"offsets_ns": offsets - offsets[0], "sides": np.where(rng.random(count) < 0.5, "A", "B"),
                "ticks": rng.choice(BURST_TICKS, count, p=BURST_TICK_ODDS), "sizes": sizes}
    if kind == "ramp":
        count, span = int(rng.integers(*RAMP_PRINTS, endpoint=True)), rng.uniform(*RAMP_SPAN_NS)
        offsets = np.sort(rng.uniform(0, span, count)).astype(np.int64)
        return {"offsets_ns": offsets - offsets[0], "move": rng.uniform(*RAMP_MOVE), "up": bool(rng.random() < 0.5),
                "size_quantiles": rng.uniform(*RAMP_SIZE_QUANTILE, count)}
    return {"trades": int(rng.integers(*CRASH_TRADES, endpoint=True)), "depth": rng.uniform(*CRASH_DEPTH),
            "up": bool(rng.random() < CRASH_UP_ODDS), "apex": rng.uniform(*CRASH_APEX)}


def _place(kind: str, shape: dict[str, Any], window: str, fraction: float, target: float, tape: _Tape,
           occupied: list[tuple[int, int]]) -> _Spot | None:
    """The first gap between eligible real trades, from a time ``target`` of the way through the
    window on (wrapping), where the event fits; the regular session's when the window has none."""
    for name in dict.fromkeys((window, "regular")):
        start, end = tape.windows[name]
        inside = tape.eligible & (tape.time_of_day >= start) & (tape.time_of_day < end)
        outside_before = np.concatenate([[0], np.cumsum(~inside)])
        gaps = np.flatnonzero(inside[1:] & inside[:-1]) + 1
        if len(gaps) == 0:
            continue
        times = tape.time_of_day[gaps]
        aim = times[0] + target * (times[-1] - times[0])
        for gap in np.roll(gaps, -int(np.searchsorted(times, aim))):
            spot = _fit(kind, shape, int(gap), fraction, outside_before, tape, occupied)
            if spot is not None:
                return spot
    return None


def _fit(kind: str, shape: dict[str, Any], gap: int, fraction: float, outside_before: np.ndarray, tape: _Tape,
         occupied: list[tuple[int, int]]) -> _Spot | None:
    """The event started in the gap before real trade ``gap`` (a ``fraction`` of the way through
    it), if all its trades are eligible, it keeps clear of the others and the sequence gaps hold its prints."""
    if kind == "flash_crash":
        first, last = gap, gap + shape["trades"] - 1
        footprint = (2 * first + 1, 2 * last + 1)
        if last >= len(tape.stamps) or outside_before[last + 1] - outside_before[first]:
            return None
        if not _clear(footprint, occupied):
            return None
        return _Spot(first, last, None, footprint)
    start = tape.stamps[gap - 1] + int(fraction * (tape.stamps[gap] - tape.stamps[gap - 1]))
    stamps = start + shape["offsets_ns"]
    before = np.searchsorted(tape.stamps, stamps, side="right")  # the real trade each print goes before
    first, last = int(before[0]), int(before[-1])
    if first < 1 or last >= len(tape.stamps) or outside_before[last + 1] - outside_before[first - 1]:
        return None
    if last - first > REAL_SHARE[kind] * len(before):
        return None
    positions, counts = np.unique(before, return_counts=True)
    footprint = (2 * first, 2 * last)
    if (counts > tape.spare_sequences[positions]).any() or not _clear(footprint, occupied):
        return None
    return _Spot(first, last, stamps, footprint)


def _clear(footprint: tuple[int, int], occupied: list[tuple[int, int]]) -> bool:
    """Whether ``MIN_GAP_TRADES`` untouched real trades lie between the footprint and every event placed."""
    start, end = footprint
    return all(end + 2 * MIN_GAP_TRADES < a or start > b + 2 * MIN_GAP_TRADES for a, b in occupied)


def _cents(price: float) -> float:
    return round(float(price), 2)


def _market(tape: _Tape, at: int) -> float:
    """The market at real trade ``at``: the median of the last ``MARKET_TRADES`` prices, robust to one odd print."""
    return _cents(np.median(tape.prices[max(0, at - MARKET_TRADES + 1):at + 1]))


def _flash_crash(shape: dict[str, Any], spot: _Spot, trades: Sequence[dict[str, Any]], tape: _Tape,
                 repriced: dict[int, float]) -> _Event:
    """Re-prices the spot's real trades in a V; the event is the run from the first changed price to the last."""
    market = _market(tape, spot.first - 1)
    real = tape.prices[spot.first:spot.last + 1]
    way = (np.arange(len(real)) + 1) / (len(real) + 1)
    apex = shape["apex"]
    height = np.where(way <= apex, way / apex, (1 - way) / (1 - apex))
    sign = 1 if shape["up"] else -1
    prices = np.round(real * (1 + sign * shape["depth"] * height), 2)
    changed = np.flatnonzero(prices != real)
    for i in changed:
        repriced[spot.first + int(i)] = float(prices[i])
    extreme = prices.max() if shape["up"] else prices.min()
    description = (f"V {'spike' if shape['up'] else 'crash'} {sign * shape['depth']:+.2%} over {len(changed):,} "
                   f"re-priced trades, extreme {extreme:.2f} from ~{market:.2f}, back to market")
    first, last = spot.first + int(changed[0]), spot.first + int(changed[-1])
    return _Event("flash_crash", trades[first], trades[last], last - first + 1, int(tape.time_of_day[first]),
                  description, "up" if shape["up"] else "down")


def _inserted(kind: str, shape: dict[str, Any], spot: _Spot, trades: Sequence[dict[str, Any]], tape: _Tape,
              inserted: dict[int, list[dict[str, Any]]]) -> _Event:
    """Adds the event's prints (to ``inserted``, by the real trade they go before) and says what they are."""
    before = spot.first - 1
    market = _market(tape, before)
    nearby_sizes = tape.sizes[max(0, before - NEARBY_TRADES + 1):before + 1]
    prices, sizes, sides, description, direction = _prints(kind, shape, spot.stamps, market, nearby_sizes)
    made = []
    for stamp, price, size, side in zip(spot.stamps, prices, sizes, sides):
        position, trade = _print(trades, tape, int(stamp), price, size, side)
        inserted.setdefault(position, []).append(trade)
        made.append(trade)
    count = len(made) + spot.last - spot.first
    start = int(tape.time_of_day[before] + spot.stamps[0] - tape.stamps[before])
    return _Event(kind, made[0], made[-1], count, start, description, direction)


def _prints(kind: str, shape: dict[str, Any], stamps: np.ndarray, market: float, nearby_sizes: np.ndarray,
            ) -> tuple[list[float], list[int], list[str], str, str | None]:
    """Each print's price, size and side, the event's description and its direction."""
    count = len(stamps)
    if kind == "block":
        description = f"{shape['size']:,} shares at the market ({market:.2f}), side {shape['side']}"
        return [market], [shape["size"]], [shape["side"]], description, None
    if kind == "off_market":
        price = _cents(market * (1 + shape["away"]) if shape["up"] else market * (1 - shape["away"]))
        size = max(1, int(np.quantile(nearby_sizes, shape["size_quantile"])))
        description = (f"{size:,} shares at {price:.2f}, {(price / market - 1):+.2%} off market {market:.2f}, "
                       f"side {shape['side']}")
        return [price], [size], [shape["side"]], description, "up" if shape["up"] else "down"
    if kind == "burst":
        sides = list(shape["sides"])
        prices = [_cents(market + (TICK if side == "B" else -TICK) * ticks)
                  for side, ticks in zip(sides, shape["ticks"])]
        description = (f"{count} small prints (both sides, {sides.count('B')} B) in "
                       f"{(stamps[-1] - stamps[0]) / 1e6:.1f} ms within 2 ticks of {market:.2f}")
        return prices, [int(size) for size in shape["sizes"]], sides, description, None
    sign = 1 if shape["up"] else -1
    target = _cents(market * (1 + sign * shape["move"]))
    prices = [_cents(market + (target - market) * (k + 1) / count) for k in range(count)]
    sizes = [max(1, int(np.quantile(nearby_sizes, q))) for q in shape["size_quantiles"]]
    sides = ["B" if shape["up"] else "A"] * count
    description = (f"{count} same-side ({sides[0]}) prints walking {market:.2f} -> {target:.2f} "
                   f"({target / market - 1:+.2%}) in {(stamps[-1] - stamps[0]) / 1e9:.2f} s")
    return prices, sizes, sides, description, "up" if shape["up"] else "down"


def _print(trades: Sequence[dict[str, Any]], tape: _Tape, stamp: int, price: float, size: int, side: str,
           ) -> tuple[int, dict[str, Any]]:
    """A print at ``stamp`` shaped like the real trade before it, and the real trade it goes before;
    its ``ts_recv`` is interpolated between its neighbours', so its ``ts_in_delta`` looks real."""
    after = int(np.searchsorted(tape.stamps, stamp, side="right"))
    event, received = tape.stamps, tape.received
    share = (stamp - event[after - 1]) / (event[after] - event[after - 1])
    receive = max(int(received[after - 1] + round(share * (received[after] - received[after - 1]))), stamp)
    trade = dict(trades[after - 1])
    trade.update(ts_recv=format_timestamp_ns(receive), ts_event=format_timestamp_ns(stamp), price=float(price),
                 size=int(size), side=str(side), ts_in_delta=int(receive - stamp))
    return after, trade


def _number(inserted: dict[int, list[dict[str, Any]]], sequences: np.ndarray) -> None:
    """Spreads the prints' sequences evenly inside the real gap before the trade they go before."""
    for position, prints in inserted.items():
        start, span = int(sequences[position - 1]), int(sequences[position] - sequences[position - 1])
        for k, trade in enumerate(prints):
            trade["sequence"] = start + ((k + 1) * span) // (len(prints) + 1)


def _laid_out(trades: Sequence[dict[str, Any]], inserted: dict[int, list[dict[str, Any]]],
              repriced: dict[int, float]) -> list[dict[str, Any]]:
    """Copies of the real trades (crashes re-priced) with the prints before the trades they go before."""
    out = []
    for position, trade in enumerate(trades):
        out.extend(inserted.get(position, []))
        copy = dict(trade)
        if position in repriced:
            copy["price"] = repriced[position]
        out.append(copy)
    return out


def _label(event: _Event, symbol: str, session_close: time) -> LabelledEvent:
    return LabelledEvent(kind=event.kind, symbol=symbol, first_sequence=int(event.first["sequence"]),
                         last_sequence=int(event.last["sequence"]), trade_count=int(event.trade_count),
                         ts_event=event.first["ts_event"], description=event.description,
                         direction=event.direction, session=_session(event.time_of_day, session_close))


def _session(time_of_day: int, session_close: time) -> str:
    return session_of((datetime.min + timedelta(microseconds=time_of_day // 1_000)).time(), session_close)
