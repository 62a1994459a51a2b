"""What the instruments of one process share: the event clock that says when one is idle, and
the roster that bounds how many are held.

Both are shared by the worker threads of a process (Bytewax's ``-w``); neither changes what
an instrument's own trades give while it is held, only when it is dropped or refused.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

NANOS_PER_SECOND = 1_000_000_000

DEFAULT_MAX_INSTRUMENTS = 20_000
"""Instruments one process holds at most: every US-listed stock and ETF (about 12,000) with room
to spare. A held instrument takes about 11 KiB of memory after one trade and 180 KiB once its
models serve (3.5 GiB for 20,000), so a feed of made-up symbols cannot take the process's
memory (``MAX_INSTRUMENTS``)."""


class EventClock:
    """The latest event time a trading instrument of this process has reached (by its median clock).

    An instrument whose last trade is ``idle_s`` behind it goes dormant (its next trade would
    start it afresh anyway: ``models.guard``), and is let go a week behind. Only an instrument
    with a full window of accepted trades moves it (``InstrumentDetector``): three stray trades
    of a symbol dated days ahead must not make every other instrument look idle. A racing update
    can only leave the clock a moment behind. A time more than ``horizon_ns`` ahead of the wall clock is no real trade's
    (a replay is of the past, a live feed of now) and does not move it either.
    """

    def __init__(self, horizon_ns: int = 86_400 * NANOS_PER_SECOND, wall_ns: Callable[[], int] = time.time_ns,
                 ) -> None:
        self.latest_ns = 0
        self.horizon_ns = horizon_ns
        self._wall_ns = wall_ns

    def advance(self, timestamp_ns: int) -> None:
        if timestamp_ns > self.latest_ns and timestamp_ns <= self._wall_ns() + self.horizon_ns:
            self.latest_ns = timestamp_ns


class InstrumentRoster:
    """How many instruments the process holds, and whether one more may join.

    An instrument joins with its first accepted trade and leaves when it is dropped; one
    restored from a snapshot joins whatever the count (it was held before the restart).
    """

    def __init__(self, limit: int = DEFAULT_MAX_INSTRUMENTS) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()

    def join(self, *, restored: bool = False) -> bool:
        """Count one more instrument; False (and nothing counted) when the roster is full."""
        with self._lock:
            if self.held >= self.limit and not restored:
                return False
            self.held += 1
            return True

    def leave(self) -> None:
        with self._lock:
            self.held = max(0, self.held - 1)

    def refusal(self, symbol: str) -> str:
        return (f"instrument {symbol!r} not taken: this process holds {self.held:,} instruments, its limit "
                f"(MAX_INSTRUMENTS={self.limit:,}); an instrument is let go a week of event time after its last trade")
