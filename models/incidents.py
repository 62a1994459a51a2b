"""Incidents: one alert per market event, named, with a severity that ranks.

A flash crash raises hundreds of anomaly records; an analyst wants one thing to look at.
The ``IncidentTracker`` of an instrument groups its anomalies: an anomaly opens an
incident, the following anomalies join it, and it closes once it has been quiet for
``quiet_trades`` trades *and* ``quiet_seconds`` of event time (both: a busy market
makes 200 trades in a second, a sleepy one 10 seconds in two trades), or when an anomaly
that reads as another family of kind arrives (``closed_by: "next_event"``: two events close
together get an incident each). Every state
change is one ``IncidentUpdate`` (``open``, ``updated``, ``closed``).

Deterministic: every decision is taken trade by trade in event order, from the trades
and flags alone, so the updates are the same whatever the runs the trades arrive in,
and a tracker unpickled at any point continues exactly as the original. "updated" is
sent when the kind, direction or level changes, or when the members have doubled since
the last message: a few messages per incident, not one per anomaly.

Bounded: the tracker keeps the last ``context_trades`` trades and, while an incident is
open, its trades; an incident that has run ``max_trades`` trades or ``max_seconds`` of
event time since its first anomaly closes (``closed_by: "limit"``) and the next anomaly
opens a new one, so a market that never goes quiet cannot grow the state.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

import numpy as np

from models.config import ConfigError, parse_number, require_span
from models.explain import IncidentFacts, explain_incident, summary
from models.kinds import KIND_FAMILIES, KindEvidence, KindRules, context_baseline, decide_kind, measure
from models.records import AnomalyRecord
from models.session import NEW_YORK
from models.severity import BLOCK_MEMORY_S, incident_severity, magnitude, member_confidence
from models.severity import level as severity_level

ENV_PREFIX = "DETECTOR_INCIDENT_"
SIDE_LETTERS = {0: "N", 1: "A", 2: "B"}  # inverse of models.features.SIDE_CODES


@dataclass(frozen=True)
class IncidentSettings:
    """How anomalies are grouped into incidents and how much of them is kept.

    Read from ``DETECTOR_INCIDENT_<SETTING>`` by ``from_env`` (docs/INCIDENTS.md, the table of
    variables in its section *Incidents*).
    """

    quiet_trades: int = 200
    """An open incident closes once this many trades ..."""
    quiet_seconds: float = 10.0
    """... and this many seconds of event time have passed since its last anomaly."""
    context_trades: int = 200
    """Trades kept before the first anomaly: reference price, median size, the start of
    a burst that is flagged only once the window is full of it, the price path."""
    max_trades: int = 5_000
    """An incident closes (``closed_by: "limit"``) after this many trades ..."""
    max_seconds: float = 900.0
    """... or this many seconds of event time since its first anomaly."""
    path_trades: int = 300
    """Most points in ``price_path``: context first, then the incident."""
    path_context: int = 50
    """Of which context trades."""
    listed_anomalies: int = 50
    """Most anomaly ids listed in ``anomaly_ids`` (the first ones)."""
    kinds: KindRules = field(default_factory=KindRules)

    def __post_init__(self) -> None:
        _require(self.quiet_trades >= 1, "quiet_trades", "must be at least 1")
        require_span("quiet_seconds", self.quiet_seconds, zero_allowed=True)
        _require(self.context_trades >= 2, "context_trades", "must be at least 2")
        _require(self.max_trades >= 2, "max_trades", "must be at least 2")
        require_span("max_seconds", self.max_seconds)
        _require(self.path_trades >= 2, "path_trades", "must be at least 2")
        _require(0 <= self.path_context < self.path_trades, "path_context", "must be in [0, path_trades)")
        _require(self.listed_anomalies >= 1, "listed_anomalies", "must be at least 1")

    @classmethod
    def variables(cls) -> frozenset[str]:
        """The environment variables ``from_env`` reads (the kind rules are not among them)."""
        return frozenset(ENV_PREFIX + setting.name.upper() for setting in fields(cls) if setting.name != "kinds")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> IncidentSettings:
        """Unset variables keep their default; a bad value raises ``ConfigError`` naming the variable."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in fields(cls):
            variable = ENV_PREFIX + setting.name.upper()
            if setting.name == "kinds" or variable not in environ:
                continue
            kind = int if isinstance(getattr(cls(), setting.name), int) else float
            try:
                values[setting.name] = parse_number(environ[variable], kind)
            except ValueError:
                raise ConfigError(f"{variable}={environ[variable]!r} is not a valid {kind.__name__}") from None
        try:
            return cls(**values)
        except ConfigError as error:
            raise ConfigError(f"{ENV_PREFIX}{error}") from None


def _require(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"{name.upper()}: {message}")


@dataclass(frozen=True)
class TradeColumns:
    """The valid trades just scored, in order (the columns of ``models.trades.ValidTrades``)."""

    prices: np.ndarray
    sizes: np.ndarray
    timestamps_ns: np.ndarray
    sides: np.ndarray
    """int8 codes of ``models.features.SIDE_CODES`` (N 0, A 1, B 2)."""
    sequences: np.ndarray

    def __len__(self) -> int:
        return len(self.prices)

    @classmethod
    def of(cls, valid: Any) -> TradeColumns:
        """The columns of anything that has them, e.g. ``models.trades.ValidTrades``."""
        return cls(valid.prices, valid.sizes, valid.timestamps_ns, valid.sides, valid.sequences)

    def rows(self, start: int, stop: int) -> _Tape:
        return _Tape(self.prices[start:stop], self.sizes[start:stop], self.timestamps_ns[start:stop],
                     self.sides[start:stop])


@dataclass(slots=True)
class _Tape:
    """Price, size, time and side columns of consecutive trades (the state keeps these).
    Never modified once made; not frozen only because frozen construction is slower on the
    path every run takes."""

    prices: np.ndarray
    sizes: np.ndarray
    timestamps_ns: np.ndarray
    sides: np.ndarray

    @classmethod
    def empty(cls) -> _Tape:
        return cls(np.empty(0), np.empty(0), np.empty(0, np.int64), np.empty(0, np.int8))

    @classmethod
    def joined(cls, parts: Sequence[_Tape]) -> _Tape:
        if len(parts) == 1:
            return parts[0]
        return cls(*(np.concatenate(columns) for columns in zip(
            *((p.prices, p.sizes, p.timestamps_ns, p.sides) for p in parts))))

    def __len__(self) -> int:
        return len(self.prices)

    def followed_by(self, trades: TradeColumns | _Tape, keep: int) -> _Tape:
        """The last ``keep`` trades of this tape followed by ``trades``, in new arrays: the same as
        ``_Tape.joined([self, trades]).tail(keep)`` without copying what the tail drops."""
        return self.followed_by_runs((trades,), keep)

    def followed_by_runs(self, runs: Sequence[TradeColumns | _Tape], keep: int) -> _Tape:
        """``followed_by`` the runs one after another, in one concatenation per column of only the
        rows the last ``keep`` trades reach (of this tape, then of the runs)."""
        first, reached = len(runs), 0
        while first and reached < keep:
            first -= 1
            reached += len(runs[first])
        held, skipped = max(0, keep - reached), max(0, reached - keep)  # rows of this tape / of the first run
        columns = []
        for name, dtype in (("prices", np.float64), ("sizes", np.float64), ("timestamps_ns", np.int64),
                            ("sides", np.int8)):
            pieces = [getattr(run, name) for run in runs[first:]]
            pieces[0] = pieces[0][skipped:]
            if held:
                pieces.insert(0, getattr(self, name)[-held:])
            columns.append(np.concatenate(pieces, dtype=dtype, casting="unsafe"))
        return _Tape(*columns)

    def tail(self, count: int) -> _Tape:
        """The last ``count`` trades, as copies: the caller may reuse its arrays."""
        return _Tape(_copy(self.prices[-count:], np.float64), _copy(self.sizes[-count:], np.float64),
                     _copy(self.timestamps_ns[-count:], np.int64), _copy(self.sides[-count:], np.int8))


def _copy(column: np.ndarray, dtype: type) -> np.ndarray:
    return column.copy() if column.dtype == dtype else column.astype(dtype)


@dataclass(frozen=True)
class IncidentUpdate:
    """One state change of an incident: the incident as it stands after trade ``row``."""

    incident_id: str
    symbol: str
    instrument_id: int | None
    publisher_id: int | None
    status: str
    revision: int
    kind: str
    direction: str | None
    first_sequence: int
    last_sequence: int
    first_ts_event: str
    last_ts_event: str
    duration_s: float
    anomalies: int
    trades: int
    reference_price: float
    price_move_bps: float
    recovered: float | None
    max_size: int
    size_vs_median: float
    severity: float
    level: str
    confidence: float
    peak_anomaly_id: str
    peak_severity: float
    anomaly_ids: tuple[str, ...]
    summary: str
    explanation: tuple[dict[str, Any], ...]
    price_path: tuple[tuple[int, float, int, str], ...]
    closed_by: str | None = None
    updated_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    """Processing time: the one field that differs between two runs over the same tape."""

    def to_dict(self) -> dict[str, Any]:
        """The incident JSON of docs/CONTRACTS.md."""
        return {
            "incident_id": self.incident_id, "symbol": self.symbol,
            "instrument_id": self.instrument_id, "publisher_id": self.publisher_id,
            "status": self.status, "revision": self.revision, "kind": self.kind, "direction": self.direction,
            "first_sequence": self.first_sequence, "last_sequence": self.last_sequence,
            "first_ts_event": self.first_ts_event, "last_ts_event": self.last_ts_event,
            "duration_s": self.duration_s, "anomalies": self.anomalies, "trades": self.trades,
            "reference_price": self.reference_price, "price_move_bps": self.price_move_bps,
            "recovered": self.recovered, "max_size": self.max_size, "size_vs_median": self.size_vs_median,
            "severity": self.severity, "level": self.level, "confidence": self.confidence,
            "peak_anomaly_id": self.peak_anomaly_id, "peak_severity": self.peak_severity,
            "anomaly_ids": list(self.anomaly_ids), "summary": self.summary,
            "explanation": [dict(item) for item in self.explanation],
            "price_path": [list(point) for point in self.price_path],
            "closed_by": self.closed_by, "updated_at": self.updated_at,
        }


# --- the tracker ----------------------------------------------------------------------

ASSESS_EVERY_TRADES = 25
"""An open incident is re-assessed (kind, severity) when an anomaly joins and its member
count is a power of two, or this many trades after the last assessment: a flash crash of
400 anomalies is assessed a few dozen times, not 400."""
JOIN_RUNS = 8
"""Runs kept apart before they are joined to the context (``IncidentTracker._unjoined``)."""


@dataclass(frozen=True)
class EarlierBlock:
    """A block of one of the instrument's closed incidents: when it began and its largest print."""

    ts_ns: int
    size: float


@dataclass(frozen=True)
class _Assessment:
    evidence: KindEvidence
    kind: str
    direction: str | None
    severity: float
    level: str
    confidence: float
    earlier_block: EarlierBlock | None = None

    @property
    def view(self) -> tuple[str, str | None, str]:
        """What an analyst sees change: a new kind, direction or level is worth a message."""
        return self.kind, self.direction, self.level



@dataclass
class _OpenIncident:
    """Everything an open incident needs; bounded by ``max_trades``."""

    incident_id: str
    instrument_id: int | None
    publisher_id: int | None
    context: _Tape
    parts: list[_Tape]
    trades_seen: int  # trades from the first anomaly to the last one observed
    first_index: int  # tracker-wide index of the first anomaly's trade
    first_sequence: int
    first_ts: int
    last_index: int
    last_sequence: int
    last_ts: int
    latest_ts: int  # largest event time observed (times may go backwards)
    members: int = 0
    anomaly_ids: list[str] = field(default_factory=list)
    has_auction: bool = False
    peak_id: str = ""
    peak_severity: float = 0.0
    peak_anomaly_score: float = 0.0
    peak_vote_share: float = 0.0
    revision: int = -1
    baseline: tuple[float, float] | None = None  # reference price and median size of the context
    assessed: _Assessment | None = None
    assessed_index: int = 0
    sent_view: tuple[str, str | None, str] | None = None
    sent_members: int = 0

    def tape(self) -> _Tape:
        joined = _Tape.joined(self.parts)
        self.parts = [joined]
        return joined


class IncidentTracker:
    """The incidents of one instrument: small, picklable, deterministic."""

    _blocks: tuple[EarlierBlock, ...] = ()
    """Blocks of closed incidents within ``BLOCK_MEMORY_S``, oldest first, each larger than
    every later one: the first one not yet forgotten is the largest (a class default, so a
    tracker pickled before it existed restores with none)."""
    _unjoined: tuple[TradeColumns, ...] = ()
    """Runs observed since ``_context`` was last brought up to date. The context is read
    only when an anomaly arrives; joining its four columns on every run was a tenth of an
    instrument batch's cost when each instrument gets a few trades a batch, so runs are
    joined ``JOIN_RUNS`` at a time (a class default, so older pickles restore with none)."""

    def __init__(self, symbol: str, settings: IncidentSettings | None = None) -> None:
        self.symbol = symbol
        self.settings = settings or IncidentSettings()
        self.trades_seen = 0
        self.incidents_opened = 0
        self._context = _Tape.empty()
        self._open: _OpenIncident | None = None

    @property
    def open_incident_id(self) -> str | None:
        return self._open.incident_id if self._open else None

    def copy(self) -> IncidentTracker:
        """A working copy ``observe`` can change while the original stays as it was.

        Cheap: the trades it holds are immutable tapes, so only the open incident's
        lists are copied.
        """
        twin = IncidentTracker.__new__(IncidentTracker)
        twin.__dict__.update(self.__dict__)
        if self._open is not None:
            twin._open = dataclasses.replace(
                self._open, parts=list(self._open.parts), anomaly_ids=list(self._open.anomaly_ids))
        return twin

    def close_open(self, closed_by: str) -> IncidentUpdate | None:
        """Close the open incident now, e.g. when the instrument starts afresh after a day without trades."""
        return None if self._open is None else self._close(self._open, closed_by)

    @property
    def open_incident_level(self) -> str | None:
        """Level of the open incident as last assessed (the summary's ``open_incident_level``)."""
        return self._open.assessed.level if self._open and self._open.assessed else None

    def observe(
        self, trades: TradeColumns, flagged: Sequence[tuple[int, AnomalyRecord]]
    ) -> list[tuple[int, IncidentUpdate]]:
        """Feed every scored run of trades; ``flagged`` are (row, record) of its anomalies.

        Sets ``record.incident_id``. Returns (row, update) pairs: each update belongs
        right after trade ``row``.
        """
        count = len(trades)
        if not count:
            return []
        if self._open is None and not flagged:
            self._remember(trades, count)
            return []
        updates: list[tuple[int, IncidentUpdate]] = []
        position = 0
        for row, record in sorted(flagged, key=lambda pair: pair[0]):
            if not position <= row < count:
                continue  # defensive: a row outside the run, or given twice
            self._quiet_run(trades, position, row, updates)
            self._anomaly(trades, row, record, updates)
            position = row + 1
        self._quiet_run(trades, position, count, updates)
        self._remember(trades, count)
        return updates

    def __getstate__(self) -> dict[str, Any]:
        self._join_context()  # a snapshot holds the context as one tape, as small as before
        return self.__dict__

    def _remember(self, trades: TradeColumns, count: int) -> None:
        """Keep the last ``context_trades`` trades; count the run (the path most runs take)."""
        self._unjoined += (trades,)
        if len(self._unjoined) >= JOIN_RUNS or count >= self.settings.context_trades:
            self._join_context()
        self.trades_seen += count

    def _join_context(self) -> None:
        if not self._unjoined:
            return
        self._context = self._context.followed_by_runs(self._unjoined, self.settings.context_trades)
        self._unjoined = ()

    def _quiet_run(self, trades: TradeColumns, start: int, stop: int,
                   updates: list[tuple[int, IncidentUpdate]]) -> None:
        """Trades without anomaly: they extend the open incident until it closes."""
        incident = self._open
        if incident is None or start >= stop:
            return
        s = self.settings
        stamps = np.maximum.accumulate(np.maximum(trades.timestamps_ns[start:stop], incident.latest_ts))
        index = self.trades_seen + np.arange(start, stop)
        quiet = ((index - incident.last_index >= s.quiet_trades)
                 & (stamps - incident.last_ts >= round(s.quiet_seconds * 1e9)))
        limit = ((incident.trades_seen + np.arange(1, stop - start + 1) >= s.max_trades)
                 | (stamps - incident.first_ts >= round(s.max_seconds * 1e9)))
        ends = np.flatnonzero(quiet | limit)
        until = start + int(ends[0]) + 1 if len(ends) else stop
        self._extend(incident, trades, start, until, int(stamps[until - start - 1]))
        if len(ends):
            closed_by = "quiet" if quiet[ends[0]] else "limit"
            updates.append((until - 1, self._close(incident, closed_by)))

    def _extend(self, incident: _OpenIncident, trades: TradeColumns, start: int, stop: int, latest: int) -> None:
        incident.parts.append(trades.rows(start, stop).tail(stop - start))
        incident.trades_seen += stop - start
        incident.latest_ts = max(incident.latest_ts, latest)

    def _anomaly(self, trades: TradeColumns, row: int, record: AnomalyRecord,
                 updates: list[tuple[int, IncidentUpdate]]) -> None:
        incident = self._open
        stamp = int(trades.timestamps_ns[row])
        if incident is not None and self._begins_another_event(incident, trades, row, record):
            updates.append((row, self._close(incident, "next_event")))
            incident = None
        if incident is None:
            incident = self._open = self._start(trades, row, record)
        else:
            self._extend(incident, trades, row, row + 1, stamp)
        incident.members += 1
        incident.last_index = self.trades_seen + row
        incident.last_sequence = int(trades.sequences[row])
        incident.last_ts = max(stamp, incident.latest_ts)
        if len(incident.anomaly_ids) < self.settings.listed_anomalies:
            incident.anomaly_ids.append(record.anomaly_id)
        incident.has_auction |= record.kind == "auction"
        severity = _finite(record.severity)
        if incident.members == 1 or severity > incident.peak_severity:
            incident.peak_id, incident.peak_severity = record.anomaly_id, severity
        incident.peak_anomaly_score = max(incident.peak_anomaly_score, _finite(record.anomaly_score))
        incident.peak_vote_share = max(incident.peak_vote_share, _finite(record.confidence))
        record.incident_id = incident.incident_id
        index = self.trades_seen + row
        due = incident.members & (incident.members - 1) == 0 or index - incident.assessed_index >= ASSESS_EVERY_TRADES
        if due:
            incident.assessed, incident.assessed_index = self._assess(incident), index
            view = incident.assessed.view
            if incident.members == 1 or view != incident.sent_view or incident.members >= 2 * incident.sent_members:
                updates.append((row, self._send(incident, "open" if incident.members == 1 else "updated")))
        s = self.settings
        if (incident.trades_seen >= s.max_trades
                or incident.latest_ts - incident.first_ts >= round(s.max_seconds * 1e9)):
            updates.append((row, self._close(incident, "limit")))

    def _trades_before(self, trades: TradeColumns, stop: int, count: int) -> _Tape:
        """The last ``count`` trades before row ``stop`` of this run, older ones from the context."""
        self._join_context()
        return self._context.followed_by(trades.rows(max(0, stop - count), stop), count)

    def _begins_another_event(self, incident: _OpenIncident, trades: TradeColumns, row: int,
                              record: AnomalyRecord) -> bool:
        """Whether this anomaly, read alone against the trades before it, is an event of
        another family of kind than the open incident (a burst, then an off-market print
        100 trades later): two events close together get an incident each, each named
        after its own event, instead of one named after whichever shape dominates."""
        open_family = KIND_FAMILIES.get(incident.assessed.kind if incident.assessed else "other")
        if open_family is None or record.kind == "auction":
            return False
        alone = self._trades_before(trades, row + 1, self.settings.context_trades + 1)  # its context, then it
        evidence = measure(alone.prices, alone.sizes, alone.timestamps_ns, alone.sides, len(alone) - 1,
                           self.settings.kinds)
        family = KIND_FAMILIES.get(decide_kind(evidence, self.settings.kinds)[0])
        return family is not None and family != open_family

    def _start(self, trades: TradeColumns, row: int, record: AnomalyRecord) -> _OpenIncident:
        context = self._trades_before(trades, row, self.settings.context_trades)
        stamp = int(trades.timestamps_ns[row])
        sequence = int(trades.sequences[row])
        self.incidents_opened += 1
        return _OpenIncident(
            incident_id="INC-" + record.anomaly_id,
            instrument_id=_integer(record.trade.get("instrument_id")),
            publisher_id=_integer(record.trade.get("publisher_id")),
            context=context, parts=[trades.rows(row, row + 1).tail(1)], trades_seen=1,
            first_index=self.trades_seen + row, first_sequence=sequence, first_ts=stamp,
            last_index=self.trades_seen + row, last_sequence=sequence, last_ts=stamp, latest_ts=stamp,
        )

    def _close(self, incident: _OpenIncident, closed_by: str) -> IncidentUpdate:
        self._open = None
        incident.assessed = self._assess(incident)
        if incident.assessed.kind == "block":
            self._remember_block(EarlierBlock(incident.first_ts, incident.assessed.evidence.max_size))
        return self._send(incident, "closed", closed_by)

    def _remember_block(self, block: EarlierBlock) -> None:
        """Keep the blocks that are still remembered and larger than this one, then this one."""
        oldest = block.ts_ns - round(BLOCK_MEMORY_S * 1e9)
        self._blocks = tuple(b for b in self._blocks if b.ts_ns >= oldest and b.size > block.size) + (block,)

    def _earlier_block(self, first_ts: int) -> EarlierBlock | None:
        """The largest remembered block at an incident's first trade."""
        oldest = first_ts - round(BLOCK_MEMORY_S * 1e9)
        return next((b for b in self._blocks if b.ts_ns >= oldest), None)

    def _assess(self, incident: _OpenIncident) -> _Assessment:
        """Kind, direction, severity and level of the incident as it stands."""
        kinds = self.settings.kinds
        whole = _Tape.joined([incident.context, incident.tape()])
        if incident.baseline is None:
            first = incident.parts[0]
            incident.baseline = context_baseline(incident.context.prices, incident.context.sizes,
                                                 float(first.prices[0]), float(first.sizes[0]))
        evidence = measure(whole.prices, whole.sizes, whole.timestamps_ns, whole.sides, len(incident.context),
                           kinds, incident.has_auction, incident.baseline)
        kind, direction = decide_kind(evidence, kinds)
        earlier = self._earlier_block(incident.first_ts) if kind == "block" else None
        confidence = member_confidence(incident.peak_anomaly_score, incident.peak_vote_share, incident.members)
        severity = incident_severity(magnitude(evidence, None if earlier is None else earlier.size), confidence,
                                     incident.last_index - incident.first_index + 1)
        return _Assessment(evidence, kind, direction, severity, severity_level(severity), confidence, earlier)

    def _send(self, incident: _OpenIncident, status: str, closed_by: str | None = None) -> IncidentUpdate:
        """The next message of the incident, from its latest assessment."""
        a = incident.assessed
        incident.revision += 1
        incident.sent_view, incident.sent_members = a.view, incident.members
        evidence, trades = a.evidence, incident.last_index - incident.first_index + 1
        duration = max(incident.last_ts - incident.first_ts, 0) / 1e9
        against_earlier = _earlier_block_item(evidence, a.earlier_block)
        facts = IncidentFacts(self.symbol, a.kind, a.direction, evidence, incident.members, trades, duration,
                              _is_morning(incident.first_ts), against_earlier and against_earlier["text"])
        s = self.settings
        return IncidentUpdate(
            incident_id=incident.incident_id, symbol=self.symbol,
            instrument_id=incident.instrument_id, publisher_id=incident.publisher_id,
            status=status, revision=incident.revision, kind=a.kind, direction=a.direction,
            first_sequence=incident.first_sequence, last_sequence=incident.last_sequence,
            first_ts_event=format_ns(incident.first_ts), last_ts_event=format_ns(incident.last_ts),
            duration_s=round(duration, 6), anomalies=incident.members, trades=trades,
            reference_price=evidence.reference_price, price_move_bps=round(evidence.move_bps, 2),
            recovered=None if evidence.recovered is None else round(evidence.recovered, 4),
            max_size=int(evidence.max_size), size_vs_median=round(evidence.size_vs_median, 2),
            severity=round(a.severity, 4), level=a.level, confidence=round(a.confidence, 4),
            peak_anomaly_id=incident.peak_id, peak_severity=incident.peak_severity,
            anomaly_ids=tuple(incident.anomaly_ids), summary=summary(facts),
            explanation=tuple(explain_incident(evidence, a.kind, incident.members, trades, duration,
                                               against_earlier)),
            price_path=_price_path(incident.context, incident.tape(), s.path_context, s.path_trades),
            closed_by=closed_by,
        )


def _price_path(context: _Tape, tape: _Tape, context_points: int, points: int) -> tuple:
    """The last context trades, then the incident's trades thinned evenly (the first and the
    last kept) so that the whole fits in ``points``."""
    before = context.tail(min(context_points, len(context))) if context_points else _Tape.empty()
    room = points - len(before)
    if len(tape) > room:
        rows = np.unique(np.round(np.linspace(0, len(tape) - 1, room)).astype(np.int64))
        tape = _Tape(tape.prices[rows], tape.sizes[rows], tape.timestamps_ns[rows], tape.sides[rows])
    path = _Tape.joined([before, tape])
    sides = [SIDE_LETTERS.get(code, "N") for code in path.sides.tolist()]
    return tuple(zip(path.timestamps_ns.tolist(), path.prices.tolist(),
                     path.sizes.astype(np.int64).tolist(), sides))


def _earlier_block_item(evidence: KindEvidence, earlier: EarlierBlock | None) -> dict[str, Any] | None:
    """The explanation item, and the summary's words, for a block against the largest earlier one."""
    if earlier is None:
        return None
    ratio = evidence.max_size / earlier.size
    moment = datetime.fromtimestamp(earlier.ts_ns // 1_000_000_000, tz=timezone.utc)
    return {"input": "size_vs_earlier_block", "value": round(ratio, 4),
            "text": f"{ratio:,.1f}x the largest earlier block ({earlier.size:,.0f} shares at {moment:%H:%M:%S} UTC)"}


# --- small helpers --------------------------------------------------------------------


def format_ns(timestamp_ns: int) -> str:
    """ISO-8601 UTC with nanoseconds, as the trade messages carry it."""
    seconds, nanos = divmod(int(timestamp_ns), 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=timezone.utc)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


def _is_morning(timestamp_ns: int) -> bool:
    moment = datetime.fromtimestamp(int(timestamp_ns) // 1_000_000_000, tz=timezone.utc)
    return moment.astimezone(NEW_YORK).hour < 12


def _finite(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if math.isfinite(number) else 0.0


def _integer(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
