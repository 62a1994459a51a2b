"""The auction rule: the opening cross, and the closing cross at 16:00 or on an early-close day at 13:00."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest

from models.config import ConfigError, DetectorConfig
from models.session import EARLY_CLOSE_DAYS, is_auction_print, parse_days

NEW_YORK = ZoneInfo("America/New_York")
EARLY = parse_days(EARLY_CLOSE_DAYS)


def nanos(day: str, clock: str) -> int:
    local = datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=NEW_YORK)
    return int(local.timestamp() * 1e9)


@pytest.mark.parametrize("day, clock, side, expected", [
    ("2025-05-09", "09:30:00.890", "N", True),    # the opening cross (13:30:00.89 UTC)
    ("2025-05-09", "16:00:01.970", "N", True),    # the closing cross
    ("2025-05-09", "16:00:05.000", "N", False),   # past the tolerance
    ("2025-05-09", "16:00:01.970", "B", False),   # a print with an aggressor is never the cross
    ("2025-05-09", "13:00:00.500", "N", False),   # an ordinary day has no 13:00 cross
    ("2024-11-29", "13:00:00.500", "N", True),    # the day after Thanksgiving closes at 13:00
    ("2024-11-29", "16:00:01.000", "N", False),   # ...and has no 16:00 cross
    ("2024-12-24", "09:30:00.100", "N", True),    # an early-close day still opens at 09:30
])
def test_auction_prints(day, clock, side, expected):
    assert is_auction_print(nanos(day, clock), side, EARLY) is expected


def test_a_day_declared_early_close_moves_its_closing_cross():
    declared = EARLY | {date(2025, 5, 9)}  # as the evaluation declares a day it cuts to a 13:00 close
    assert is_auction_print(nanos("2025-05-09", "13:00:00.500"), "N", declared)
    assert not is_auction_print(nanos("2025-05-09", "16:00:01.970"), "N", declared)


def test_the_engine_reads_early_close_days_from_the_environment():
    config = DetectorConfig.from_env({"DETECTOR_EARLY_CLOSE_DAYS": "2025-05-09, 2025-07-03"})
    assert config.early_close_days == ("2025-05-09", "2025-07-03")
    assert "2024-11-29" in DetectorConfig().early_close_days


def test_a_bad_early_close_day_fails_at_start_naming_the_variable():
    with pytest.raises(ConfigError, match=r"DETECTOR_EARLY_CLOSE_DAYS: '2025-13-01' is not a date"):
        DetectorConfig.from_env({"DETECTOR_EARLY_CLOSE_DAYS": "2025-05-09,2025-13-01"})
