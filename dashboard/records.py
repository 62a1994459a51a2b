"""Every record the page reads, checked before it is kept: anomalies, incidents, summaries, reviews.

The topics carry whatever anybody published, so each message is treated as
hostile input, like a trade: a wrong type, a number that is not finite or out of
its range (a severity of 1e308 or -5), a time before 1990 or after 2100 (2^64-1
nanoseconds) raises ``InvalidRecord`` with the reason, and the feed puts that in
the error log with the message's topic, partition and offset. What passes is a
small frozen record holding only what the page shows, so one bad message can
never reach a figure and memory stays small: fields of the contract the page
does not show (an incident's ``anomaly_ids``, an anomaly's ``votes``) are checked,
so a broken producer is still reported, but not kept, and kept lists and text are
bounded (``fields.MAX_*``: a record of the largest size validation accepts once
held some 300 KB, and a page holds thousands). Fields that older jobs did not
write yet are optional: missing means "not known", never an error.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any

from dashboard.fields import (
    DECISIONS, DETECTORS, DIRECTIONS, INCIDENT_STATUSES, LEVEL_RANK, LEVELS, MAX_ANALYST_LENGTH, MAX_COUNT,
    MAX_DETECTOR_NAME, MAX_DETECTORS, MAX_ID_LENGTH, MAX_KEPT_PATH, MAX_NOTE_LENGTH, MAX_PRICE,
    MAX_PRICE_PATH, MAX_SUMMARY_LENGTH, MAX_SYMBOL_LENGTH, SIDES, InvalidRecord, checked_number, choice, cut,
    explanation_lines, iso_time, json_object, number, short, text, time_ns, visible_name, whole,
)

__all__ = [  # what the rest of the dashboard takes from here, including the field checks it needs
    "DECISIONS", "DETECTORS", "LEVELS", "LEVEL_RANK", "MAX_ANALYST_LENGTH", "MAX_NOTE_LENGTH", "SIDES",
    "Anomaly", "DetectorVerdict", "Incident", "InvalidRecord", "PricePath", "Review", "Summary",
    "decode_anomaly", "decode_incident", "decode_review", "decode_summary", "iso_time", "time_ns", "visible_name",
]

# ---------------------------------------------------------------- anomalies


@dataclass(frozen=True, slots=True)
class DetectorVerdict:
    name: str
    score: float
    threshold: float | None
    vote: bool


@dataclass(frozen=True, slots=True)
class Anomaly:
    anomaly_id: str
    incident_id: str | None
    symbol: str
    ts_ns: int
    side: str
    price: float
    size: int | None
    kind: str
    severity: float
    level: str
    detectors: tuple[DetectorVerdict, ...]
    explanation: tuple[str, ...]

    @property
    def voted(self) -> tuple[str, ...]:
        return tuple(verdict.name for verdict in self.detectors if verdict.vote)


def decode_anomaly(raw: bytes | None) -> Anomaly:
    return anomaly_from(json_object(raw))


def anomaly_from(record: dict[str, Any]) -> Anomaly:
    side = record.get("side")
    whole(record, "votes", required=False, high=len(DETECTORS))  # checked, not kept: not shown
    whole(record, "sequence", required=False)
    return Anomaly(
        anomaly_id=text(record, "anomaly_id", MAX_ID_LENGTH),
        incident_id=text(record, "incident_id", MAX_ID_LENGTH, required=False),
        symbol=text(record, "symbol", MAX_SYMBOL_LENGTH),
        ts_ns=time_ns(record.get("ts_event"), "ts_event"),
        # Shown only: an odd side counts as "none" rather than hiding the anomaly.
        side=side if side in SIDES else "N",
        price=number(record, "price", low=0, high=MAX_PRICE),
        size=whole(record, "size", required=False),
        kind=choice(record, "kind", ("trade", "auction"), required=False) or "trade",
        severity=number(record, "severity", low=0, high=1),
        level=choice(record, "level", LEVELS),
        detectors=_detectors(record.get("detectors")),
        explanation=explanation_lines(record.get("explanation")),
    )


def _detectors(value: Any) -> tuple[DetectorVerdict, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise InvalidRecord("'detectors' is not an object")
    verdicts = []
    for name, verdict in list(value.items())[:MAX_DETECTORS]:
        label = f"detectors.{name}"[:60]
        if not isinstance(verdict, dict):
            raise InvalidRecord(f"{label!r} is not an object")
        vote = verdict.get("vote")
        if not isinstance(vote, bool):
            raise InvalidRecord(f"'{label}.vote' is not true or false")
        verdicts.append(DetectorVerdict(
            name=cut(text({"name": name}, "name", MAX_ID_LENGTH), MAX_DETECTOR_NAME),
            score=checked_number(verdict.get("score"), f"{label}.score"),
            threshold=None if verdict.get("threshold") is None else checked_number(
                verdict["threshold"], f"{label}.threshold"),
            vote=vote,
        ))
    return tuple(verdicts)


# ---------------------------------------------------------------- incidents


@dataclass(frozen=True, slots=True)
class PricePath:
    """An incident's trades, kept compact: a few arrays rather than an object per trade (a page
    holds up to thousands of incidents, each path kept to at most ``MAX_KEPT_PATH`` points)."""

    times: array = field(default_factory=lambda: array("q"))
    """Event times, nanoseconds."""
    prices: array = field(default_factory=lambda: array("d"))
    sizes: array = field(default_factory=lambda: array("q"))
    """-1 where the size is not given."""
    sides: str = ""
    """One letter (A, B, N) per trade."""

    def __len__(self) -> int:
        return len(self.prices)


@dataclass(frozen=True, slots=True)
class Incident:
    incident_id: str
    symbol: str
    status: str
    revision: int
    kind: str
    direction: str | None
    first_ns: int
    last_ns: int
    duration_s: float
    anomalies: int
    trades: int | None
    reference_price: float | None
    price_move_bps: float | None
    recovered: float | None
    severity: float
    level: str
    summary: str
    explanation: tuple[str, ...]
    price_path: PricePath

    @property
    def is_open(self) -> bool:
        return self.status != "closed"


def decode_incident(raw: bytes | None) -> Incident:
    return incident_from(json_object(raw))


def incident_from(record: dict[str, Any]) -> Incident:
    first_ns = time_ns(record.get("first_ts_event"), "first_ts_event")
    last_ns = time_ns(record.get("last_ts_event", record.get("first_ts_event")), "last_ts_event")
    if last_ns < first_ns:
        raise InvalidRecord("'last_ts_event' is before 'first_ts_event'")
    duration = number(record, "duration_s", required=False, low=0, high=1e8)
    _check_unshown_incident_fields(record)
    return Incident(
        incident_id=text(record, "incident_id", MAX_ID_LENGTH),
        symbol=text(record, "symbol", MAX_SYMBOL_LENGTH),
        status=choice(record, "status", INCIDENT_STATUSES),
        revision=whole(record, "revision", required=False) or 0,
        kind=text(record, "kind", 40, required=False) or "other",
        direction=choice(record, "direction", DIRECTIONS, required=False),
        first_ns=first_ns,
        last_ns=last_ns,
        duration_s=(last_ns - first_ns) / 1e9 if duration is None else duration,
        anomalies=whole(record, "anomalies", required=False) or 0,
        trades=whole(record, "trades", required=False),
        reference_price=number(record, "reference_price", required=False, low=0, high=MAX_PRICE),
        price_move_bps=number(record, "price_move_bps", required=False, low=-1e6, high=1e6),
        recovered=number(record, "recovered", required=False, low=-1e3, high=1e3),
        severity=number(record, "severity", low=0, high=1),
        level=choice(record, "level", LEVELS),
        summary=text(record, "summary", MAX_SUMMARY_LENGTH, required=False, truncate=True) or "",
        explanation=explanation_lines(record.get("explanation")),
        price_path=_price_path(record.get("price_path")),
    )


def _check_unshown_incident_fields(record: dict[str, Any]) -> None:
    """Fields of the contract the page does not show: checked, so a broken producer is reported, not kept."""
    whole(record, "max_size", required=False)
    number(record, "size_vs_median", required=False, low=0, high=1e12)
    text(record, "peak_anomaly_id", MAX_ID_LENGTH, required=False)
    number(record, "peak_severity", required=False, low=0, high=1)
    ids = record.get("anomaly_ids")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(item, str) for item in ids)):
        raise InvalidRecord("'anomaly_ids' is not a list of ids")


def _price_path(value: Any) -> PricePath:
    path = PricePath()
    if value is None:
        return path
    if not isinstance(value, list):
        raise InvalidRecord("'price_path' is not a list")
    if len(value) > MAX_PRICE_PATH:
        raise InvalidRecord(f"'price_path' has {len(value)} points, more than {MAX_PRICE_PATH}")
    sides = []
    for position, point in enumerate(value):
        name = f"price_path[{position}]"
        if not isinstance(point, list) or len(point) < 2:
            raise InvalidRecord(f"{name!r} is not [time, price, size, side]")
        size = point[2] if len(point) > 2 else -1
        if not isinstance(size, int) or isinstance(size, bool) or not -1 <= size <= MAX_COUNT:
            raise InvalidRecord(f"'{name}.size' is not a whole number: {short(size)}")
        side = point[3] if len(point) > 3 else "N"
        path.times.append(time_ns(point[0], f"{name}.time"))
        path.prices.append(checked_number(point[1], f"{name}.price", 0, MAX_PRICE))
        path.sizes.append(size)
        sides.append(side if side in SIDES else "N")
    return _thinned(PricePath(path.times, path.prices, path.sizes, "".join(sides)))


def _thinned(path: PricePath) -> PricePath:
    """At most ``MAX_KEPT_PATH`` points, evenly spread from the first to the last."""
    if len(path) <= MAX_KEPT_PATH:
        return path
    kept = [round(index * (len(path) - 1) / (MAX_KEPT_PATH - 1)) for index in range(MAX_KEPT_PATH)]
    return PricePath(array("q", (path.times[i] for i in kept)), array("d", (path.prices[i] for i in kept)),
                     array("q", (path.sizes[i] for i in kept)), "".join(path.sides[i] for i in kept))


# ---------------------------------------------------------------- instrument summaries


@dataclass(frozen=True, slots=True)
class Summary:
    symbol: str
    ts_ns: int
    last_price: float
    trades_processed: int | None
    anomalies: int | None
    rejected: int | None
    incidents: int | None
    open_incident_level: str | None
    anomalies_by_level: dict[str, int] | None
    anomalies_by_side: dict[str, int] | None
    severity_sum: float | None
    severity_max: float | None
    source: str | None
    partition: int | None
    offset: int | None
    since_ns: int | None = None
    """When the instrument's state started: an instrument idle for a day starts again from zero."""

    @property
    def has_totals(self) -> bool:
        """Whether the job that wrote it counts severities and sides (the richer summaries)."""
        return None not in (self.anomalies, self.anomalies_by_level, self.anomalies_by_side,
                            self.severity_sum, self.severity_max)


def decode_summary(raw: bytes | None) -> Summary:
    return summary_from(json_object(raw))


def summary_from(record: dict[str, Any]) -> Summary:
    anomalies = whole(record, "anomalies", required=False)
    by_level = _counts(record.get("anomalies_by_level"), "anomalies_by_level", LEVELS)
    by_side = _counts(record.get("anomalies_by_side"), "anomalies_by_side", SIDES)
    for name, counts in (("anomalies_by_level", by_level), ("anomalies_by_side", by_side)):
        if counts is not None and anomalies is not None and sum(counts.values()) != anomalies:
            raise InvalidRecord(f"{name!r} adds up to {sum(counts.values())}, not 'anomalies' {anomalies}")
    whole(record, "model_generation", required=False)  # checked, not kept: not shown
    return Summary(
        symbol=text(record, "symbol", MAX_SYMBOL_LENGTH),
        ts_ns=time_ns(record.get("ts_event"), "ts_event"),
        last_price=number(record, "last_price", low=0, high=MAX_PRICE),
        trades_processed=whole(record, "trades_processed", required=False),
        anomalies=anomalies,
        rejected=whole(record, "rejected", required=False),
        incidents=whole(record, "incidents", required=False),
        open_incident_level=choice(record, "open_incident_level", LEVELS, required=False),
        anomalies_by_level=by_level,
        anomalies_by_side=by_side,
        severity_sum=number(record, "severity_sum", required=False, low=0, high=MAX_COUNT),
        severity_max=number(record, "severity_max", required=False, low=0, high=1),
        source=text(record, "source", MAX_ID_LENGTH, required=False),
        partition=whole(record, "partition", required=False, high=1_000_000),
        offset=whole(record, "offset", required=False, high=2**63 - 1),
        since_ns=None if record.get("since") is None else time_ns(record.get("since"), "since"),
    )


def _counts(value: Any, name: str, keys: tuple[str, ...]) -> dict[str, int] | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise InvalidRecord(f"{name!r} is not an object")
    unknown = [key for key in value if key not in keys]
    if unknown:  # reported, not silently left out of the totals
        raise InvalidRecord(f"{name!r} has an unknown key {short(unknown[0])}")
    return {key: whole(value, key, required=False) or 0 for key in keys}


# ---------------------------------------------------------------- reviews


@dataclass(frozen=True, slots=True)
class Review:
    incident_id: str
    decision: str
    note: str
    analyst: str
    reviewed_at_ns: int
    symbol: str | None = None
    kind: str | None = None
    level: str | None = None
    revision: int | None = None
    """The incident's revision decided on (its symbol, kind and level are those of that revision);
    None in a review written before reviews said so."""

    def to_dict(self) -> dict[str, Any]:
        """The message the dashboard writes to the reviews topic (docs/CONTRACTS.md)."""
        return {
            "incident_id": self.incident_id, "decision": self.decision, "note": self.note,
            "analyst": self.analyst, "reviewed_at": iso_time(self.reviewed_at_ns),
            "symbol": self.symbol, "kind": self.kind, "level": self.level, "revision": self.revision,
        }


def decode_review(raw: bytes | None) -> Review:
    return review_from(json_object(raw))


def review_from(record: dict[str, Any]) -> Review:
    note = record.get("note", "")
    if not isinstance(note, str) or len(note) > MAX_NOTE_LENGTH:
        raise InvalidRecord(f"'note' is not text of at most {MAX_NOTE_LENGTH} characters")
    analyst = visible_name(text(record, "analyst", MAX_ANALYST_LENGTH))
    if not analyst:  # zero-width spaces, bidi controls: a review that names nobody
        raise InvalidRecord("'analyst' has no visible character")
    return Review(
        incident_id=text(record, "incident_id", MAX_ID_LENGTH),
        decision=choice(record, "decision", DECISIONS),
        note=note,
        analyst=analyst,
        reviewed_at_ns=time_ns(record.get("reviewed_at"), "reviewed_at"),
        symbol=text(record, "symbol", MAX_SYMBOL_LENGTH, required=False),
        kind=text(record, "kind", 40, required=False),
        level=choice(record, "level", LEVELS, required=False),
        revision=whole(record, "revision", required=False),
    )
