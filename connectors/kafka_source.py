"""Kafka into the dataflow: trades in.

The source reads each Kafka partition with its own consumer (``assign()``, the
offset kept in Bytewax's snapshots exactly as Bytewax's ``KafkaSource`` does) and
turns each message into a ``TradeMessage`` or, when the bytes are not a trade, the
replay's reader said it could not read them (``connectors.codec.READER_REASON_HEADER``) or
Kafka reported an error, a ``DeadLetter`` (so nothing stops the job and nothing is lost).
Its clients report to a ``BrokerWatch`` when one is given (see ``connectors.kafka``).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from bytewax.connectors.kafka import BYTEWAX_CONSUMER_LAG_GAUGE
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from connectors import metrics
from connectors.broker_watch import BrokerWatch
from connectors.codec import MAX_MESSAGE_BYTES, decode_trade, reader_reason_in
from connectors.kafka import QUICK_FETCH, admin_client, client_config, split_brokers
from connectors.messages import DeadLetter, Origin, TradeMessage

STALL_AFTER_S = 1.0
"""A partition that returns nothing this long while the broker says messages are
waiting is stalled (see ``TradePartition``)."""

MAX_FETCH_WAIT_MS = 1000
PROBE_END_S = 10.0
"""How long a resumed partition whose offset lies past the broker's high watermark is read for its end
(``TradePartition._holds_offset_before``)."""
RELAX_AFTER_S = 20.0
"""A widened fetch wait is halved again (down to the configured one) after this long
without a stall: a broker that fell behind for a moment should not cost every later
message up to the widened wait."""


class TradeSource(FixedPartitionedSource[TradeMessage | DeadLetter, int | None]):
    """Every partition of one topic; items are ``TradeMessage`` or ``DeadLetter``.

    ``stop_at_end`` ends each partition at the end offset it finds (backfills, tests);
    otherwise the job keeps waiting for new trades. Setting ``stop`` ends every
    partition at its next poll, so Bytewax finishes the epoch, writes its outputs
    and its snapshot, and the job exits normally (how the job stops on a signal).
    ``on_worker`` is called on each worker thread before it builds a partition.
    """

    def __init__(
        self,
        brokers: str,
        topic: str,
        *,
        stop_at_end: bool = False,
        client_settings: Mapping[str, str] | None = None,
        batch_size: int = 1000,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        watch: BrokerWatch | None = None,
        stop: threading.Event | None = None,
        on_worker: Callable[[], None] | None = None,
    ) -> None:
        self._brokers, self._topic = ",".join(split_brokers(brokers)), topic
        self._on_worker = on_worker
        self._client_settings = dict(client_settings or {})
        self._stop_at_end = stop_at_end
        self._batch_size = batch_size
        self._max_message_bytes = max_message_bytes
        self._watch = watch
        self._stop = stop or threading.Event()

    def list_parts(self) -> list[str]:
        # All topics, not just this one: a metadata request naming a topic may auto-create it.
        metadata = admin_client(self._brokers, self._client_settings, self._watch).list_topics(timeout=10).topics
        topic = metadata.get(self._topic)
        if topic is None or topic.error is not None:
            detail = "does not exist" if topic is None else topic.error.str()
            raise RuntimeError(f"listing the partitions of {self._topic!r}: {detail}")
        return [f"{index}-{self._topic}" for index in sorted(topic.partitions)]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> TradePartition:
        if self._on_worker is not None:  # Bytewax builds a worker's partitions on that worker's thread
            self._on_worker()
        index, topic = for_part.split("-", 1)
        if topic != self._topic:
            raise ValueError(f"cannot resume partition {for_part!r} as a partition of {self._topic!r}")
        config = {
            # Bytewax keeps the offsets in its recovery store: no consumer group is joined.
            "group.id": "BYTEWAX_IGNORED",
            "enable.auto.commit": "false",
            # A snapshotted offset the partition no longer holds (retention, a re-created
            # topic): read what it holds from the start, not jump to its end past it.
            "auto.offset.reset": "earliest",
            "enable.partition.eof": str(self._stop_at_end).lower(),
            **QUICK_FETCH,
            **client_config(self._brokers, self._client_settings, self._watch),
        }
        return TradePartition(
            step_id, config, topic, int(index), resume_state, self._batch_size,
            self._max_message_bytes, self._watch, self._stop,
        )


class TradePartition(StatefulSourcePartition[TradeMessage | DeadLetter, int | None]):
    """One Kafka partition read with ``assign()``; the snapshot is the next offset to read.

    Stall guard: the embedded Tansu broker lists every stored batch of a partition
    on each fetch, and answers empty once that takes longer than the fetch's
    ``fetch.wait.max.ms``: a partition of ~20,000 one-message batches (a paced
    replay) stops being readable at 10 ms, and far fewer do while the machine is
    busy. When nothing arrives for ``STALL_AFTER_S`` while the broker's high
    watermark says messages wait, the consumer is rebuilt at the same offset with
    twice the wait (up to 1 s). The same broker holds a fetch that finds nothing for
    the whole wait, so a wide wait is latency: after ``RELAX_AFTER_S`` without a
    stall the wait is halved again, down to the configured one. A broker that
    answers fetches when data arrives (Kafka, Redpanda) never trips the guard.
    """

    def __init__(
        self, step_id: str, config: dict, topic: str, index: int, resume_state: int | None,
        batch_size: int, max_message_bytes: int, watch: BrokerWatch | None, stop: threading.Event,
    ) -> None:
        from confluent_kafka import OFFSET_BEGINNING

        self._config = config
        self._topic, self._index = topic, index
        self._offset = OFFSET_BEGINNING if resume_state is None else resume_state
        self._batch_size = batch_size
        self._max_message_bytes = max_message_bytes
        self._watch = watch
        self._stop = stop
        self._eof = False
        self._lag_labels = {"step_id": step_id, "topic": topic, "partition": str(index)}
        self._quiet_since = time.monotonic()
        self._checked_at = 0.0
        self._base_wait_ms = self.fetch_wait_ms
        self._wait_changed_at = self._quiet_since
        self._consumer = self._open(config)
        self._resume_within_partition()

    def _resume_within_partition(self) -> None:
        """A resumed offset beyond the partition's end (the topic re-created or emptied since the
        snapshot): read what it holds from its start, and say so. Left to ``auto.offset.reset``, it
        depended on the broker: the development broker answers such a fetch with nothing, not an
        error, and the job waited at the old offset for ever. An offset before the start (retention)
        is librdkafka's to reset: every broker reports that one."""
        from confluent_kafka import OFFSET_BEGINNING, KafkaException, TopicPartition

        if self._offset < 0:
            return
        try:
            _, high = self._consumer.get_watermark_offsets(
                TopicPartition(self._topic, self._index), timeout=5.0, cached=False)
        except KafkaException:
            return  # no broker to ask: the broker watch judges that
        if self._offset <= high or self._holds_offset_before(self._offset, high):
            return
        print(f"connectors.kafka_source: partition {self._index} of {self._topic} ends before offset "
              f"{self._offset}, where the recovery store resumes it: the topic was re-created or emptied "
              "since; reading it from its start", file=sys.stderr, flush=True)
        self._offset = OFFSET_BEGINNING
        self._consumer.assign([TopicPartition(self._topic, self._index, self._offset)])

    def _holds_offset_before(self, offset: int, high: int) -> bool:
        """Whether the partition holds a message at ``offset - 1``, read from ``high - 1`` on. The high
        watermark alone does not say: the development broker gives the last batch's first offset + 1
        (twelve messages produced in one batch: 1), so that batch is read, by a consumer of its own that
        reports the partition's end. Only that end says no: a read that finds neither within
        ``PROBE_END_S`` (a broker slow to answer) keeps the offset, as before."""
        from confluent_kafka import Consumer
        from confluent_kafka import KafkaError as ClientError
        from confluent_kafka import TopicPartition

        if high <= 0:
            return False
        probe = Consumer({**self._config, "enable.partition.eof": "true",
                          "fetch.wait.max.ms": str(MAX_FETCH_WAIT_MS)})
        try:
            probe.assign([TopicPartition(self._topic, self._index, high - 1)])
            deadline = time.monotonic() + PROBE_END_S
            while time.monotonic() < deadline:
                for message in probe.consume(self._batch_size, 0.5):
                    error = message.error()
                    if error is None and message.offset() >= offset - 1:
                        return True
                    if error is not None and error.code() == ClientError._PARTITION_EOF:
                        return False
            return True
        finally:
            probe.close()

    def _open(self, config: dict):
        from confluent_kafka import Consumer, TopicPartition

        consumer = Consumer({**config, "stats_cb": self._statistics, "statistics.interval.ms": 1000})
        consumer.assign([TopicPartition(self._topic, self._index, self._offset)])
        metrics.FETCH_WAIT_MS.labels(self._topic, str(self._index)).set(self.fetch_wait_ms)
        return consumer

    def _reopen(self, wait_ms: int, now: float) -> None:
        """The consumer rebuilt at the next offset to read, with another fetch wait."""
        self._config = {**self._config, "fetch.wait.max.ms": str(wait_ms)}
        self._consumer.close()
        self._consumer = self._open(self._config)
        self._wait_changed_at = now

    def _statistics(self, json_stats: str) -> None:
        if self._watch is not None:
            self._watch.statistics(json_stats)
        try:
            partition = orjson.loads(json_stats)["topics"][self._topic]["partitions"][str(self._index)]
        except (KeyError, orjson.JSONDecodeError):
            return  # no figures for this partition in this report (the broker may be gone)
        if self._offset >= 0 and partition.get("ls_offset", -1) >= 0:
            BYTEWAX_CONSUMER_LAG_GAUGE.labels(**self._lag_labels).set(partition["ls_offset"] - self._offset)

    def next_batch(self) -> list[TradeMessage | DeadLetter]:
        from confluent_kafka import KafkaError as ClientError

        if self._eof or self._stop.is_set():
            raise StopIteration()
        items: list[TradeMessage | DeadLetter] = []
        for message in self._consumer.consume(self._batch_size, 0.001):
            error = message.error()
            if error is not None and error.code() == ClientError._PARTITION_EOF:
                self._eof = True  # StopIteration at the next call, after this batch
                break
            offset = message.offset()
            origin = Origin(message.topic() or self._topic, _int_or(message.partition(), self._index),
                            _int_or(offset, -1))
            if error is None:
                items.append(decode_trade(message.value(), origin, message.key(), self._max_message_bytes,
                                          reader_reason_in(message.headers())))
            else:
                items.append(kafka_error_letter(error, origin, message.value()))
            if offset is not None and offset >= 0:
                self._offset = offset + 1
        if items:
            self._quiet_since = now = time.monotonic()
            if self.fetch_wait_ms > self._base_wait_ms and now - self._wait_changed_at >= RELAX_AFTER_S:
                self._reopen(max(self._base_wait_ms, self.fetch_wait_ms // 2), now)
            if self._watch is not None:
                self._watch.alive()
            trades = sum(1 for item in items if type(item) is TradeMessage)
            if trades:
                metrics.TRADES_READ.inc(trades)
        else:
            self._check_for_stall()
        return items

    def _check_for_stall(self) -> None:
        """Once a second while quiet: ask for the high watermark, and widen the fetch wait if stalled."""
        from confluent_kafka import KafkaException, TopicPartition

        now = time.monotonic()
        if now - self._quiet_since < STALL_AFTER_S or now - self._checked_at < STALL_AFTER_S:
            return
        self._checked_at = now
        if self._watch is not None and self._watch.lost_for() > 0:
            return  # no broker to ask
        try:
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self._topic, self._index), timeout=1.0, cached=False)
        except KafkaException:
            return
        if self._watch is not None:
            self._watch.alive()
        position = self._offset if self._offset >= 0 else low
        if high > position:
            metrics.STALLS.labels(self._topic, str(self._index)).inc()
            if self.fetch_wait_ms < MAX_FETCH_WAIT_MS:  # at the cap a new consumer would wait the same
                self._reopen(min(2 * max(1, self.fetch_wait_ms), MAX_FETCH_WAIT_MS), now)
                self._quiet_since = now

    @property
    def fetch_wait_ms(self) -> int:
        return int(self._config.get("fetch.wait.max.ms", 500))

    def snapshot(self) -> int | None:
        return self._offset

    def close(self) -> None:
        self._consumer.close()


def kafka_error_letter(error: Any, origin: Origin, value: bytes | None) -> DeadLetter:
    """A Kafka error on a partition (not the end of it) as a dead letter of stage ``kafka``."""
    return DeadLetter(f"Kafka error: {error.str()}", "kafka", origin, value or b"")


def _int_or(value: int | None, default: int) -> int:
    return default if value is None else value
