"""Incidents as the analyst works them: the current state of each, its member anomalies, the queue.

The ``incidents`` topic holds one message per state change; the latest revision
of an incident is its current state (a restarted job may publish an older
revision again, which must not turn the clock back). The topic is compacted: an
incident's key with no value deletes it, and it leaves the page. Member anomalies arrive on
the anomalies topic; the most severe ones of each incident are kept apart from
the main buffer so an incident can still be opened after its anomalies have
left the buffer.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from dashboard.clock import believable
from dashboard.eviction import EvictionOrder
from dashboard.records import LEVEL_RANK, Anomaly, Incident, Review
from dashboard.reviews import escalated_since


class IncidentBook:
    """The current state of at most ``capacity`` incidents; closed and old ones leave first.

    The job numbers an incident's messages 0, 1, 2 ... and the topic keeps them in that order
    (keyed by incident id). A restarted job publishes some again, so a revision below the one
    reached is a repeat to ignore. But a revision is a number anybody can write: one message
    with revision 10**15 once hid every later real one. So a revision counts as reached only
    when the page has read the one before it (``_Revisions``): a message that jumps ahead is
    shown, being the latest word on its incident, until the next one, which is not taken for a
    repeat of it. Times past the dashboard's clock do not keep an incident either: it leaves
    first when the book is full.
    """

    def __init__(self, capacity: int, wall_clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.capacity = capacity
        self._wall_clock_ns = wall_clock_ns
        self._incidents: dict[str, Incident] = {}
        self._revisions: dict[str, _Revisions] = {}
        self._eviction: EvictionOrder[str] = EvictionOrder()

    def add(self, incident: Incident) -> None:
        incident_id = incident.incident_id
        revisions, shown = self._revisions.get(incident_id), self._incidents.get(incident_id)
        if revisions is not None and revisions.repeats(incident.revision) and not _closes(shown, incident):
            return  # a restarted job's repeat
        self._revisions[incident_id] = _revisions_after(revisions, incident.revision)
        self._incidents[incident_id] = incident
        self._eviction.rank(incident_id, (believable(incident.last_ns, self._wall_clock_ns()), incident.is_open,
                                          incident.last_ns, incident_id))
        while len(self._incidents) > self.capacity:
            dropped = self._eviction.pop_lowest()
            del self._incidents[dropped], self._revisions[dropped]

    def remove(self, incident_id: str) -> None:
        """A delete on the compacted topic (the incident's key with no value): the incident leaves the
        page, as a deleted decision does; a later message of that key is its state again, whatever its
        revision (the count of revisions read starts over with it)."""
        self._incidents.pop(incident_id, None)
        self._revisions.pop(incident_id, None)
        self._eviction.forget(incident_id)

    def all(self) -> list[Incident]:
        return list(self._incidents.values())

    def __contains__(self, incident_id: str) -> bool:
        return incident_id in self._incidents

    def __len__(self) -> int:
        return len(self._incidents)


def _closes(shown: Incident | None, incident: Incident) -> bool:
    """A closing of an incident shown open is never taken for a repeat: closing is final. A job
    resumed under other settings closes the incident it saved with the revision after its
    snapshot's, which the run before the crash may already have written as an update."""
    return shown is not None and shown.is_open and not incident.is_open


@dataclass(frozen=True, slots=True)
class _Revisions:
    """The revisions of one incident the page has read: from ``first`` up to ``reached`` by ones."""

    first: int
    reached: int

    def repeats(self, revision: int) -> bool:
        return self.first <= revision < self.reached


def _revisions_after(known: _Revisions | None, revision: int) -> _Revisions:
    """What has been read once ``revision`` (not a repeat) is. One below everything read starts the
    count again from it: compaction may have left a forged revision as the first one read."""
    if known is None or revision < known.first:
        return _Revisions(revision, revision)
    if revision == known.reached + 1:
        return _Revisions(known.first, revision)
    return known  # the one reached again, or a jump: shown, not counted


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
    """Hides reviewed incidents, except one grown worse since its review (``escalated_since``)."""
    symbols: Collection[str] = ()
    """Empty means every symbol."""


def incident_queue(
    incidents: Iterable[Incident], reviews: Mapping[str, Review], chosen: QueueFilter = QueueFilter()
) -> list[Incident]:
    """Alarms before the opening and closing crosses (routine prints, however large: at the top
    they would push the incidents to work on down every morning); then open ones first; then the
    worst level first; then the newest first."""
    shown = [
        incident for incident in incidents
        if not (chosen.hide_auctions and incident.kind == "auction")
        and not (chosen.hide_reviewed and incident.incident_id in reviews
                 and not escalated_since(reviews[incident.incident_id], incident))
        and (not chosen.symbols or incident.symbol in chosen.symbols)
    ]
    return sorted(shown, key=lambda item: (item.kind == "auction", not item.is_open, -LEVEL_RANK[item.level],
                                           -item.first_ns, item.incident_id))


def worst_open_level(incidents: Iterable[Incident]) -> dict[str, str | None]:
    """Per symbol with incidents, the level of its worst open one (None when all are closed)."""
    worst: dict[str, str | None] = {}
    for incident in incidents:
        known = worst.setdefault(incident.symbol, None)
        if incident.is_open and LEVEL_RANK[incident.level] > LEVEL_RANK.get(known, -1):
            worst[incident.symbol] = incident.level
    return worst
