"""The items that cross the edge of the dataflow.

Sources turn bytes into ``TradeMessage`` (or ``DeadLetter`` when the bytes are not
a trade); sinks turn ``AnomalyRecord``, ``InstrumentSummary`` and ``DeadLetter``
back into bytes. Keeping the origin and the original bytes on every message is
what lets a rejection deep inside the engine still reach the dead-letter topic
with its topic, partition and offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a message came from: a Kafka topic/partition/offset or a file/line."""

    source: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class TradeMessage:
    """A decoded trade, still untrusted: the engine validates its fields."""

    symbol: str
    trade: dict[str, Any]
    origin: Origin
    raw: bytes


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """Input that could not be processed, with the reason and where it came from."""

    reason: str
    stage: str  # "decode", "validate", "duplicate", "capacity", "engine" or "kafka"
    origin: Origin
    raw: bytes
    key: bytes | None = None
    """The original Kafka key, when the letter is made where it is known (decode)."""
