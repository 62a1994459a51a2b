"""Kafka in and out of the dataflow: trades in, anomalies, dead letters, summaries and incidents out.

The source reads each Kafka partition with its own consumer (``assign()``, the
offset kept in Bytewax's snapshots exactly as Bytewax's ``KafkaSource`` does) and
turns each message into a ``TradeMessage`` or, when the bytes are not a trade or
Kafka reported an error, a ``DeadLetter`` (so nothing stops the job and nothing is
lost). Sinks encode on the worker that writes, one producer per worker, created
when Bytewax builds the sink (clients are never opened at import or construction).

Every client reports to a ``BrokerWatch`` when one is given (the streaming job
does), with librdkafka's own logging off, so a lost broker is one clear line from
the job rather than a log line per reconnect attempt.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import orjson
from bytewax.connectors.kafka import BYTEWAX_CONSUMER_LAG_GAUGE
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors import metrics
from connectors.codec import (
    MAX_KEY_BYTES, MAX_MESSAGE_BYTES, MAX_WRITTEN_BYTES, decode_trade, encode_dead_letter, encode_record,
)
from connectors.broker_watch import QUIET_LOGS, BrokerWatch
from connectors.messages import DeadLetter, Origin, TradeMessage

ITEM = TypeVar("ITEM")

QUICK_FETCH = {"fetch.wait.max.ms": "10"}
"""How long the broker may hold a fetch that finds no data. Against the embedded
Tansu broker librdkafka's 500 ms default showed up as up to half a second before
new data (or the end of a partition) was seen; Kafka and Redpanda answer a waiting
fetch as soon as data arrives anyway. ``KAFKA_FETCH_WAIT_MAX_MS`` overrides it."""

STALL_AFTER_S = 1.0
"""A partition that returns nothing this long while the broker says messages are
waiting is stalled (see ``TradePartition``)."""

MAX_FETCH_WAIT_MS = 1000
RELAX_AFTER_S = 20.0
"""A widened fetch wait is halved again (down to the configured one) after this long
without a stall: a broker that fell behind for a moment should not cost every later
message up to the widened wait."""


def split_brokers(brokers: str) -> list[str]:
    return [address.strip() for address in brokers.split(",") if address.strip()]


def _client_config(brokers: str, client_settings: Mapping[str, str] | None, watch: BrokerWatch | None) -> dict:
    """Bootstrap servers, the user's ``KAFKA_*`` settings, and quiet logs reported to ``watch``."""
    config: dict[str, Any] = {"bootstrap.servers": ",".join(split_brokers(brokers)), **QUIET_LOGS}
    if watch is not None:
        config.update(watch.client_callbacks())
    config.update(client_settings or {})
    return config


def _admin(brokers: str, client_settings: Mapping[str, str] | None, watch: BrokerWatch | None = None):
    from confluent_kafka.admin import AdminClient

    config = _client_config(brokers, client_settings, watch)
    if watch is None:  # an admin client polled by no one: its errors are the calls' exceptions
        config["error_cb"] = lambda _error: None
    return AdminClient(config)


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
        metadata = _admin(self._brokers, self._client_settings, self._watch).list_topics(timeout=10).topics
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
            **_client_config(self._brokers, self._client_settings, self._watch),
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
                items.append(decode_trade(message.value(), origin, message.key(), self._max_message_bytes))
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


class DeliveryFailed(RuntimeError):
    """The broker did not take a message the job wrote; the job stops rather than lose it."""


class EncodingSink(DynamicSink[ITEM], Generic[ITEM]):
    """A Kafka topic that items are written to as ``encode(item) -> (key, value)``.

    An encoded item larger than ``max_bytes`` is not sent (the broker would refuse
    it and the job would stop on it again after every restart): it goes to
    ``oversize_topic`` as a dead letter of stage ``engine`` saying so, with its
    first bytes, length and hash. With a ``watch`` a message is never given up on
    while the broker is away: the job's broker-loss timeout decides instead.
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
    ) -> None:
        self._config = _client_config(brokers, client_settings, watch)
        if watch is not None:
            self._config = {"message.timeout.ms": 0, **self._config}  # 0: no limit
        self._topic = topic
        self._encode = encode
        self._oversize_topic = oversize_topic
        self._max_bytes = max_bytes
        self._watch = watch
        self._count = count

    def build(self, step_id: str, worker_index: int, worker_count: int) -> EncodingSinkPartition[ITEM]:
        from confluent_kafka import Producer

        return EncodingSinkPartition(Producer(self._config), self._topic, self._encode,
                                     self._oversize_topic, self._max_bytes, self._watch, self._count)


class EncodingSinkPartition(StatelessSinkPartition[ITEM], Generic[ITEM]):
    """One worker's producer; a batch returns only once the broker has every message.

    Bytewax closes an epoch, and may snapshot it, only after ``write_batch`` returns,
    so what a snapshot covers is on the broker. A message the broker refuses
    raises ``DeliveryFailed``: the job stops loudly and, with recovery, resumes
    from its last snapshot, instead of the message vanishing.
    """

    def __init__(self, producer: Any, topic: str, encode: Callable, oversize_topic: str | None = None,
                 max_bytes: int = MAX_WRITTEN_BYTES, watch: BrokerWatch | None = None,
                 count: Callable | None = None) -> None:
        self._producer = producer
        self._topic = topic
        self._encode = encode
        self._oversize_topic = oversize_topic
        self._max_bytes = max_bytes
        self._watch = watch
        self._count = count

    def write_batch(self, items: list[ITEM]) -> None:
        failures: list[Any] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(error)
            elif self._watch is not None:
                self._watch.alive()

        for item in items:
            topic, (key, value) = self._topic, self._encode(item)
            if len(value) + len(key or b"") > self._max_bytes:
                topic, value = self._oversized(key, value)
            elif self._count is not None:
                self._count(item)
            while True:
                try:
                    self._producer.produce(topic, value=value, key=key, on_delivery=delivered)
                    break
                except BufferError:  # local queue full: let deliveries drain it
                    self._producer.poll(0.1)
        self._producer.flush()
        if failures:
            raise DeliveryFailed(
                f"{len(failures)} of {len(items)} messages to {self._topic} were not delivered: {failures[0].str()}"
            )

    def _oversized(self, key: bytes | None, value: bytes) -> tuple[str, bytes]:
        if self._oversize_topic is None:
            raise DeliveryFailed(f"a message to {self._topic} is {len(value):,} bytes, over the "
                                 f"{self._max_bytes:,} limit, and there is no dead-letter topic for it")
        metrics.DEAD_LETTERS_WRITTEN.labels("engine").inc()
        letter = DeadLetter(
            f"record too large to write to {self._topic}: {len(value):,} bytes, limit {self._max_bytes:,}",
            "engine", Origin(self._topic, -1, -1), value, key,
        )
        return self._oversize_topic, encode_dead_letter(letter, self._max_bytes)

    def close(self) -> None:
        self._producer.flush()


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


COMPACTED = {"cleanup.policy": "compact"}
"""Topic config of a topic whose last message per key is the current state (incidents)."""


BROKER_DEFAULT_REPLICATION = -1
"""A replication factor of -1 asks the broker for its ``default.replication.factor``."""


def ensure_topics(
    brokers: str,
    partitions_by_topic: Mapping[str, int],
    client_settings: Mapping[str, str] | None = None,
    timeout: float = 10.0,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    rejected: dict[str, str] | None = None,
) -> list[str]:
    """Create the topics that do not exist yet, with ``configs[name]`` if given; return the names created.

    A broker that refuses a topic's configs gets the topic without them: the
    topic matters more than its cleanup policy. ``rejected`` (if given) receives
    each such topic with the broker's answer, for the caller to report. Topics get
    the broker's own default replication factor (``default.replication.factor``).
    """
    from confluent_kafka.admin import NewTopic

    configs = configs or {}
    admin = _admin(brokers, client_settings)
    existing = admin.list_topics(timeout=timeout).topics
    missing = [NewTopic(name, count, BROKER_DEFAULT_REPLICATION, config=dict(configs.get(name, {})))
               for name, count in partitions_by_topic.items() if name not in existing]
    created = []
    for name, future in (admin.create_topics(missing, request_timeout=timeout).items() if missing else ()):
        try:
            future.result(timeout=timeout)
            created.append(name)
        except Exception as error:  # another client may have created it meanwhile
            if "TOPIC_ALREADY_EXISTS" in str(error):
                continue
            if not configs.get(name) or "CONFIG" not in str(error).upper():
                raise
            if rejected is not None:
                rejected[name] = str(error)
            retry = admin.create_topics([NewTopic(name, partitions_by_topic[name], BROKER_DEFAULT_REPLICATION)],
                                        request_timeout=timeout)
            retry[name].result(timeout=timeout)
            created.append(name)
    return created


def partition_count(brokers: str, topic: str, client_settings: Mapping[str, str] | None = None,
                    timeout: float = 10.0) -> int:
    admin = _admin(brokers, client_settings)
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
        "group.id": "trade-detector-reader", "enable.auto.commit": False, "enable.partition.eof": True,
        "error_cb": lambda _error: None, **QUICK_FETCH, **_client_config(brokers, client_settings, None),
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


class MissingTopic(RuntimeError):
    """The input topic does not exist: nothing has been published to it yet."""


class TopicsRefused(RuntimeError):
    """The job's topics could not be listed or created: an ACL, a quota, a policy, a lost connection."""


def prepare_job_topics(
    brokers: str,
    input_topic: str,
    output_topics: Iterable[str],
    client_settings: Mapping[str, str] | None = None,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    rejected: dict[str, str] | None = None,
) -> list[str]:
    """Check the input topic exists and create missing output topics with as many partitions.

    A missing input topic is an error rather than created here: its partition count
    is the job's parallelism and belongs to whoever publishes (the replay, or ops).
    """
    from confluent_kafka import KafkaException

    try:
        partitions = partition_count(brokers, input_topic, client_settings)
        if partitions == 0:
            raise MissingTopic(
                f"input topic {input_topic!r} does not exist on {brokers}; create it or start "
                f"the replay first (python -m connectors.replay ...)"
            )
        wanted = {topic: partitions for topic in output_topics if topic}
        return ensure_topics(brokers, wanted, client_settings, configs=configs, rejected=rejected)
    except KafkaException as error:
        raise TopicsRefused(f"could not list or create the job's topics on {brokers}: {error.args[0].str()}") from None
