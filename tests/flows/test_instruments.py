"""What the instruments of a process share: the clock that says when one is idle, and the roster."""

from __future__ import annotations

import pytest

from flows.instruments import ACTIVE, DORMANT, EventClock, InstrumentRoster


def test_a_clock_does_not_move_to_a_time_no_real_trade_can_have():
    now = 1_796_500_000 * 10**9
    clock = EventClock(horizon_ns=86_400 * 10**9, wall_ns=lambda: now)
    clock.advance(now - 10**9)
    clock.advance(now + 86_400 * 10**9 + 1)  # more than a day ahead of the wall clock: a junk trade
    assert clock.latest_ns == now - 10**9
    clock.advance(now + 3_600 * 10**9)  # an hour ahead: a feed whose clock runs fast, still a clock
    assert clock.latest_ns == now + 3_600 * 10**9


def test_the_roster_bounds_active_places_and_counts_dormant_ones_apart():
    roster = InstrumentRoster(limit=2)
    assert [roster.join(), roster.join(), roster.join()] == [True, True, False]
    roster.move(ACTIVE, DORMANT)  # one goes dormant: its active place is free
    assert roster.join() and roster.crowded() and roster.held == {ACTIVE: 2, DORMANT: 1}
    assert not roster.join()
    roster.leave(DORMANT)
    assert not roster.crowded() and roster.held == {ACTIVE: 2, DORMANT: 0}
    assert roster.join(restored=True) and roster.held[ACTIVE] == 3  # it held its place before the restart
    with pytest.raises(ValueError, match="limit must be at least 1"):
        InstrumentRoster(limit=0)
