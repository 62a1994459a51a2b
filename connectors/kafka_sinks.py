"""Kafka out of the dataflow: anomalies, dead letters, summaries and incidents out.

Sinks encode on the worker that writes, one producer per worker, created
when Bytewax builds the sink (clients are never opened at import or construction).
Their producers report to a ``BrokerWatch`` when one is given (see ``connectors.kafka``).
A message that can never be written raises ``DeliveryFailed``, which a sink hands to its
``failed`` callback first when it has one (the job's: one line and out).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors import metrics
from connectors.broker_watch import BrokerWatch
from connectors.codec import MAX_KEY_BYTES, MAX_WRITTEN_BYTES, encode_dead_letter, encode_record
from connectors.kafka import NeverFits, client_config, produce_when_room
from connectors.messages import DeadLetter, Origin

ITEM = TypeVar("ITEM")


class DeliveryFailed(RuntimeError):
    """The broker did not take a message the job wrote; the job stops rather than lose it.

    Its text is one line: what was refused, and what to change so that it is taken."""


@dataclass(frozen=True)
class SinkSettings(Generic[ITEM]):
    """Where a sink writes, how it encodes, and where a message too large for the broker goes."""

    topic: str
    encode: Callable[[ITEM], tuple[bytes | None, bytes]]
    oversize_topic: str | None
    max_bytes: int
    watch: BrokerWatch | None
    count: Callable[[ITEM], None] | None
    failed: Callable[[DeliveryFailed], None] | None


class EncodingSink(DynamicSink[ITEM], Generic[ITEM]):
    """A Kafka topic that items are written to as ``encode(item) -> (key, value)``.

    An encoded item larger than ``max_bytes`` is not sent (the broker would refuse
    it and the job would stop on it again after every restart): it goes to
    ``oversize_topic`` as a dead letter of stage ``engine`` saying so, with its
    first bytes, length and hash. With a ``watch`` a message is never given up on
    while the broker is away: the job's broker-loss timeout decides instead.
    ``failed`` is called with a ``DeliveryFailed`` before it is raised: raised out of
    ``write_batch`` it ends Bytewax's worker with a Rust panic and two tracebacks (80 lines
    on stderr), where the job wants to end with one line (``flows.supervisor``).
    """

    def __init__(
        self,
        brokers: str,
        topic: str,
        encode: Callable[[ITEM], tuple[bytes | None, bytes]],
        client_settings: Mapping[str, str] | None = None,
        *,
        oversize_topic: str | None = None,
        max_bytes: int = MAX_WRITTEN_BYTES,
        watch: BrokerWatch | None = None,
        count: Callable[[ITEM], None] | None = None,
        failed: Callable[[DeliveryFailed], None] | None = None,
    ) -> None:
        self._config = client_config(brokers, client_settings, watch)
        if watch is not None:
            self._config = {"message.timeout.ms": 0, **self._config}  # 0: no limit
        self._settings = SinkSettings(topic, encode, oversize_topic, max_bytes, watch, count, failed)

    def build(self, step_id: str, worker_index: int, worker_count: int) -> EncodingSinkPartition[ITEM]:
        from confluent_kafka import Producer

        return EncodingSinkPartition(Producer(self._config), self._settings)


class EncodingSinkPartition(StatelessSinkPartition[ITEM], Generic[ITEM]):
    """One worker's producer; a batch returns only once the broker has every message.

    Bytewax closes an epoch, and may snapshot it, only after ``write_batch`` returns,
    so what a snapshot covers is on the broker. A message the broker refuses
    raises ``DeliveryFailed``: the job stops loudly and, with recovery, resumes
    from its last snapshot, instead of the message vanishing.
    """

    def __init__(self, producer: Any, settings: SinkSettings[ITEM]) -> None:
        self._producer = producer
        self._settings = settings

    def write_batch(self, items: list[ITEM]) -> None:
        try:
            self._write(items)
        except DeliveryFailed as error:
            if self._settings.failed is not None:
                self._settings.failed(error)  # the job's does not return: it ends the process
            raise

    def _write(self, items: list[ITEM]) -> None:
        settings, failures = self._settings, []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(error)
            elif settings.watch is not None:
                settings.watch.alive()

        for item in items:
            topic, (key, value) = settings.topic, settings.encode(item)
            if len(value) + len(key or b"") > settings.max_bytes:
                topic, value = self._oversized(key, value)
            elif settings.count is not None:
                settings.count(item)
            self._produce(topic, key, value, delivered)
        self._producer.flush()
        if failures:
            raise DeliveryFailed(
                f"{len(failures)} of {len(items)} messages to {settings.topic} were not delivered: {failures[0].str()}"
                f" ({what_to_change(failures[0], settings.topic, settings.max_bytes)})"
            )

    def _produce(self, topic: str, key: bytes | None, value: bytes, delivered: Callable[[Any, Any], None]) -> None:
        """Queue one message (``produce_when_room``); one that never fits the producer's queue stops
        the job, naming the setting, where waiting would hang it."""
        try:
            produce_when_room(self._producer, topic, key, value, delivered)
        except NeverFits:
            raise DeliveryFailed(
                f"a message to {topic} of {len(value):,} bytes is larger than the Kafka producer's whole "
                f"local queue and can never be sent: raise queue.buffering.max.kbytes "
                f"(KAFKA_QUEUE_BUFFERING_MAX_KBYTES) to at least {math.ceil(len(value) / 1024):,} "
                f"or unset it") from None

    def _oversized(self, key: bytes | None, value: bytes) -> tuple[str, bytes]:
        settings = self._settings
        if settings.oversize_topic is None:
            raise DeliveryFailed(f"a message to {settings.topic} is {len(value):,} bytes, over the "
                                 f"{settings.max_bytes:,} limit, and there is no dead-letter topic for it")
        metrics.DEAD_LETTERS_WRITTEN.labels("engine").inc()
        letter = DeadLetter(
            f"record too large to write to {settings.topic}: {len(value):,} bytes, limit {settings.max_bytes:,}",
            "engine", Origin(settings.topic, -1, -1), value, key,
        )
        return settings.oversize_topic, encode_dead_letter(letter, settings.max_bytes)

    def close(self) -> None:
        self._producer.flush()


def what_to_change(error: Any, topic: str, max_bytes: int) -> str:
    """For a message the broker refused: what to change so that it is taken. The broker's own words
    ("Broker failed to validate record") name no setting, and sending the message again as it is
    cannot help: librdkafka has already retried whatever a retry could fix."""
    from confluent_kafka import KafkaError

    code = error.code()
    if code in (KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE):
        return (f"the broker takes smaller messages than the job writes, up to {max_bytes:,} bytes: raise the "
                f"topic's max.message.bytes (or the broker's message.max.bytes)")
    if code == KafkaError.INVALID_RECORD:
        return (f"the broker checks what is written to {topic} against a schema or policy that the job's messages "
                f"do not meet: change it on the broker, or give the job a topic of its own")
    if code in (KafkaError.TOPIC_AUTHORIZATION_FAILED, KafkaError.CLUSTER_AUTHORIZATION_FAILED):
        return (f"the job's Kafka user (KAFKA_SASL_USERNAME) may not write to {topic}: grant it write access on "
                f"the broker")
    return f"see the broker's log and {topic}'s configuration, and the job's KAFKA_* variables"


def encode_anomaly(record: Any) -> tuple[bytes, bytes]:
    """``models.records.AnomalyRecord`` -> (symbol, JSON record)."""
    return record.symbol.encode(), encode_record(record.to_dict())


def count_anomaly(record: Any) -> None:
    metrics.ANOMALIES_WRITTEN.labels(record.level).inc()


def encode_summary(summary: dict[str, Any]) -> tuple[bytes | None, bytes]:
    symbol = summary.get("symbol")
    return (symbol.encode() if isinstance(symbol, str) else None), encode_record(summary)


def count_summary(_summary: Any) -> None:
    metrics.SUMMARIES_WRITTEN.inc()


def encode_incident(update: Any) -> tuple[bytes, bytes]:
    """``models.incidents.IncidentUpdate`` (``.incident_id``, ``.to_dict()``) -> (incident id, JSON).

    Keyed by the incident, on a compacted topic: the last message per key is the
    incident's current state.
    """
    return str(update.incident_id).encode(), encode_record(update.to_dict())


def count_incident(_update: Any) -> None:
    metrics.INCIDENTS_WRITTEN.inc()


def encode_dead_letter_message(letter: DeadLetter) -> tuple[bytes | None, bytes]:
    """Keyed by the original Kafka key, else by the symbol in the original bytes, else unkeyed.

    Either way the dead letter lands next to its instrument's trades. A key longer than
    ``MAX_KEY_BYTES`` is not kept: a hostile one would make the dead letter itself too
    large for the broker, and the job would stop on it at every restart.
    """
    key = letter.key if letter.key is not None and len(letter.key) <= MAX_KEY_BYTES else None
    key = key or _symbol_in(letter.raw)
    return key, encode_dead_letter(letter, MAX_WRITTEN_BYTES - len(key or b""))  # key and value under the limit


def count_dead_letter(letter: DeadLetter) -> None:
    metrics.DEAD_LETTERS_WRITTEN.labels(letter.stage).inc()


def _symbol_in(raw: bytes) -> bytes | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    symbol = value.get("symbol") if isinstance(value, dict) else None
    return symbol.encode()[:MAX_KEY_BYTES] if isinstance(symbol, str) and symbol else None


def anomaly_sink(brokers: str, topic: str, client_settings: Mapping[str, str] | None = None,
                 **options: Any) -> EncodingSink:
    return EncodingSink(brokers, topic, encode_anomaly, client_settings, count=count_anomaly, **options)


def dead_letter_sink(brokers: str, topic: str, client_settings: Mapping[str, str] | None = None,
                     **options: Any) -> EncodingSink:
    return EncodingSink(brokers, topic, encode_dead_letter_message, client_settings, count=count_dead_letter,
                        **options)


def summary_sink(brokers: str, topic: str, client_settings: Mapping[str, str] | None = None,
                 **options: Any) -> EncodingSink:
    return EncodingSink(brokers, topic, encode_summary, client_settings, count=count_summary, **options)


def incident_sink(brokers: str, topic: str, client_settings: Mapping[str, str] | None = None,
                  **options: Any) -> EncodingSink:
    return EncodingSink(brokers, topic, encode_incident, client_settings, count=count_incident, **options)
