"""The page's numbers and tables as plain values, computed without Streamlit.

Pure functions of validated records, so they are tested on real values and the
app only lays them out. Times go out as New York and UTC text; data text stays
text (tables show it as it is, never as Markdown or HTML).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from dashboard.clock import duration_text, new_york_text, utc_text
from dashboard.records import DETECTORS, SIDES, Anomaly, Incident, Review
from dashboard.reviews import changed_since

SIDE_NAMES = {"A": "Ask", "B": "Bid", "N": "None"}


@dataclass(frozen=True)
class AnomalyMetrics:
    total: int
    average_severity: float | None
    max_severity: float | None
    critical: int
    by_side: dict[str, int]
    """A / B / N: which side's aggressor traded."""


def compute_metrics(records: Iterable[Anomaly]) -> AnomalyMetrics:
    severities: list[float] = []
    critical = 0
    sides = Counter({side: 0 for side in SIDES})
    for record in records:
        severities.append(record.severity)
        critical += record.level == "critical"
        sides[record.side] += 1
    return AnomalyMetrics(
        total=len(severities),
        average_severity=sum(severities) / len(severities) if severities else None,
        max_severity=max(severities, default=None),
        critical=critical,
        by_side=dict(sides),
    )


def filter_records(
    records: Iterable[Anomaly], symbols: Collection[str] = (), levels: Collection[str] = ()
) -> list[Anomaly]:
    """Records of the chosen symbols and levels; an empty choice means all."""
    return [
        record for record in records
        if (not symbols or record.symbol in symbols) and (not levels or record.level in levels)
    ]


def detector_vote_counts(records: Iterable[Anomaly]) -> dict[str, int]:
    """How many of the records each detector voted for."""
    counts = {name: 0 for name in DETECTORS}
    for record in records:
        for name in record.voted:
            counts[name] = counts.get(name, 0) + 1
    return counts


def latest_rows(records: list[Anomaly], limit: int = 50) -> list[dict[str, object]]:
    """The table of the latest anomalies (newest event first), as plain values."""
    newest = sorted(records, key=lambda record: (record.ts_ns, record.anomaly_id), reverse=True)[:limit]
    return [
        {
            "time (New York)": new_york_text(record.ts_ns),
            "time (UTC)": utc_text(record.ts_ns),
            "symbol": record.symbol,
            "kind": record.kind,
            "level": record.level,
            "severity": round(record.severity, 3),
            "side": SIDE_NAMES[record.side],
            "price": record.price,
            "size": record.size,
            "detectors voting": ", ".join(record.voted),
            "explanation": "; ".join(record.explanation),
            "anomaly_id": record.anomaly_id,
        }
        for record in newest
    ]


def price_move_text(incident: Incident) -> str:
    """``-240 bp (-2.40%)``, or a dash when the job did not measure one."""
    move = incident.price_move_bps
    return "–" if move is None else f"{move:+,.0f} bp ({move / 100:+.2f}%)"


def kind_text(incident: Incident) -> str:
    """Auctions are marked so an analyst never mistakes a cross for an event."""
    kind = incident.kind.replace("_", " ")
    if incident.kind == "auction":
        return "AUCTION (opening/closing cross)"
    return kind if incident.direction is None else f"{kind} ({incident.direction})"


def queue_rows(queue: list[Incident], reviews: Mapping[str, Review]) -> list[dict[str, object]]:
    """One row per incident, in queue order."""
    return [
        {
            "status": incident.status,
            "level": incident.level,
            "symbol": incident.symbol,
            "kind": kind_text(incident),
            "start (New York)": new_york_text(incident.first_ns),
            "start (UTC)": utc_text(incident.first_ns),
            "duration": duration_text(incident.duration_s),
            "trades": incident.trades,
            "anomalies": incident.anomalies,
            "price move": price_move_text(incident),
            "review": review_text(reviews.get(incident.incident_id), incident),
            "summary": incident.summary,
            "incident_id": incident.incident_id,
        }
        for incident in queue
    ]


def review_text(review: Review | None, incident: Incident | None = None) -> str:
    """Who decided what, and when ``incident`` has changed since, ``review_change_text``."""
    if review is None:
        return ""
    decision = "dismissed (false positive)" if review.decision == "dismissed" else "acknowledged"
    said = f"{decision} by {review.analyst}"  # shown as text only (tables, st.text): the name is data
    return said + (review_change_text(review, incident) if incident is not None else "")


def review_change_text(review: Review, incident: Incident) -> str:
    """Empty while the incident is as decided; otherwise which revision was decided on and what
    changed since (' on revision 1 (low, other); since then: level critical, kind burst, revision 10')."""
    changes = changed_since(review, incident)
    if not changes:
        return ""
    then = ", ".join(value for value in (review.level, review.kind) if value)
    on = (f" on revision {review.revision}" if review.revision is not None else "") + (f" ({then})" if then else "")
    return f"{on}; since then: {', '.join(changes)}"


def incident_label(incident: Incident) -> str:
    """The line that names an incident in the picker: plain text."""
    return (f"{incident.level.upper()} · {incident.symbol} · {kind_text(incident)} · "
            f"{new_york_text(incident.first_ns)} New York · {incident.status}")


def members_text(held: int, incident: Incident) -> str:
    """How many of an incident's anomalies the page holds, against the incident's own count.

    An open incident is republished only when its members double (or its kind or level
    changes), so the page may hold more members than its last message counted.
    """
    if held > incident.anomalies:
        return (f"{held:,} in memory; the incident's last message (revision {incident.revision}) "
                f"counted {incident.anomalies:,}")
    return f"{held:,} in memory of {incident.anomalies:,}"


def member_rows(members: list[Anomaly]) -> list[dict[str, object]]:
    """Each member anomaly with every detector's score, threshold and vote."""
    rows = []
    for record in members:
        row: dict[str, object] = {
            "time (New York)": new_york_text(record.ts_ns),
            "time (UTC)": utc_text(record.ts_ns),
            "price": record.price,
            "size": record.size,
            "side": SIDE_NAMES[record.side],
            "kind": record.kind,
            "severity": round(record.severity, 3),
            "level": record.level,
        }
        for verdict in record.detectors:
            threshold = "" if verdict.threshold is None else f" / {verdict.threshold:.4g}"
            row[verdict.name] = f"{verdict.score:.4g}{threshold} {'VOTE' if verdict.vote else 'no'}"
        row["explanation"] = "; ".join(record.explanation)
        row["anomaly_id"] = record.anomaly_id
        rows.append(row)
    return rows


def decision_rows(counts: Mapping[str, Counter]) -> list[dict[str, object]]:
    return [
        {"kind": kind.replace("_", " "), "dismissed as false positive": counter["dismissed"],
         "acknowledged": counter["acknowledged"]}
        for kind, counter in sorted(counts.items(), key=lambda item: (-item[1]["dismissed"], item[0]))
    ]
