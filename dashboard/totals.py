"""Totals counted by the job, not by the page: the newest instrument summary of each symbol.

The page only holds a bounded buffer of anomalies, so counting the buffer would
show its size, not what happened. Each summary carries its instrument's counts
since the instrument's state was created (they survive restarts), so the newest
summary per symbol gives the topic's totals, however many anomalies were written.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from dashboard.clock import new_york_text
from dashboard.records import SIDES, Summary


class SummaryBook:
    """The newest summary per symbol (by event time, then trades processed), for at most ``max_symbols``."""

    def __init__(self, max_symbols: int = 10_000) -> None:
        self.max_symbols = max_symbols
        self._newest: dict[str, Summary] = {}

    def add(self, summary: Summary) -> None:
        known = self._newest.get(summary.symbol)
        if known is not None and _order(summary) < _order(known):
            return  # a replayed epoch after a job restart, or a reordered read
        self._newest[summary.symbol] = summary
        if len(self._newest) > self.max_symbols:
            stalest = min(self._newest.values(), key=lambda item: (item.ts_ns, item.symbol))
            del self._newest[stalest.symbol]

    def copy(self) -> dict[str, Summary]:
        return dict(self._newest)


def _order(summary: Summary) -> tuple[int, int]:
    return summary.ts_ns, summary.trades_processed or 0


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
