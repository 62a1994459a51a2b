"""Totals counted by the job, not by the page: the newest instrument summary of each symbol.

The page only holds a bounded buffer of anomalies, so counting the buffer would
show its size, not what happened. Each summary carries its instrument's counts
since the instrument's state was created (``since``; they survive restarts), so the
newest summary of each state gives the topic's totals, however many anomalies were
written. An instrument idle for a day starts a new state from zero: its states add up.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace

from dashboard.clock import believable, new_york_text
from dashboard.eviction import EvictionOrder
from dashboard.records import SIDES, Summary

StateKey = tuple[str, int | None]
"""An instrument state: its symbol and ``since`` (None from a job that does not write it)."""

MAX_INSTRUMENT_STATES = 20_000
"""Instrument states a ``SummaryBook`` keeps unless told otherwise: as many as one job process holds
active instruments by default (``MAX_INSTRUMENTS``, ``flows.instruments.DEFAULT_MAX_INSTRUMENTS``:
every US-listed stock and ETF, about 12,000, with room to spare), so the totals count every
instrument of such a job and the stalest state leaves only beyond that. Full, the book takes about
17 MiB of a tab at worst (``benchmarks.dashboard_memory`` fills 10,000 states: 8.4 MiB)."""


class SummaryBook:
    """The newest summary of each instrument state (by event time, then trades processed).

    At most ``max_symbols`` states are kept (``MAX_INSTRUMENT_STATES`` by default), the stalest
    dropped first, at the cost of the one dropped (``EvictionOrder``). Anyone can write to the
    topic, and a summary dated 2099 once froze its instrument: every later real summary looked
    older. So a summary dated past the dashboard's clock (``believable``) ranks below every other:
    it is kept while its state has no other summary, any believable one replaces it, it is dropped
    first, and a state it is the newest of counts for its symbol only while the symbol has no
    believable state.
    """

    def __init__(
        self, max_symbols: int = MAX_INSTRUMENT_STATES, wall_clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.max_symbols = max_symbols
        self._wall_clock_ns = wall_clock_ns
        self._newest: dict[StateKey, Summary] = {}
        self._eviction: EvictionOrder[StateKey] = EvictionOrder()

    def add(self, summary: Summary) -> None:
        key = (summary.symbol, summary.since_ns)
        known = self._newest.get(key)
        now_ns = self._wall_clock_ns()
        if known is not None and _freshness(summary, now_ns) < _freshness(known, now_ns):
            return  # a replayed epoch after a job restart, a reordered read, or a time past the clock
        self._newest[key] = summary
        self._eviction.rank(key, (*_freshness(summary, now_ns), summary.symbol, summary.since_ns or 0))
        while len(self._newest) > self.max_symbols:
            del self._newest[self._eviction.pop_lowest()]

    def copy(self) -> dict[str, Summary]:
        """Per symbol: its newest state's summary, with the counts of all its states added up."""
        by_symbol: dict[str, list[Summary]] = {}
        for summary in self._newest.values():
            by_symbol.setdefault(summary.symbol, []).append(summary)
        now_ns = self._wall_clock_ns()
        return {symbol: _added_up(states, now_ns) for symbol, states in by_symbol.items()}


def _added_up(states: list[Summary], now_ns: int) -> Summary:
    states = [state for state in states if believable(state.ts_ns, now_ns)] or states
    newest = max(states, key=lambda state: _freshness(state, now_ns))
    if len(states) == 1 or not all(state.has_totals for state in states):
        return newest

    def total(name: str) -> int | float | None:
        values = [getattr(state, name) for state in states]
        return None if any(value is None for value in values) else sum(values)

    def counts(name: str) -> dict[str, int]:
        return {key: sum(getattr(state, name)[key] for state in states) for key in getattr(newest, name)}

    return replace(
        newest, trades_processed=total("trades_processed"), anomalies=total("anomalies"),
        rejected=total("rejected"), incidents=total("incidents"), severity_sum=total("severity_sum"),
        severity_max=max(state.severity_max for state in states),
        anomalies_by_level=counts("anomalies_by_level"), anomalies_by_side=counts("anomalies_by_side"),
    )


def _freshness(summary: Summary, now_ns: int) -> tuple[bool, int, int, int]:
    """Believable times first, then the later event time, then more trades processed, then more
    rejected (a state's last word, written when it goes dormant, can add only rejected repeats)."""
    return believable(summary.ts_ns, now_ns), summary.ts_ns, summary.trades_processed or 0, summary.rejected or 0


@dataclass(frozen=True)
class Totals:
    instruments: int
    anomalies: int
    average_severity: float | None
    max_severity: float | None
    critical: int
    by_side: dict[str, int]
    incidents: int | None
    """None when a summary does not count incidents (a job older than the incidents topic)."""


def topic_totals(summaries: Iterable[Summary], symbols: Collection[str] = ()) -> Totals | None:
    """Totals over the chosen symbols (empty: all), or None when a summary lacks the counts."""
    chosen = [summary for summary in summaries if not symbols or summary.symbol in symbols]
    if not all(summary.has_totals for summary in chosen):
        return None
    anomalies = sum(summary.anomalies for summary in chosen)
    return Totals(
        instruments=len(chosen),
        anomalies=anomalies,
        average_severity=sum(summary.severity_sum for summary in chosen) / anomalies if anomalies else None,
        max_severity=max((summary.severity_max for summary in chosen if summary.anomalies), default=None),
        critical=sum(summary.anomalies_by_level["critical"] for summary in chosen),
        by_side={side: sum(summary.anomalies_by_side[side] for summary in chosen) for side in SIDES},
        incidents=None if any(summary.incidents is None for summary in chosen)
        else sum(summary.incidents for summary in chosen),
    )


def instrument_rows(
    summaries: Mapping[str, Summary], in_memory: Mapping[str, int], open_levels: Mapping[str, str | None],
) -> list[dict[str, object]]:
    """One row per instrument known from any topic: the job's totals and what the page holds.

    The worst open level comes from the incidents read (``open_levels``: every symbol with
    incidents, None when none is open), which follow each incident to its closing; a summary's
    level, written once per second of event time, is used for symbols without incidents read.
    """
    rows = []
    for symbol in sorted(set(summaries) | set(in_memory) | set(open_levels)):
        summary = summaries.get(symbol)
        worst = open_levels[symbol] if symbol in open_levels else (summary.open_incident_level if summary else None)
        by_level = summary.anomalies_by_level if summary else None
        rows.append({
            "symbol": symbol,
            "last price": summary.last_price if summary else None,
            "last trade (New York)": new_york_text(summary.ts_ns) if summary else "",
            "trades": summary.trades_processed if summary else None,
            "anomalies": summary.anomalies if summary else None,
            "critical": by_level["critical"] if by_level else None,
            "incidents": summary.incidents if summary else None,
            "worst open level": worst or "",
            "anomalies in memory": in_memory.get(symbol, 0),
            "rejected": summary.rejected if summary else None,
        })
    return rows
