"""The detect step: what ``build_flow``'s ``stateful_batch("detect")`` runs for each instrument.

It owns each instrument's engine state from its first trade to its last: grouping an input batch
by symbol (``group_by_symbol``), scoring an instrument's trades (``InstrumentDetector.on_batch``),
its place on the roster, going dormant when idle, its summaries, what the recovery store keeps
(``DetectorSnapshot``) and what a stop changes at the end of the input. It is separate from
``flows.dataflow`` so that the flow stays wiring a newcomer reads in minutes, and so that the
step can be tested and benchmarked (``benchmarks.detect_step``) without a dataflow around it.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np
from bytewax.operators import StatefulBatchLogic

from connectors.codec import encode_trade
from connectors.messages import DeadLetter, TradeMessage
from flows.instruments import ACTIVE, DORMANT, EventClock, InstrumentRoster
from models.engine import DetectionEngine, StateEnded
from models.state import InstrumentSnapshot, InstrumentState
from models.trades import Rejection, Validation

NANOS_PER_SECOND = 1_000_000_000
EVICTION_CHECK = timedelta(seconds=30)
"""How often (processing time) an instrument's logic checks whether it has been idle long enough to go dormant."""


@dataclass(frozen=True)
class InstrumentBatch:
    """One instrument's messages of an input batch, in arrival order, and the verdicts on their trades."""

    messages: list[TradeMessage]
    validation: Validation


def group_by_symbol(messages: list[TradeMessage]) -> list[tuple[str, InstrumentBatch]]:
    """One item per instrument for a whole input batch, in arrival order.

    Scoring a batch of trades costs little more than scoring one, so the engine
    is handed everything that arrived together; the batch is validated here, in
    columns, once (a market's batch holds a few trades of each of many instruments).
    """
    codes: dict[str, int] = {}
    groups = np.array([codes.setdefault(message.symbol, len(codes)) for message in messages], np.int64)
    parts = Validation.of([message.trade for message in messages]).split(groups, len(codes))
    by_symbol: list[list[TradeMessage]] = [[] for _ in codes]
    for message, group in zip(messages, groups.tolist()):
        by_symbol[group].append(message)
    return [(symbol, InstrumentBatch(batch, part)) for symbol, batch, part in zip(codes, by_symbol, parts)]


@dataclass
class InstrumentSummary:
    """An instrument's totals for the summary sink, told apart from the records it travels with."""

    fields: dict[str, Any]


@dataclass(frozen=True)
class DetectorSnapshot:
    """What the recovery store keeps per instrument: the engine's snapshot and the summary clock."""

    engine: InstrumentSnapshot
    summary_second: int


class InstrumentDetector(StatefulBatchLogic):
    """The stateful step: one instrument's engine state, kept by Bytewax.

    ``snapshot`` is called by Bytewax at every epoch for every instrument that saw
    trades, with or without recovery: it returns references to the engine state's
    immutable arrays, never a copy, and never waits for a refit. ``summaries``: whether anything
    reads the instrument summaries (a backtest does not; making one costs a dict per batch).
    ``stopping``: set when the input ends because the job stops, not because the trades did.
    """

    def __init__(self, engine: DetectionEngine, clock: EventClock, snapshot: DetectorSnapshot | None,
                 *, summaries: bool = True, roster: InstrumentRoster | None = None,
                 stopping: threading.Event | None = None) -> None:
        self.engine = engine
        self.stopping = stopping
        self.clock = clock
        self.summaries = summaries
        self.roster = InstrumentRoster() if roster is None else roster
        self.place: str | None = None
        """Its place on the roster (``ACTIVE`` or ``DORMANT``), None while it holds none."""
        self.state: InstrumentState | None = None
        self.summary_second = -1
        self.summarised: tuple[int, int] | None = None
        """(trades, rejections) of the state when its last summary was written."""
        self.last_message: TradeMessage | None = None
        self.next_check = _eviction_check()
        self.traded_since_check = False
        self.pending: list[Any] = []
        """What to write with the next outputs: the old state's open incident, closed, when a
        restart could not continue the saved state."""
        if snapshot is not None:
            self.state = engine.restore(snapshot.engine)
            self.summary_second = snapshot.summary_second
            self.place = ACTIVE if self.state.samples_seen else DORMANT
            self.roster.join(self.place, restored=True)
            reason = engine.cannot_continue(snapshot.engine)
            if reason is not None:
                _report_restart_once(reason, snapshot.engine.symbol)
                tracker = snapshot.engine.tracker
                closing = None if tracker is None else tracker.copy().close_open("restart")
                self.pending = [] if closing is None else [closing]

    def on_batch(self, batches: list[InstrumentBatch]) -> tuple[list[Any], bool]:
        return self._after_pending(self._scored(batches))

    def _after_pending(self, result: tuple[list[Any], bool]) -> tuple[list[Any], bool]:
        if not self.pending:
            return result
        out, keep = result
        pending, self.pending = self.pending, []
        return pending + out, keep

    def _scored(self, batches: list[InstrumentBatch]) -> tuple[list[Any], bool]:
        if len(batches) == 1:
            messages, validation = batches[0].messages, batches[0].validation
        else:
            messages = [message for batch in batches for message in batch.messages]
            validation = Validation.join([batch.validation for batch in batches],
                                         [len(batch.messages) for batch in batches])
        if self.state is None:  # a new instrument: a place on the roster first, whatever its trades
            if not self.roster.join(ACTIVE):
                return self._refused(messages, validation), self.DISCARD
            self.place = ACTIVE
            self.state = self.engine.new_state(messages[0].symbol)
        state = self.state
        try:
            outcomes = self.engine.process(state, [message.trade for message in messages], validation)
        except Exception as error:  # the state is as before the batch: say why, go on
            reason = f"engine failed on this batch: {type(error).__name__}: {error}"
            return [DeadLetter(reason, "engine", m.origin, original_bytes(m)) for m in messages], self.RETAIN
        out: list[Any] = []
        for outcome in outcomes:
            if isinstance(outcome, Rejection):
                message = messages[outcome.index]
                out.append(DeadLetter(outcome.reason, outcome.stage, message.origin, original_bytes(message)))
            elif isinstance(outcome, StateEnded):  # the old state's last word, before it starts afresh
                if self.summaries:
                    out.append(InstrumentSummary(outcome.summary))
            else:
                out.append(outcome)
        if not state.samples_seen and not state.guard.memory.stamps:  # nothing ever accepted: a junk symbol
            self._leave_roster()
            return out, self.DISCARD
        if self.place == DORMANT and state.samples_seen:  # woken by a trade
            self.roster.move(DORMANT, ACTIVE)
            self.place = ACTIVE
        clock_ns = state.guard.memory.clock_ns  # the instrument's own median clock: not one odd trade's time
        if clock_ns is not None and state.samples_seen >= self.engine.config.window_size:
            self.clock.advance(clock_ns)
        self.traded_since_check = True
        # Any change of second, not only forward: a summary stream never freezes on one odd time.
        second = state.last_timestamp_ns // NANOS_PER_SECOND
        if second != self.summary_second:
            self.summary_second = second
            if self.summaries:
                out.append(self._summary(messages[-1]))
        self.last_message = messages[-1]
        return out, self.RETAIN

    def _refused(self, messages: list[TradeMessage], validation: Validation) -> list[DeadLetter]:
        """A new instrument the roster has no room for: its trades are dead letters, an invalid one
        with its own reason (judged alone, so the same for any batch split), the others ``capacity``."""
        reasons = {rejection.index: (rejection.reason, rejection.stage) for rejection in validation.rejections}
        refusal = (self.roster.refusal(messages[0].symbol), "capacity")
        return [DeadLetter(*reasons.get(index, refusal), message.origin, original_bytes(message))
                for index, message in enumerate(messages)]

    def on_eof(self) -> tuple[list[Any], bool]:
        """At the end of the input (a backtest, STOP_AT_END) the last trades are summarised too,
        and an instrument idle by then goes dormant as ``on_notify`` would have: what a run ends
        with does not depend on whether the 30 s check happened to run before its end.

        When the job is stopping, the end of its input is a pause: no instrument goes dormant. The
        process's clock runs ahead with its fastest partition, so an instrument still trading on a
        lagging one can look a day idle; ``on_notify`` spares it because it traded since the last
        check, and so must a stop, or a restart with ``-r`` would not continue it exactly."""
        if self._idle() and not (self.stopping is not None and self.stopping.is_set()):
            return self._after_pending(self._go_dormant())
        if (not self.summaries or self.state is None or self.last_message is None or not self.state.samples_seen
                or not self._unsaid()):
            return self._after_pending(([], self.RETAIN))
        return self._after_pending(([self._summary(self.last_message)], self.RETAIN))

    def notify_at(self) -> datetime | None:
        """Bytewax asks after every batch: the answer is kept, not recomputed (a clock read and
        a datetime per instrument batch), and moves on only when the check has run."""
        return self.next_check

    def on_notify(self) -> tuple[list[Any], bool]:
        """Let an instrument idle for ``idle_s`` of event time go dormant (``_go_dormant``) if it has
        not traded since the last check either: one that trades is not idle, whatever the clock says."""
        self.next_check = _eviction_check()
        traded, self.traded_since_check = self.traded_since_check, False
        return self._after_pending(self._go_dormant() if self._idle() and not traded else ([], self.RETAIN))

    def _idle(self) -> bool:
        """Whether the instrument's last trade is ``idle_s`` of event time behind the latest of the process."""
        return self._behind(self.engine.config.idle_s)

    def _behind(self, seconds: float) -> bool:
        return (self.state is not None
                and self.clock.latest_ns - self.state.last_timestamp_ns > seconds * NANOS_PER_SECOND)

    def _go_dormant(self) -> tuple[list[Any], bool]:
        """Its open incident closed and its last totals reported (as the engine does when such an
        instrument starts afresh), then only its memory of trades kept (``DetectionEngine.dormant``):
        a replay of trades it processed is still refused, after a restart too. A dormant one is
        let go for good once ``max_clock_jump_s`` (a week) behind, or at once while the roster is
        crowded (more instruments in all than ``MAX_INSTRUMENTS``)."""
        state = self.state
        if not state.samples_seen:  # dormant already
            if not (self._behind(self.engine.config.max_clock_jump_s) or self.roster.crowded()):
                return [], self.RETAIN
            self._leave_roster()
            return [], self.DISCARD
        closing = None if state.tracker is None else state.tracker.copy().close_open("idle")
        out: list[Any] = [] if closing is None else [closing]
        if self.summaries and self.last_message is not None and self._unsaid():
            out.append(self._summary(self.last_message))
        self.state = self.engine.dormant(state)
        self.roster.move(ACTIVE, DORMANT)
        self.place = DORMANT
        return out, self.RETAIN

    def _leave_roster(self) -> None:
        if self.place is not None:
            self.roster.leave(self.place)
            self.place = None

    def _unsaid(self) -> bool:
        """Trades or rejections since the last summary (repeats refused in a batch of their own
        change no second, so no summary followed them)."""
        return self.summarised != (self.state.samples_seen, self.state.rejected)

    def _summary(self, last: TradeMessage) -> InstrumentSummary:
        origin = last.origin
        self.summarised = (self.state.samples_seen, self.state.rejected)
        return InstrumentSummary({**self.engine.summary(self.state), "source": origin.source,
                                  "partition": origin.partition, "offset": origin.offset})

    def snapshot(self) -> DetectorSnapshot:
        return DetectorSnapshot(self.engine.snapshot(self.state), self.summary_second)


_REPORTED: set[str] = set()
_REPORTED_LOCK = threading.Lock()


def _report_restart_once(reason: str, symbol: str) -> None:
    """One line on stderr per reason, not one per instrument (there may be thousands)."""
    with _REPORTED_LOCK:
        if reason in _REPORTED:
            return
        _REPORTED.add(reason)
    print(f"flows.detect_step: instruments {reason} start afresh (their memory of processed trades is kept; "
          f"the first: {symbol})", file=sys.stderr, flush=True)


def _eviction_check() -> datetime:
    return datetime.now(timezone.utc) + EVICTION_CHECK


def original_bytes(message: TradeMessage) -> bytes:
    """The message's bytes as received, or its trade encoded as JSON (file input keeps no bytes)."""
    return message.raw or encode_trade(message.trade)

