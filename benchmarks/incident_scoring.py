"""Score the engine's incidents against labelled events (issue 9, point 6).

An analyst acts on incidents, not on single anomaly records, so the incidents get
their own scores beside the trade-level ones. The rules:

- An incident **covers** an event when it is of the event's symbol and its
  ``first_sequence``..``last_sequence`` range overlaps the event's trades or the
  ``after_trades`` (100) trades after them. One incident may cover two close events.
- **Events covered** = covered events / events; **incidents per covered event** =
  the mean, over covered events, of the incidents covering each.
- **Kind right**: an event's main incident is the covering incident that overlaps
  the event's own trades most (the earliest if tied, or if none overlaps them);
  its kind must be the expected one (``EXPECTED_KIND``), and for a flash crash its
  direction must be the event's.
- Incidents of kind ``auction`` (the crosses) are counted apart, neither true nor false.
- **False incidents**: the other incidents that cover no event, per 100k trades.
- **Level mix**: the share of true incidents (covering an event) and of false ones
  at ``high`` or ``critical``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from connectors.injection import LabelledEvent

EXPECTED_KIND = {
    "off_market": "off_market_print", "block": "block", "burst": "burst",
    "ramp": "ramp", "flash_crash": "flash_crash", "sweep": "ramp",
}
LEVELS = ("critical", "high", "medium", "low")
URGENT = ("critical", "high")
TARGETS = {
    "covered": ">= 0.97", "incidents_per_event": "<= 1.2", "kind_right": ">= 0.9",
    "false_per_100k": "<= 4", "true_urgent": ">= 0.80", "false_urgent": "<= 0.30",
}


@dataclass(frozen=True)
class IncidentScore:
    trades: int
    events: int
    covered: int
    covering_counts: list[int]
    """For each covered event, how many incidents cover it."""
    kind_checks: dict[str, tuple[int, int]]
    """Per injected kind: (covered events whose main incident has the right kind, covered events)."""
    true_levels: Counter = field(default_factory=Counter)
    false_levels: Counter = field(default_factory=Counter)
    auctions: int = 0
    unreadable: int = 0

    @property
    def covered_share(self) -> float:
        return self.covered / self.events if self.events else 0.0

    @property
    def incidents_per_event(self) -> float:
        return float(np.mean(self.covering_counts)) if self.covering_counts else 0.0

    @property
    def kind_right(self) -> float:
        right = sum(r for r, _ in self.kind_checks.values())
        total = sum(t for _, t in self.kind_checks.values())
        return right / total if total else 0.0

    @property
    def false_incidents(self) -> int:
        return sum(self.false_levels.values())

    @property
    def false_per_100k(self) -> float:
        return 1e5 * self.false_incidents / self.trades if self.trades else 0.0

    @property
    def true_urgent(self) -> float:
        return _urgent_share(self.true_levels)

    @property
    def false_urgent(self) -> float:
        return _urgent_share(self.false_levels)


def _urgent_share(levels: Counter) -> float:
    total = sum(levels.values())
    return sum(levels[level] for level in URGENT) / total if total else 0.0


def read_incidents(path: Path) -> tuple[list[dict[str, Any]], int] | None:
    """The incidents of an ``OUT.incidents.jsonl`` file and its unreadable lines; None when absent."""
    if not path.exists():
        return None
    incidents, unreadable = [], 0
    for line in path.read_bytes().splitlines():
        if not line.strip():
            continue
        try:
            incident = orjson.loads(line)
        except orjson.JSONDecodeError:
            unreadable += 1
            continue
        if _usable(incident):
            incidents.append(incident)
        else:
            unreadable += 1
    return incidents, unreadable


def _usable(incident: Any) -> bool:
    if not isinstance(incident, dict) or not isinstance(incident.get("symbol"), str):
        return False
    first, last = incident.get("first_sequence"), incident.get("last_sequence")
    return isinstance(first, int) and isinstance(last, int) and first <= last


def score_incidents(
    sequences: dict[str, np.ndarray], events: Sequence[LabelledEvent], incidents: Sequence[dict[str, Any]],
    *, after_trades: int = 100, unreadable: int = 0,
) -> IncidentScore:
    """Score final incident states (dicts of the incidents contract) against the labelled events."""
    auctions = [i for i in incidents if i.get("kind") == "auction"]
    others = [i for i in incidents if i.get("kind") != "auction"]
    covering: list[list[int]] = []
    for event in events:
        low, high = event.first_sequence, _sequence_after(sequences[event.symbol], event.last_sequence, after_trades)
        covering.append([
            n for n, incident in enumerate(others)
            if incident["symbol"] == event.symbol and incident["first_sequence"] <= high and incident["last_sequence"] >= low
        ])
    checks: dict[str, list[int]] = {}
    for event, found in zip(events, covering):
        tally = checks.setdefault(event.kind, [0, 0])
        if found:
            main = _main_incident(event, [others[n] for n in found])
            tally[0] += _kind_is_right(event, main)
            tally[1] += 1
    true_ids = {n for found in covering for n in found}
    return IncidentScore(
        trades=sum(len(v) for v in sequences.values()), events=len(events),
        covered=sum(1 for found in covering if found), covering_counts=[len(f) for f in covering if f],
        kind_checks={kind: (right, total) for kind, (right, total) in sorted(checks.items())},
        true_levels=Counter(str(others[n].get("level")) for n in sorted(true_ids)),
        false_levels=Counter(str(i.get("level")) for n, i in enumerate(others) if n not in true_ids),
        auctions=len(auctions), unreadable=unreadable,
    )


def _sequence_after(sequences: np.ndarray, last_sequence: int, after: int) -> int:
    """The sequence ``after`` trades after ``last_sequence`` (or the symbol's last one)."""
    position = int(np.searchsorted(sequences, last_sequence))
    return int(sequences[min(position + after, len(sequences) - 1)])


def _main_incident(event: LabelledEvent, candidates: list[dict[str, Any]]) -> dict[str, Any]:
    def overlap(incident: dict[str, Any]) -> int:
        low = max(incident["first_sequence"], event.first_sequence)
        high = min(incident["last_sequence"], event.last_sequence)
        return max(0, high - low + 1)

    return max(candidates, key=lambda i: (overlap(i), -i["first_sequence"]))


def _kind_is_right(event: LabelledEvent, incident: dict[str, Any]) -> bool:
    if incident.get("kind") != EXPECTED_KIND[event.kind]:
        return False
    return event.kind != "flash_crash" or incident.get("direction") == event.direction


def combine_incident_scores(scores: Sequence[IncidentScore]) -> IncidentScore:
    """Counts added over runs; the ratios follow from the sums."""
    checks: dict[str, tuple[int, int]] = {}
    for score in scores:
        for kind, (right, total) in score.kind_checks.items():
            old = checks.get(kind, (0, 0))
            checks[kind] = (old[0] + right, old[1] + total)
    return IncidentScore(
        trades=sum(s.trades for s in scores), events=sum(s.events for s in scores),
        covered=sum(s.covered for s in scores), covering_counts=[c for s in scores for c in s.covering_counts],
        kind_checks=dict(sorted(checks.items())),
        true_levels=sum((s.true_levels for s in scores), Counter()),
        false_levels=sum((s.false_levels for s in scores), Counter()),
        auctions=sum(s.auctions for s in scores), unreadable=sum(s.unreadable for s in scores),
    )
