"""The dashboard's Kafka writer: analysts' decisions to a compacted topic, acknowledged by the broker.

A decision made in one browser must survive a restart and show in every other
open dashboard, so it goes to the ``incident-reviews`` topic (compacted, keyed by
incident id, so the last decision per incident is what the topic keeps). A
decision counts as made only when the broker has acknowledged it. The writer
takes the decision as plain data (the key, and the record it encodes as JSON);
what a decision is belongs to the dashboard (``dashboard.records.Review``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from connectors.broker import kafka_error_text

WRITE_TIMEOUT_S = 5.0
REVIEW_TOPIC_CONFIG = {"cleanup.policy": "compact"}


class ReviewNotSaved(RuntimeError):
    """The broker did not acknowledge the decision; the text says why."""


class ReviewWriter:
    """Writes decisions to ``topic``, creating it (compacted) when it is missing."""

    def __init__(self, brokers: str, topic: str, client_settings: Mapping[str, str] | None = None) -> None:
        self.topic = topic
        self._settings = {"bootstrap.servers": brokers, "log_level": 0, "error_cb": lambda _error: None,
                          "socket.connection.setup.timeout.ms": 2000, **(client_settings or {})}
        self._producer: Producer | None = None
        self._topic_ready = False

    def write(self, key: str, record: Mapping[str, Any]) -> None:
        """``record`` as JSON under ``key`` (the incident id). Returns once the broker has it; raises
        ``ReviewNotSaved`` otherwise, after which the next write checks the topic again with a new
        producer (``reset``)."""
        try:
            self._write(key, record)
        except ReviewNotSaved:
            self.reset()
            raise

    def reset(self) -> None:
        """Forget the producer and that the topic exists: the next write checks the topic again with
        a new producer (a development broker restarted empty: the old producer's idempotence state
        timed out every later write)."""
        self.close(wait_s=0)
        self._producer, self._topic_ready = None, False

    def _write(self, key: str, record: Mapping[str, Any]) -> None:
        self._ensure_topic()
        if self._producer is None:
            try:
                self._producer = Producer({**self._settings, "acks": "all", "enable.idempotence": True,
                                           "message.timeout.ms": int(WRITE_TIMEOUT_S * 1000)})
            except KafkaException as error:  # settings a producer refuses (KAFKA_ACKS=1 with idempotence)
                raise ReviewNotSaved(f"the Kafka client refused its settings: {kafka_error_text(error)}") from None
        outcome: list[KafkaError | None] = []
        key_bytes, value = key.encode(), orjson.dumps(record)
        size = len(key_bytes) + len(value)
        try:
            self._producer.produce(
                self.topic, key=key_bytes, value=value, on_delivery=lambda error, _message: outcome.append(error),
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
        if not outcome:
            raise ReviewNotSaved(f"the broker did not acknowledge within {WRITE_TIMEOUT_S:g} s")
        if outcome[0] is not None and outcome[0].code() == KafkaError.MSG_SIZE_TOO_LARGE:
            raise ReviewNotSaved(f"the broker refused it as too large ({size:,} bytes): shorten the note.")
        if outcome[0] is not None:
            raise ReviewNotSaved(f"the broker refused it: {outcome[0].str()}")

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

