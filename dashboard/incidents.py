"""Incidents as the analyst works them: the current state of each, its member anomalies, the queue.

The ``incidents`` topic holds one message per state change; the highest revision
of an incident is its current state (a restarted job may publish an older
revision again, which must not turn the clock back). Member anomalies arrive on
the anomalies topic; the most severe ones of each incident are kept apart from
the main buffer so an incident can still be opened after its anomalies have
left the buffer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from dashboard.records import LEVEL_RANK, Anomaly, Incident, Review


class IncidentBook:
    """The current state of at most ``capacity`` incidents; closed and old ones leave first."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._incidents: dict[str, Incident] = {}

    def add(self, incident: Incident) -> None:
        known = self._incidents.get(incident.incident_id)
        if known is not None and incident.revision < known.revision:  # a restarted job's repeat
            return
        self._incidents[incident.incident_id] = incident
        if len(self._incidents) > self.capacity:
            oldest = min(self._incidents.values(), key=lambda item: (item.is_open, item.last_ns, item.incident_id))
            del self._incidents[oldest.incident_id]

    def all(self) -> list[Incident]:
        return list(self._incidents.values())

    def __len__(self) -> int:
        return len(self._incidents)


class IncidentMembers:
    """Up to ``per_incident`` most severe member anomalies of the ``max_incidents`` latest incidents."""

    def __init__(self, per_incident: int = 50, max_incidents: int = 500) -> None:
        self.per_incident = per_incident
        self.max_incidents = max_incidents
        self._members: OrderedDict[str, dict[str, Anomaly]] = OrderedDict()

    def add(self, anomaly: Anomaly) -> None:
        if anomaly.incident_id is None:
            return
        members = self._members.setdefault(anomaly.incident_id, {})
        self._members.move_to_end(anomaly.incident_id)
        members[anomaly.anomaly_id] = anomaly
        if len(members) > self.per_incident:
            weakest = min(members.values(), key=lambda item: (item.severity, item.ts_ns, item.anomaly_id))
            del members[weakest.anomaly_id]
        while len(self._members) > self.max_incidents:
            self._members.popitem(last=False)

    def of(self, incident_id: str) -> list[Anomaly]:
        """In event-time order."""
        return sorted(self._members.get(incident_id, {}).values(), key=lambda item: (item.ts_ns, item.anomaly_id))


@dataclass(frozen=True)
class QueueFilter:
    hide_auctions: bool = False
    hide_reviewed: bool = False
    symbols: Collection[str] = ()
    """Empty means every symbol."""


def incident_queue(
    incidents: Iterable[Incident], reviews: Mapping[str, Review], chosen: QueueFilter = QueueFilter()
) -> list[Incident]:
    """Open incidents first; then the worst level first; then the newest first."""
    shown = [
        incident for incident in incidents
        if not (chosen.hide_auctions and incident.kind == "auction")
        and not (chosen.hide_reviewed and incident.incident_id in reviews)
        and (not chosen.symbols or incident.symbol in chosen.symbols)
    ]
    return sorted(shown, key=lambda item: (not item.is_open, -LEVEL_RANK[item.level], -item.first_ns, item.incident_id))


def worst_open_level(incidents: Iterable[Incident]) -> dict[str, str | None]:
    """Per symbol with incidents, the level of its worst open one (None when all are closed)."""
    worst: dict[str, str | None] = {}
    for incident in incidents:
        known = worst.setdefault(incident.symbol, None)
        if incident.is_open and LEVEL_RANK[incident.level] > LEVEL_RANK.get(known, -1):
            worst[incident.symbol] = incident.level
    return worst
