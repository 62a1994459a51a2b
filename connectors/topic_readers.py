"""The dashboard's Kafka readers: the tail of a topic, what came before it, where a topic ends, its id.

They read without a consumer group. The dashboard only watches: it never commits
offsets, and it assigns itself every partition instead of joining a group (the
development broker, Tansu, does not finish group joins, and a viewer has no reason
to share work anyway). A tail starts a little before the end of each partition so a
freshly opened page shows the recent past (or at the beginning, for compacted topics
whose every key matters), then follows new messages.

Opening a reader or reading raises ``BrokerUnreachable`` (``connectors.broker``'s: no
broker answered) or ``ReaderFailed`` (anything else the Kafka client raised, its text
unchanged), so the dashboard needs no Kafka client types. ``viewer_settings`` is how these
readers build their consumers (the dashboard checks ``KAFKA_*`` settings on it).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from connectors.broker import BrokerUnreachable, kafka_error_text

METADATA_TIMEOUT_S = 2.0
CONSUME_BATCH = 500
IDLE_POLL_S = 0.1
MAX_VALUE_BYTES = 1 << 20
"""The largest value a reader hands on: four times the largest message the job writes
(``connectors.codec.MAX_WRITTEN_BYTES``) and the reviews the dashboard writes are far smaller, so a
longer one is nobody's record; it is reported by its length, and its bytes are let go at once."""
RECEIVE_MAX_BYTES = 2_147_483_647
"""librdkafka's ``receive.message.max.bytes``, at its largest: a reader must be able to receive a
record to get past it. At the default (100,000,000) a larger record failed every fetch of its
topic's consumer ("Invalid response size ... increase receive.message.max.bytes"), so a new page
read nothing more of any partition of that topic, and said the broker was down now and then."""

_P = ParamSpec("_P")
_R = TypeVar("_R")


class ReaderFailed(RuntimeError):
    """The Kafka client failed otherwise than by no broker answering; the text is the client's."""


def _client_failures(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """``method`` raising ``ReaderFailed`` where the Kafka client raised ``KafkaException``."""
    @functools.wraps(method)
    def translated(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(*args, **kwargs)
        except KafkaException as error:
            raise ReaderFailed(str(error)) from error
    return translated


@dataclass(frozen=True)
class TailedMessage:
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    too_large: int = 0
    """The value's length when it was longer than ``MAX_VALUE_BYTES`` (``value`` is then None); else 0."""


def _tailed(message) -> TailedMessage:
    value = message.value()
    if value is not None and len(value) > MAX_VALUE_BYTES:
        return TailedMessage(message.partition(), message.offset(), None, message.key(), len(value))
    return TailedMessage(message.partition(), message.offset(), value, message.key())


@dataclass(frozen=True)
class TailState:
    """What one read found out about the topic."""

    topic_exists: bool
    lag: int
    """Messages published but not read yet, from the partitions' high watermarks."""
    started_over: str = ""
    """Why what was read before belongs to a topic that is gone (the broker restarted empty, the
    topic was deleted); empty when it does not."""


class TopicTail:
    """Every partition of ``topic``, from ``start_back`` messages before the end (None: from
    the beginning), onwards."""

    @_client_failures
    def __init__(
        self,
        brokers: str,
        topic: str,
        start_back: int | None,
        client_settings: Mapping[str, str] | None = None,
        on_client_error: Callable[[str], None] | None = None,
    ) -> None:
        self.topic = topic
        self.start_back = start_back
        self._next_offsets: dict[int, int] = {}
        self._ends_at_assignment: dict[int, int] = {}
        self._missing_reads = 0
        self.first_offsets: dict[int, int] = {}
        """Where each partition was started from: what came before it was not read."""
        self._report = on_client_error or (lambda _message: None)
        self._consumer = Consumer(viewer_settings(brokers, self._client_error, client_settings))

    def _client_error(self, error: KafkaError) -> None:
        self._report(f"Kafka client: {error.str()}")

    @_client_failures
    def read(self, max_seconds: float, max_messages: int = 5000) -> tuple[list[TailedMessage], TailState]:
        """New messages until the topic goes quiet, ``max_seconds`` pass or ``max_messages`` arrive.

        Raises ``BrokerUnreachable`` when metadata cannot be fetched. Going quiet
        (one empty poll) rather than reaching the high watermark decides "caught
        up" once every partition has reached the end it had when it was assigned:
        Tansu's watermarks can trail the offsets it has already served, so they
        are not waited for exactly. A topic that is gone says so in ``started_over``: what this
        tail read belongs to a topic the broker no longer holds.
        """
        found = self._assign_new_partitions()
        if found != "assigned":
            # Gone only when said twice in a row: a broker just back may answer from a stale cache once.
            self._missing_reads = self._missing_reads + 1 if found == "missing" else 0
            gone = bool(self._next_offsets) and self._missing_reads >= 2
            return [], TailState(topic_exists=False, lag=0,
                                 started_over=f"{self.topic} no longer exists on the broker" if gone else "")
        self._missing_reads = 0
        deadline = time.monotonic() + max_seconds
        messages: list[TailedMessage] = []
        while len(messages) < max_messages:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            batch = self._consumer.consume(CONSUME_BATCH, timeout=min(IDLE_POLL_S, remaining))
            if not batch and self._caught_up():
                break
            for message in batch:
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        self._report(f"{self.topic}: {error.str()}")
                    continue
                self._next_offsets[message.partition()] = message.offset() + 1
                messages.append(_tailed(message))
        return messages, TailState(topic_exists=True, lag=self._lag())

    def _assign_new_partitions(self) -> str:
        """"assigned" (every partition, new ones from where a tail starts), "missing" (the broker
        does not know the topic) or "unavailable" (another error, or no partitions yet)."""
        try:
            metadata = self._consumer.list_topics(self.topic, timeout=METADATA_TIMEOUT_S)
        except KafkaException as error:
            raise BrokerUnreachable(kafka_error_text(error)) from None
        if metadata.brokers == {}:
            raise BrokerUnreachable("no brokers in the metadata response")
        topic = metadata.topics.get(self.topic)
        if topic is None or (topic.error is not None and topic.error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART):
            return "missing"
        if topic.error is not None or not topic.partitions:
            return "unavailable"
        new = [partition for partition in topic.partitions if partition not in self._next_offsets]
        if new:
            starts = [TopicPartition(self.topic, partition, self._start_offset(partition)) for partition in new]
            for start in starts:
                self._next_offsets[start.partition] = start.offset
                self.first_offsets[start.partition] = start.offset
            self._consumer.incremental_assign(starts)
        return "assigned"

    def _caught_up(self) -> bool:
        return all(
            self._next_offsets[partition] >= end for partition, end in self._ends_at_assignment.items()
        )

    def _start_offset(self, partition: int) -> int:
        try:
            low, high = self._consumer.get_watermark_offsets(
                TopicPartition(self.topic, partition), timeout=METADATA_TIMEOUT_S, cached=False
            )
        except KafkaException as error:
            raise BrokerUnreachable(kafka_error_text(error)) from None
        self._ends_at_assignment[partition] = high
        return low if self.start_back is None else max(low, high - self.start_back)

    def _lag(self) -> int:
        lag = 0
        for partition, next_offset in self._next_offsets.items():
            _low, high = self._consumer.get_watermark_offsets(TopicPartition(self.topic, partition), cached=True)
            if high >= 0:
                lag += max(0, high - next_offset)
        return lag

    def close(self) -> None:
        self._consumer.close()


class TopicHistory:
    """What came before a tail's start, read a range at a time, newest range first.

    A tail starts ``start_back`` messages before the end of each partition; on a partition
    shared with busier instruments, a quieter instrument's anomalies may all lie before that.
    Each ``read_before(count)`` reads the ``count`` offsets before what has been read so far
    on every partition, so repeated calls walk back without reading a message twice.
    """

    @_client_failures
    def __init__(
        self,
        brokers: str,
        topic: str,
        first_offsets: Mapping[int, int],
        client_settings: Mapping[str, str] | None = None,
        on_client_error: Callable[[str], None] | None = None,
    ) -> None:
        self.topic = topic
        self._firsts = dict(first_offsets)
        report = on_client_error or (lambda _message: None)
        self._consumer = Consumer(viewer_settings(brokers, lambda error: report(f"Kafka client: {error.str()}"),
                                                  client_settings))

    def exhausted(self) -> bool:
        """Every partition has been read back to its first offset."""
        return not self._firsts

    @_client_failures
    def read_before(self, count: int, max_seconds: float) -> list[TailedMessage]:
        """The messages of the ``count`` offsets before the earliest read on each partition.

        A partition whose range is not read within ``max_seconds`` is not tried again: the
        page goes on without its older messages rather than wait or read them twice.
        Raises ``BrokerUnreachable`` when the watermarks cannot be fetched.
        """
        ranges: dict[int, tuple[int, int]] = {}
        for partition, first in sorted(self._firsts.items()):
            try:
                low, _high = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=METADATA_TIMEOUT_S, cached=False)
            except KafkaException as error:
                raise BrokerUnreachable(kafka_error_text(error)) from None
            begin = max(low, first - count)
            if begin < first:
                ranges[partition] = (begin, first)
            if begin <= low:
                del self._firsts[partition]  # nothing older after this range
            else:
                self._firsts[partition] = begin
        if not ranges:
            return []
        self._consumer.assign([TopicPartition(self.topic, partition, begin)
                               for partition, (begin, _end) in ranges.items()])
        pending = dict(ranges)
        messages: list[TailedMessage] = []
        deadline = time.monotonic() + max_seconds
        while pending and (remaining := deadline - time.monotonic()) > 0:
            for message in self._consumer.consume(CONSUME_BATCH, timeout=min(IDLE_POLL_S, remaining)):
                partition, offset = message.partition(), message.offset()
                if message.error() is not None or partition not in pending:
                    continue
                _begin, end = pending[partition]
                if offset < end:
                    messages.append(_tailed(message))
                if offset >= end - 1:
                    del pending[partition]
        for partition in pending:  # not read in time: give up on what is older still
            self._firsts.pop(partition, None)
        self._consumer.unassign()
        return messages

    def close(self) -> None:
        self._consumer.close()


class TopicEnds:
    """The high watermark of every partition of ``topic``, read fresh from the broker each time."""

    @_client_failures
    def __init__(self, brokers: str, topic: str, client_settings: Mapping[str, str] | None = None,
                 on_client_error: Callable[[str], None] | None = None) -> None:
        self.topic = topic
        report = on_client_error or (lambda _message: None)
        self._consumer = Consumer(viewer_settings(brokers, lambda error: report(f"Kafka client: {error.str()}"),
                                                  client_settings))

    @_client_failures
    def read(self) -> dict[int, int] | None:
        """Partition -> high watermark; None when the topic does not exist. Raises ``BrokerUnreachable``."""
        try:
            metadata = self._consumer.list_topics(self.topic, timeout=METADATA_TIMEOUT_S)
            topic = metadata.topics.get(self.topic)
            if topic is None or topic.error is not None or not topic.partitions:
                return None
            return {
                partition: self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=METADATA_TIMEOUT_S, cached=False)[1]
                for partition in topic.partitions
            }
        except KafkaException as error:
            raise BrokerUnreachable(kafka_error_text(error)) from None

    def close(self) -> None:
        self._consumer.close()


class TopicIds:
    """The id the broker gave each topic when it created it (Kafka 2.8 and later, Tansu).

    The same name with another id is another topic: the broker was restarted empty (the
    development broker keeps topics in memory) or the topic was deleted and created again, so
    offsets read before mean nothing there. A broker that gives no ids (all zero) says nothing.
    """

    @_client_failures
    def __init__(self, brokers: str, client_settings: Mapping[str, str] | None = None,
                 on_client_error: Callable[[str], None] | None = None) -> None:
        report = on_client_error or (lambda _message: None)
        self._admin = AdminClient(viewer_settings(brokers, lambda error: report(f"Kafka client: {error.str()}"),
                                                  client_settings))

    @_client_failures
    def read(self, topics: list[str]) -> dict[str, str]:
        """Topic -> id, for the topics that exist and have one; a topic the broker could not
        describe in time is left out (no id is not a new id)."""
        futures = self._admin.describe_topics(TopicCollection(topics), request_timeout=METADATA_TIMEOUT_S)
        ids = {}
        for topic, future in futures.items():
            try:
                topic_id = future.result(timeout=METADATA_TIMEOUT_S).topic_id
            except (KafkaException, TimeoutError):
                continue
            if topic_id is not None and (topic_id.get_most_significant_bits() or topic_id.get_least_significant_bits()):
                ids[topic] = str(topic_id)
        return ids


def viewer_settings(
    brokers: str, on_error: Callable[[KafkaError], None], client_settings: Mapping[str, str] | None
) -> dict[str, object]:
    """A consumer that only watches: no commits, errors to ``on_error`` instead of the log.

    ``client_settings`` (security, timeouts) may change anything but that: a
    ``KAFKA_ENABLE_AUTO_COMMIT=true`` meant for the job must not make the page commit offsets."""
    settings: dict[str, object] = {
        "bootstrap.servers": brokers,
        # librdkafka insists on a group id, but without subscribe() no group is joined.
        "group.id": "dashboard-viewer",
        "socket.connection.setup.timeout.ms": 2000,
        # A position the topic no longer holds (a broker restarted empty, retention) reads on from
        # the earliest message kept, not from the end, which would skip what was published again.
        "auto.offset.reset": "earliest",
        "reconnect.backoff.max.ms": 2000,
        # Tansu holds an empty fetch for the whole wait even when data arrives
        # meanwhile; a short wait keeps the page live (Kafka and Redpanda answer at once).
        "fetch.wait.max.ms": 10,
        "receive.message.max.bytes": RECEIVE_MAX_BYTES,
        "log_level": 0,
    }
    settings.update(client_settings or {})
    settings.update({"enable.auto.commit": False, "enable.auto.offset.store": False, "error_cb": on_error})
    return settings
