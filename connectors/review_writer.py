"""The dashboard's Kafka writer: analysts' decisions to a compacted topic, acknowledged by the broker.

A decision made in one browser must survive a restart and show in every other
open dashboard, so it goes to the ``incident-reviews`` topic (compacted, keyed by
incident id, so the last decision per incident is what the topic keeps). A
decision counts as made only when the broker has acknowledged it. The writer
takes the decision as plain data (the key, and the record it encodes as JSON);
what a decision is belongs to the dashboard (``dashboard.records.Review``).

Kafka has no compare-and-set, so a page that must not replace a decision it has
not seen asks the writer to read the key's partition to its end just before
writing (``write(..., check=...)``) and decides from what was there; what is
written in the moment between that read and the write is still replaced.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.broker import kafka_error_text
from connectors.topic_readers import CONSUME_BATCH, IDLE_POLL_S, viewer_settings

WRITE_TIMEOUT_S = 5.0
REVIEW_TOPIC_CONFIG = {"cleanup.policy": "compact"}


class ReviewNotSaved(RuntimeError):
    """The broker did not acknowledge the decision; the text says why."""


class ReviewNotConfirmed(ReviewNotSaved):
    """The decision was handed to the broker but no answer came within ``WRITE_TIMEOUT_S``: it may
    still be recorded (a broker that stalls and then goes on appends what it had received), so
    whether it was saved is not known until the topic is read back."""


def key_partition(key: bytes, partitions: int) -> int:
    """The partition librdkafka's default partitioner (``consistent_random``: CRC-32 of the key) gives
    ``key``: where the reviews of an incident written by any page so far are, so the check before a
    write reads that one partition only, and the write goes there by number whatever partitioner
    the client settings name."""
    return zlib.crc32(key) % partitions


class ReviewWriter:
    """Writes decisions to ``topic``, creating it (compacted) when it is missing."""

    def __init__(self, brokers: str, topic: str, client_settings: Mapping[str, str] | None = None) -> None:
        self.topic = topic
        self._settings = {"bootstrap.servers": brokers, "log_level": 0, "error_cb": lambda _error: None,
                          "socket.connection.setup.timeout.ms": 2000, **(client_settings or {})}
        self._client_settings = dict(client_settings or {})
        self._producer: Producer | None = None
        self._reader: Consumer | None = None
        self._topic_ready = False

    def write(self, key: str, record: Mapping[str, Any],
              check: Callable[[list[bytes | None]], None] | None = None) -> None:
        """``record`` as JSON under ``key`` (the incident id). Returns once the broker has it; raises
        ``ReviewNotSaved`` otherwise (``ReviewNotConfirmed`` when the broker may have it yet), after
        which the next write checks the topic again with a new producer (``reset``).

        ``check`` is given the values written under ``key`` so far, oldest first (its partition read
        to its end, within ``WRITE_TIMEOUT_S``), just before the write; whatever it raises stops the
        write and reaches the caller: a decision made elsewhere that the caller has not seen."""
        try:
            self._write(key, record, check)
        except ReviewNotSaved:
            self.reset()
            raise

    def reset(self) -> None:
        """Forget the producer and that the topic exists: the next write checks the topic again with
        a new producer (a development broker restarted empty: the old producer's idempotence state
        timed out every later write)."""
        self.close(wait_s=0)
        self._producer, self._reader, self._topic_ready = None, None, False

    def _write(self, key: str, record: Mapping[str, Any], check: Callable[[list[bytes | None]], None] | None) -> None:
        self._ensure_topic()
        key_bytes = key.encode()
        where: dict[str, int] = {}
        if check is not None:
            where["partition"], values = self._values_under(key_bytes)
            check(values)
        if self._producer is None:
            try:
                self._producer = Producer({**self._settings, "acks": "all", "enable.idempotence": True,
                                           "message.timeout.ms": int(WRITE_TIMEOUT_S * 1000)})
            except KafkaException as error:  # settings a producer refuses (KAFKA_ACKS=1 with idempotence)
                raise ReviewNotSaved(f"the Kafka client refused its settings: {kafka_error_text(error)}") from None
        outcome: list[KafkaError | None] = []
        value = orjson.dumps(record)
        size = len(key_bytes) + len(value)
        try:
            self._producer.produce(
                self.topic, key=key_bytes, value=value, **where,
                on_delivery=lambda error, _message: outcome.append(error),
            )
        except KafkaException as error:
            if error.args[0].code() == KafkaError.MSG_SIZE_TOO_LARGE:  # message.max.bytes set small
                limit = self._settings.get("message.max.bytes", "the largest message")
                raise ReviewNotSaved(f"it is {size:,} bytes, more than the {limit} this dashboard's Kafka client "
                                     "may send (KAFKA_MESSAGE_MAX_BYTES): shorten the note.") from None
            raise ReviewNotSaved(f"the Kafka client refused the message: {kafka_error_text(error)}") from None
        except BufferError as error:
            raise ReviewNotSaved(f"the Kafka client refused the message: {error}") from None
        self._producer.flush(WRITE_TIMEOUT_S + 1)
        if not outcome or outcome[0] is not None and outcome[0].code() == KafkaError._MSG_TIMED_OUT:
            raise ReviewNotConfirmed(f"the broker did not answer within {WRITE_TIMEOUT_S:g} s")
        if outcome[0] is not None and outcome[0].code() == KafkaError.MSG_SIZE_TOO_LARGE:
            raise ReviewNotSaved(f"the broker refused it as too large ({size:,} bytes): shorten the note.")
        if outcome[0] is not None:
            raise ReviewNotSaved(f"the broker refused it: {outcome[0].str()}")

    def _values_under(self, key: bytes) -> tuple[int, list[bytes | None]]:
        """``key``'s partition and the values under ``key`` there, oldest first, read from the
        partition's start to its high watermark within ``WRITE_TIMEOUT_S``; ``ReviewNotSaved`` when
        the broker does not answer in time (nothing is written then)."""
        deadline = time.monotonic() + WRITE_TIMEOUT_S
        reader = self._reader_client()
        try:
            metadata = reader.list_topics(self.topic, timeout=WRITE_TIMEOUT_S)
            partitions = metadata.topics[self.topic].partitions if self.topic in metadata.topics else {}
            if not partitions:
                raise ReviewNotSaved(f"the topic {self.topic} has no partitions the broker names")
            partition = key_partition(key, len(partitions))
            low, high = reader.get_watermark_offsets(TopicPartition(self.topic, partition),
                                                     timeout=max(0.1, deadline - time.monotonic()), cached=False)
            return partition, self._read_range(reader, key, partition, (low, high), deadline)
        except KafkaException as error:
            raise ReviewNotSaved(f"could not read the topic {self.topic} before writing: "
                                 f"{kafka_error_text(error)}") from None

    def _read_range(self, reader: Consumer, key: bytes, partition: int, offsets: tuple[int, int],
                    deadline: float) -> list[bytes | None]:
        """The values under ``key`` at ``offsets`` (low, high) of ``partition``; a compacted
        partition has gaps, so it is read until an offset at or past ``high - 1`` arrives or the
        client says the partition ends (an offset the broker never serves, a transaction marker)."""
        low, high = offsets
        values: list[bytes | None] = []
        if high <= low:
            return values
        reader.assign([TopicPartition(self.topic, partition, low)])
        try:
            reached = low
            while reached < high:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ReviewNotSaved(f"the reviews topic was not read to its end within {WRITE_TIMEOUT_S:g} s")
                for message in reader.consume(CONSUME_BATCH, timeout=min(IDLE_POLL_S, remaining)):
                    error = message.error()
                    if error is not None and error.code() == KafkaError._PARTITION_EOF:
                        reached = high
                    elif error is None and message.partition() == partition:
                        reached = message.offset() + 1
                        if message.key() == key:
                            values.append(message.value())
        finally:
            reader.unassign()
        return values

    def _reader_client(self) -> Consumer:
        if self._reader is None:
            try:
                settings = viewer_settings(self._settings["bootstrap.servers"], lambda _error: None,
                                           self._client_settings)
                self._reader = Consumer({**settings, "enable.partition.eof": True})
            except KafkaException as error:
                raise ReviewNotSaved(f"the Kafka client refused its settings: {kafka_error_text(error)}") from None
        return self._reader

    def _ensure_topic(self) -> None:
        if self._topic_ready:
            return
        try:
            admin = AdminClient(self._settings)
            metadata = admin.list_topics(timeout=WRITE_TIMEOUT_S)
            if self.topic not in metadata.topics:
                future = admin.create_topics([NewTopic(self.topic, 1, 1, config=REVIEW_TOPIC_CONFIG)])[self.topic]
                try:
                    future.result(timeout=WRITE_TIMEOUT_S)
                except KafkaException as error:
                    if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # another page was first
                        raise
        except KafkaException as error:
            raise ReviewNotSaved(f"could not reach or create the topic {self.topic}: {kafka_error_text(error)}") from None
        except TimeoutError:  # the creation was not confirmed in time
            raise ReviewNotSaved(f"the topic {self.topic} was not created within {WRITE_TIMEOUT_S:g} s") from None
        self._topic_ready = True

    def close(self, wait_s: float = WRITE_TIMEOUT_S) -> None:
        if self._producer is not None:
            self._producer.flush(wait_s)
        if self._reader is not None:
            self._reader.close()
            self._reader = None

