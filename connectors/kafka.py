"""Kafka in and out of the dataflow: trades in, anomalies, dead letters and summaries out.

The source wraps Bytewax's own Kafka partitions, so offsets are snapshotted and
restored by Bytewax's recovery exactly as with ``KafkaSource``; it only turns each
message into a ``TradeMessage`` or, when the bytes are not a trade or Kafka
reported an error, a ``DeadLetter`` (so nothing stops the job and nothing is lost).
Sinks encode on the worker that writes, one producer per worker, created when
Bytewax builds the sink (clients are never opened at import or construction).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import orjson
from bytewax.connectors.kafka import KafkaError, KafkaSource
from bytewax.connectors.kafka import _list_parts as list_partitions
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from confluent_kafka.admin import AdminClient

from connectors import metrics
from connectors.codec import decode_trade, encode_dead_letter, encode_record
from connectors.messages import DeadLetter, Origin, TradeMessage

ITEM = TypeVar("ITEM")



QUICK_FETCH = {"fetch.wait.max.ms": "10"}
"""How long the broker may hold a fetch that finds no data. Against the embedded
Tansu broker librdkafka's 500 ms default showed up as up to half a second before
new data (or the end of a partition) was seen; Kafka and Redpanda answer a waiting
fetch as soon as data arrives anyway. ``KAFKA_FETCH_WAIT_MAX_MS`` overrides it."""


def split_brokers(brokers: str) -> list[str]:
    return [address.strip() for address in brokers.split(",") if address.strip()]


class TradeSource(FixedPartitionedSource[TradeMessage | DeadLetter, int | None]):
    """Every partition of one topic; items are ``TradeMessage`` or ``DeadLetter``.

    ``stop_at_end`` ends each partition at the end offset it finds (backfills, tests);
    otherwise the job keeps waiting for new trades.
    """

    def __init__(
        self,
        brokers: str,
        topic: str,
        *,
        stop_at_end: bool = False,
        client_settings: Mapping[str, str] | None = None,
        batch_size: int = 1000,
    ) -> None:
        self._brokers, self._topic = ",".join(split_brokers(brokers)), topic
        self._client_settings = dict(client_settings or {})
        settings = {**QUICK_FETCH, **self._client_settings}
        self._kafka = KafkaSource(
            split_brokers(brokers), [topic], tail=not stop_at_end,
            add_config=settings, batch_size=batch_size, raise_on_errors=False,
        )

    def list_parts(self) -> list[str]:
        # Bytewax's own list_parts would hand the consumer-only fetch setting to an admin client.
        admin = AdminClient({"bootstrap.servers": self._brokers, **self._client_settings})
        return list(list_partitions(admin, [self._topic]))

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> DecodingPartition:
        return DecodingPartition(self._kafka.build_part(step_id, for_part, resume_state))


class DecodingPartition(StatefulSourcePartition[TradeMessage | DeadLetter, int | None]):
    """One Kafka partition; the offset snapshot is the wrapped Bytewax partition's own."""

    def __init__(self, kafka_partition: StatefulSourcePartition) -> None:
        self._kafka_partition = kafka_partition

    def next_batch(self) -> list[TradeMessage | DeadLetter]:
        items = [_decode_message(message) for message in self._kafka_partition.next_batch()]
        trades = sum(1 for item in items if type(item) is TradeMessage)
        if trades:
            metrics.TRADES_READ.inc(trades)
        return items

    def next_awake(self):
        return self._kafka_partition.next_awake()

    def snapshot(self) -> int | None:
        return self._kafka_partition.snapshot()

    def close(self) -> None:
        self._kafka_partition.close()


def _decode_message(message: Any) -> TradeMessage | DeadLetter:
    if isinstance(message, KafkaError):
        failed = message.msg
        origin = Origin(failed.topic or "", _int_or(failed.partition, -1), _int_or(failed.offset, -1))
        return DeadLetter(f"Kafka error: {message.err.str()}", "kafka", origin, failed.value or b"")
    return decode_trade(message.value, Origin(message.topic, message.partition, message.offset))


def _int_or(value: int | None, default: int) -> int:
    return default if value is None else value


class DeliveryFailed(RuntimeError):
    """The broker did not take a message the job wrote; the job stops rather than lose it."""


class EncodingSink(DynamicSink[ITEM], Generic[ITEM]):
    """A Kafka topic that items are written to as ``encode(item) -> (key, value)``."""

    def __init__(
        self,
        brokers: str,
        topic: str,
        encode: Callable[[ITEM], tuple[bytes | None, bytes]],
        client_settings: Mapping[str, str] | None = None,
    ) -> None:
        self._config = {"bootstrap.servers": ",".join(split_brokers(brokers)), **(client_settings or {})}
        self._topic = topic
        self._encode = encode

    def build(self, step_id: str, worker_index: int, worker_count: int) -> EncodingSinkPartition[ITEM]:
        from confluent_kafka import Producer

        return EncodingSinkPartition(Producer(self._config), self._topic, self._encode)


class EncodingSinkPartition(StatelessSinkPartition[ITEM], Generic[ITEM]):
    """One worker's producer; a batch returns only once the broker has every message.

    Bytewax closes an epoch, and may snapshot it, only after ``write_batch`` returns,
    so what a snapshot covers is on the broker. A message the broker refuses (or that
    times out) raises ``DeliveryFailed``: the job stops loudly and, with recovery,
    resumes from its last snapshot, instead of the message vanishing.
    """

    def __init__(self, producer: Any, topic: str, encode: Callable) -> None:
        self._producer = producer
        self._topic = topic
        self._encode = encode

    def write_batch(self, items: list[ITEM]) -> None:
        failures: list[Any] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(error)

        for item in items:
            key, value = self._encode(item)
            while True:
                try:
                    self._producer.produce(self._topic, value=value, key=key, on_delivery=delivered)
                    break
                except BufferError:  # local queue full: let deliveries drain it
                    self._producer.poll(0.1)
        self._producer.flush()
        if failures:
            raise DeliveryFailed(
                f"{len(failures)} of {len(items)} messages to {self._topic} were not delivered: {failures[0].str()}"
            )

    def close(self) -> None:
        self._producer.flush()


def encode_anomaly(record: Any) -> tuple[bytes, bytes]:
    """``models.records.AnomalyRecord`` -> (symbol, JSON record); counted by level."""
    metrics.ANOMALIES_WRITTEN.labels(record.level).inc()
    return record.symbol.encode(), encode_record(record.to_dict())


def encode_summary(summary: dict[str, Any]) -> tuple[bytes | None, bytes]:
    metrics.SUMMARIES_WRITTEN.inc()
    symbol = summary.get("symbol")
    return (symbol.encode() if isinstance(symbol, str) else None), encode_record(summary)


def encode_dead_letter_message(letter: DeadLetter) -> tuple[bytes | None, bytes]:
    """Keyed by the symbol in the original bytes when there is one, else unkeyed.

    ``DeadLetter`` does not carry the original Kafka key; the symbol is what the
    trade would have been keyed by, so the dead letter lands next to its instrument.
    """
    metrics.DEAD_LETTERS_WRITTEN.labels(letter.stage).inc()
    return _symbol_in(letter.raw), encode_dead_letter(letter)


def _symbol_in(raw: bytes) -> bytes | None:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    symbol = value.get("symbol") if isinstance(value, dict) else None
    return symbol.encode() if isinstance(symbol, str) and symbol else None


def anomaly_sink(brokers: str, topic: str, client_settings: Mapping[str, str] | None = None) -> EncodingSink:
    return EncodingSink(brokers, topic, encode_anomaly, client_settings)


def dead_letter_sink(brokers: str, topic: str, client_settings: Mapping[str, str] | None = None) -> EncodingSink:
    return EncodingSink(brokers, topic, encode_dead_letter_message, client_settings)


def summary_sink(brokers: str, topic: str, client_settings: Mapping[str, str] | None = None) -> EncodingSink:
    return EncodingSink(brokers, topic, encode_summary, client_settings)


def ensure_topics(
    brokers: str,
    partitions_by_topic: Mapping[str, int],
    client_settings: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> list[str]:
    """Create the topics that do not exist yet; return the names created."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": brokers, **(client_settings or {})})
    existing = admin.list_topics(timeout=timeout).topics
    missing = [NewTopic(name, count, 1) for name, count in partitions_by_topic.items() if name not in existing]
    if not missing:
        return []
    created = []
    for name, future in admin.create_topics(missing, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except Exception as error:  # another client may have created it meanwhile
            if "TOPIC_ALREADY_EXISTS" not in str(error):
                raise
    return created


def partition_count(brokers: str, topic: str, client_settings: Mapping[str, str] | None = None,
                    timeout: float = 10.0) -> int:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": brokers, **(client_settings or {})})
    # All topics, not just this one: a metadata request naming a topic may auto-create it.
    metadata = admin.list_topics(timeout=timeout).topics.get(topic)
    return 0 if metadata is None or metadata.error is not None else len(metadata.partitions)


def read_topic(
    brokers: str,
    topic: str,
    client_settings: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> list[Any]:
    """Every message now in ``topic`` (confluent_kafka ``Message`` objects), by partition.

    Uses ``assign()`` from the beginning of each partition and stops at each end:
    consumer-group joins hang on the embedded Tansu broker.
    """
    import time

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    from confluent_kafka import KafkaError as ClientError

    count = partition_count(brokers, topic, client_settings, timeout)
    if count == 0:
        return []
    consumer = Consumer({
        "bootstrap.servers": brokers, "group.id": "trade-detector-reader",
        "enable.auto.commit": False, "enable.partition.eof": True, **QUICK_FETCH, **(client_settings or {}),
    })
    try:
        consumer.assign([TopicPartition(topic, index, OFFSET_BEGINNING) for index in range(count)])
        messages, ended, deadline = [], set(), time.monotonic() + timeout
        while len(ended) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"reading {topic} from {brokers}: no end after {timeout:g} s")
            for message in consumer.consume(1000, 0.2):
                if message.error() is None:
                    messages.append(message)
                elif message.error().code() == ClientError._PARTITION_EOF:
                    ended.add(message.partition())
                else:
                    raise RuntimeError(f"reading {topic} from {brokers}: {message.error().str()}")
        return messages
    finally:
        consumer.close()


def iter_json_values(messages: Iterable[Any]) -> list[dict[str, Any]]:
    return [orjson.loads(message.value()) for message in messages]


class MissingTopic(RuntimeError):
    """The input topic does not exist: nothing has been published to it yet."""


def prepare_job_topics(
    brokers: str,
    input_topic: str,
    output_topics: Iterable[str],
    client_settings: Mapping[str, str] | None = None,
) -> list[str]:
    """Check the input topic exists and create missing output topics with as many partitions.

    A missing input topic is an error rather than created here: its partition count
    is the job's parallelism and belongs to whoever publishes (the replay, or ops).
    """
    partitions = partition_count(brokers, input_topic, client_settings)
    if partitions == 0:
        raise MissingTopic(
            f"input topic {input_topic!r} does not exist on {brokers}; create it or start "
            f"the replay first (python -m connectors.replay ...)"
        )
    wanted = {topic: partitions for topic in output_topics if topic}
    return ensure_topics(brokers, wanted, client_settings)
