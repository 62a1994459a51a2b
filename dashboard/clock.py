"""Times as an analyst reads them: New York (the exchange's clock) next to UTC (the feed's).

Event times travel as UTC nanoseconds; a surveillance analyst thinks in exchange
time (the open is 09:30 New York), an engineer in UTC, so the page shows both.
"""

from __future__ import annotations

from datetime import datetime, timezone
from zoneinfo import ZoneInfo

import pandas as pd

NEW_YORK = ZoneInfo("America/New_York")
FUTURE_TOLERANCE_NS = 60 * 1_000_000_000
"""How far past the dashboard's own clock an event time may lie and still be taken as a trade's:
clocks kept by NTP differ by far less. A time beyond it is not a trade's yet (a wrong clock, or a
record written to make itself look newest), so it must not outrank the records that follow it."""


def believable(ts_ns: int, now_ns: int) -> bool:
    """Whether an event time is no further past ``now_ns`` (the dashboard's clock) than the tolerance."""
    return ts_ns <= now_ns + FUTURE_TOLERANCE_NS


def moment(ts_ns: int) -> datetime:
    return datetime.fromtimestamp(ts_ns // 1_000_000_000, tz=timezone.utc).replace(
        microsecond=(ts_ns % 1_000_000_000) // 1000)


def new_york_text(ts_ns: int) -> str:
    """``2025-05-09 09:30:00.892``: exchange time, to the millisecond."""
    return _with_millis(moment(ts_ns).astimezone(NEW_YORK))


def utc_text(ts_ns: int) -> str:
    return _with_millis(moment(ts_ns))


def both_text(ts_ns: int) -> str:
    """``09:30:00.892 New York (13:30:00.892 UTC) on 2025-05-09``."""
    local, utc = moment(ts_ns).astimezone(NEW_YORK), moment(ts_ns)
    return f"{_with_millis(local)[11:]} New York ({_with_millis(utc)[11:]} UTC) on {local:%Y-%m-%d}"


def _with_millis(stamp: datetime) -> str:
    return f"{stamp:%Y-%m-%d %H:%M:%S}.{stamp.microsecond // 1000:03d}"


def duration_text(seconds: float) -> str:
    """``0.004 s``, ``41 s``, ``3 min 05 s``, ``2 h 10 min``."""
    if seconds < 10:
        return f"{seconds:.3g} s" if seconds > 0 else "0 s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def new_york_index(stamps_ns: list[int]) -> pd.DatetimeIndex:
    """Event times for a figure axis: New York wall clock, to the microsecond (what a browser draws)."""
    return pd.DatetimeIndex(pd.to_datetime(stamps_ns, unit="ns", utc=True)).floor("us").tz_convert(NEW_YORK)
