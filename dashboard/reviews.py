"""Analysts' decisions on incidents: kept in a compacted topic, the only thing the dashboard writes.

A decision made in one browser must survive a restart and show in every other
open dashboard, so it is not kept in the page: it goes to the ``incident-reviews``
topic (compacted, keyed by incident id, so the last decision per incident is
what the topic keeps; ``connectors.review_writer`` writes it) and every page reads
that topic from the beginning. A decision counts as made only when the broker has
acknowledged it. Here: the decisions a page holds, and their counts per kind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping

from dashboard.records import LEVEL_RANK, Incident, InvalidRecord, Review, decode_review


class ReviewBook:
    """The latest decision per incident, in the order the topic holds them; at most ``capacity``.

    The topic is anyone's to write: a flood of decisions on made-up incidents must neither grow
    the page without end nor push out the analysts' real ones. So decisions on incidents the page
    does not know leave first (the oldest of them), and only then the least recently decided.
    """

    def __init__(self, capacity: int = 2000) -> None:
        self.capacity = capacity
        self._reviews: dict[str, Review] = {}
        self._unknown: dict[str, None] = {}
        """Decisions on incidents the page did not know when they were read, oldest first."""

    def add(self, review: Review, known: bool = True) -> None:
        """``known``: the page holds the incident decided on."""
        incident_id = review.incident_id
        self.remove(incident_id)
        self._reviews[incident_id] = review
        if not known:
            self._unknown[incident_id] = None
        if len(self._reviews) > self.capacity:
            self.remove(next(iter(self._unknown)) if self._unknown else next(iter(self._reviews)))

    def remove(self, incident_id: str) -> None:
        """A decision deleted from the topic (its key with no value): the incident is undecided again."""
        self._reviews.pop(incident_id, None)
        self._unknown.pop(incident_id, None)

    def copy(self) -> dict[str, Review]:
        return dict(self._reviews)

    def __len__(self) -> int:
        return len(self._reviews)


def decisions_by_kind(reviews: Iterable[Review], incidents: Mapping[str, Incident]) -> dict[str, Counter]:
    """Per incident kind, how many were acknowledged and how many dismissed as false positives:
    a kind dismissed again and again is a threshold to review."""
    counts: dict[str, Counter] = {}
    for review in reviews:
        incident = incidents.get(review.incident_id)
        kind = review.kind or (incident.kind if incident else "unknown")
        counts.setdefault(kind, Counter())[review.decision] += 1
    return counts


def changed_since(review: Review, incident: Incident) -> list[str]:
    """What the analyst sees differently in ``incident`` than in the revision decided on: its level,
    its kind, its revision ('level critical', 'kind burst', 'revision 10'); empty when nothing did
    or the review does not say (a review written before reviews named their revision)."""
    changes = []
    if review.level is not None and incident.level != review.level:
        changes.append(f"level {incident.level}")
    if review.kind is not None and incident.kind != review.kind:
        changes.append(f"kind {incident.kind}")
    if review.revision is not None and incident.revision != review.revision:
        changes.append(f"revision {incident.revision}")
    return changes


def escalated_since(review: Review, incident: Incident) -> bool:
    """The incident grew worse than what was decided on (a higher level, or another kind): the
    decision no longer covers it, so 'Hide reviewed' does not hide it."""
    rose = review.level is not None and LEVEL_RANK[incident.level] > LEVEL_RANK[review.level]
    return rose or (review.kind is not None and incident.kind != review.kind)


def identity(review: Review | None) -> tuple | None:
    """What tells one analyst's review from another's (or from the same analyst's next one)."""
    return None if review is None else (review.reviewed_at_ns, review.analyst, review.decision, review.note)


class ReviewedMeanwhile(Exception):
    """A review of the incident is on the topic that the page did not know of: the write was refused."""

    def __init__(self, review: Review) -> None:
        super().__init__(f"{review.incident_id} was reviewed meanwhile by {review.analyst}")
        self.review = review


def latest_review(incident_id: str, values: list[bytes | None]) -> Review | None:
    """The review of ``incident_id`` a page reading ``values`` (under its key, oldest first) ends up
    showing: the last valid one, none after a delete; an invalid record changes nothing, as on the page."""
    for value in reversed(values):
        if value is None:
            return None
        try:
            review = decode_review(value)
        except InvalidRecord:
            continue
        if review.incident_id == incident_id:
            return review
    return None


def refuse_unknown(incident_id: str, known: Collection[tuple | None]) -> Callable[[list[bytes | None]], None]:
    """The writer's check: raises ``ReviewedMeanwhile`` when the latest review of ``incident_id`` on
    the topic is none of those ``known`` (identities) to the page, which would replace it unseen."""
    def check(values: list[bytes | None]) -> None:
        latest = latest_review(incident_id, values)
        if latest is not None and identity(latest) not in known:
            raise ReviewedMeanwhile(latest)
    return check
