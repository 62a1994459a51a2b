"""Labelled anomalies injected into a trade tape, so detection quality can be measured.

A real tape has no ground truth: nobody knows which of its trades "are" anomalies.
Injecting events of known kinds at known places gives one, and keeping the tape
valid (unique increasing sequence per symbol, ``ts_event`` in order, every field of
the trades schema) means the injected tape goes through exactly the same path as
a real one. The same code places events in the synthetic demo tape
(``connectors.synthetic``) and in the shared real tapes (``benchmarks.evaluate``).

Events are placed one per slot of equal length across each symbol's regular
session, away from the opening and closing crosses and after a warm-up, so they
are spaced well apart and never overlap. Everything is drawn from one seeded
``numpy`` generator: the same tape and seed give the same injected tape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import time
from typing import Any

import numpy as np
import pandas as pd

from connectors.codec import format_timestamp_ns

EVENT_KINDS = ("off_market", "block", "burst", "ramp", "flash_crash", "sweep")
"""off_market: one print 0.5-2% away from the market; block: 20,000-90,000 shares at
the market; burst: 200-500 small prints within a few milliseconds; ramp: 30-80
buyer-initiated prints within a second walking the price up about 1%, then back to the market;
flash_crash: 200-500 real trades repriced 1.5-3% down and back in a V; sweep: one
aggressive order taking 10-30 price levels in the same nanosecond (0.3-0.6%)."""

TICK = 0.01
SESSION_OPEN, SESSION_CLOSE = time(9, 30), time(16, 0)
NEW_YORK = "America/New_York"


@dataclass(frozen=True)
class LabelledEvent:
    """One injected event: its kind and the contiguous run of its symbol's trades."""

    kind: str
    symbol: str
    first_sequence: int
    last_sequence: int
    trade_count: int
    ts_event: str
    description: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Planned:
    """An event before the tape is renumbered: where it goes and what it adds."""

    kind: str
    anchor: int  # position in the symbol's original trades
    inserted: list[dict[str, Any]]
    repriced: range  # original positions whose prices were changed
    description: str


def inject_events(
    trades: Sequence[dict[str, Any]],
    seed: int = 0,
    *,
    kinds: Sequence[str] = EVENT_KINDS,
    spacing_trades: int = 5_000,
    warmup_trades: int = 1_500,
    session_margin_minutes: int = 10,
) -> tuple[list[dict[str, Any]], list[LabelledEvent]]:
    """Return a copy of ``trades`` with labelled events added, and the labels.

    ``trades`` are in time order (several symbols may be interleaved). Each symbol
    gets one event per ``spacing_trades`` of its eligible trades: those after the
    first ``warmup_trades`` (the models need data before they can judge) and at
    least ``session_margin_minutes`` inside the 09:30-16:00 New York session.
    """
    unknown = [kind for kind in kinds if kind not in _BUILDERS]
    if unknown or not kinds:
        raise ValueError(f"unknown event kinds {unknown}; known: {EVENT_KINDS}")
    rng = np.random.default_rng(seed)
    by_symbol: dict[str, list[int]] = {}
    for position, trade in enumerate(trades):
        by_symbol.setdefault(trade["symbol"], []).append(position)
    timestamps = _timestamps_ns([trade["ts_event"] for trade in trades])
    rebuilt: dict[str, list[dict[str, Any]]] = {}
    events: list[LabelledEvent] = []
    for symbol in sorted(by_symbol):
        positions = by_symbol[symbol]
        symbol_trades = [dict(trades[p]) for p in positions]
        stamps = timestamps[positions]
        plans = _plan(symbol_trades, stamps, rng, kinds, spacing_trades, warmup_trades, session_margin_minutes)
        rebuilt[symbol], symbol_events = _rebuild(symbol_trades, stamps, plans)
        events.extend(symbol_events)
    if len(rebuilt) == 1:
        return next(iter(rebuilt.values())), events
    return _merge_in_time_order(rebuilt), sorted(events, key=lambda e: (e.ts_event, e.symbol))


def _timestamps_ns(values: Sequence[Any]) -> np.ndarray:
    """ISO-8601 strings or integer nanoseconds, as int64 nanoseconds since the epoch."""
    if values and isinstance(values[0], (int, np.integer)):
        return np.asarray(values, dtype=np.int64)
    return pd.to_datetime(pd.Series(values), utc=True, format="ISO8601").astype("int64").to_numpy()


def _eligible_range(stamps: np.ndarray, warmup: int, margin_minutes: int) -> tuple[int, int]:
    local = pd.to_datetime(stamps, utc=True).tz_convert(NEW_YORK)
    minute = local.hour * 60 + local.minute
    start = SESSION_OPEN.hour * 60 + SESSION_OPEN.minute + margin_minutes
    end = SESSION_CLOSE.hour * 60 + SESSION_CLOSE.minute - margin_minutes
    inside = np.flatnonzero((minute >= start) & (minute < end))
    inside = inside[inside >= warmup]
    if len(inside) == 0:
        return 0, 0
    return int(inside[0]), int(inside[-1]) + 1


def _plan(
    trades: list[dict[str, Any]], stamps: np.ndarray, rng: np.random.Generator, kinds: Sequence[str],
    spacing: int, warmup: int, margin_minutes: int,
) -> list[_Planned]:
    low, high = _eligible_range(stamps, warmup, margin_minutes)
    count = (high - low) // spacing
    if count == 0:
        return []
    # Whole rounds of every kind, each round in a random order: kinds stay balanced
    # and a short tape still gets a random choice of them.
    order: list[str] = []
    while len(order) < count:
        order.extend(str(kind) for kind in rng.permutation(list(kinds)))
    order = order[:count]
    slot = (high - low) / count
    plans = []
    for index, kind in enumerate(order):
        # The anchor sits in the first half of its slot, leaving room for the
        # event's own trades and the 100 scoring trades after it.
        start = low + int(index * slot)
        anchor = start + int(rng.integers(int(0.1 * slot), int(0.5 * slot)))
        context = _Context(trades, stamps, anchor, rng, max_length=int(0.4 * slot))
        plans.append(_BUILDERS[kind](context))
    return plans


@dataclass
class _Context:
    """What an event builder needs to know about the market around its anchor."""

    trades: list[dict[str, Any]]
    stamps: np.ndarray
    anchor: int
    rng: np.random.Generator
    max_length: int

    @property
    def market_price(self) -> float:
        recent = [float(t["price"]) for t in self.trades[max(0, self.anchor - 9): self.anchor + 1]]
        return float(np.median(recent))

    def typical_size(self) -> int:
        recent = self.trades[max(0, self.anchor - 100): self.anchor + 1]
        return int(recent[int(self.rng.integers(len(recent)))]["size"])

    def move_to_gap(self, span_ns: int) -> int:
        """Move the anchor to the first trade followed by a pause longer than ``span_ns``.

        Events that take time (a burst, a ramp) need room before the next real trade,
        or their timestamps would be squeezed onto it. Pauses of a second are common,
        so this usually moves the anchor by a few dozen trades; in a busy spell without
        such a pause the anchor goes to the longest one and the span shrinks to fit.
        Returns the span to use.
        """
        limit = min(self.anchor + self.max_length // 2, len(self.stamps) - 1)
        gaps = np.diff(self.stamps[self.anchor: limit + 1])
        if not len(gaps):
            return span_ns
        roomy = np.flatnonzero(gaps > span_ns)
        step = int(roomy[0]) if len(roomy) else int(np.argmax(gaps))
        self.anchor += step
        return min(span_ns, int(0.9 * gaps[step]))

    def new_trade(self, price: float, size: int, side: str, flags: int, offset_ns: int) -> dict[str, Any]:
        """A trade shaped like the anchor, ``offset_ns`` after it but never after the next one."""
        anchor = self.trades[self.anchor]
        anchor_ns = int(self.stamps[self.anchor])
        next_ns = int(self.stamps[self.anchor + 1]) if self.anchor + 1 < len(self.stamps) else anchor_ns + offset_ns
        event_ns = min(anchor_ns + offset_ns, next_ns)
        receive_ns = event_ns + int(anchor.get("ts_in_delta", 0))
        as_text = isinstance(anchor["ts_event"], str)
        trade = dict(anchor)
        trade.update(
            ts_event=format_timestamp_ns(event_ns) if as_text else event_ns,
            ts_recv=format_timestamp_ns(receive_ns) if as_text else receive_ns,
            action="T", side=side, price=float(round(price, 2)), size=int(size), flags=flags,
        )
        return trade


def _off_market(c: _Context) -> _Planned:
    away = float(c.rng.uniform(0.005, 0.02)) * (1 if c.rng.random() < 0.5 else -1)
    price = max(TICK, c.market_price * (1 + away))
    side = str(c.rng.choice(["A", "B", "N"]))
    trade = c.new_trade(price, c.typical_size(), side, 130, 1_000)
    return _Planned("off_market", c.anchor, [trade], range(0), f"{away:+.2%} from the market")


def _block(c: _Context) -> _Planned:
    size = int(c.rng.integers(200, 900)) * 100
    side = str(c.rng.choice(["A", "B", "N"]))
    trade = c.new_trade(c.market_price, size, side, 130, 1_000)
    return _Planned("block", c.anchor, [trade], range(0), f"{size:,} shares at the market")


def _burst(c: _Context) -> _Planned:
    count = int(c.rng.integers(200, 501))
    span_ns = c.move_to_gap(int(c.rng.uniform(2e6, 20e6)))
    offsets = np.sort(c.rng.integers(1, span_ns, count))
    market = c.market_price
    inserted = [
        c.new_trade(
            market + TICK * int(c.rng.integers(-1, 2)), max(1, int(c.rng.lognormal(3.0, 0.8))),
            str(c.rng.choice(["A", "B", "N"], p=[0.45, 0.45, 0.10])), 130, int(offset),
        )
        for offset in offsets
    ]
    return _Planned("burst", c.anchor, inserted, range(0), f"{count} prints in {span_ns / 1e6:.1f} ms")


def _ramp(c: _Context) -> _Planned:
    count = int(c.rng.integers(30, 81))
    rise = float(c.rng.uniform(0.008, 0.012))
    duration_ns = c.move_to_gap(int(c.rng.uniform(0.1e9, 1e9)))
    market = c.market_price
    offsets = np.sort(c.rng.integers(1, duration_ns, count))
    inserted = [
        c.new_trade(
            market * (1 + rise * (step + 1) / count), max(1, int(c.rng.lognormal(4.5, 0.8))),
            "B", 130, int(offset),
        )
        for step, offset in enumerate(offsets)
    ]
    return _Planned("ramp", c.anchor, inserted, range(0), f"{count} buys walking up {rise:.2%}")


def _flash_crash(c: _Context) -> _Planned:
    length = min(int(c.rng.integers(200, 501)), c.max_length)
    depth = float(c.rng.uniform(0.015, 0.03))
    bottom = max(1, int(length * c.rng.uniform(0.3, 0.5)))
    repriced = range(c.anchor + 1, min(c.anchor + 1 + length, len(c.trades)))
    for step, position in enumerate(repriced):
        shape = step / bottom if step <= bottom else max(0.0, 1 - (step - bottom) / (length - bottom))
        trade = c.trades[position]
        trade["price"] = round(max(TICK, float(trade["price"]) * (1 - depth * shape)), 2)
        if step < bottom and c.rng.random() < 0.8:
            trade["side"] = "A"  # the way down is mostly sellers hitting bids
    return _Planned("flash_crash", c.anchor, [], repriced, f"{depth:.2%} down and back over {len(repriced)} trades")


def _sweep(c: _Context) -> _Planned:
    levels = int(c.rng.integers(10, 31))
    move = float(c.rng.uniform(0.003, 0.006))
    direction = 1 if c.rng.random() < 0.5 else -1
    side = "B" if direction > 0 else "A"
    market = c.market_price
    inserted = [
        c.new_trade(
            market * (1 + direction * move * (level + 1) / levels),
            int(c.rng.integers(1, 20)) * 100, side, 128 if level == levels - 1 else 0, 1_000,
        )
        for level in range(levels)
    ]
    return _Planned("sweep", c.anchor, inserted, range(0), f"{levels} levels {direction * move:+.2%} in one instant")


_BUILDERS: dict[str, Callable[[_Context], _Planned]] = {
    "off_market": _off_market, "block": _block, "burst": _burst,
    "ramp": _ramp, "flash_crash": _flash_crash, "sweep": _sweep,
}


def _rebuild(
    trades: list[dict[str, Any]], stamps: np.ndarray, plans: list[_Planned]
) -> tuple[list[dict[str, Any]], list[LabelledEvent]]:
    """Lay out the symbol's trades with the inserted ones, renumbering sequences.

    Every trade after an insertion point has its sequence shifted by the number of
    trades inserted before it, so sequences stay unique and increasing.
    """
    inserts = {plan.anchor: plan.inserted for plan in plans if plan.inserted}
    out: list[dict[str, Any]] = []
    shift = 0
    new_position = np.empty(len(trades), dtype=np.int64)
    inserted_at: dict[int, int] = {}
    for position, trade in enumerate(trades):
        trade["sequence"] = int(trade["sequence"]) + shift
        new_position[position] = len(out)
        out.append(trade)
        for extra in inserts.get(position, ()):
            shift += 1
            extra["sequence"] = trade["sequence"] + len(out) - int(new_position[position])
            out.append(extra)
        if position in inserts:
            inserted_at[position] = int(new_position[position]) + 1
    events = []
    for plan in plans:
        if plan.inserted:
            first = inserted_at[plan.anchor]
            last = first + len(plan.inserted) - 1
        else:
            first, last = int(new_position[plan.repriced.start]), int(new_position[plan.repriced.stop - 1])
        events.append(LabelledEvent(
            plan.kind, out[first]["symbol"], int(out[first]["sequence"]), int(out[last]["sequence"]),
            last - first + 1, _as_text(out[first]["ts_event"]), plan.description,
        ))
    return out, events


def _as_text(ts: Any) -> str:
    return ts if isinstance(ts, str) else format_timestamp_ns(int(ts))


def _merge_in_time_order(by_symbol: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Interleave per-symbol tapes by ``ts_event``; ties keep symbol order (a stable sort)."""
    tapes = [by_symbol[symbol] for symbol in sorted(by_symbol)]
    stamps = np.concatenate([_timestamps_ns([t["ts_event"] for t in tape]) for tape in tapes])
    flat = [trade for tape in tapes for trade in tape]
    return [flat[i] for i in np.argsort(stamps, kind="stable")]
