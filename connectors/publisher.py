"""Trades to a topic in order, each counted once the broker has acknowledged it.

``publish`` is the replay's engine (``connectors.replay`` is its command line) and what the
tests and benchmarks publish with. A symbol's trades keep their order: the producer is
idempotent (retries cannot reorder) and a key always maps to one partition. When no broker
is reachable for the loss timeout, or messages wait that long for an acknowledgement,
``BrokerLost`` says so, with the summary of what was delivered.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from connectors.codec import encode_trade, reader_reason_header
from connectors.csv_trades import UNREADABLE
from connectors.kafka import NeverFits, produce_when_room

PACED_LINGER_MS = 5.0
"""How long a paced replay lets trades gather into one produce request. One request
per trade (linger 0) made the embedded broker store one batch per trade, and it
slows down with the number of batches in a partition (see ``connectors.kafka_source.TradePartition``);
5 ms cuts the requests at demo speeds several times and is invisible on a dashboard."""

FULL_SPEED_LINGER_MS = 20.0
"""At full speed trades are all due at once: a longer linger fills the requests."""
LINGER_PROPERTIES = ("linger.ms", "queue.buffering.max.ms")
"""librdkafka's two names for how long a message waits for others to share its request."""

DEFAULT_LOSS_TIMEOUT_S = 30.0

NEXT_FILE = object()
"""Between two files in a stream of trades: pacing starts again from the next trade
(days replayed one after the other are not weeks apart at --speed)."""


class BrokerLost(RuntimeError):
    """No broker reachable, or no acknowledgement, for the loss timeout."""


class UnreadableFile(RuntimeError):
    """A file that cannot be read to its end (corrupt, cut short, not trades): the trades read
    from it before are published, the files after it are not (a repaired file can be replayed
    with the rest; the job dead-letters the trades it has already seen as repeats)."""


@dataclass
class ReplaySummary:
    published: int = 0
    """Trades the broker acknowledged."""
    sent: int = 0
    """Trades handed to the producer (acknowledged, failed or still waiting)."""
    failed: int = 0
    seconds: float = 0.0
    by_symbol: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)

    @property
    def waiting(self) -> int:
        """Trades sent and neither acknowledged nor failed: lost when the replay ends now."""
        return self.sent - self.published - self.failed

    def describe(self, topic: str) -> str:
        rate = self.published / self.seconds if self.seconds > 0 else 0.0
        symbols = ", ".join(f"{symbol} {count:,}" for symbol, count in self.by_symbol.most_common(8))
        more = "" if len(self.by_symbol) <= 8 else f" and {len(self.by_symbol) - 8} more"
        lines = [
            f"published {self.published:,} trades to {topic} in {self.seconds:.1f} s ({rate:,.0f}/s)",
            f"symbols: {symbols or 'none'}{more}",
        ]
        if self.failed:
            reasons = "; ".join(f"{reason} x{count}" for reason, count in self.errors.most_common(3))
            lines.append(f"FAILED to publish {self.failed:,} trades: {reasons}")
        if self.waiting:
            lines.append(f"NOT DELIVERED {self.waiting:,} trades: no acknowledgement before the replay stopped")
        return "\n".join(lines)


class Progress:
    """One self-overwriting line on a terminal, at most five times a second; silent otherwise."""

    def __init__(self, total: int | None, stream=sys.stderr) -> None:
        self.total = total
        self.stream = stream
        self.enabled = stream.isatty()
        self._started = time.monotonic()
        self._shown = 0.0

    def update(self, done: int, force: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not force and now - self._shown < 0.2):
            return
        self._shown = now
        rate = done / max(now - self._started, 1e-9)
        if self.total:
            filled = int(30 * done / self.total)
            bar = f"[{'#' * filled}{'.' * (30 - filled)}] {100 * done / self.total:5.1f}% "
        else:
            bar = ""
        self.stream.write(f"\r{bar}{done:,} trades, {rate:,.0f}/s   ")
        self.stream.flush()

    def finish(self, done: int) -> None:
        self.update(done, force=True)
        if self.enabled:
            self.stream.write("\n")


_EPOCH_SECONDS: dict[str, int] = {}


def timestamp_ns(value: Any) -> int | None:
    """Integer nanoseconds, or ``None`` when ``value`` is not a trade timestamp."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if not isinstance(value, str) or len(value) < 20 or not value.endswith("Z"):
        return None
    whole = value[:19]
    seconds = _EPOCH_SECONDS.get(whole)
    if seconds is None:
        try:
            seconds = int(datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp())
        except ValueError:
            return None
        if len(_EPOCH_SECONDS) > 100_000:
            _EPOCH_SECONDS.clear()
        _EPOCH_SECONDS[whole] = seconds
    fraction = value[20:-1] if value[19] == "." else ""
    if not fraction.isdigit() and fraction:
        return None
    return seconds * 1_000_000_000 + int((fraction + "000000000")[:9] or 0)


def producer_settings(brokers: str, paced: bool, client_settings: Mapping[str, str],
                      linger_ms: float | None = None, loss_timeout_s: float = DEFAULT_LOSS_TIMEOUT_S,
                      watch: Any = None) -> dict[str, Any]:
    """The replay's producer. ``linger_ms``, when given (the replay's ``--linger-ms``), wins over a
    linger among ``client_settings`` (``KAFKA_LINGER_MS``, or its other name): an option given on the
    command line is the more specific request, and the variable used to win unseen."""
    if linger_ms is not None:
        client_settings = {name: value for name, value in client_settings.items() if name not in LINGER_PROPERTIES}
    default_linger_ms = PACED_LINGER_MS if paced else FULL_SPEED_LINGER_MS
    return {
        "bootstrap.servers": brokers,
        "enable.idempotence": True,
        # Java clients' partitioner, so a symbol lands where any Kafka producer would put it.
        "partitioner": "murmur2_random",
        # Paced: a few ms, so trades due together share a request. Full speed: fill batches.
        "linger.ms": default_linger_ms if linger_ms is None else linger_ms,
        "queue.buffering.max.messages": 500_000,
        # Not retried for librdkafka's 5 minutes: the loss timeout stops the replay first.
        "message.timeout.ms": max(2000, int(2 * loss_timeout_s * 1000)),
        **(watch.client_callbacks() if watch is not None else {}),
        **client_settings,
    }


def publish(
    trades: Iterable[dict[str, Any]],
    brokers: str,
    topic: str,
    *,
    speed: float | None = None,
    limit: int | None = None,
    client_settings: Mapping[str, str] | None = None,
    progress: Progress | None = None,
    linger_ms: float | None = None,
    loss_timeout_s: float = DEFAULT_LOSS_TIMEOUT_S,
    stop: threading.Event | None = None,
) -> ReplaySummary:
    """Publish ``trades`` in order; ``speed`` None is as fast as the broker takes them.

    With a speed, trade ``i`` is sent ``(ts_recv[i] - ts_recv[0]) / speed`` after the first.
    ``linger_ms`` None leaves the linger to ``client_settings``, else to ``PACED_LINGER_MS`` or
    ``FULL_SPEED_LINGER_MS``; given, it is the linger (``producer_settings``).
    Once ``stop`` is set (by the CLI's signal handler), no more trades are read or sent; the
    ones sent are flushed and counted as at the end.
    Raises ``BrokerLost`` (its summary in ``.summary``) when no broker is reachable,
    or nothing is acknowledged, for ``loss_timeout_s`` while trades wait; and ``UnreadableFile``
    (its summary too) once the trades read before it are delivered.
    """
    from confluent_kafka import Producer

    deliveries = _Deliveries(brokers, loss_timeout_s)
    settings = producer_settings(brokers, speed is not None, client_settings or {}, linger_ms, loss_timeout_s,
                                 deliveries.watch)
    deliveries.linger_s = max(float(settings[name]) for name in LINGER_PROPERTIES if name in settings) / 1000
    producer = Producer(settings)
    deliveries.begin()
    try:
        _send(trades, producer, topic, deliveries, speed, limit, progress, stop or threading.Event())
    except UnreadableFile as error:  # what was queued before it still goes out, and is counted
        error.summary = _flush(producer, deliveries, progress)
        raise
    return _flush(producer, deliveries, progress)


def _send(trades: Iterable[dict[str, Any]], producer, topic: str, deliveries: _Deliveries, speed: float | None,
          limit: int | None, progress: Progress | None, stop: threading.Event) -> None:
    summary = deliveries.summary
    pace: tuple[float, int] | None = None  # (monotonic time, ts of the trade sent then) of the file's first trade
    for trade in trades:
        if trade is NEXT_FILE:
            pace = None
            continue
        if stop.is_set() or (limit is not None and summary.sent >= limit):
            break
        if speed is not None:
            pace = _wait_for_turn(producer, trade, pace, speed, deliveries.check, stop)
            if stop.is_set():  # while it waited for its turn
                break
        symbol = trade.get("symbol") if isinstance(trade, dict) else None
        key = symbol.encode() if isinstance(symbol, str) else None
        deliveries.sending()
        value, headers = _message_of(trade)
        refused = _produce(producer, topic, key, value, headers, deliveries.delivered, deliveries.check)
        summary.sent += 1
        if refused is not None:
            deliveries.refused(refused)
        if progress is not None:
            progress.update(summary.sent)


def _message_of(trade: Any) -> tuple[bytes, list[tuple[str, bytes]] | None]:
    """A trade's value and headers: its JSON; or, for a line the file's reader could not read, its bytes
    and the reader's reason in a header (``reader_reason_header``), which the job's dead letter gives
    (the bytes alone said only 'not valid JSON')."""
    if isinstance(trade, dict) and UNREADABLE in trade:
        return trade["raw"], [reader_reason_header(trade[UNREADABLE])]
    return encode_trade(trade), None


def _flush(producer, deliveries: _Deliveries, progress: Progress | None) -> ReplaySummary:
    """Wait until every trade sent is acknowledged or failed; ``BrokerLost`` after the loss timeout."""
    while producer.flush(0.5):
        deliveries.check()
    deliveries.summary.seconds = time.monotonic() - deliveries.started
    if progress is not None:
        progress.finish(deliveries.summary.sent)
    return deliveries.summary


class _Deliveries:
    """The replay's acknowledgements, counted into its summary, and when to give up on the broker:
    none reachable (``BrokerWatch``), or trades waiting with nothing acknowledged, for the timeout."""

    def __init__(self, brokers: str, loss_timeout_s: float) -> None:
        from connectors.broker_watch import BrokerWatch

        self.brokers, self.loss_timeout_s = brokers, loss_timeout_s
        self.summary = ReplaySummary()
        self.watch = BrokerWatch(brokers, loss_timeout_s)
        self.started = self.acked_at = time.monotonic()
        self.linger_s = 0.0
        """How long the producer holds a trade before sending it: silence that long is no sign of a lost broker."""

    def begin(self) -> None:
        self.started = self.acked_at = time.monotonic()

    def sending(self) -> None:
        if self.summary.waiting == 0:
            self.acked_at = time.monotonic()  # nothing was waiting: the silence starts now

    def delivered(self, error, message) -> None:
        """The producer's ``on_delivery``."""
        self.acked_at = time.monotonic()
        if error is not None:
            self.summary.failed += 1
            self.summary.errors[error.str()] += 1
            return
        self.watch.alive()
        self.summary.published += 1
        key = message.key()
        self.summary.by_symbol[key.decode("utf-8", "replace") if key else "(no symbol)"] += 1

    def refused(self, reason: str) -> None:
        """A trade the producer can never take: failed, as a refused delivery is."""
        self.summary.failed += 1
        self.summary.errors[reason] += 1

    def check(self) -> None:
        """Raise ``BrokerLost`` (the summary so far in ``.summary``) once the broker counts as lost."""
        silent = time.monotonic() - self.acked_at
        if not (self.watch.lost() or (self.summary.waiting and silent >= self.loss_timeout_s + self.linger_s)):
            return
        self.summary.seconds = time.monotonic() - self.started
        detail = self.watch.describe() if self.watch.lost() else (
            f"no acknowledgement from {self.brokers} for {silent:.0f} s "
            f"(BROKER_LOSS_TIMEOUT_S={self.loss_timeout_s:g})")
        error = BrokerLost(f"{detail}; {self.summary.published:,} trades acknowledged, "
                           f"{self.summary.waiting:,} not delivered")
        error.summary = self.summary
        raise error


def _wait_for_turn(producer, trade: Any, pace: tuple[float, int] | None, speed: float,
                   check_broker, stop: threading.Event) -> tuple[float, int] | None:
    moment = (timestamp_ns(trade.get("ts_recv")) or timestamp_ns(trade.get("ts_event"))
              if isinstance(trade, dict) else None)
    if moment is None:  # a malformed trade goes out at once; the job rejects it
        return pace
    if pace is None:
        return time.monotonic(), moment
    started, first_ns = pace
    due = started + (moment - first_ns) / 1e9 / speed
    while (delay := due - time.monotonic()) > 0 and not stop.is_set():
        producer.poll(min(delay, 0.05))
        check_broker()
    return pace


def _produce(producer, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]] | None,
             delivered, check_broker) -> str | None:
    """Queue one trade (``produce_when_room``, checking the broker while it waits for room); or why it
    can never be sent: it is larger than the producer's whole local queue (``queue.buffering.max.kbytes``),
    or the client refuses this one message (a file line longer than ``message.max.bytes``, 1,000,000 by
    default, which stopped the replay with a traceback and lost the trades it had queued)."""
    from confluent_kafka import KafkaError, KafkaException

    try:
        produce_when_room(producer, topic, key, value, delivered, while_waiting=check_broker, headers=headers)
    except NeverFits:
        return (f"{len(value):,} bytes, larger than the producer's whole local queue "
                "(queue.buffering.max.kbytes, KAFKA_QUEUE_BUFFERING_MAX_KBYTES)")
    except KafkaException as error:
        code = error.args[0].code() if error.args and isinstance(error.args[0], KafkaError) else None
        if code == KafkaError.MSG_SIZE_TOO_LARGE:
            return (f"{len(value):,} bytes, larger than the largest message the producer sends "
                    "(message.max.bytes, KAFKA_MESSAGE_MAX_BYTES)")
        return f"refused by the Kafka client: {error}"
    producer.poll(0)
    return None