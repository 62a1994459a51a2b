"""What the instruments of one process share: the event clock that says when one is idle, and
the roster that bounds how many are held.

Both are shared by the worker threads of a process (Bytewax's ``-w``); neither changes what
an instrument's own trades give while it is held, only when it goes dormant or is refused.
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

    An instrument whose last trade is ``idle_s`` behind it goes dormant (had the whole process
    traded at its pace, its next trade would start it afresh anyway: ``models.guard``), and is
    let go ``max_clock_jump_s`` behind. Only an instrument with a full window of accepted trades
    moves the clock (``flows.detect_step.InstrumentDetector``): three stray trades of a symbol dated days ahead must
    not make every other instrument look idle. A time more than ``horizon_ns`` ahead of the wall
    clock is no real trade's (a replay is of the past, a live feed of now) and does not move it
    either.
    """

    def __init__(self, horizon_ns: int = 86_400 * NANOS_PER_SECOND, wall_ns: Callable[[], int] = time.time_ns,
                 ) -> None:
        self.latest_ns = 0
        self.horizon_ns = horizon_ns
        self._wall_ns = wall_ns
        self._lock = threading.Lock()

    def advance(self, timestamp_ns: int) -> None:
        if timestamp_ns <= self.latest_ns or timestamp_ns > self._wall_ns() + self.horizon_ns:
            return
        with self._lock:  # two workers' advances must not move it back
            self.latest_ns = max(self.latest_ns, timestamp_ns)


ACTIVE, DORMANT = "active", "dormant"
"""The two kinds of place on the roster: an instrument with its window and models, and one that
keeps only its memory of trades (``DetectionEngine.dormant``)."""


class InstrumentRoster:
    """How many instruments the process holds, and whether one more may join.

    ``limit`` bounds the active instruments: a new one takes an active place before its first
    trade is scored, and is refused when they are all taken. Dormant ones (a few KB each) do
    not block a new instrument; while there are more instruments in all than ``limit`` the
    roster is ``crowded`` and the dormant ones are let go at their next check, so made-up
    symbols that traded once and went quiet cannot keep real ones out for long. One restored
    from a snapshot takes its place whatever the count (it held it before the restart).
    """

    def __init__(self, limit: int = DEFAULT_MAX_INSTRUMENTS) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.limit = limit
        self.held = {ACTIVE: 0, DORMANT: 0}
        self._lock = threading.Lock()

    def join(self, place: str = ACTIVE, *, restored: bool = False) -> bool:
        """Take a place; False (and nothing taken) when every active place is."""
        with self._lock:
            if place == ACTIVE and self.held[ACTIVE] >= self.limit and not restored:
                return False
            self.held[place] += 1
            return True

    def move(self, was: str, now: str) -> None:
        """An instrument going dormant, or waking with a trade (it keeps a place either way)."""
        with self._lock:
            self.held[was] = max(0, self.held[was] - 1)
            self.held[now] += 1

    def leave(self, place: str) -> None:
        with self._lock:
            self.held[place] = max(0, self.held[place] - 1)

    def crowded(self) -> bool:
        return self.held[ACTIVE] + self.held[DORMANT] > self.limit

    def refusal(self, symbol: str) -> str:
        return (f"instrument {symbol!r} not taken: this process holds {self.held[ACTIVE]:,} active instruments, "
                f"its limit (MAX_INSTRUMENTS={self.limit:,}); one goes dormant, freeing its place, a day "
                "(DETECTOR_IDLE_S) of event time after its last trade")
