"""How long no broker has been reachable, as every Kafka client of one process sees it.

The job and the replay stop with one line once the broker has been gone for their loss
timeout, instead of librdkafka retrying (and logging) for ever.
"""

from __future__ import annotations

import time

UNREACHABLE_ERRORS = frozenset({"_ALL_BROKERS_DOWN", "_TRANSPORT", "_RESOLVE"})
"""librdkafka errors that mean no broker can be reached (not a refused request)."""

QUIET_LOGS = {"log_level": 0}
"""librdkafka's own log lines off: with the broker gone it prints a ``Connect ... failed``
line per reconnect attempt (thousands in a few minutes). What they say reaches
``BrokerWatch`` through ``error_cb`` instead, and the program reports it once."""


class BrokerWatch:
    """How long no broker has been reachable, as seen by every Kafka client of one process.

    Clients report through ``client_callbacks()``: an unreachable-broker error starts
    the clock (if it is not running), a sign of life (a broker ``UP`` in the statistics,
    a message consumed or delivered) stops it. ``lost_for()`` is then the length of
    the current outage, and ``lost()`` whether it has reached ``timeout_s``.
    Thread-safe enough by construction: each update is one attribute assignment, and
    each reading takes the attribute once (another thread may clear it in between).
    """

    def __init__(self, brokers: str, timeout_s: float, clock=None) -> None:
        self.brokers = brokers
        self.timeout_s = timeout_s
        self._clock = clock or time.monotonic
        self._down_since: float | None = None
        self.last_error = ""

    def error(self, error) -> None:
        """``error_cb`` of every client: time unreachable-broker errors (the others reach the
        job where they matter: a delivery report, a consumed error message)."""
        if error.name() in UNREACHABLE_ERRORS:
            if self._down_since is None:
                self._down_since = self._clock()
            self.last_error = error.str()

    def alive(self) -> None:
        """A broker answered: the outage (if any) is over."""
        self._down_since = None

    def statistics(self, json_stats: str) -> None:
        """``stats_cb``: any broker in state UP is a sign of life."""
        if '"state":"UP"' in json_stats:
            self.alive()

    def lost_for(self) -> float:
        down_since = self._down_since
        return 0.0 if down_since is None else self._clock() - down_since

    def lost(self) -> bool:
        down_since = self._down_since
        return down_since is not None and self._clock() - down_since >= self.timeout_s

    def describe(self) -> str:
        last = f"; last error: {self.last_error}" if self.last_error else ""
        return (f"no Kafka broker reachable at {self.brokers} for {self.lost_for():.0f} s "
                f"(BROKER_LOSS_TIMEOUT_S={self.timeout_s:g}){last}")

    def client_callbacks(self) -> dict:
        """librdkafka settings that route a client's errors and statistics here, logs off."""
        return {**QUIET_LOGS, "error_cb": self.error, "stats_cb": self.statistics,
                "statistics.interval.ms": 1000}
