"""Labelled anomalies injected into a trade tape, so detection quality can be measured.

A real tape has no ground truth: nobody knows which of its trades "are" anomalies.
Injecting events of known kinds at known places gives one, and keeping the tape
valid (unique increasing sequence per symbol, ``ts_event`` in order, every field of
the trades schema) means the injected tape goes through exactly the same path as
a real one. The same code places events in the synthetic demo tape
(``connectors.synthetic``) and in the shared real tapes (``benchmarks.evaluate``).

The events are meant to be hard rather than flattering (issue 12): sizes relative
to the day, the whole regular session from one minute after the open, the
pre-market and after-hours, and some events only a few hundred trades after the
previous one. The parameter ranges are the constants below (one place, also
used by the tests and the README table). Everything is drawn from one seeded
``numpy`` generator: the same tape and settings give the same injected tape.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import time
from typing import Any

import numpy as np
import pandas as pd

from connectors.codec import format_timestamp_ns
from models.session import CLOSE, EARLY_CLOSE, NEW_YORK, OPEN

EVENT_KINDS = ("off_market", "block", "burst", "ramp", "flash_crash", "sweep")
"""off_market: one print far from the market; block: one outsized print at the market;
burst: hundreds of small two-sided prints within milliseconds; ramp: one-sided prints
walking the price; flash_crash: real trades repriced in a V, either direction; sweep:
one aggressive order taking many price levels in the same nanosecond."""

TICK = 0.01
SESSION_OPEN, SESSION_CLOSE = OPEN, CLOSE
"""The regular session in New York time (``EARLY_CLOSE``: its close before some US holidays)."""

# Parameter ranges (low, high), drawn uniformly unless said otherwise.
OFF_MARKET_AWAY = (0.003, 0.03)
"""Distance from the median of the last 10 prices, either direction."""
BLOCK_VS_P999 = (3.0, 35.0)
"""Block size over the symbol's 99.9th-percentile print size of the tape, log-uniform."""
BURST_PRINTS, BURST_SPAN_MS = (100, 500), (5.0, 50.0)
BURST_TICKS = (-1, 0, 1)
"""A burst's prices: the market and one tick either side, a band of two ticks."""
RAMP_PRINTS, RAMP_MOVE, RAMP_SECONDS = (20, 120), (0.005, 0.015), (0.1, 3.0)
FLASH_TRADES, FLASH_DEPTH, FLASH_BOTTOM = (150, 600), (0.01, 0.04), (0.3, 0.5)
"""Trades repriced, depth of the V, and where its bottom is (share of the trades)."""
SWEEP_LEVELS, SWEEP_MOVE = (5, 40), (0.002, 0.01)

SESSIONS = ("pre_market", "regular", "after_hours")


def session_of(local: time, session_close: time = SESSION_CLOSE) -> str:
    """The session a New York time of day belongs to: a label's ``session``."""
    if local < SESSION_OPEN:
        return "pre_market"
    return "regular" if local < session_close else "after_hours"


MIN_EXTENDED_SLOT = 300
"""Fewest trades per event in the pre-market or after-hours (fewer events if short)."""
MIN_PAIR_SLOT = 1_000
"""A slot holds a pair of close events only when it has at least this many trades."""


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
    direction: str | None = None
    """"up" or "down" for kinds that move the price (off_market, ramp, flash_crash, sweep)."""
    session: str = "regular"
    """"pre_market", "regular" (from the open to the close) or "after_hours"."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Placement:
    """Where events go; see ``inject_events`` for the meaning of each setting."""

    spacing_trades: int = 5_000
    warmup_trades: int = 1_500
    session_margin_minutes: float = 1.0
    pre_market_events: int = 2
    after_hours_events: int = 2
    close_pair_share: float = 0.25
    close_pair_gap: tuple[int, int] = (20, 400)
    session_close: time = SESSION_CLOSE

    def __post_init__(self) -> None:
        checks = {
            "spacing_trades": self.spacing_trades >= 100,
            "warmup_trades": self.warmup_trades >= 0,
            "session_margin_minutes": self.session_margin_minutes >= 0,
            "pre_market_events": self.pre_market_events >= 0,
            "after_hours_events": self.after_hours_events >= 0,
            "close_pair_share": 0.0 <= self.close_pair_share <= 1.0,
            "close_pair_gap": 1 <= self.close_pair_gap[0] <= self.close_pair_gap[1],
            "session_close": SESSION_OPEN < self.session_close,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"bad injection setting(s) {bad}: {self}")


@dataclass
class _Planned:
    """An event before the tape is renumbered: where it goes and what it adds."""

    kind: str
    anchor: int  # position in the symbol's original trades
    inserted: list[dict[str, Any]]
    repriced: range  # original positions whose prices were changed
    description: str
    direction: str | None = None
    session: str = "regular"

    @property
    def end(self) -> int:
        """The last original position the event occupies."""
        return self.repriced.stop - 1 if len(self.repriced) else self.anchor


def inject_events(
    trades: Sequence[dict[str, Any]],
    seed: int = 0,
    *,
    kinds: Sequence[str] = EVENT_KINDS,
    spacing_trades: int = 5_000,
    warmup_trades: int = 1_500,
    session_margin_minutes: float = 1.0,
    pre_market_events: int = 2,
    after_hours_events: int = 2,
    close_pair_share: float = 0.25,
    close_pair_gap: tuple[int, int] = (20, 400),
    session_close: time = SESSION_CLOSE,
) -> tuple[list[dict[str, Any]], list[LabelledEvent]]:
    """Return a copy of ``trades`` with labelled events added, and the labels.

    ``trades`` are in time order (several symbols may be interleaved). For each
    symbol, trades before ``warmup_trades`` get no event (the models need data
    before they can judge). The regular session (09:30 New York to
    ``session_close``, each shrunk by ``session_margin_minutes`` so events stay off
    the crosses) gets one slot per ``spacing_trades``; a slot holds one event, or
    with probability ``close_pair_share`` two: the second starting
    ``close_pair_gap`` trades (uniform) after the first one ends. The pre-market
    and the after-hours get ``pre_market_events`` and ``after_hours_events``
    single events (fewer when they have under 300 trades per event). Kinds come
    in balanced rounds, each round in a random order.
    """
    placement = Placement(
        spacing_trades, warmup_trades, session_margin_minutes, pre_market_events, after_hours_events,
        close_pair_share, tuple(close_pair_gap), session_close,
    )
    unknown = [kind for kind in kinds if kind not in _BUILDERS]
    if unknown or not kinds:
        raise ValueError(f"unknown event kinds {unknown}; known: {EVENT_KINDS}")
    rng = np.random.default_rng(seed)
    by_symbol: dict[str, list[int]] = {}
    for position, trade in enumerate(trades):
        by_symbol.setdefault(trade["symbol"], []).append(position)
    timestamps = timestamps_ns([trade["ts_event"] for trade in trades])
    rebuilt: dict[str, list[dict[str, Any]]] = {}
    events: list[LabelledEvent] = []
    for symbol in sorted(by_symbol):
        positions = by_symbol[symbol]
        symbol_trades = [dict(trades[p]) for p in positions]
        stamps = timestamps[positions]
        plans = _plan(symbol_trades, stamps, rng, kinds, placement)
        rebuilt[symbol], symbol_events = _rebuild(symbol_trades, stamps, plans)
        events.extend(symbol_events)
    if len(rebuilt) == 1:
        return next(iter(rebuilt.values())), events
    return _merge_in_time_order(rebuilt), sorted(events, key=lambda e: (e.ts_event, e.symbol))


def timestamps_ns(values: Sequence[Any]) -> np.ndarray:
    """ISO-8601 strings or integer nanoseconds, as int64 nanoseconds since the epoch."""
    if len(values) and isinstance(values[0], (int, np.integer)):
        return np.asarray(values, dtype=np.int64)
    return pd.to_datetime(pd.Series(values), utc=True, format="ISO8601").astype("int64").to_numpy()


def _local_minutes(stamps: np.ndarray) -> np.ndarray:
    """Minutes (with fractions) since midnight, New York time."""
    local = pd.to_datetime(stamps, utc=True).tz_convert(NEW_YORK)
    return np.asarray(local.hour * 60 + local.minute + local.second / 60 + local.microsecond / 6e7)


def _minutes(at: time) -> float:
    return at.hour * 60 + at.minute + at.second / 60


@dataclass(frozen=True)
class _Segment:
    """A run of eligible positions [low, high) of one session and how many slots it gets."""

    session: str
    low: int
    high: int
    slots: int


def _segments(stamps: np.ndarray, placement: Placement) -> list[_Segment]:
    minute = _local_minutes(stamps)
    margin = placement.session_margin_minutes
    open_, close = _minutes(SESSION_OPEN), _minutes(placement.session_close)
    masks = {
        "pre_market": minute < open_ - margin,
        "regular": (minute >= open_ + margin) & (minute < close - margin),
        "after_hours": minute >= close + margin,
    }
    segments = []
    for session in SESSIONS:
        inside = np.flatnonzero(masks[session])
        inside = inside[inside >= placement.warmup_trades]
        if not len(inside):
            continue
        # The longest contiguous run (a session is contiguous in a one-day tape).
        breaks = np.flatnonzero(np.diff(inside) > 1)
        starts, ends = np.concatenate([[0], breaks + 1]), np.concatenate([breaks, [len(inside) - 1]])
        longest = int(np.argmax(ends - starts))
        low, high = int(inside[starts[longest]]), int(inside[ends[longest]]) + 1
        if session == "regular":
            slots = (high - low) // placement.spacing_trades
        else:
            wanted = placement.pre_market_events if session == "pre_market" else placement.after_hours_events
            slots = min(wanted, (high - low) // MIN_EXTENDED_SLOT)
        if slots:
            segments.append(_Segment(session, low, high, slots))
    return segments


def _plan(
    trades: list[dict[str, Any]], stamps: np.ndarray, rng: np.random.Generator, kinds: Sequence[str],
    placement: Placement,
) -> list[_Planned]:
    segments = _segments(stamps, placement)
    layout = []  # (segment, slot index, paired)
    for segment in segments:
        slot = (segment.high - segment.low) / segment.slots
        for index in range(segment.slots):
            paired = (
                segment.session == "regular" and slot >= MIN_PAIR_SLOT and bool(rng.random() < placement.close_pair_share)
            )
            layout.append((segment, index, paired))
    total = sum(2 if paired else 1 for _, _, paired in layout)
    # Whole rounds of every kind, each round in a random order: kinds stay balanced
    # and a short tape still gets a random choice of them.
    order: list[str] = []
    while len(order) < total:
        order.extend(str(kind) for kind in rng.permutation(list(kinds)))
    kinds_left = iter(order[:total])
    sizes = np.array([float(t["size"]) for t in trades])
    p999 = float(np.quantile(sizes, 0.999)) if len(sizes) else 100.0
    plans: list[_Planned] = []
    for segment, index, paired in layout:
        plans += _place_slot(trades, stamps, rng, segment, index, paired, kinds_left, p999, placement)
    return _without_conflicts(plans)


def _place_slot(
    trades: list[dict[str, Any]], stamps: np.ndarray, rng: np.random.Generator, segment: _Segment,
    index: int, paired: bool, kinds_left: Any, p999: float, placement: Placement,
) -> list[_Planned]:
    """One event in the slot (its anchor in the first 40%), or two close ones.

    The fractions keep every event, and the 100 trades scored after it, inside its
    slot whatever the builders do (moving the anchor to a pause moves it by at most
    half of ``max_length``).
    """
    slot = (segment.high - segment.low) / segment.slots
    start = segment.low + int(index * slot)
    slot_end = min(segment.high, segment.low + int((index + 1) * slot))

    def build(kind: str, anchor: int, max_length: int) -> _Planned:
        context = _Context(trades, stamps, anchor, rng, max(1, max_length), slot_end, p999)
        plan = _BUILDERS[kind](context)
        plan.session = segment.session
        return plan

    if not paired:
        anchor = start + int(rng.integers(int(0.02 * slot), max(int(0.02 * slot) + 1, int(0.4 * slot))))
        return [build(next(kinds_left), anchor, int(0.3 * slot))]
    anchor = start + int(rng.integers(int(0.02 * slot), int(0.25 * slot)))
    first = build(next(kinds_left), anchor, int(0.15 * slot))
    low_gap, high_gap = placement.close_pair_gap
    gap = int(rng.integers(low_gap, min(high_gap, max(low_gap, int(0.08 * slot))) + 1))
    second = build(next(kinds_left), first.end + gap, int(0.15 * slot))
    return [first, second]


def _without_conflicts(plans: list[_Planned]) -> list[_Planned]:
    """Plans in tape order, dropping any that would land on another's trades (tiny tapes only)."""
    kept: list[_Planned] = []
    for plan in sorted(plans, key=lambda p: p.anchor):
        if kept and plan.anchor <= kept[-1].end:
            continue
        kept.append(plan)
    return kept


@dataclass
class _Context:
    """What an event builder needs to know about the market around its anchor."""

    trades: list[dict[str, Any]]
    stamps: np.ndarray
    anchor: int
    rng: np.random.Generator
    max_length: int
    limit: int  # first position the event must not reach (the end of its slot)
    p999_size: float

    @property
    def market_price(self) -> float:
        recent = [float(t["price"]) for t in self.trades[max(0, self.anchor - 9): self.anchor + 1]]
        return float(np.median(recent))

    def typical_size(self) -> int:
        recent = self.trades[max(0, self.anchor - 100): self.anchor + 1]
        return int(recent[int(self.rng.integers(len(recent)))]["size"])

    def direction(self) -> int:
        return 1 if self.rng.random() < 0.5 else -1

    def move_to_gap(self, span_ns: int) -> int:
        """Move the anchor to the first trade followed by a pause longer than ``span_ns``.

        Events that take time (a burst, a ramp) need room before the next real trade,
        or their timestamps would be squeezed onto it. Pauses of a second are common,
        so this usually moves the anchor by a few dozen trades; in a busy spell without
        such a pause the anchor goes to the longest one and the span shrinks to fit.
        Returns the span to use.
        """
        limit = min(self.anchor + self.max_length // 2, len(self.stamps) - 1, self.limit - 1)
        gaps = np.diff(self.stamps[self.anchor: limit + 1])
        if not len(gaps):
            return span_ns
        roomy = np.flatnonzero(gaps > span_ns)
        step = int(roomy[0]) if len(roomy) else int(np.argmax(gaps))
        self.anchor += step
        return max(1, min(span_ns, int(0.9 * gaps[step])))

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
            action="T", side=side, price=float(round(max(TICK, price), 2)), size=int(size), flags=flags,
        )
        return trade


def _word(direction: int) -> str:
    return "up" if direction > 0 else "down"


def _off_market(c: _Context) -> _Planned:
    direction = c.direction()
    away = float(c.rng.uniform(*OFF_MARKET_AWAY))
    side = str(c.rng.choice(["A", "B", "N"]))
    trade = c.new_trade(c.market_price * (1 + direction * away), c.typical_size(), side, 130, 1_000)
    return _Planned("off_market", c.anchor, [trade], range(0), f"{direction * away:+.2%} from the market",
                    _word(direction))


def _block(c: _Context) -> _Planned:
    low, high = BLOCK_VS_P999
    multiple = float(np.exp(c.rng.uniform(np.log(low), np.log(high))))
    size = max(100, int(multiple * c.p999_size))
    if c.rng.random() < 0.5:
        size = max(100, round(size, -2))  # half of them in round lots
    side = str(c.rng.choice(["A", "B", "N"]))
    trade = c.new_trade(c.market_price, size, side, 130, 1_000)
    return _Planned("block", c.anchor, [trade], range(0),
                    f"{size:,} shares ({multiple:.1f}x the day's 99.9th percentile) at the market, side {side}")


def _burst(c: _Context) -> _Planned:
    count = int(c.rng.integers(BURST_PRINTS[0], BURST_PRINTS[1] + 1))
    span_ns = c.move_to_gap(int(c.rng.uniform(*BURST_SPAN_MS) * 1e6))
    offsets = np.sort(c.rng.integers(1, max(2, span_ns), count))
    market = round(c.market_price, 2)
    inserted = [
        c.new_trade(
            market + TICK * int(c.rng.choice(BURST_TICKS)), max(1, int(c.rng.lognormal(3.0, 0.8))),
            str(c.rng.choice(["A", "B", "N"], p=[0.45, 0.45, 0.10])), 130, int(offset),
        )
        for offset in offsets
    ]
    return _Planned("burst", c.anchor, inserted, range(0), f"{count} prints in {span_ns / 1e6:.1f} ms")


def _ramp(c: _Context) -> _Planned:
    count = int(c.rng.integers(RAMP_PRINTS[0], RAMP_PRINTS[1] + 1))
    direction = c.direction()
    move = float(c.rng.uniform(*RAMP_MOVE))
    duration_ns = c.move_to_gap(int(c.rng.uniform(*RAMP_SECONDS) * 1e9))
    market = c.market_price
    offsets = np.sort(c.rng.integers(1, max(2, duration_ns), count))
    side = "B" if direction > 0 else "A"
    inserted = [
        c.new_trade(
            market * (1 + direction * move * (step + 1) / count), max(1, int(c.rng.lognormal(4.5, 0.8))),
            side, 130, int(offset),
        )
        for step, offset in enumerate(offsets)
    ]
    word = "buys walking up" if direction > 0 else "sells walking down"
    return _Planned("ramp", c.anchor, inserted, range(0), f"{count} {word} {move:.2%} in {duration_ns / 1e9:.2f} s",
                    _word(direction))


def _flash_crash(c: _Context) -> _Planned:
    direction = -c.direction()  # drawn the same way; "crash" is down, its mirror up
    wanted = int(c.rng.integers(FLASH_TRADES[0], FLASH_TRADES[1] + 1))
    length = max(2, min(wanted, c.max_length, c.limit - c.anchor - 1))
    depth = float(c.rng.uniform(*FLASH_DEPTH))
    bottom = max(1, int(length * c.rng.uniform(*FLASH_BOTTOM)))
    repriced = range(c.anchor + 1, min(c.anchor + 1 + length, len(c.trades)))
    rushing = "A" if direction < 0 else "B"
    for step, position in enumerate(repriced):
        shape = step / bottom if step <= bottom else max(0.0, 1 - (step - bottom) / (length - bottom))
        trade = c.trades[position]
        trade["price"] = round(max(TICK, float(trade["price"]) * (1 + direction * depth * shape)), 2)
        if step < bottom and c.rng.random() < 0.8:
            trade["side"] = rushing  # the way down is mostly sellers hitting bids, up buyers lifting offers
    return _Planned("flash_crash", c.anchor, [], repriced,
                    f"{depth:.2%} {_word(direction)} and back over {len(repriced)} trades", _word(direction))


def _sweep(c: _Context) -> _Planned:
    levels = int(c.rng.integers(SWEEP_LEVELS[0], SWEEP_LEVELS[1] + 1))
    move = float(c.rng.uniform(*SWEEP_MOVE))
    direction = c.direction()
    side = "B" if direction > 0 else "A"
    market = c.market_price
    inserted = [
        c.new_trade(
            market * (1 + direction * move * (level + 1) / levels),
            int(c.rng.integers(1, 20)) * 100, side, 128 if level == levels - 1 else 0, 1_000,
        )
        for level in range(levels)
    ]
    return _Planned("sweep", c.anchor, inserted, range(0), f"{levels} levels {direction * move:+.2%} in one instant",
                    _word(direction))


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
            last - first + 1, as_text(out[first]["ts_event"]), plan.description, plan.direction, plan.session,
        ))
    return out, events


def as_text(ts: Any) -> str:
    return ts if isinstance(ts, str) else format_timestamp_ns(int(ts))


def _merge_in_time_order(by_symbol: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Interleave per-symbol tapes by ``ts_event``; ties keep symbol order (a stable sort)."""
    tapes = [by_symbol[symbol] for symbol in sorted(by_symbol)]
    stamps = np.concatenate([timestamps_ns([t["ts_event"] for t in tape]) for tape in tapes])
    flat = [trade for tape in tapes for trade in tape]
    return [flat[i] for i in np.argsort(stamps, kind="stable")]


def cut_to_early_close(trades: Sequence[dict[str, Any]], close_at: time = EARLY_CLOSE) -> list[dict[str, Any]]:
    """A real day made into an early-close day (the session before some US holidays).

    Per symbol and New York date, exactly this:

    1. every trade before ``close_at`` (13:00 New York) is kept as it is (the
       pre-market and the morning);
    2. the regular session from ``close_at`` to 16:00 is dropped;
    3. everything from 16:00 on (the closing cross and the after-hours) is moved
       earlier by 16:00 - ``close_at`` (3 hours: to 13:00-17:00, the early-close
       day's extended session), ``ts_recv`` with ``ts_event``, sequences kept;
       its prices are shifted by one amount so that the closing cross prints at
       the last price before ``close_at`` (rounded to the tick, at least one
       tick), and the after-hours continues from there. The closing cross is the
       largest side-N print in the first 10 s after 16:00; its size is kept. With
       no such print, the prices are shifted to start at that last price.

    The result is a valid tape: times in order, sequences unique and increasing.
    """
    if not trades:
        return []
    stamps = timestamps_ns([trade["ts_event"] for trade in trades])
    local = pd.to_datetime(stamps, utc=True).tz_convert(NEW_YORK)
    midnight = local.normalize()
    cut_ns = np.asarray((midnight + pd.Timedelta(hours=close_at.hour, minutes=close_at.minute)).astype("int64"))
    close_ns = np.asarray((midnight + pd.Timedelta(hours=SESSION_CLOSE.hour)).astype("int64"))
    symbols = np.array([trade["symbol"] for trade in trades])
    dates = np.asarray(midnight.astype("int64"))
    keep = stamps < cut_ns
    moved = stamps >= close_ns
    out: list[dict[str, Any]] = []
    price_shift = _closing_shifts(trades, stamps, close_ns, symbols, dates, keep, moved)
    later = np.flatnonzero(moved)
    received = dict(zip(later.tolist(), timestamps_ns([trades[p]["ts_recv"] for p in later]).tolist()))
    for position, trade in enumerate(trades):
        if keep[position]:
            out.append(dict(trade))
        elif moved[position]:
            shift_ns = int(close_ns[position] - cut_ns[position])
            offset = price_shift.get((symbols[position], int(dates[position])), 0.0)
            out.append(_moved(trade, int(stamps[position]), received[position], shift_ns, offset))
    return out


def _closing_shifts(
    trades: Sequence[dict[str, Any]], stamps: np.ndarray, close_ns: np.ndarray, symbols: np.ndarray,
    dates: np.ndarray, keep: np.ndarray, moved: np.ndarray,
) -> dict[tuple[str, int], float]:
    """Per (symbol, date): the price shift that puts the closing cross at the last kept price."""
    shifts: dict[tuple[str, int], float] = {}
    for key in {(str(s), int(d)) for s, d in zip(symbols[moved], dates[moved])}:
        mine = (symbols == key[0]) & (dates == key[1])
        kept, later = np.flatnonzero(mine & keep), np.flatnonzero(mine & moved)
        if not len(kept):
            continue
        last_price = float(trades[int(kept[-1])]["price"])
        cross = [
            int(p) for p in later
            if trades[int(p)]["side"] == "N" and stamps[p] < close_ns[p] + 10_000_000_000
        ]
        reference = max(cross, key=lambda p: int(trades[p]["size"])) if cross else int(later[0])
        shifts[key] = last_price - float(trades[reference]["price"])
    return shifts


def _moved(trade: dict[str, Any], event_ns: int, receive_ns: int, shift_ns: int, price_offset: float) -> dict[str, Any]:
    moved = dict(trade)
    for name, value in (("ts_event", event_ns), ("ts_recv", receive_ns)):
        moved[name] = format_timestamp_ns(value - shift_ns) if isinstance(trade[name], str) else value - shift_ns
    moved["price"] = float(round(max(TICK, float(trade["price"]) + price_offset), 2))
    return moved
