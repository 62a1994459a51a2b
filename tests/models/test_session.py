"""The auction rule (the opening cross, and the closing cross at 16:00 or on an early-close day at 13:00) and the
opening rush (the first seconds after 09:30 New York, when distinct timestamps do not vote)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from models import kernel, reference
from models.config import ConfigError, DetectorConfig
from models.session import DAY_NS, EARLY_CLOSE_DAYS, is_auction_print, opening_rush_windows, parse_days

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


@pytest.mark.parametrize("day, utc_open", [
    ("2025-05-09", "2025-05-09T13:30:00+00:00"),  # daylight saving time
    ("2024-12-24", "2024-12-24T14:30:00+00:00"),  # standard time (an early close still opens at 09:30)
    ("2025-03-10", "2025-03-10T13:30:00+00:00"),  # the Monday after the clocks moved forward
])
def test_the_opening_rush_starts_at_0930_new_york(day, utc_open):
    start = int(datetime.fromisoformat(utc_open).timestamp() * 1e9)
    windows = opening_rush_windows(nanos(day, "12:00:00"), nanos(day, "12:00:01"), 60)
    assert windows.tolist() == [[start, start + 60 * 10**9]]


def test_a_run_across_days_gets_one_window_per_utc_day():
    windows = opening_rush_windows(nanos("2025-05-08", "15:00:00"), nanos("2025-05-12", "10:00:00"), 30)
    assert len(windows) == 5  # Thursday to Monday: every UTC day has its row, so the kernel can index by day
    assert windows[0, 0] == nanos("2025-05-08", "09:30:00") and windows[-1, 0] == nanos("2025-05-12", "09:30:00")
    assert (windows[:, 1] - windows[:, 0] == 30 * 10**9).all()


def test_no_opening_rush_when_turned_off():
    assert opening_rush_windows(nanos("2025-05-09", "09:30:10"), nanos("2025-05-09", "09:30:20"), 0).shape == (0, 2)


@pytest.mark.parametrize("clock, inside", [
    ("09:29:59.999999999", False), ("09:30:00", True), ("09:30:59.999999999", True), ("09:31:00", False),
    ("16:00:10", False),
])
def test_the_kernel_and_the_reference_place_a_trade_in_the_rush(clock, inside):
    stamp = nanos("2025-05-09", clock)
    first = nanos("2025-05-09", "04:00:00")
    windows = opening_rush_windows(first, stamp, 60)
    assert kernel.in_windows(windows, stamp, first // DAY_NS) is inside
    assert reference._in_windows(windows, np.array([first, stamp]))[1] == inside


@pytest.mark.parametrize("day, clock, inside", [
    ("2025-05-08", "09:30:10", True),  # the first trade's day has its row, whatever the hour
    ("2025-05-07", "23:59:30", False),  # a day before the first trade's: no row
    ("2025-05-09", "09:30:10", True), ("2025-05-12", "09:30:10", True), ("2025-05-12", "09:31:10", False),
    ("2025-05-13", "09:30:10", False),  # after the run's last day
])
def test_a_run_across_days_finds_each_days_window(day, clock, inside):
    first = nanos("2025-05-08", "16:00:00")
    windows = opening_rush_windows(first, nanos("2025-05-12", "12:00:00"), 60)
    stamp = nanos(day, clock)
    assert kernel.in_windows(windows, stamp, first // DAY_NS) is inside
    assert reference._in_windows(windows, np.array([first, stamp]))[1] == inside
