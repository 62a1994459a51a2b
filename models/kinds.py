"""What kind of market event an incident is, decided from its trades and the trades before it.

An analyst reads "block" or "flash crash" faster than a list of detector scores, and the
kind decides which numbers the one-line summary shows. The kind is decided from the shape
of the price path around the incident, not from which detector fired: the same z-score
fires on a ramp and on a flash crash, but only a flash crash walks back.

``measure`` reduces the trades to a few plain-unit numbers (``KindEvidence``);
``decide_kind`` applies the rules of the table *Kinds of incident* in docs/INCIDENTS.md to them, first
match wins:

1. ``auction``: a member anomaly is an opening or closing cross print.
2. a price kind, when the largest excursion from the reference price is at least
   ``KindRules.price_move_bps`` (times the square root of the walk's length in hundreds of
   trades, beyond 100: a slow drift is no ramp):
   ``off_market_print`` when at most ``off_market_prints`` prints are that far out and the
   price jumped there (no walk through the levels in between);
   ``flash_crash`` when the price also walked back through the levels in between
   (``reversal_prints``, none retracing ``reversal_step`` or more at once) and at least
   ``reversal_recovered`` of the move is retraced;
   ``ramp`` otherwise (a one-sided walk, or a sweep of many levels in one instant).
3. ``burst``: ``burst_stamps`` distinct timestamps within ``burst_window_ms``.
4. ``block``: the largest print is ``block_size_ratio`` times the median size before the
   incident, at the market: within ``block_price_bps`` of the reference price or of the
   trades just before it (``LOCAL_MARKET_TRADES``; on a moving market the reference is
   minutes old).
5. ``other``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KINDS = ("off_market_print", "block", "burst", "ramp", "flash_crash", "auction", "other")

KIND_FAMILIES = {"off_market_print": "price", "ramp": "price", "flash_crash": "price", "burst": "burst",
                 "block": "block"}
"""Kinds one market event can turn into as it unfolds share a family (a fall is a ``ramp``
until it walks back into a ``flash_crash``); an event of another family is another event.
``auction`` and ``other`` have none."""

SIDE_SELL, SIDE_BUY = 1, 2  # models.features.SIDE_CODES: N 0, A 1, B 2


@dataclass(frozen=True)
class KindRules:
    """The thresholds of ``decide_kind`` (docs/INCIDENTS.md, table *Kind rules*)."""

    price_move_bps: float = 20.0
    """Smallest excursion from the reference price that makes a price kind. NVDA's
    natural 100-trade momentum reaches 14-16 bp at its 99.9th percentile."""
    off_market_prints: int = 2
    """Most prints at least half the excursion away for an off-market print."""
    jump_prints: int = 1
    """Most prints between 20% and 80% of the excursion on the way out for a jump."""
    reversal_prints: int = 8
    """Prints between 20% and 80% of the excursion on the way back that make a reversal."""
    reversal_step: float = 0.5
    """A reversal walks back: no print may retrace this share of the excursion at once."""
    reversal_recovered: float = 0.5
    """Share of the excursion the last trade must have retraced for a flash crash."""
    block_size_ratio: float = 100.0
    """Largest print against the median size of the context, for a block."""
    block_price_bps: float = 20.0
    """A block prints within this many bp of the reference price (at the market)."""
    burst_stamps: int = 100
    """Distinct timestamps within ``burst_window_ms`` that make a burst."""
    burst_window_ms: float = 20.0

    def __post_init__(self) -> None:
        for name in ("price_move_bps", "block_size_ratio", "block_price_bps", "burst_window_ms"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        for name in ("reversal_recovered", "reversal_step"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1]")
        for name in ("off_market_prints", "jump_prints", "reversal_prints", "burst_stamps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")


@dataclass(frozen=True)
class KindEvidence:
    """The incident in plain units: what the kind, the severity and the summary are made of."""

    reference_price: float
    """The market before the incident: median price of the older half of the context."""
    move_bps: float
    """Largest excursion from the reference price among the newer half of the context and the
    incident's trades (a crash is often flagged a few dozen trades into its fall), signed."""
    extreme_price: float
    extreme_size: float
    away_prints: int
    """Prints at least half the excursion out, on its side, among the same trades as ``move_bps``."""
    walk_prints: int
    """Prints between 20% and 80% of the excursion on the way out: from the last print
    within 20% of the reference (context included) to the extreme."""
    return_prints: int
    """Prints between 20% and 80% of the excursion after the extreme."""
    return_step: float
    """Largest share of the excursion retraced by one print after the extreme: near 1 when
    the price jumped back (an off-market print, the market resuming after a ramp), small
    when it walked back (a flash crash)."""
    recovered: float | None
    """Share of the excursion the last trade seen has retraced, in [0, 1]; None without a move."""
    walk_trades: int
    """Trades from the last print within 20% of the reference to the extreme."""
    walk_seconds: float
    """Event time from the last print near the reference to the extreme."""
    walk_side_share: float
    """Share of the walk's prints whose aggressor pushed the price its way (buyers up)."""
    max_size: float
    max_size_price: float
    median_size: float
    """Median size of the context (at least 1 share)."""
    burst_stamps: int
    """Most distinct timestamps within the burst window (context included)."""
    burst_prints: int
    burst_ms: float
    """Prints of that densest window and the time they span."""
    burst_buy_share: float
    burst_sell_share: float
    has_auction: bool = False
    price_before_max_size: float | None = None
    """Median price of the ``LOCAL_MARKET_TRADES`` trades before the largest print (the
    market it printed into); None when it is the first trade."""

    @property
    def size_vs_median(self) -> float:
        return self.max_size / self.median_size

    @property
    def max_size_offset_bps(self) -> float:
        return 1e4 * (self.max_size_price / self.reference_price - 1.0)

    @property
    def max_size_local_offset_bps(self) -> float:
        """The largest print against the trades just before it (against the reference when it has none)."""
        if self.price_before_max_size is None:
            return self.max_size_offset_bps
        return 1e4 * (self.max_size_price / self.price_before_max_size - 1.0)


LOCAL_MARKET_TRADES = 10
"""Trades before the largest print whose median price is the market it printed into."""


def measure(
    prices: np.ndarray, sizes: np.ndarray, timestamps_ns: np.ndarray, sides: np.ndarray,
    incident_start: int, rules: KindRules = KindRules(), has_auction: bool = False,
    baseline: tuple[float, float] | None = None,
) -> KindEvidence:
    """Reduce context + incident trades (columns, oldest first) to the evidence.

    ``incident_start`` is the row of the incident's first anomaly; the rows before it
    are the context. The reference price is the median of the older half of the
    context: a flash crash is often flagged a few dozen trades into its fall, and
    those trades must not move the reference. ``baseline`` is (reference price, median
    size) when the caller has already computed them from the same context (``context_baseline``).
    """
    count = len(prices)
    start = min(max(incident_start, 0), count - 1)
    recent = start // 2  # the newer half of the context: inside the windows that were flagged
    reference, median_size = baseline or context_baseline(
        prices[:start], sizes[:start], float(prices[start]), float(sizes[start]))
    relative = 1e4 * (prices / reference - 1.0)
    extreme = recent + int(np.argmax(np.abs(relative[recent:])))
    move = float(relative[extreme])
    sign = 1.0 if move >= 0 else -1.0
    signed = sign * relative
    size = abs(move)
    between = (signed > 0.2 * size) & (signed < 0.8 * size)
    near = np.flatnonzero(signed[:extreme] <= 0.2 * size)
    departure = int(near[-1]) if len(near) else 0
    walk = slice(departure + 1, extreme + 1)
    pushing = SIDE_BUY if move > 0 else SIDE_SELL
    walk_sides = sides[walk]
    largest = start + int(np.argmax(sizes[start:]))
    stamps, prints, span_ns, buy, sell = _densest(timestamps_ns, sides, int(rules.burst_window_ms * 1e6))
    return KindEvidence(
        reference_price=reference,
        move_bps=move,
        extreme_price=float(prices[extreme]),
        extreme_size=float(sizes[extreme]),
        away_prints=int(np.count_nonzero(signed[recent:] >= 0.5 * size)) if size else 0,
        walk_prints=int(np.count_nonzero(between[walk])) if size else 0,
        return_prints=int(np.count_nonzero(between[extreme + 1:])) if size else 0,
        return_step=_largest_step_back(signed, extreme, size),
        recovered=float(np.clip((move - relative[-1]) / move, 0.0, 1.0)) + 0.0 if move else None,
        walk_trades=extreme - departure,
        walk_seconds=max(int(timestamps_ns[extreme]) - int(timestamps_ns[departure]), 0) / 1e9,
        walk_side_share=float(np.count_nonzero(walk_sides == pushing) / max(len(walk_sides), 1)),
        max_size=float(sizes[largest]),
        max_size_price=float(prices[largest]),
        median_size=median_size,
        burst_stamps=stamps,
        burst_prints=prints,
        burst_ms=span_ns / 1e6,
        burst_buy_share=buy,
        burst_sell_share=sell,
        has_auction=has_auction,
        price_before_max_size=median(prices[max(largest - LOCAL_MARKET_TRADES, 0):largest]) if largest else None,
    )


def _largest_step_back(signed: np.ndarray, extreme: int, size: float) -> float:
    """The largest share of the excursion one print after the extreme took back."""
    if not size or extreme + 1 >= len(signed):
        return 0.0
    return float(np.max(signed[extreme:-1] - signed[extreme + 1:]) / size)


def context_baseline(
    prices: np.ndarray, sizes: np.ndarray, first_price: float, first_size: float
) -> tuple[float, float]:
    """(reference price, median size) of a context: the median price of its older half and
    the median size of all of it (at least 1 share); the first anomaly's own when empty."""
    half = max(len(prices) // 2, 1)
    reference = median(prices[:half]) if len(prices) else float(first_price)
    median_size = median(sizes) if len(sizes) else float(first_size)
    return reference, max(median_size, 1.0)


def median(values: np.ndarray) -> float:
    """``np.median`` of a non-empty column without NaN, bit for bit, at a fifth of its cost: it
    runs for every anomaly that joins an open incident (``IncidentTracker._begins_another_event``)."""
    middle = len(values) // 2
    if len(values) % 2:
        return float(np.partition(values, middle)[middle])
    low, high = np.partition(values, (middle - 1, middle))[middle - 1:middle + 1]
    return float((low + high) / 2)


def _densest(timestamps_ns: np.ndarray, sides: np.ndarray, window_ns: int) -> tuple[int, int, int, float, float]:
    """The window of ``window_ns`` holding the most distinct timestamps.

    Counting timestamps rather than prints tells a burst from one aggressive order: an
    order that sweeps the book prints hundreds of fills with one timestamp.
    Returns (timestamps, prints, span of those prints, buyer share, seller share).
    """
    ordered = np.sort(timestamps_ns)
    distinct = ordered[np.concatenate(([True], ordered[1:] > ordered[:-1]))]
    ends = np.searchsorted(distinct, distinct + window_ns, side="left")
    counts = ends - np.arange(len(distinct))
    best = int(np.argmax(counts))
    low, high = int(distinct[best]), int(distinct[best]) + window_ns
    inside = (timestamps_ns >= low) & (timestamps_ns < high)
    prints = int(np.count_nonzero(inside))
    span = int(timestamps_ns[inside].max() - low)
    inside_sides = sides[inside]
    return (
        int(counts[best]), prints, span,
        float(np.count_nonzero(inside_sides == SIDE_BUY) / prints),
        float(np.count_nonzero(inside_sides == SIDE_SELL) / prints),
    )


def decide_kind(evidence: KindEvidence, rules: KindRules = KindRules()) -> tuple[str, str | None]:
    """(kind, direction): the first rule of the module docstring that matches."""
    e = evidence
    if e.has_auction:
        return "auction", None
    direction = "up" if e.move_bps > 0 else "down"
    if abs(e.move_bps) >= rules.price_move_bps * math.sqrt(max(e.walk_trades, 100) / 100):
        if e.away_prints <= rules.off_market_prints and e.walk_prints <= rules.jump_prints:
            return "off_market_print", direction
        if (e.return_prints >= rules.reversal_prints and e.return_step < rules.reversal_step
                and e.recovered is not None and e.recovered >= rules.reversal_recovered):
            return "flash_crash", direction
        return "ramp", direction
    if e.burst_stamps >= rules.burst_stamps:
        return "burst", None
    at_market = min(abs(e.max_size_offset_bps), abs(e.max_size_local_offset_bps)) <= rules.block_price_bps
    if e.size_vs_median >= rules.block_size_ratio and at_market:
        return "block", None
    return "other", None
