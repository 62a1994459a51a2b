"""Score a detector's anomalies against labelled events: recall, false alarms, delay.

Rules (issue 5): an event is found when an anomaly lands on one of its trades or
on one of the ``after_trades`` (100) trades of its symbol that follow it; the
delay is the number of trades from the event's first trade to the first such
anomaly. Every other anomaly is a false one, and false anomalies of a symbol less
than ``alarm_gap`` (100) trades apart make one false alarm, because an analyst
looks at a cluster once. Alarm precision counts each found event as one true
alarm: precision = found / (found + false alarms).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from connectors.injection import LabelledEvent


@dataclass(frozen=True)
class EventOutcome:
    event: LabelledEvent
    found: bool
    delay_trades: int | None
    position: int  # the event's first trade among its symbol's trades


@dataclass(frozen=True)
class KindScore:
    events: int
    found: int
    median_delay: float | None

    @property
    def recall(self) -> float:
        return self.found / self.events if self.events else 0.0


@dataclass(frozen=True)
class Score:
    trades: int
    outcomes: list[EventOutcome]
    false_alarms: int
    false_alarm_positions: dict[str, list[int]] = field(default_factory=dict)
    """Per symbol, the position of the first anomaly of each false alarm."""

    @property
    def events(self) -> int:
        return len(self.outcomes)

    @property
    def found(self) -> int:
        return sum(outcome.found for outcome in self.outcomes)

    @property
    def recall(self) -> float:
        return self.found / self.events if self.events else 0.0

    @property
    def precision(self) -> float:
        alarms = self.found + self.false_alarms
        return self.found / alarms if alarms else 0.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    @property
    def false_alarms_per_100k(self) -> float:
        return 1e5 * self.false_alarms / self.trades if self.trades else 0.0

    @property
    def median_delay(self) -> float | None:
        return _median([o.delay_trades for o in self.outcomes if o.found])

    @property
    def mean_delay(self) -> float | None:
        delays = [o.delay_trades for o in self.outcomes if o.found]
        return float(np.mean(delays)) if delays else None

    def by_kind(self) -> dict[str, KindScore]:
        kinds: dict[str, list[EventOutcome]] = {}
        for outcome in self.outcomes:
            kinds.setdefault(outcome.event.kind, []).append(outcome)
        return {
            kind: KindScore(
                len(outcomes), sum(o.found for o in outcomes),
                _median([o.delay_trades for o in outcomes if o.found]),
            )
            for kind, outcomes in sorted(kinds.items())
        }


def _median(values: list[int | None]) -> float | None:
    return float(np.median(values)) if values else None


def symbol_sequences(tape: Iterable[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Each symbol's trade sequences in tape order: position i is its i-th trade."""
    sequences: dict[str, list[int]] = {}
    for trade in tape:
        sequences.setdefault(trade["symbol"], []).append(int(trade["sequence"]))
    return {symbol: np.asarray(values, dtype=np.int64) for symbol, values in sequences.items()}


def score_anomalies(
    sequences: dict[str, np.ndarray], events: Sequence[LabelledEvent], anomalies: Iterable[dict[str, Any]],
    *, after_trades: int = 100, alarm_gap: int = 100,
) -> Score:
    """Score anomalies (dicts with ``symbol`` and ``sequence``) on a tape given by ``sequences``."""
    flagged: dict[str, list[int]] = {symbol: [] for symbol in sequences}
    for anomaly in anomalies:
        flagged[anomaly["symbol"]].append(_position(sequences, anomaly["symbol"], int(anomaly["sequence"])))
    positions = {symbol: np.unique(values) for symbol, values in flagged.items()}
    explained = {symbol: np.zeros(len(values), bool) for symbol, values in positions.items()}
    outcomes = []
    for event in events:
        first = _position(sequences, event.symbol, event.first_sequence)
        last = _position(sequences, event.symbol, event.last_sequence)
        hits = positions[event.symbol]
        inside = (hits >= first) & (hits <= last + after_trades)
        explained[event.symbol] |= inside
        delay = int(hits[inside][0] - first) if inside.any() else None
        outcomes.append(EventOutcome(event, delay is not None, delay, first))
    false_alarm_positions = {
        symbol: _cluster_starts(values[~explained[symbol]], alarm_gap) for symbol, values in positions.items()
    }
    total = sum(len(values) for values in sequences.values())
    false_alarms = sum(len(starts) for starts in false_alarm_positions.values())
    return Score(total, outcomes, false_alarms, false_alarm_positions)


def _position(sequences: dict[str, np.ndarray], symbol: str, sequence: int) -> int:
    values = sequences[symbol]
    position = int(np.searchsorted(values, sequence))
    if position >= len(values) or values[position] != sequence:
        raise KeyError(f"{symbol} has no trade with sequence {sequence}")
    return position


def _cluster_starts(positions: np.ndarray, gap: int) -> list[int]:
    """First position of each run of positions whose neighbours are less than ``gap`` apart."""
    if not len(positions):
        return []
    starts = np.concatenate([[True], np.diff(positions) >= gap])
    return [int(p) for p in positions[starts]]
