"""Kafka clients and topics: the settings every client shares; topics created, counted and read.

Every client reports to a ``BrokerWatch`` when one is given (the streaming job
does), with librdkafka's own logging off, so a lost broker is one clear line from
the job rather than a log line per reconnect attempt. The job's source is
``connectors.kafka_source``, its sinks ``connectors.kafka_sinks``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from connectors.broker_watch import QUIET_LOGS, BrokerWatch

QUICK_FETCH = {"fetch.wait.max.ms": "10"}
"""How long the broker may hold a fetch that finds no data. Against the embedded
Tansu broker librdkafka's 500 ms default showed up as up to half a second before
new data (or the end of a partition) was seen; Kafka and Redpanda answer a waiting
fetch as soon as data arrives anyway. ``KAFKA_FETCH_WAIT_MAX_MS`` overrides it."""


def split_brokers(brokers: str) -> list[str]:
    return [address.strip() for address in brokers.split(",") if address.strip()]


def client_config(brokers: str, client_settings: Mapping[str, str] | None, watch: BrokerWatch | None) -> dict:
    """Bootstrap servers, the user's ``KAFKA_*`` settings, and quiet logs reported to ``watch``."""
    config: dict[str, Any] = {"bootstrap.servers": ",".join(split_brokers(brokers)), **QUIET_LOGS}
    if watch is not None:
        config.update(watch.client_callbacks())
    config.update(client_settings or {})
    return config


def admin_client(brokers: str, client_settings: Mapping[str, str] | None, watch: BrokerWatch | None = None):
    from confluent_kafka.admin import AdminClient

    config = client_config(brokers, client_settings, watch)
    if watch is None:  # an admin client polled by no one: its errors are the calls' exceptions
        config["error_cb"] = lambda _error: None
    return AdminClient(config)


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
    admin = admin_client(brokers, client_settings)
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
    admin = admin_client(brokers, client_settings)
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
        "error_cb": lambda _error: None, **QUICK_FETCH, **client_config(brokers, client_settings, None),
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


class NeverFits(BufferError):
    """A message the producer refused while its local queue held nothing: larger than the whole
    queue (``queue.buffering.max.kbytes``), so waiting for room would wait for ever."""


def produce_when_room(producer: Any, topic: str, key: bytes | None, value: bytes, on_delivery: Any,
                      while_waiting: Any = None, headers: list[tuple[str, bytes]] | None = None) -> None:
    """Queue one message, letting deliveries make room while the producer's local queue is full
    (``while_waiting``, if given, is called after each wait: the replay checks its broker there).

    Raises ``NeverFits`` instead of waiting when the queue is empty: a message that never fits used
    to hang the job or the replay for ever, without a word and deaf to SIGTERM."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers, on_delivery=on_delivery)
            return
        except BufferError:  # the local queue is full: deliveries drain it, unless it holds nothing
            if len(producer) == 0:
                raise NeverFits(f"{len(value):,} bytes") from None
            producer.poll(0.1)
            if while_waiting is not None:
                while_waiting()


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
