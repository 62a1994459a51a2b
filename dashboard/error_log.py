"""The problems the page shows in its error panel, newest first, bounded.

A broker that is down makes the Kafka client report the same failure every
second; repeats of the latest entry are folded into a count so the panel stays
readable and memory stays bounded.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone


@dataclass
class LogEntry:
    first_seen: datetime
    last_seen: datetime
    kind: str
    message: str
    count: int = 1


class ErrorLog:
    def __init__(self, capacity: int = 200) -> None:
        self._entries: deque[LogEntry] = deque(maxlen=capacity)

    def add(self, kind: str, message: str, now: datetime | None = None) -> None:
        moment = now or datetime.now(timezone.utc)
        latest = self._entries[-1] if self._entries else None
        if latest is not None and latest.kind == kind and latest.message == message:
            latest.count += 1
            latest.last_seen = moment
            return
        self._entries.append(LogEntry(moment, moment, kind, message))

    def entries(self) -> list[LogEntry]:
        """Newest first."""
        return list(reversed(self._entries))

    def __len__(self) -> int:
        return len(self._entries)
