"""The live feed behind one browser session: Kafka tails, buffers and the error log.

Each refresh of the page calls ``refresh()``: it reads what is new on the
anomaly and summary topics, decodes it, and records every problem (broker
down, undecodable message, lag) in the error log instead of raising, so the
page can always draw what it has and say what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from confluent_kafka import KafkaException

from dashboard.buffer import AnomalyBuffer, PriceHistory, UndecodableMessage, decode_anomaly, decode_summary
from dashboard.config import DashboardConfig
from dashboard.error_log import ErrorLog
from dashboard.kafka_tail import BrokerUnreachable, TailState, TopicTail

SUMMARY_START_BACK = 5000
"""Summaries read back per partition when the page opens (about 80 minutes of one instrument)."""


@dataclass(frozen=True)
class FeedStatus:
    broker_up: bool
    detail: str
    """Why the broker is considered down, or which topics are missing."""
    anomaly_lag: int
    checked_at: datetime


class LiveFeed:
    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        self.anomalies = AnomalyBuffer(config.buffer_size)
        self.prices = PriceHistory()
        self.errors = ErrorLog()
        self.undecodable = 0
        self.status = FeedStatus(False, "not connected yet", 0, datetime.now(timezone.utc))
        self._anomaly_tail: TopicTail | None = None
        self._summary_tail: TopicTail | None = None

    def refresh(self, max_seconds: float) -> FeedStatus:
        """Read what is new (up to ``max_seconds`` per topic); never raises for Kafka trouble.

        Each topic's messages are kept as soon as they are read, so a broker that
        fails between the two topics loses nothing already consumed.
        """
        now = datetime.now(timezone.utc)
        try:
            anomaly_tail, summary_tail = self._tails()
            anomaly_state = self._read(anomaly_tail, max_seconds, decode_anomaly, self.anomalies.add)
            summary_state = self._read(summary_tail, max_seconds, decode_summary, self.prices.add)
        except BrokerUnreachable as error:
            detail = f"no Kafka broker answered at {self.config.brokers}: {error}"
            self.errors.add("broker unreachable", detail)
            self.status = FeedStatus(False, detail, self.status.anomaly_lag, now)
            return self.status
        except KafkaException as error:
            detail = f"the Kafka client failed: {error}"
            self.errors.add("kafka client", detail)
            self.status = FeedStatus(False, detail, self.status.anomaly_lag, now)
            return self.status
        if anomaly_state.lag >= self.config.lag_warning:
            self.errors.add("lag", f"{anomaly_state.lag} anomalies published but not read yet")
        missing = [
            tail.topic for tail, state in ((anomaly_tail, anomaly_state), (summary_tail, summary_state))
            if not state.topic_exists
        ]
        detail = f"waiting for topic(s): {', '.join(missing)}" if missing else ""
        self.status = FeedStatus(True, detail, anomaly_state.lag, now)
        return self.status

    def _read(
        self, tail: TopicTail, max_seconds: float,
        decode: Callable[[bytes | None], dict[str, Any]], keep: Callable[[dict[str, Any]], None],
    ) -> TailState:
        messages, state = tail.read(max_seconds)
        for message in messages:
            try:
                keep(decode(message.value))
            except UndecodableMessage as error:
                self._undecodable(tail.topic, message.partition, message.offset, str(error))
        return state

    def _undecodable(self, topic: str, partition: int, offset: int, reason: str) -> None:
        self.undecodable += 1
        self.errors.add("undecodable message", f"{topic} partition {partition} offset {offset}: {reason}")

    def _tails(self) -> tuple[TopicTail, TopicTail]:
        if self._anomaly_tail is None or self._summary_tail is None:
            config = self.config
            report = lambda message: self.errors.add("kafka client", message)  # noqa: E731
            self._anomaly_tail = TopicTail(
                config.brokers, config.anomaly_topic, config.buffer_size, config.client_settings, report
            )
            self._summary_tail = TopicTail(
                config.brokers, config.summary_topic, SUMMARY_START_BACK, config.client_settings, report
            )
        return self._anomaly_tail, self._summary_tail

    def close(self) -> None:
        for tail in (self._anomaly_tail, self._summary_tail):
            if tail is not None:
                tail.close()
