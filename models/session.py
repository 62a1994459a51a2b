"""Where a trade sits in the US equity session: auction prints are their own kind.

The opening cross (09:30 New York time) and the closing cross (16:00, or 13:00 on
the days before some holidays) print millions of shares at once with no aggressor
side. They are the day's largest trades by design, not surveillance events, so an
anomaly on one is reported with ``kind = "auction"`` rather than as an ordinary
trade anomaly.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import numpy as np

NEW_YORK = ZoneInfo("America/New_York")
OPEN, CLOSE, EARLY_CLOSE = time(9, 30), time(16, 0), time(13, 0)
CROSS_TOLERANCE_SECONDS = 5
DAY_NS = 86_400 * 10**9
LONGEST_SPAN_S = 100 * 365 * 86_400
"""The longest span of event time a setting may give (100 years): its nanoseconds, added to a
timestamp of this century, still fit a 64-bit integer."""
NO_WINDOWS = np.zeros((0, 2), np.int64)
NO_WINDOWS.flags.writeable = False
EARLY_CLOSE_DAYS = (
    "2023-07-03", "2023-11-24", "2024-07-03", "2024-11-29", "2024-12-24",
    "2025-07-03", "2025-11-28", "2025-12-24", "2026-11-27", "2026-12-24",
)
"""Days the US equity markets close at 13:00 New York, from the exchanges' published
holiday calendars (``DETECTOR_EARLY_CLOSE_DAYS`` replaces the list)."""


def is_auction_print(timestamp_ns: int, side: str, early_close_days: frozenset[date] = frozenset()) -> bool:
    """A print without aggressor within seconds after the opening or the day's closing cross."""
    if side != "N":
        return False
    local = datetime.fromtimestamp(timestamp_ns / 1e9, tz=timezone.utc).astimezone(NEW_YORK)
    close = EARLY_CLOSE if local.date() in early_close_days else CLOSE
    seconds = local.hour * 3600 + local.minute * 60 + local.second
    return any(
        0 <= seconds - (cross.hour * 3600 + cross.minute * 60) < CROSS_TOLERANCE_SECONDS
        for cross in (OPEN, close)
    )


def parse_days(texts: tuple[str, ...]) -> frozenset[date]:
    """ISO dates (``YYYY-MM-DD``); raises ``ValueError`` naming the first that is not one."""
    days = set()
    for text in texts:
        try:
            days.add(date.fromisoformat(text))
        except ValueError:
            raise ValueError(f"{text!r} is not a date (YYYY-MM-DD)") from None
    return frozenset(days)


def opening_rush_windows(first_ns: int, last_ns: int, seconds: float) -> np.ndarray:
    """[start, end) in UTC nanoseconds of the first ``seconds`` after 09:30 New York, one row per
    UTC day from ``first_ns``'s to ``last_ns``'s (the kernel indexes them by day).

    The seconds after the opening cross are a two-sided rush by nature: on three of the shared NVDA
    days 92-100 distinct timestamps within 50 ms are seen there and at most 78 elsewhere. A run of
    trades nearly always lies within one day, whose row is cached.
    """
    if seconds <= 0:
        return NO_WINDOWS
    first_day, last_day = first_ns // DAY_NS, max(first_ns, last_ns) // DAY_NS
    if first_day == last_day:
        return _day_window(first_day, seconds)
    windows = np.vstack([_day_window(day, seconds) for day in range(first_day, last_day + 1)])
    windows.flags.writeable = False  # one array type for the kernel, whatever the run's days
    return windows


@lru_cache(maxsize=1024)
def _day_window(utc_day: int, seconds: float) -> np.ndarray:
    day = date(1970, 1, 1) + timedelta(days=utc_day)
    start = round(datetime.combine(day, OPEN, NEW_YORK).timestamp() * 1e9)
    window = np.array([[start, start + round(seconds * 1e9)]], np.int64)
    window.flags.writeable = False
    return window
