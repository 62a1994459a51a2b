"""What the dashboard remembers of the anomalies and prices: bounded, and fair to every instrument.

A page reads each partition of the anomalies topic from some way back; a buffer
that kept the last N records *read* would be filled by whichever partition was
read last, and whole instruments would vanish. This one keeps records by event
time and shares its room between instruments: when it is full, the instrument
holding the most records gives up its oldest one. So every instrument keeps its
newest anomalies (at least ``capacity / instruments`` of them), and what is kept
does not depend on the order the partitions were read in.

The job may publish an anomaly again after a restart (it replays from its last
snapshot): records are unique by ``anomaly_id``, and a repeat replaces the copy
it repeats instead of being counted twice.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left, insort
from collections import OrderedDict
from dataclasses import dataclass

from dashboard.eviction import EvictionOrder
from dashboard.records import Anomaly, Summary


class AnomalyBuffer:
    """At most ``capacity`` distinct anomalies, the newest of each instrument by event time."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.duplicates = 0
        self._by_id: dict[str, Anomaly] = {}
        self._times: dict[str, list[tuple[int, str]]] = {}
        """Per symbol, (ts_ns, anomaly_id) in event-time order: the oldest is first."""
        self._givers: EvictionOrder[str] = EvictionOrder()
        """The symbols in the order they give up a record: most held first, then oldest record."""

    def add(self, anomaly: Anomaly) -> None:
        known = self._by_id.get(anomaly.anomaly_id)
        if known is not None:
            self.duplicates += 1
            self._forget(known)
        self._by_id[anomaly.anomaly_id] = anomaly
        insort(self._times.setdefault(anomaly.symbol, []), (anomaly.ts_ns, anomaly.anomaly_id))
        self._rerank(anomaly.symbol)
        while len(self._by_id) > self.capacity:
            self._evict_one()

    def _evict_one(self) -> None:
        """The oldest record of the instrument holding the most; among equals, the oldest record
        (from a heap: scanning every instrument for it made each record cost them all)."""
        symbol = self._givers.pop_lowest()
        _ts, anomaly_id = self._times[symbol][0]
        self._forget(self._by_id.pop(anomaly_id))

    def _forget(self, anomaly: Anomaly) -> None:
        times = self._times[anomaly.symbol]
        del times[bisect_left(times, (anomaly.ts_ns, anomaly.anomaly_id))]
        self._rerank(anomaly.symbol)

    def _rerank(self, symbol: str) -> None:
        times = self._times[symbol]
        if times:
            self._givers.rank(symbol, (-len(times), times[0], symbol))
        else:
            del self._times[symbol]
            self._givers.forget(symbol)

    def records(self) -> list[Anomaly]:
        """Oldest first by event time (ties by id, so the order is always the same)."""
        return sorted(self._by_id.values(), key=lambda record: (record.ts_ns, record.anomaly_id))

    def counts(self) -> dict[str, int]:
        """Records held per symbol."""
        return {symbol: len(times) for symbol, times in self._times.items()}

    def __len__(self) -> int:
        return len(self._by_id)


@dataclass(frozen=True, slots=True)
class PriceLine:
    """An instrument's (time, price) points in reading order, as two arrays: 16 bytes a point, where
    a tuple of an int and a float took about 110 (a page holds up to a million points)."""

    times: array
    """Event times, nanoseconds."""
    prices: array

    def points(self) -> list[tuple[int, float]]:
        return list(zip(self.times, self.prices))


class PriceHistory:
    """The last ``points_per_symbol`` (ts_ns, last_price) points of each instrument, from its summaries."""

    def __init__(self, points_per_symbol: int = 2000, max_symbols: int = 500) -> None:
        self.points_per_symbol = points_per_symbol
        self.max_symbols = max_symbols
        self._lines: OrderedDict[str, _PriceRing] = OrderedDict()

    def add(self, summary: Summary) -> None:
        ring = self._lines.get(summary.symbol)
        if ring is None:
            ring = self._lines[summary.symbol] = _PriceRing(self.points_per_symbol)
            while len(self._lines) > self.max_symbols:
                self._lines.popitem(last=False)
        ring.add(summary.ts_ns, summary.last_price)

    def lines(self) -> dict[str, PriceLine]:
        """Each symbol's points as read (a figure puts the ones it draws in order); copies."""
        return {symbol: ring.line() for symbol, ring in self._lines.items()}


class _PriceRing:
    """The last ``capacity`` points: once full, each new point takes the place of the oldest."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._line = PriceLine(array("q"), array("d"))
        self._oldest = 0

    def add(self, ts_ns: int, price: float) -> None:
        times, prices = self._line.times, self._line.prices
        if len(times) < self.capacity:
            times.append(ts_ns)
            prices.append(price)
            return
        times[self._oldest], prices[self._oldest] = ts_ns, price
        self._oldest = (self._oldest + 1) % self.capacity

    def line(self) -> PriceLine:
        times, prices, oldest = self._line.times, self._line.prices, self._oldest
        return PriceLine(times[oldest:] + times[:oldest], prices[oldest:] + prices[:oldest])
