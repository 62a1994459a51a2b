"""What the instruments of a process share: the clock that says when one is idle, and the roster."""

from __future__ import annotations

import pytest

from flows.instruments import EventClock, InstrumentRoster


def test_a_clock_does_not_move_to_a_time_no_real_trade_can_have():
    now = 1_796_500_000 * 10**9
    clock = EventClock(horizon_ns=86_400 * 10**9, wall_ns=lambda: now)
    clock.advance(now - 10**9)
    clock.advance(now + 86_400 * 10**9 + 1)  # more than a day ahead of the wall clock: a junk trade
    assert clock.latest_ns == now - 10**9
    clock.advance(now + 3_600 * 10**9)  # an hour ahead: a feed whose clock runs fast, still a clock
    assert clock.latest_ns == now + 3_600 * 10**9


def test_the_roster_frees_a_place_when_an_instrument_leaves_and_takes_restored_ones_whatever_the_count():
    roster = InstrumentRoster(limit=2)
    assert [roster.join(), roster.join(), roster.join()] == [True, True, False]
    roster.leave()
    assert roster.join() and not roster.join()
    assert roster.join(restored=True) and roster.held == 3
    with pytest.raises(ValueError, match="limit must be at least 1"):
        InstrumentRoster(limit=0)
