"""Totals counted by the job, not by the page: the newest instrument summary of each symbol.

The page only holds a bounded buffer of anomalies, so counting the buffer would
show its size, not what happened. Each summary carries its instrument's counts
since the instrument's state was created (``since``; they survive restarts), so the
newest summary of each state gives the topic's totals, however many anomalies were
written. An instrument idle for a day starts a new state from zero: its states add up.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace

from dashboard.clock import new_york_text
from dashboard.records import SIDES, Summary


class SummaryBook:
    """The newest summary of each instrument state (by event time, then trades processed).

    At most ``max_symbols`` states are kept, the stalest dropped first.
    """

    def __init__(self, max_symbols: int = 10_000) -> None:
        self.max_symbols = max_symbols
        self._newest: dict[tuple[str, int | None], Summary] = {}

    def add(self, summary: Summary) -> None:
        key = (summary.symbol, summary.since_ns)
        known = self._newest.get(key)
        if known is not None and _order(summary) < _order(known):
            return  # a replayed epoch after a job restart, or a reordered read
        self._newest[key] = summary
        if len(self._newest) > self.max_symbols:
            stalest = min(self._newest, key=lambda k: (self._newest[k].ts_ns, k[0]))
            del self._newest[stalest]

    def copy(self) -> dict[str, Summary]:
        """Per symbol: its newest state's summary, with the counts of all its states added up."""
        by_symbol: dict[str, list[Summary]] = {}
        for summary in self._newest.values():
            by_symbol.setdefault(summary.symbol, []).append(summary)
        return {symbol: _added_up(states) for symbol, states in by_symbol.items()}


def _added_up(states: list[Summary]) -> Summary:
    states = sorted(states, key=_order)
    newest = states[-1]
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
