"""Where a trade sits in the US equity session: auction prints are their own kind.

The opening cross (09:30 New York time) and the closing cross (16:00) print
millions of shares at once with no aggressor side. They are the day's largest
trades by design, not surveillance events, so an anomaly on one is reported with
``kind = "auction"`` rather than as an ordinary trade anomaly.
"""

from __future__ import annotations

from datetime import datetime, time, timezone
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
CROSS_TIMES = (time(9, 30), time(16, 0))
CROSS_TOLERANCE_SECONDS = 5


def is_auction_print(timestamp_ns: int, side: str) -> bool:
    """A print without aggressor within seconds after the opening or closing cross."""
    if side != "N":
        return False
    local = datetime.fromtimestamp(timestamp_ns / 1e9, tz=timezone.utc).astimezone(NEW_YORK)
    seconds = local.hour * 3600 + local.minute * 60 + local.second
    return any(
        0 <= seconds - (cross.hour * 3600 + cross.minute * 60) < CROSS_TOLERANCE_SECONDS
        for cross in CROSS_TIMES
    )
