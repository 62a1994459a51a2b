"""Score a detector's anomalies against labelled events: recall, false alarms, delay.

Rules: an event is found when an anomaly is credited to it. An anomaly lands
either on an event's own trades or on one of the ``after_trades`` (100) trades of
its symbol that follow it; it is credited to exactly one event:

1. the event whose own trades it lands on (if labels overlap, the one that started last);
2. otherwise the event whose 100 trades after it hold it (the one that ended last).

So when events are close, an alarm raised on the second event counts for the
second only, even when it also lies within 100 trades after the first: the first
is found only by an alarm on its own trades or on the trades between the two.
An alarm explains one thing, and crediting it to both would let one late alarm
find two events. The delay is the number of trades from the event's first trade
to the first anomaly credited to it. Every anomaly credited to no event is a
false one, and false anomalies of a symbol less than ``alarm_gap`` (100) trades
apart make one false alarm, because an analyst looks at a cluster once. Alarm
precision counts each found event as one true alarm: precision = found / (found
+ false alarms).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from connectors.injection import LabelledEvent

SINGLE_PRINT_KINDS = ("off_market", "block")
"""Events of one print: the issue's target is a median delay of at most 1 trade for them."""


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

    def median_delay_of(self, kinds: Sequence[str]) -> float | None:
        """Median delay over the found events of ``kinds`` (e.g. the single-print kinds)."""
        return _median([o.delay_trades for o in self.outcomes if o.found and o.event.kind in kinds])

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
    spans = [
        (_position(sequences, e.symbol, e.first_sequence), _position(sequences, e.symbol, e.last_sequence))
        for e in events
    ]
    owners = {symbol: _owners(values, events, spans, symbol, after_trades) for symbol, values in positions.items()}
    outcomes = []
    for index, (event, (first, _)) in enumerate(zip(events, spans)):
        mine = positions[event.symbol][owners[event.symbol] == index]
        delay = int(mine[0] - first) if len(mine) else None
        outcomes.append(EventOutcome(event, delay is not None, delay, first))
    false_alarm_positions = {
        symbol: _cluster_starts(values[owners[symbol] < 0], alarm_gap) for symbol, values in positions.items()
    }
    total = sum(len(values) for values in sequences.values())
    false_alarms = sum(len(starts) for starts in false_alarm_positions.values())
    return Score(total, outcomes, false_alarms, false_alarm_positions)


def _owners(
    hits: np.ndarray, events: Sequence[LabelledEvent], spans: list[tuple[int, int]], symbol: str, after: int,
) -> np.ndarray:
    """For each anomaly position, the index of the event it is credited to, or -1."""
    mine = [i for i, event in enumerate(events) if event.symbol == symbol]
    inside = np.full(len(hits), -1)
    for i in sorted(mine, key=lambda i: spans[i][0]):  # a later start overrides
        first, last = spans[i]
        inside[(hits >= first) & (hits <= last)] = i
    following = np.full(len(hits), -1)
    for i in sorted(mine, key=lambda i: spans[i][1]):  # a later end overrides
        _, last = spans[i]
        following[(hits > last) & (hits <= last + after)] = i
    return np.where(inside >= 0, inside, following)


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
