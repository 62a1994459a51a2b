"""The numbers on the page, computed from anomaly records with no Streamlit in sight.

Pure functions of the records so they can be tested on real values and reused by
the app for every refresh.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from dashboard.buffer import LEVELS, SIDES

DETECTORS = ("isolation_forest", "elliptic_envelope", "zscore")


@dataclass(frozen=True)
class AnomalyMetrics:
    total: int
    average_severity: float | None
    max_severity: float | None
    critical: int
    by_side: dict[str, int]
    """Ask / Bid / None: which side's aggressor traded; anything else counts as None."""


def compute_metrics(records: Iterable[dict[str, Any]]) -> AnomalyMetrics:
    severities: list[float] = []
    critical = 0
    sides = Counter({name: 0 for name in SIDES.values()})
    for record in records:
        severities.append(float(record["severity"]))
        critical += record["level"] == "critical"
        sides[SIDES.get(record.get("side"), "None")] += 1
    if not severities:
        return AnomalyMetrics(0, None, None, 0, dict(sides))
    return AnomalyMetrics(
        total=len(severities),
        average_severity=sum(severities) / len(severities),
        max_severity=max(severities),
        critical=critical,
        by_side=dict(sides),
    )


def filter_records(
    records: Iterable[dict[str, Any]], symbols: Collection[str] = (), levels: Collection[str] = ()
) -> list[dict[str, Any]]:
    """Records of the chosen symbols and levels; an empty choice means all."""
    return [
        record for record in records
        if (not symbols or record["symbol"] in symbols) and (not levels or record["level"] in levels)
    ]


def detector_vote_counts(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    """How many of the records each detector voted for."""
    counts = {name: 0 for name in DETECTORS}
    for record in records:
        for name, verdict in (record.get("detectors") or {}).items():
            if isinstance(verdict, dict) and verdict.get("vote") is True:
                counts[name] = counts.get(name, 0) + 1
    return counts


def level_counts(records: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts = Counter(record["level"] for record in records)
    return {level: counts.get(level, 0) for level in LEVELS}


def explanation_text(record: dict[str, Any]) -> str:
    """``current_size=1452275 (z 9.8); ...``: the features that made the trade stand out."""
    parts = []
    for item in record.get("explanation") or []:
        if not isinstance(item, dict):
            continue
        value, zscore = item.get("value"), item.get("zscore")
        value_text = f"{value:.6g}" if isinstance(value, (int, float)) else str(value)
        zscore_text = f" (z {zscore:.1f})" if isinstance(zscore, (int, float)) else ""
        parts.append(f"{item.get('feature')}={value_text}{zscore_text}")
    return "; ".join(parts)


def latest_rows(records: list[dict[str, Any]], limit: int = 50) -> list[dict[str, Any]]:
    """The table of the latest anomalies (newest event first), as plain values."""
    newest = sorted(records, key=lambda record: record["ts_event"], reverse=True)[:limit]
    return [
        {
            "ts_event (UTC)": record["ts_event"],
            "symbol": record["symbol"],
            "level": record["level"],
            "severity": round(float(record["severity"]), 3),
            "side": SIDES.get(record.get("side"), "None"),
            "price": record.get("price"),
            "size": record.get("size"),
            "votes": record.get("votes"),
            "detectors": ", ".join(
                name for name, verdict in (record.get("detectors") or {}).items()
                if isinstance(verdict, dict) and verdict.get("vote") is True
            ),
            "explanation": explanation_text(record),
            "anomaly_id": record["anomaly_id"],
        }
        for record in newest
    ]
