"""The guard refuses repeats and trades off the instrument's clock, the same way for any batch split."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.guard import DAY_NS, GuardSettings, TradeGuard

SECOND = 1_000_000_000
START = 1_746_797_400 * SECOND  # 2025-05-09T13:30:00Z


def columns(trades):
    """(timestamp, publisher, instrument, sequence) tuples as the guard's four columns."""
    stamps, publishers, instruments, sequences = zip(*trades) if trades else ((), (), (), ())
    return (np.array(stamps, np.int64), np.array(publishers, np.int64), np.array(instruments, np.int64),
            np.array(sequences, np.int64))


def tape(count, start=START, sequence=1000, step=SECOND // 10):
    return [(start + i * step, 2, 11667, sequence + i) for i in range(count)]


def judge(guard, trades, runs=None):
    """Refusals and fresh starts over ``trades`` cut into ``runs`` (sizes), rows counted over the whole."""
    refused, fresh, start = {}, [], 0
    for size in runs or [len(trades)]:
        verdict = guard.check(*columns(trades[start:start + size]))
        guard.commit(verdict)
        refused.update({start + row: problem for row, problem in verdict.refused.items()})
        fresh += [start + row for row in verdict.fresh_starts]
        start += size
    return refused, fresh


@pytest.mark.parametrize("runs", [None, [1] * 30, [7, 13, 10]])
def test_an_exact_repeat_is_a_duplicate(runs):
    trades = tape(20)
    trades = trades[:15] + [trades[3]] + trades[15:] + [trades[19]] + tape(8, start=START + 3 * SECOND, sequence=1020)
    refused, _ = judge(TradeGuard(), trades, runs)
    assert {row: stage for row, (stage, _) in refused.items()} == {15: "duplicate", 21: "duplicate"}
    assert refused[15][1] == "duplicate: publisher 2, instrument 11667, sequence 1003 was already processed"


@pytest.mark.parametrize("other", [
    pytest.param(lambda t: (t[0], 3, t[2], t[3]), id="another publisher"),
    pytest.param(lambda t: (t[0], t[1], 99, t[3]), id="another instrument"),
])
def test_the_same_sequence_from_another_publisher_or_instrument_is_new(other):
    trades = tape(10)
    refused, _ = judge(TradeGuard(), trades + [other(trades[5])])
    assert refused == {}


def test_sequences_restart_every_day():
    today, tomorrow = tape(10), tape(10, start=START + DAY_NS // 2)
    refused, _ = judge(TradeGuard(), today + tomorrow)
    assert refused == {}


@pytest.mark.parametrize("late_s, refused_too", [(30, False), (60, False), (61, True), (3_600, True)])
def test_a_trade_behind_the_clock_is_refused_beyond_a_minute(late_s, refused_too):
    trades = tape(10)
    late = (trades[-1][0] - late_s * SECOND, 2, 11667, 2000)
    refused, _ = judge(TradeGuard(), trades + [late] + tape(5, start=trades[-1][0] + SECOND, sequence=2001))
    assert (10 in refused) == refused_too
    assert set(refused) <= {10}
    if refused_too:
        assert refused[10][0] == "validate" and "before the instrument's last trades" in refused[10][1]


def test_one_far_jump_is_refused_and_the_clock_stays():
    trades = tape(10)
    jump = (START + 10 * 86_400 * SECOND, 2, 11667, 2000)
    refused, fresh = judge(TradeGuard(), trades + [jump] + tape(5, start=START + 2 * SECOND, sequence=2001))
    assert list(refused) == [10] and fresh == []
    assert refused[10][1] == ("ts_event is 10.0 days after the instrument's last trades "
                              "(more than 7 days; accepted once a second trade confirms it)")


def test_a_confirmed_jump_starts_the_instrument_afresh():
    later = START + 10 * 86_400 * SECOND
    trades = tape(10) + tape(10, start=later, sequence=1)
    refused, fresh = judge(TradeGuard(), trades)
    assert list(refused) == [10] and fresh == [11]


def test_a_gap_of_more_than_a_day_starts_afresh_and_still_knows_the_trades_before():
    monday = START + 3 * 86_400 * SECOND
    friday = tape(10)
    trades = friday + tape(10, start=monday, sequence=1000)  # same sequences again, another day
    guard = TradeGuard()
    refused, fresh = judge(guard, trades)
    assert refused == {} and fresh == [10]
    assert len(guard.settled().identities) == 20
    replayed, fresh = judge(guard, friday)  # Friday's trades published again after Monday's began
    assert fresh == [] and {problem[0] for problem in replayed.values()} == {"duplicate"} and len(replayed) == 10


@pytest.mark.parametrize("ahead_s, outliers", [(3_600, 3), (3_600, 4), (600, 3)])
def test_trades_that_moved_the_clock_ahead_lock_the_instrument_out_for_five_trades_only(ahead_s, outliers):
    """A few consecutive trades with a wrong time far ahead carry the median clock with them; the
    real trades after them then all look late. Five in a row that agree with each other set the
    clock back to them: four dead letters, not an hour of the instrument's trades."""
    before = tape(20)
    wrong = tape(outliers, start=before[-1][0] + ahead_s * SECOND, sequence=2000)
    after = tape(200, start=before[-1][0] + SECOND, sequence=3000)
    refused, fresh = judge(TradeGuard(), before + wrong + after, [7, 50, 13, 100, 50, 3])
    late = [row for row, (stage, reason) in refused.items() if "before the instrument's last trades" in reason]
    assert late == list(range(20 + outliers, 20 + outliers + 4)) and len(refused) == 4 and fresh == []


@pytest.mark.parametrize("ahead_days, outliers, refused_jump", [
    pytest.param(1.0001, 3, 0, id="three trades a day ahead"),
    pytest.param(2, 19, 0, id="nineteen trades two days ahead"),
    pytest.param(30, 4, 1, id="four trades a month ahead (the first waits for the second)"),
])
@pytest.mark.parametrize("runs", [None, [1] * 300, [21, 2, 50, 300]])
def test_trades_a_day_or_more_ahead_start_afresh_but_do_not_lock_the_real_ones_out(ahead_days, outliers,
                                                                                   refused_jump, runs):
    """Such trades start the instrument afresh, which empties the clock, so they make the whole
    clock; the real trades after them then set it back as they would without the fresh start."""
    before = tape(20)
    wrong = tape(outliers, start=before[-1][0] + round(ahead_days * DAY_NS), sequence=5000)
    after = tape(200, start=before[-1][0] + SECOND, sequence=3000)
    refused, fresh = judge(TradeGuard(), before + wrong + after, runs)
    first_real = 20 + outliers
    late = [row for row, (_, reason) in refused.items() if "before the instrument's last trades" in reason]
    assert late == list(range(first_real, first_real + 4))
    assert len(refused) == 4 + refused_jump and fresh == [20 + refused_jump]


def test_two_days_interleaved_restart_the_instrument_once_not_at_every_turn():
    """Monday's trades, then a second feed's Friday trades catching up, in turns: the floor sets the
    clock back to Friday once; the next Monday trade starts afresh without a floor, and from then
    on the Friday trades are late."""
    friday, monday = tape(20), START + 3 * DAY_NS
    trades, refused_rows = list(friday), []
    for turn in range(6):
        trades += tape(3, start=monday + turn * 10 * SECOND, sequence=5000 + 3 * turn, step=SECOND)
        refused_rows += list(range(len(trades), len(trades) + 5)) if turn else list(range(len(trades), len(trades) + 4))
        trades += [(START + (15 + k) * SECOND, 3, 11667, 1 + 5 * turn + k) for k in range(5)]  # another publisher
    refused, fresh = judge(TradeGuard(), trades)
    assert fresh == [20, 28] and list(refused) == refused_rows


def test_after_twenty_trades_of_a_new_session_only_its_own_clock_counts():
    """The clock before a fresh start helps for ``FLOOR_TRADES`` trades: later, a replay with new
    sequences of the new session's earlier trades is refused as before."""
    friday, monday = tape(20), tape(40, start=START + 3 * DAY_NS, sequence=1, step=10 * SECOND)
    replay = tape(10, start=monday[0][0], sequence=9000)  # Monday's first seconds again, new sequences
    refused, fresh = judge(TradeGuard(), friday + monday + replay)
    assert fresh == [20] and list(refused) == list(range(60, 70))


@pytest.mark.parametrize("late_s", [120, 3_600, 2 * 86_400])
def test_a_replay_of_older_trades_with_their_own_times_stays_refused(late_s):
    trades = tape(600)
    replay = tape(50, start=trades[-1][0] - late_s * SECOND, sequence=9000)  # new sequences, old times
    refused, fresh = judge(TradeGuard(), trades + replay + tape(5, start=trades[-1][0] + SECOND, sequence=2000))
    assert list(refused) == list(range(600, 650)) and fresh == []


def test_late_trades_that_disagree_with_each_other_stay_refused():
    trades = tape(20)
    scattered = [(START - k * 600 * SECOND, 2, 11667, 5000 + k) for k in range(1, 8)]  # ten minutes apart
    refused, _ = judge(TradeGuard(), trades + scattered)
    assert list(refused) == list(range(20, 27))


def test_one_plausible_early_trade_does_not_lock_the_instrument_out():
    trades = tape(10)
    early = (START + 2 * 86_400 * SECOND, 2, 11667, 1010)
    after = tape(10, start=START + 2 * SECOND, sequence=1011)
    refused, fresh = judge(TradeGuard(), trades + [early] + after)
    assert refused == {}  # taken as a new session (indistinguishable), then the real clock returns
    assert fresh == [10]


def test_memory_is_bounded_and_old_sequences_are_refused():
    guard = TradeGuard(GuardSettings(remembered_trades=50))
    trades = tape(200)
    refused, _ = judge(guard, trades + [trades[10]], [64, 64, 73])
    memory = guard.settled()
    assert len(memory.identities) == len(memory.sequences) == 50
    assert refused[200][0] == "duplicate" and "older than the last 50 trades remembered" in refused[200][1]


@pytest.mark.parametrize("runs", [[20], [10, 3, 3, 4]])
def test_the_guard_pickles_mid_stream(runs):
    guard = TradeGuard()
    trades = tape(30)
    judge(guard, trades[:20], runs)
    assert len(guard.memory.unfolded) == len(runs) - 1  # the ordinary runs after the first, kept aside
    twin = pickle.loads(pickle.dumps(guard))
    later = trades[20:] + [trades[5], trades[12], trades[19]]
    refused, _ = judge(twin, later)
    assert (refused, []) == judge(guard, later)
    assert sorted(refused) == [10, 11, 12] and {stage for stage, _ in refused.values()} == {"duplicate"}


def test_check_leaves_the_guard_unchanged_until_commit():
    guard = TradeGuard()
    judge(guard, tape(10))
    before = pickle.dumps(guard)
    guard.check(*columns(tape(5, start=START + 5 * SECOND, sequence=2000)))
    assert pickle.dumps(guard) == before


@st.composite
def messy_tapes(draw):
    """Mostly increasing trades of two publishers with repeats, late ones, jumps, gaps and strays a day
    or more ahead (which start the instrument afresh, and the floor then sets the clock back) mixed in."""
    trades, moment, sequence = [], START, 100
    for _ in range(draw(st.integers(5, 120))):
        kind = draw(st.sampled_from(["next"] * 8 + ["repeat", "late", "jump", "gap", "other publisher", "strays"]))
        if kind == "repeat" and trades:
            trades.append(draw(st.sampled_from(trades)))
            continue
        if kind == "strays":
            ahead = moment + draw(st.integers(1, 3)) * 86_400 * SECOND + SECOND
            for stray in range(draw(st.integers(1, 4))):
                sequence += 1
                trades.append((ahead + stray * SECOND, 2, 11667, sequence))
            continue
        moment += draw(st.integers(0, 5 * SECOND))
        sequence += draw(st.integers(1, 3))
        at = {"late": moment - 120 * SECOND, "jump": moment + 9 * 86_400 * SECOND,
              "gap": moment + 2 * 86_400 * SECOND}.get(kind, moment)
        if kind == "gap":
            moment = at
        trades.append((at, 3 if kind == "other publisher" else 2, 11667, sequence))
    return trades


@settings(max_examples=200, deadline=None)
@given(messy_tapes(), st.lists(st.integers(1, 20), min_size=1, max_size=40))
def test_verdicts_do_not_depend_on_batch_boundaries(trades, sizes):
    runs = []
    while sum(runs) < len(trades):
        runs.append(sizes[len(runs) % len(sizes)])
    whole, cut = TradeGuard(GuardSettings(remembered_trades=16)), TradeGuard(GuardSettings(remembered_trades=16))
    assert judge(whole, trades) == judge(cut, trades, runs)
    assert pickle.dumps(whole.settled()) == pickle.dumps(cut.settled())


@pytest.mark.parametrize("recent, key, sequence", [
    ((((1, 2, 10), 50),), (1, 2, 10), 70),  # the latest day again: the path most batches take
    ((((1, 2, 10), 50),), (1, 2, 10), 30),  # a lower sequence never lowers the highest
    ((((1, 2, 9), 80), ((1, 2, 10), 50)), (1, 2, 9), 90),  # an older day
    (tuple(((1, 2, day), day) for day in range(8)), (1, 2, 8), 5),  # a ninth day drops the oldest
    ((), (1, 2, 10), 5),
])
def test_the_latest_sequences_are_updated_as_a_table_would_be(recent, key, sequence):
    from models.guard import RECENT_DAYS, _with_latest

    table = dict(recent)
    table[key] = max(sequence, table.get(key, -1))
    expected = tuple(sorted(table.items(), key=lambda item: item[0][2])[-RECENT_DAYS:])
    assert _with_latest(recent, key, sequence) == expected
    assert _with_latest(dict(recent), key, sequence) == expected


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 65_535), st.integers(0, 2**32 - 1), st.integers(0, 60_000),
                          st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=40)), min_size=1, max_size=9),
       st.integers(0, 20), st.sampled_from([1, 5, 16, 512]))
def test_the_compiled_memory_update_hashes_as_python_does(runs, old, kept):
    from models.guard import _identity, _remembered_after

    keys = np.array([run[:3] for run in runs], np.int64)
    sequences = np.concatenate([np.array(run[3], np.int64) for run in runs])
    bounds = np.cumsum([0] + [len(run[3]) for run in runs])
    old_ids, old_sequences = np.arange(old, dtype=np.uint64) * np.uint64(2**61 + 7), np.arange(old, dtype=np.int64)
    identities, remembered = _remembered_after(old_ids, old_sequences, sequences, keys, bounds, kept)
    hashed = np.array([_identity(p, i, d, s) for p, i, d, run in runs for s in run], np.uint64)
    assert identities.tolist() == np.concatenate([old_ids, hashed])[-kept:].tolist()
    assert remembered.tolist() == np.concatenate([old_sequences, sequences])[-kept:].tolist()
    assert (identities.dtype, remembered.dtype) == (np.uint64, np.int64)


@pytest.mark.parametrize("runs", [[1] * 20, [3] * 7, [5, 1, 2, 40, 1, 1, 1, 1, 3], [600], [300, 300, 1, 1]])
def test_runs_kept_aside_fold_into_the_memory_a_trade_by_trade_walk_builds(runs):
    from models.guard import FOLD_RUNS, _Walk

    trades = tape(sum(runs) + 10)
    lazy = TradeGuard()
    judge(lazy, trades, [10] + runs)
    walk = _Walk(GuardSettings(), TradeGuard().memory)
    for trade in trades:
        assert walk.judge(*trade) is None
        walk.accept(*trade)
    assert len(lazy.memory.unfolded) == len(runs) % FOLD_RUNS  # the ordinary runs since the last fold
    eager, settled = walk.memory(), lazy.settled()
    assert settled.unfolded == () and lazy.memory is settled
    assert settled.identities.tolist() == eager.identities.tolist()
    assert settled.sequences.tolist() == eager.sequences.tolist()
    assert (settled.stamps, settled.latest_sequence) == (eager.stamps, eager.latest_sequence)
