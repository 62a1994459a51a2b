"""The problems the page shows in its error panel, most recent first, bounded.

A broker that is down makes the Kafka client report the same few failures every
second, alternating; every repeat of a (kind, message) already in the log is
folded into that entry's count and moves it to the top, so the panel stays
readable and memory stays bounded. Entries come from the page and from the
thread that reads Kafka, so the log has its own lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
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
        self.capacity = capacity
        self._entries: OrderedDict[tuple[str, str], LogEntry] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, kind: str, message: str, now: datetime | None = None) -> None:
        with self._lock:
            self._add(kind, message, now or datetime.now(timezone.utc))

    def _add(self, kind: str, message: str, moment: datetime) -> None:
        key = (kind, message)
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = LogEntry(moment, moment, kind, message)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
            return
        entry.count += 1
        entry.last_seen = moment
        self._entries.move_to_end(key)

    def entries(self) -> list[LogEntry]:
        """Most recently seen first (copies: the log goes on changing)."""
        with self._lock:
            return [replace(entry) for entry in reversed(self._entries.values())]

    def __len__(self) -> int:
        return len(self._entries)
