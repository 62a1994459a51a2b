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
from collections.abc import Iterable, Mapping

from dashboard.records import Incident, Review


class ReviewBook:
    """The latest decision per incident, in the order the topic holds them; at most ``capacity``,
    the least recently decided leaving first (the topic is anyone's to write: a flood of
    decisions on made-up incidents must not grow the page without end)."""

    def __init__(self, capacity: int = 2000) -> None:
        self.capacity = capacity
        self._reviews: dict[str, Review] = {}

    def add(self, review: Review) -> None:
        self._reviews.pop(review.incident_id, None)
        self._reviews[review.incident_id] = review
        if len(self._reviews) > self.capacity:
            del self._reviews[next(iter(self._reviews))]

    def remove(self, incident_id: str) -> None:
        """A decision deleted from the topic (its key with no value): the incident is undecided again."""
        self._reviews.pop(incident_id, None)

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
