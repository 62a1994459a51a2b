"""A second injector, written apart from ``connectors.injection``, so quality is not judged by one.

Issue 12 reports an evaluation with "an injector written independently (similar kinds,
other parameters and placement)" and describes its events. This module builds events
after that description, with none of ``connectors.injection``'s placement or builders:

| kind | what is injected |
|---|---|
| block | one print of 20,000-100,000 shares (uniform, absolute: not relative to the day) at the last price, side A, B or N |
| burst | 150-300 small prints (1-200 shares), one every 100 us, both sides, at the last price or one tick either side |
| off_market | one print 0.4-2% from the last price, the size of a recent trade |
| ramp | 30-150 one-sided prints over 0.2-5 s walking the price 0.4-2% |
| flash_crash | 200-800 real trades repriced in a V, 0.8-3% down or up, the extreme at 20-60% of the way |

Placement: ``per_kind`` events of each kind (8: 40 a day), at trades drawn uniformly from
the whole day after ``warmup_trades`` (so mostly in the busy first hours of the session,
some in the pre-market and after-hours), at least ``min_gap_trades`` apart, off the
minute around each cross. A burst or a ramp moves forward to the first pause that holds
it (within 1,000 trades; else another place is drawn); an event with no room left is not placed. No pairs and no session quotas: what ``connectors.injection`` does
on purpose is left to chance here. Deterministic from the seed; the result is a valid
tape (times in order, sequences renumbered, unique and increasing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import time
from typing import Any

import numpy as np
import pandas as pd

from connectors.codec import format_timestamp_ns
from connectors.injection import (
    NEW_YORK, SESSION_CLOSE, SESSION_OPEN, LabelledEvent, as_text, session_of, timestamps_ns,
)

KINDS = ("block", "burst", "off_market", "ramp", "flash_crash")
BLOCK_SHARES = (20_000, 100_000)
BURST_PRINTS, BURST_SPACING_NS = (150, 300), 100_000
OFF_MARKET_AWAY = (0.004, 0.02)
RAMP_PRINTS, RAMP_MOVE, RAMP_SECONDS = (30, 150), (0.004, 0.02), (0.2, 5.0)
CRASH_TRADES, CRASH_DEPTH, CRASH_BOTTOM = (200, 800), (0.008, 0.03), (0.2, 0.6)
PAUSE_SEARCH = 1_000
"""Trades a burst or a ramp may move forward to find a pause that holds it."""
SEED_OFFSET = 10_007
"""Keeps this injector's draws apart from ``connectors.injection``'s for the same seed."""


@dataclass
class _Event:
    kind: str
    at: int  # the real trade the event follows (a crash reprices the trades after it)
    inserted: list[dict[str, Any]]
    repriced: int
    description: str
    direction: str | None


def inject_second(
    trades: Sequence[dict[str, Any]], seed: int = 0, *, per_kind: int = 8, warmup_trades: int = 1_500,
    min_gap_trades: int = 1_500, session_close: time = SESSION_CLOSE,
) -> tuple[list[dict[str, Any]], list[LabelledEvent]]:
    """A copy of one symbol's ``trades`` (in time order) with events added, and their labels."""
    symbols = {trade["symbol"] for trade in trades}
    if len(symbols) > 1:
        raise ValueError(f"the second injector takes one symbol's trades, not {len(symbols)} symbols")
    rng = np.random.default_rng(SEED_OFFSET + seed)
    tape = [dict(trade) for trade in trades]
    stamps = timestamps_ns([t["ts_event"] for t in tape])
    kinds = [kind for kind in KINDS for _ in range(per_kind)]
    rng.shuffle(kinds)
    eligible = _eligible(stamps, warmup_trades, session_close)
    taken: list[int] = []
    events = []
    for kind in kinds:
        shape = _shape(kind, rng)
        at = _place(rng.permutation(eligible), stamps, taken, min_gap_trades, shape.get("span_ns", 0))
        if at is not None:  # else no room is left for it
            taken.append(at)
            events.append(_build(kind, shape, at, tape, stamps, rng))
    return _laid_out(tape, events, session_close)


def _eligible(stamps: np.ndarray, warmup: int, session_close: time) -> np.ndarray:
    """Trades an event may follow: after the warm-up, off the minute around each cross, with room after."""
    local = pd.to_datetime(stamps, utc=True).tz_convert(NEW_YORK)
    minute = np.asarray(local.hour * 60 + local.minute)
    eligible = np.ones(len(stamps), bool)
    eligible[:warmup] = False
    eligible[max(0, len(stamps) - CRASH_TRADES[1] - PAUSE_SEARCH - 200):] = False
    for cross in (SESSION_OPEN, session_close):
        at = cross.hour * 60 + cross.minute
        eligible &= (minute < at - 1) | (minute > at)
    return np.flatnonzero(eligible)


def _place(draws: np.ndarray, stamps: np.ndarray, taken: list[int], gap: int, span_ns: int) -> int | None:
    """The first drawn trade far enough from the events placed, moved to the first pause that holds
    ``span_ns`` (a burst's or a ramp's prints must fit before the next real trade); None if none is."""
    for draw in draws:
        at = _pause(stamps, int(draw), span_ns) if span_ns else int(draw)
        if at is not None and all(abs(at - other) >= gap for other in taken):
            return at
    return None


def _shape(kind: str, rng: np.random.Generator) -> dict[str, Any]:
    """The event's drawn parameters; ``span_ns`` is the pause its prints need."""
    if kind == "block":
        return {"size": int(rng.integers(*BLOCK_SHARES, endpoint=True)), "side": str(rng.choice(["A", "B", "N"]))}
    if kind == "off_market":
        return {"sign": 1 if rng.random() < 0.5 else -1, "away": float(rng.uniform(*OFF_MARKET_AWAY)),
                "side": str(rng.choice(["A", "B", "N"]))}
    if kind == "burst":
        count = int(rng.integers(*BURST_PRINTS, endpoint=True))
        return {"count": count, "span_ns": (count + 1) * BURST_SPACING_NS}
    if kind == "ramp":
        return {"count": int(rng.integers(*RAMP_PRINTS, endpoint=True)), "sign": 1 if rng.random() < 0.5 else -1,
                "move": float(rng.uniform(*RAMP_MOVE)), "span_ns": int(rng.uniform(*RAMP_SECONDS) * 1e9)}
    count = int(rng.integers(*CRASH_TRADES, endpoint=True))
    return {"count": count, "sign": -1 if rng.random() < 0.5 else 1, "depth": float(rng.uniform(*CRASH_DEPTH)),
            "bottom": max(1, int(count * rng.uniform(*CRASH_BOTTOM)))}


def _build(kind: str, shape: dict[str, Any], at: int, tape: list[dict[str, Any]], stamps: np.ndarray,
           rng: np.random.Generator) -> _Event:
    price = float(tape[at]["price"])
    if kind == "block":
        size = shape["size"]
        return _Event(kind, at, [_print(tape, stamps, at, 1, price, size, shape["side"])], 0, f"{size:,} shares", None)
    if kind == "off_market":
        sign, away = shape["sign"], shape["away"]
        size = int(tape[at - int(rng.integers(0, 50))]["size"])
        trade = _print(tape, stamps, at, 1, price * (1 + sign * away), size, shape["side"])
        return _Event(kind, at, [trade], 0, f"{sign * away:+.2%}", _word(sign))
    if kind == "burst":
        prints = [
            _print(tape, stamps, at, BURST_SPACING_NS * (k + 1), price + 0.01 * int(rng.integers(-1, 2)),
                   int(rng.integers(1, 201)), str(rng.choice(["A", "B"])))
            for k in range(shape["count"])
        ]
        return _Event(kind, at, prints, 0, f"{shape['count']} prints 100 us apart", None)
    if kind == "ramp":
        count, sign, move, span = shape["count"], shape["sign"], shape["move"], shape["span_ns"]
        prints = [
            _print(tape, stamps, at, max(1, span * (k + 1) // count), price * (1 + sign * move * (k + 1) / count),
                   int(rng.integers(10, 801)), "B" if sign > 0 else "A")
            for k in range(count)
        ]
        return _Event(kind, at, prints, 0, f"{count} prints {sign * move:+.2%} in {span / 1e9:.1f} s", _word(sign))
    count, sign, depth, bottom = shape["count"], shape["sign"], shape["depth"], shape["bottom"]
    for step in range(count):
        fraction = step / bottom if step <= bottom else 1 - (step - bottom) / (count - bottom)
        trade = tape[at + 1 + step]
        trade["price"] = round(float(trade["price"]) * (1 + sign * depth * fraction), 2)
    return _Event("flash_crash", at, [], count, f"{sign * depth:+.2%} and back over {count} trades", _word(sign))


def _pause(stamps: np.ndarray, at: int, span_ns: int) -> int | None:
    """The first trade from ``at`` on (within ``PAUSE_SEARCH``) followed by a pause longer than ``span_ns``."""
    gaps = np.diff(stamps[at:at + PAUSE_SEARCH + 1])
    roomy = np.flatnonzero(gaps > span_ns)
    return at + int(roomy[0]) if len(roomy) else None


def _print(tape: list[dict[str, Any]], stamps: np.ndarray, at: int, offset_ns: int, price: float, size: int,
           side: str) -> dict[str, Any]:
    """A print shaped like trade ``at``, ``offset_ns`` after it (never after the next real trade)."""
    stamp = min(int(stamps[at]) + offset_ns, int(stamps[at + 1]))
    trade = dict(tape[at])
    textual = isinstance(trade["ts_event"], str)
    trade.update(ts_event=format_timestamp_ns(stamp) if textual else stamp,
                 ts_recv=format_timestamp_ns(stamp + 1_000) if textual else stamp + 1_000, action="T",
                 side=side, price=round(max(0.01, price), 2), size=size, flags=0)
    return trade


def _word(sign: int) -> str:
    return "up" if sign > 0 else "down"


def _laid_out(tape: list[dict[str, Any]], events: list[_Event], session_close: time,
              ) -> tuple[list[dict[str, Any]], list[LabelledEvent]]:
    """The tape with the inserted prints after their anchors, renumbered from the first sequence."""
    by_anchor = {event.at: event for event in events}
    out: list[dict[str, Any]] = []
    spans: list[tuple[_Event, int, int]] = []
    for position, trade in enumerate(tape):
        out.append(trade)
        event = by_anchor.get(position)
        if event is None:
            continue
        first = len(out)
        out.extend(event.inserted)
        last = len(out) - 1 if event.inserted else first + event.repriced - 1
        spans.append((event, first, last))
    base = int(tape[0]["sequence"]) if tape else 0
    for offset, trade in enumerate(out):
        trade["sequence"] = base + offset
    labels = [
        LabelledEvent(event.kind, out[first]["symbol"], int(out[first]["sequence"]), int(out[last]["sequence"]),
                      last - first + 1, as_text(out[first]["ts_event"]), event.description, event.direction,
                      _session(out[first], session_close))
        for event, first, last in spans
    ]
    return out, labels


def _session(trade: dict[str, Any], session_close: time) -> str:
    local = pd.Timestamp(timestamps_ns([trade["ts_event"]])[0], tz="UTC").tz_convert(NEW_YORK).time()
    return session_of(local, session_close)
