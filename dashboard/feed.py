"""The live feed behind one browser session: Kafka readers, what they found, and the error log.

A thread reads the topics in the background (anomalies, incidents, reviews,
summaries, and the input topic's end for the job's progress); the page only
draws a copy of what has been read (``view()``). Drawing never waits for Kafka,
so a refresh is quick and the page is not greyed out while a busy topic is read.
Nothing here raises for Kafka trouble or bad data: a broker that is down, a
record that fails validation, a client error, each becomes a status or an entry
in the error log (with topic, partition, offset and reason), and the page keeps
drawing what it has. The thread stops by itself once no page has asked for a
view for a while (the browser tab was closed) and starts again when one does.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from connectors.broker import BrokerUnreachable
from connectors.review_writer import ReviewWriter
from connectors.topic_readers import (
    ReaderFailed, TailedMessage, TailState, TopicEnds, TopicHistory, TopicIds, TopicTail,
)
from dashboard.buffer import AnomalyBuffer, PriceHistory, PriceLine
from dashboard.clock import believable, utc_text
from dashboard.config import DashboardConfig
from dashboard.error_log import ErrorLog, LogEntry
from dashboard.health import Progress, ProgressMonitor
from dashboard.incidents import IncidentBook, IncidentMembers
from dashboard.records import (
    Anomaly, Incident, InvalidRecord, Review, Summary, decode_anomaly, decode_incident, decode_review,
    decode_summary,
)
from dashboard.reviews import ReviewBook, ReviewedMeanwhile, refuse_unknown
from dashboard.totals import SummaryBook

READ_SECONDS = 0.5
"""Longest a background read spends on one topic before the others get their turn."""
BACKFILL_STEPS = 10
"""How far a page reads back, in ``DASHBOARD_BUFFER_SIZE`` steps per partition, for instruments
the job counted anomalies for but whose anomalies all came before where the page started."""
IDLE_STOP_SECONDS = 300.0
"""The reader stops when no page has asked for a view for this long (a closed tab; a tab in the
background is refreshed less often by the browser, but still within this)."""


@dataclass(frozen=True)
class FeedView:
    """What the page draws: copies, so the reader can go on while the page draws."""

    broker_up: bool
    detail: str
    """Why the broker is considered down, or which topics are missing."""
    checked_at: datetime
    anomaly_lag: int
    progress: Progress
    anomalies: list[Anomaly]
    in_memory: dict[str, int]
    duplicates: int
    invalid: dict[str, int]
    """Records that failed validation, per topic."""
    incidents: dict[str, Incident]
    reviews: dict[str, Review]
    summaries: dict[str, Summary]
    prices: dict[str, PriceLine]
    members: dict[str, list[Anomaly]] = field(default_factory=dict)


class LiveFeed:
    def __init__(self, config: DashboardConfig, clock: Callable[[], float] = time.monotonic,
                 wall_clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.config = config
        self.errors = ErrorLog()
        self._clock = clock
        self._wall_clock_ns = wall_clock_ns
        self._empty_books()
        self._status: tuple[bool, str, int, Progress] = (
            False, "not connected yet", 0, Progress("unknown", "not read yet", None, None))
        self._checked_at = datetime.now(timezone.utc)
        self._state_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._tails: dict[str, TopicTail] = {}
        self._topic_ids: TopicIds | None = None
        self._ids_read: dict[str, str] = {}
        """The id of each topic when it was first read (kept while the reader sleeps: a broker
        restarted meanwhile is still found out)."""
        self._history: TopicHistory | None = None
        self._backfill_steps = 0
        self._input_ends: TopicEnds | None = None
        self._writer = ReviewWriter(config.brokers, config.review_topic, config.client_settings)
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._last_view = time.monotonic()

    def _empty_books(self) -> None:
        config = self.config
        self._anomalies = AnomalyBuffer(config.buffer_size)
        self._members = IncidentMembers()
        self._incidents = IncidentBook(config.incident_limit)
        self._reviews = ReviewBook(config.incident_limit)
        self._summaries = SummaryBook()
        self._prices = PriceHistory()
        self._invalid: dict[str, int] = {}
        self._monitor = ProgressMonitor(config.stall_seconds, config.lag_warning)
        self._claims_read: list[tuple[int, int]] = []
        """The input positions of the summaries read since the progress was last observed: the newest
        summary of an instrument may be a forged one, and the real one before it tells how far the job got."""

    # ------------------------------------------------------------ reading

    def refresh(self, max_seconds: float) -> None:
        """Read what is new, up to ``max_seconds`` per topic; never raises for Kafka trouble."""
        with self._read_lock:
            self._refresh(max_seconds)

    def _refresh(self, max_seconds: float) -> None:
        checked_at = datetime.now(timezone.utc)
        try:
            tails = self._open_tails()
            anomaly_state = self._read(tails["anomalies"], max_seconds, decode_anomaly, self._keep_anomaly)
            states = [anomaly_state] + [
                self._read(tails[name], max_seconds, decode, keep, forget) for name, decode, keep, forget in (
                    ("incidents", decode_incident, self._incidents.add, self._incidents.remove),
                    ("reviews", decode_review, self._keep_review, self._reviews.remove),
                    ("summaries", decode_summary, self._keep_summary, None),
                )
            ]
            self._backfill(tails["anomalies"], max_seconds)
            ends = self._input_ends.read() if self._input_ends is not None else None
            replaced = self._replaced_topics([tail.topic for tail in tails.values()])
        except BrokerUnreachable as error:
            self._down(f"no Kafka broker answered at {self.config.brokers}: {error}", "broker unreachable", checked_at)
            return
        except ReaderFailed as error:
            self._down(f"the Kafka client failed: {error}", "kafka client", checked_at)
            return
        started_over = [state.started_over for state in states if state.started_over] + replaced
        if started_over:
            self._start_over(started_over)
            return
        if anomaly_state.lag >= self.config.lag_warning:
            self.errors.add("lag", f"{anomaly_state.lag} anomalies published but not read yet")
        # The reviews topic only exists once somebody has reviewed: not worth a notice.
        missing = [tail.topic for name, tail, state in zip(tails, tails.values(), states)
                   if not state.topic_exists and name != "reviews"]
        with self._state_lock:
            progress = self._observe_progress(ends)
            detail = f"waiting for topic(s): {', '.join(missing)}" if missing else ""
            self._status = (True, detail, anomaly_state.lag, progress)
            self._checked_at = checked_at
        if progress.state in ("stalled", "falling behind"):
            self.errors.add(f"job {progress.state}", f"{self.config.input_topic}: {progress.message}")

    def _replaced_topics(self, topics: list[str]) -> list[str]:
        """Topics whose id is not the one they had when first read: other topics of the same name."""
        assert self._topic_ids is not None
        ids = self._topic_ids.read(topics)
        replaced = [f"{topic} is another topic now (id {self._ids_read[topic]} before, {ids[topic]} now)"
                    for topic in ids if self._ids_read.get(topic, ids[topic]) != ids[topic]]
        self._ids_read.update(ids)
        return replaced

    def _start_over(self, reasons: list[str]) -> None:
        """Forget everything read: the broker no longer holds it (a development broker restarted
        empty keeps no topics), so what is shown must come from what it holds now. The next
        read opens new tails, a little before the end of each partition as a new page does."""
        self._drop_clients()
        self._ids_read = {}
        self._writer.reset()  # its producer knew the broker's previous life
        with self._state_lock:
            self._empty_books()
            self._status = (True, "the topics started over: reading them again", 0,
                            Progress("unknown", "not read yet", None, None))
        self.errors.add("topics started over", "; ".join(reasons) + ": the broker lost what it held "
                        "(restarted empty?), so the page drops what it read and reads the topics again")

    def _observe_progress(self, ends: dict[int, int] | None) -> Progress:
        read, self._claims_read = self._claims_read, []
        if self._input_ends is None:
            return Progress("unknown", "INPUT_TOPIC is empty: the job's progress is not watched", None, None)
        newest = [self._input_claim(summary) for summary in self._summaries.copy().values()]
        return self._monitor.observe(self._clock(), ends, read + [claim for claim in newest if claim is not None])

    def _input_claim(self, summary: Summary) -> tuple[int, int] | None:
        """(partition, next offset) of the job's input that the summary says its instrument got to."""
        if summary.partition is None or summary.offset is None or summary.source not in (None, self.config.input_topic):
            return None
        return summary.partition, summary.offset + 1

    def _down(self, detail: str, kind: str, checked_at: datetime) -> None:
        self.errors.add(kind, detail)
        with self._state_lock:
            _up, _detail, lag, progress = self._status
            self._status = (False, detail, lag, progress)
            self._checked_at = checked_at

    def _read(
        self, tail: TopicTail, max_seconds: float,
        decode: Callable[[bytes | None], Any], keep: Callable[[Any], None],
        forget: Callable[[str], None] | None = None,
    ) -> TailState:
        messages, state = tail.read(max_seconds)
        self._take(tail.topic, messages, decode, keep, forget)
        return state

    def _take(self, topic: str, messages: list[TailedMessage], decode: Callable[[bytes | None], Any],
              keep: Callable[[Any], None], forget: Callable[[str], None] | None = None) -> None:
        """``forget``: what a delete (a key without a value, on a compacted topic) removes."""
        rejected = []
        with self._state_lock:
            for message in messages:
                if message.too_large:
                    self._invalid[topic] = self._invalid.get(topic, 0) + 1
                    rejected.append(f"{topic} partition {message.partition} offset {message.offset}: a record of "
                                    f"{message.too_large:,} bytes, longer than any record the job writes: not read")
                    continue
                if forget is not None and message.value is None and message.key:
                    forget(message.key.decode("utf-8", "replace"))
                    continue
                try:
                    keep(decode(message.value))
                except InvalidRecord as error:
                    self._invalid[topic] = self._invalid.get(topic, 0) + 1
                    rejected.append(f"{topic} partition {message.partition} offset {message.offset}: {error}")
        for reason in rejected:
            self.errors.add("invalid record", reason)

    def _backfill(self, tail: TopicTail, max_seconds: float) -> None:
        """Further back on the anomalies topic, a step at a time, while an instrument the job
        counted anomalies for has none in memory (its partition-mates wrote more since): the fair
        buffer then gives it its share, and its incidents open with their members."""
        deadline = time.monotonic() + max_seconds
        while self._backfill_steps < BACKFILL_STEPS and (remaining := deadline - time.monotonic()) > 0:
            with self._state_lock:
                held = self._anomalies.counts()
                missing = [symbol for symbol, summary in self._summaries.copy().items()
                           if summary.anomalies and not held.get(symbol)]
            if not missing or (self._history is not None and self._history.exhausted()):
                return
            if self._history is None:
                config = self.config
                self._history = TopicHistory(config.brokers, tail.topic, tail.first_offsets, config.client_settings,
                                             lambda message: self.errors.add("kafka client", message))
            self._backfill_steps += 1
            messages = self._history.read_before(self.config.buffer_size, remaining)
            self._take(tail.topic, messages, decode_anomaly, self._keep_anomaly)

    def _keep_anomaly(self, anomaly: Anomaly) -> None:
        if not believable(anomaly.ts_ns, self._wall_clock_ns()):  # it would be the newest for ever
            raise InvalidRecord(f"anomaly {anomaly.anomaly_id} is dated {utc_text(anomaly.ts_ns)} UTC, past the "
                                "dashboard's clock: no trade has that time yet")
        self._anomalies.add(anomaly)
        self._members.add(anomaly)

    def _keep_review(self, review: Review) -> None:
        self._reviews.add(review, known=review.incident_id in self._incidents)

    def _keep_summary(self, summary: Summary) -> None:
        self._summaries.add(summary)
        self._prices.add(summary)
        claim = self._input_claim(summary)
        if claim is not None:
            self._claims_read.append(claim)

    def _open_tails(self) -> dict[str, TopicTail]:
        """The readers, all opened or none: one the client refuses closes those opened before it,
        and the next read tries them all again."""
        if not self._tails:
            config = self.config
            report = lambda message: self.errors.add("kafka client", message)  # noqa: E731
            try:
                for name, topic, start_back in (
                    ("anomalies", config.anomaly_topic, config.buffer_size),
                    ("incidents", config.incident_topic, None),
                    ("reviews", config.review_topic, None),
                    ("summaries", config.summary_topic, config.summary_history),
                ):
                    self._tails[name] = TopicTail(config.brokers, topic, start_back, config.client_settings, report)
                self._topic_ids = TopicIds(config.brokers, config.client_settings, report)
                if config.input_topic:
                    self._input_ends = TopicEnds(config.brokers, config.input_topic, config.client_settings, report)
            except Exception:
                self._drop_clients()
                raise
        return self._tails

    # ------------------------------------------------------------ the page's side

    def view(self, incident_id: str | None = None) -> FeedView:
        """A copy of what has been read, with the members of ``incident_id``; (re)starts the reader."""
        self._last_view = time.monotonic()
        self._start_reader()
        with self._state_lock:
            broker_up, detail, lag, progress = self._status
            return FeedView(
                broker_up=broker_up, detail=detail, checked_at=self._checked_at, anomaly_lag=lag,
                progress=progress, anomalies=self._anomalies.records(), in_memory=self._anomalies.counts(),
                duplicates=self._anomalies.duplicates, invalid=dict(self._invalid),
                incidents={incident.incident_id: incident for incident in self._incidents.all()},
                reviews=self._reviews.copy(), summaries=self._summaries.copy(), prices=self._prices.lines(),
                members={incident_id: self._members.of(incident_id)} if incident_id else {},
            )

    def log_entries(self) -> list[LogEntry]:
        return self.errors.entries()

    def save_review(self, review: Review, known: Collection[tuple | None]) -> None:
        """Writes the decision and keeps it once the broker has it; raises ``ReviewNotSaved``.

        The incident's reviews on the topic are read just before (this page's reader may not have
        them yet): one whose identity is not among ``known`` (what the analyst saw) is kept and
        ``ReviewedMeanwhile`` raised, so it shows instead of being replaced unseen."""
        try:
            self._writer.write(review.incident_id, review.to_dict(), refuse_unknown(review.incident_id, known))
        except ReviewedMeanwhile as meanwhile:
            with self._state_lock:
                self._reviews.add(meanwhile.review, known=meanwhile.review.incident_id in self._incidents)
            raise
        with self._state_lock:
            self._reviews.add(review)

    def _start_reader(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="dashboard-feed", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stopping.is_set() and time.monotonic() - self._last_view < IDLE_STOP_SECONDS:
            try:
                self.refresh(READ_SECONDS)
            except Exception as error:  # noqa: BLE001 - the reader must outlive any one bad read
                self.errors.add("reader", f"{type(error).__name__}: {error}")
            self._wake.wait(self.config.refresh_seconds / 2)
            self._wake.clear()
        self._close_clients()

    def _close_clients(self) -> None:
        with self._read_lock:
            self._drop_clients()

    def _drop_clients(self) -> None:
        """Closes the readers (the caller holds the read lock); the next read opens new ones."""
        for tail in self._tails.values():
            tail.close()
        if self._input_ends is not None:
            self._input_ends.close()
        if self._history is not None:
            self._history.close()
        self._tails, self._input_ends, self._history, self._backfill_steps = {}, None, None, 0
        self._topic_ids = None

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        if self._thread is None or not self._thread.is_alive():
            self._close_clients()
        self._writer.close()
