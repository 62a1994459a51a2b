"""What only an instrument's history can tell: repeated trades and timestamps off its clock.

A duplicate (the same publisher, instrument, UTC day and sequence as a trade already
processed) or a trade an hour behind the instrument's clock is valid on its own, and
scoring it would change the features, models and alarms of the trades after it. The
guard remembers just enough of each instrument to refuse them, and notices when an
instrument comes back after being idle long enough to start afresh.

The clock is the median of the last ``CLOCK_TRADES`` accepted timestamps, not the latest
one, so one trade with a plausible but wrong time cannot move it: the trades after it
are judged against the real clock. Three or four can; the real trades after them then
look late, though not earlier than the oldest time the clock holds, and
``CLOCK_TRADES`` of those in a row that agree with each other set the clock back (four
dead letters, not the instrument's next hour). When the wrong trades were a day or more
ahead they also started the instrument afresh, which empties the clock; the oldest time
the clock held before (``floor_ns``) then counts as well, so the real trades still set it
back; once (``floor_spent``: two days' trades interleaved cannot restart the instrument at
every turn). A replay of older trades is before those times and stays refused. A jump further ahead than
``max_jump_s`` is refused unless the next trade confirms it (two trades agreeing on the
new time). Starting afresh after an idle day restarts the clock, not the memory of trades.

Every trade is judged against the memory as the trades before it left it, so batch
boundaries change nothing; ``check`` leaves the guard as it was, and the engine applies
the verdict with ``commit`` once the whole batch went through. Ordinary runs (one
publisher, instrument and day, sequences and times increasing, no gap) take a
compiled path with the same outcome, and their identities are hashed into the memory
``FOLD_RUNS`` runs at a time: an ordinary run cannot be a repeat, so nothing reads them
before the next trade-by-trade look, which folds them in first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit

NANOS_PER_SECOND = 1_000_000_000
DAY_NS = 86_400 * NANOS_PER_SECOND
CLOCK_TRADES = 5
"""Accepted timestamps the clock is the median of."""
MIN_CLOCK_TRADES = 3
"""Below this many accepted trades there is no clock to be late or early against."""
FLOOR_TRADES = 20
"""Trades accepted after a fresh start during which the clock before it still counts (``floor_ns``):
enough for a few stray trades dated ahead, few enough that a replay of the new session's
trades is soon judged against its own clock alone."""
RECENT_DAYS = 8
"""(publisher, instrument, day) keys whose highest sequence is kept."""
MASK64 = (1 << 64) - 1
FOLD_RUNS = 8
"""Ordinary runs kept aside before their identities are folded into the memory. Copying the
512 remembered identities and sequences on every run was most of the guard's cost when each
instrument gets a few trades a batch (the arrays of 1,000 instruments do not stay in cache)."""


@dataclass(frozen=True)
class GuardSettings:
    remembered_trades: int = 512
    """Trades per instrument whose identity is kept to recognise repeats."""
    max_lateness_s: float = 60.0
    """A trade further behind the instrument's clock than this is refused."""
    max_jump_s: float = 7 * 86_400.0
    """A trade further ahead of the clock than this is refused unless the next one confirms it."""
    idle_s: float = 86_400.0
    """A trade this long after the instrument's last one starts it afresh (one day of event time)."""


@dataclass(frozen=True)
class GuardMemory:
    """What the guard knows; never changed in place, so a verdict can carry the next one."""

    identities: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))
    """Hashes of the remembered trades' (publisher, instrument, day, sequence), oldest first; the
    runs in ``unfolded`` come after them."""
    sequences: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    """Their sequences, same order."""
    stamps: tuple[int, ...] = ()
    """The last ``CLOCK_TRADES`` accepted timestamps, oldest first."""
    latest_sequence: tuple[tuple[tuple[int, int, int], int], ...] = ()
    """Highest sequence per (publisher, instrument, day) of the recent days: anything above is new."""
    pending_jump_ns: int | None = None
    """A refused far jump, waiting for a second trade to confirm it."""
    unfolded: tuple[tuple[int, int, int, np.ndarray], ...] = ()
    """Ordinary runs accepted since ``identities`` was brought up to date, oldest first:
    (publisher, instrument, day, sequences). A class default, so older pickles restore with none."""
    late_streak: tuple[int, ...] = ()
    """Timestamps of the trades refused in a row as late, while they agree with each other (within
    ``max_lateness_s``): ``CLOCK_TRADES`` of them say the clock is what was wrong."""
    floor_ns: int | None = None
    """The oldest time the clock held before the instrument last started afresh: late trades not
    before it may set the clock back too (three trades dated a day ahead must not lock the real
    ones out for a day). Kept for ``FLOOR_TRADES`` accepted trades, or until the clock is set back."""
    since_fresh: int = 0
    """Trades accepted since ``floor_ns`` was set, the fresh start's own included."""
    floor_spent: bool = False
    """The clock was set back while a floor held, since the last fresh start: the next fresh start
    sets none, so trades of two days interleaved (a second feed catching up) cannot restart the
    instrument again and again; the old day's trades are then refused as late."""

    @property
    def clock_ns(self) -> int | None:
        """The instrument's clock (the median of ``stamps``), None below ``MIN_CLOCK_TRADES``."""
        return _median(self.stamps) if len(self.stamps) >= MIN_CLOCK_TRADES else None

    def folded(self, kept: int) -> GuardMemory:
        """The same memory with the runs kept aside hashed into ``identities`` (the last ``kept``)."""
        if not self.unfolded:
            return self
        runs = self.unfolded
        keys = np.array([run[:3] for run in runs], np.int64)
        sequences = runs[0][3] if len(runs) == 1 else np.concatenate([run[3] for run in runs])
        bounds = np.cumsum([0] + [len(run[3]) for run in runs])
        identities, remembered = _remembered_after(self.identities, self.sequences, sequences, keys, bounds, kept)
        return GuardMemory(identities, remembered, self.stamps, self.latest_sequence, self.pending_jump_ns,
                           late_streak=self.late_streak, floor_ns=self.floor_ns, since_fresh=self.since_fresh,
                           floor_spent=self.floor_spent)


@dataclass(frozen=True)
class GuardVerdict:
    """The guard's answer for a run of trades."""

    refused: dict[int, tuple[str, str]]
    """Row -> (stage, reason); stage ``duplicate`` or ``validate``."""
    fresh_starts: tuple[int, ...]
    """Accepted rows that come after an idle gap: the instrument starts afresh at each."""
    memory: GuardMemory


@dataclass
class TradeGuard:
    """One instrument's memory of trade identities and time; small and picklable."""

    settings: GuardSettings = field(default_factory=GuardSettings)
    memory: GuardMemory = field(default_factory=GuardMemory)

    def check(
        self, timestamps_ns: np.ndarray, publishers: np.ndarray, instruments: np.ndarray, sequences: np.ndarray,
    ) -> GuardVerdict:
        """Judge a run of valid trades in order; the guard itself is unchanged until ``commit``."""
        fast = _ordinary_run(self.settings, self.memory, timestamps_ns, publishers, instruments, sequences)
        if fast is not None:
            return GuardVerdict({}, (), fast)
        walk = _Walk(self.settings, self.memory.folded(self.settings.remembered_trades))
        refused, fresh_starts = {}, []
        columns = (timestamps_ns.tolist(), publishers.tolist(), instruments.tolist(), sequences.tolist())
        for row, trade in enumerate(zip(*columns)):
            problem = walk.judge(*trade)
            if problem is not None:
                refused[row] = problem
            elif walk.accept(*trade):
                fresh_starts.append(row)
        return GuardVerdict(refused, tuple(fresh_starts), walk.memory())

    def commit(self, verdict: GuardVerdict) -> None:
        self.memory = verdict.memory

    def settled(self) -> GuardMemory:
        """The memory with every accepted run folded in, kept as the memory (a snapshot keeps the
        runs aside as they are: they are small, and folding them would cost every snapshot)."""
        self.memory = self.memory.folded(self.settings.remembered_trades)
        return self.memory


def _ordinary_run(settings: GuardSettings, memory: GuardMemory, stamps: np.ndarray, publishers: np.ndarray,
                  instruments: np.ndarray, sequences: np.ndarray) -> GuardMemory | None:
    """The memory after a run that needs no trade-by-trade look, or None.

    Such a run cannot refuse anything or start afresh: one publisher, instrument and day,
    sequences above the day's highest and increasing, times from the clock's latest on
    and not decreasing (so none is late: the clock, a median, only rises), no idle gap,
    no far jump, no jump waiting for confirmation.
    """
    count = len(stamps)
    if not count or len(memory.stamps) < MIN_CLOCK_TRADES or memory.pending_jump_ns is not None:
        return None
    first, last = int(stamps[0]), int(stamps[-1])
    day = first // DAY_NS
    key = (int(publishers[0]), int(instruments[0]), day)
    recent = memory.latest_sequence
    known = recent[-1][1] if recent and recent[-1][0] == key else dict(recent).get(key, -1)
    if not (last // DAY_NS == day and int(sequences[0]) > known
            and first >= max(memory.stamps) and last - _median(memory.stamps) <= settings.max_jump_s * NANOS_PER_SECOND
            and last - memory.stamps[-1] <= settings.idle_s * NANOS_PER_SECOND):
        return None
    if count > 1 and not _in_order(stamps, publishers, instruments, sequences):
        return None
    kept = settings.remembered_trades
    floor_ns, since_fresh = _floor_after(memory.floor_ns, memory.since_fresh, count)
    memory = GuardMemory(
        identities=memory.identities,
        sequences=memory.sequences,
        stamps=(memory.stamps + tuple(stamps[-CLOCK_TRADES:].tolist()))[-CLOCK_TRADES:],
        latest_sequence=_with_latest(recent, key, int(sequences[-1])),
        unfolded=memory.unfolded + (key + (sequences[-kept:].copy(),),),
        floor_ns=floor_ns,
        since_fresh=since_fresh,
        floor_spent=memory.floor_spent,
    )
    return memory.folded(kept) if len(memory.unfolded) >= FOLD_RUNS else memory


@njit(cache=True, nogil=True)
def _in_order(stamps, publishers, instruments, sequences):
    """One publisher and instrument, sequences increasing, times not decreasing."""
    for row in range(1, stamps.shape[0]):
        if (sequences[row] <= sequences[row - 1] or stamps[row] < stamps[row - 1]
                or publishers[row] != publishers[0] or instruments[row] != instruments[0]):
            return False
    return True


@njit(cache=True, nogil=True)
def _remembered_after(identities, remembered, sequences, keys, bounds, kept):
    """The memory's identities and sequences followed by those of the runs ``sequences[bounds[r]:
    bounds[r + 1]]``, each of one (publisher, instrument, day) ``keys[r]``; the last ``kept`` of
    each, in new arrays: one compiled call where concatenating and hashing in Python cost several
    microseconds per run."""
    new = min(sequences.shape[0], kept)
    total = min(identities.shape[0] + new, kept)
    old = total - new
    ids, seqs = np.empty(total, np.uint64), np.empty(total, np.int64)
    ids[:old] = identities[identities.shape[0] - old:]
    seqs[:old] = remembered[remembered.shape[0] - old:]
    first = sequences.shape[0] - new
    for run in range(keys.shape[0]):
        prefix = _tuple_hash_prefix(keys[run, 0], keys[run, 1], keys[run, 2])
        for row in range(max(bounds[run], first), bounds[run + 1]):
            ids[old + row - first] = _tuple_hash_last(prefix, sequences[row])
            seqs[old + row - first] = sequences[row]
    return ids, seqs


XXPRIME_1, XXPRIME_2 = np.uint64(11400714785074694791), np.uint64(14029467366897019727)
XXPRIME_5 = np.uint64(2870177450012600261)
"""The primes of CPython's tuple hash (``Objects/tupleobject.c``, 64-bit builds)."""
TUPLE4_SUFFIX = np.uint64(4 ^ 2870177450012600261 ^ 3527539)
"""What CPython adds after the last lane of a 4-tuple: ``len ^ (XXPRIME_5 ^ 3527539)``."""


@njit(cache=True, nogil=True)
def _tuple_hash_lane(acc, value):
    acc = acc + np.uint64(value) * XXPRIME_2
    acc = (acc << np.uint64(31)) | (acc >> np.uint64(33))
    return acc * XXPRIME_1


@njit(cache=True, nogil=True)
def _tuple_hash_prefix(publisher, instrument, day):
    return _tuple_hash_lane(_tuple_hash_lane(_tuple_hash_lane(XXPRIME_5, publisher), instrument), day)


@njit(cache=True, nogil=True)
def _tuple_hash_last(prefix, sequence):
    """``_identity`` of a trade, in compiled code: CPython's hash of the tuple, step by step (a
    non-negative int below 2**61 - 1 hashes to itself; uint64 arithmetic wraps as CPython's)."""
    mixed = _tuple_hash_lane(prefix, sequence) + TUPLE4_SUFFIX
    return np.uint64(1546275796) if mixed == np.uint64(MASK64) else mixed  # CPython never returns -1


class _Walk:
    """A run judged trade by trade, with plain Python values; ``memory()`` hands back the result."""

    def __init__(self, settings: GuardSettings, memory: GuardMemory) -> None:
        self.settings = settings
        self.base = memory
        self.new_identities: list[int] = []
        self.new_sequences: list[int] = []
        self.accepted_at: dict[int, int] = {}  # identity -> its place among the new ones
        self.stamps = list(memory.stamps)
        self.latest = dict(memory.latest_sequence)
        self.pending = memory.pending_jump_ns
        self.late = list(memory.late_streak)
        self.floor, self.since_fresh, self.floor_spent = memory.floor_ns, memory.since_fresh, memory.floor_spent

    def judge(self, moment: int, publisher: int, instrument: int, sequence: int) -> tuple[str, str] | None:
        day = moment // DAY_NS
        identity = _identity(publisher, instrument, day, sequence)
        if self._accepted_recently(identity) or self._remembered(identity):
            return "duplicate", (f"duplicate: publisher {publisher}, instrument {instrument}, "
                                 f"sequence {sequence} was already processed")
        latest = self.latest.get((publisher, instrument, day))
        if latest is not None and sequence < latest and sequence < self._oldest_remembered():
            return "duplicate", (f"sequence {sequence} is older than the last {self.settings.remembered_trades:,} "
                                 "trades remembered; a repeat cannot be ruled out")
        if len(self.stamps) < MIN_CLOCK_TRADES:
            return None
        clock = _median(self.stamps)
        lateness = (clock - moment) / NANOS_PER_SECOND
        if lateness > self.settings.max_lateness_s:
            if self._not_a_replay(moment) and self._late_again(moment):
                return None  # the trades agree with each other and with the clock's oldest: the rest ran ahead
            return "validate", (f"ts_event is {lateness:,.0f} s before the instrument's last trades "
                                f"(out of order by more than {self.settings.max_lateness_s:g} s; "
                                f"{CLOCK_TRADES} such trades in a row that agree set the clock back)")
        jump = (moment - clock) / NANOS_PER_SECOND
        confirmed = self.pending is not None and (
            abs(moment - self.pending) <= self.settings.max_lateness_s * NANOS_PER_SECOND)
        if jump <= self.settings.max_jump_s or confirmed:
            self.pending = None
            return None
        self.pending = moment
        return "validate", (f"ts_event is {jump / 86_400:,.1f} days after the instrument's last trades (more than "
                            f"{self.settings.max_jump_s / 86_400:g} days; accepted once a second trade confirms it)")

    def accept(self, moment: int, publisher: int, instrument: int, sequence: int) -> bool:
        """Remember an accepted trade; True when it starts the instrument afresh (after an idle gap).

        Starting afresh restarts the clock, not the memory of trades: a replay of the day before
        is still a repeat."""
        fresh = bool(self.stamps) and moment - self.stamps[-1] > self.settings.idle_s * NANOS_PER_SECOND
        if len(self.late) >= CLOCK_TRADES:  # the clock set back to the trades that disagreed with it
            self.floor_spent = self.floor_spent or self._before_clock(min(self.late))  # set back by the floor
            self.stamps, self.floor, self.since_fresh = self.late[:-1], None, 0
        elif fresh:
            floor = None if self.floor_spent else min(self.stamps)
            self.stamps, self.floor, self.since_fresh, self.floor_spent = [], floor, 0, False
        self.floor, self.since_fresh = _floor_after(self.floor, self.since_fresh, 1)
        self.late = []
        day = moment // DAY_NS
        self.latest = dict(_with_latest(self.latest, (publisher, instrument, day), sequence))
        identity = _identity(publisher, instrument, day, sequence)
        self.accepted_at[identity] = len(self.new_identities)
        self.new_identities.append(identity)
        self.new_sequences.append(sequence)
        self.stamps = (self.stamps + [moment])[-CLOCK_TRADES:]
        return fresh

    def _not_a_replay(self, moment: int) -> bool:
        """A late trade not before the oldest time the clock holds (or held before a fresh start)."""
        lateness_ns = self.settings.max_lateness_s * NANOS_PER_SECOND
        return not self._before_clock(moment) or (self.floor is not None and moment >= self.floor - lateness_ns)

    def _before_clock(self, moment: int) -> bool:
        """Earlier than the oldest time the clock holds, by more than the lateness allowed."""
        return moment < min(self.stamps) - self.settings.max_lateness_s * NANOS_PER_SECOND

    def _late_again(self, moment: int) -> bool:
        """Count a late trade into the streak (a new one if it disagrees with the last); True at
        the ``CLOCK_TRADES``-th trade of a streak."""
        agrees = bool(self.late) and abs(moment - self.late[-1]) <= self.settings.max_lateness_s * NANOS_PER_SECOND
        self.late = (self.late if agrees else []) + [moment]
        return len(self.late) >= CLOCK_TRADES

    def _accepted_recently(self, identity: int) -> bool:
        place = self.accepted_at.get(identity)
        return place is not None and place >= len(self.new_identities) - self.settings.remembered_trades

    def _remembered(self, identity: int) -> bool:
        kept_from_base = self.settings.remembered_trades - len(self.new_identities)
        if kept_from_base <= 0 or not len(self.base.identities):
            return False
        return bool((self.base.identities[-kept_from_base:] == np.uint64(identity)).any())

    def _oldest_remembered(self) -> int:
        """The lowest remembered sequence once the memory is full; -1 (nothing is too old) before."""
        kept = self.settings.remembered_trades
        if len(self.base.sequences) + len(self.new_sequences) < kept:
            return -1
        from_base = kept - len(self.new_sequences)
        candidates = self.new_sequences[-kept:]
        lowest = min(candidates) if candidates else None
        if from_base > 0:
            base_lowest = int(self.base.sequences[-from_base:].min())
            lowest = base_lowest if lowest is None else min(lowest, base_lowest)
        return lowest

    def memory(self) -> GuardMemory:
        kept = self.settings.remembered_trades
        return GuardMemory(
            identities=np.concatenate([self.base.identities, np.array(self.new_identities, np.uint64)])[-kept:],
            sequences=np.concatenate([self.base.sequences, np.array(self.new_sequences, np.int64)])[-kept:],
            stamps=tuple(self.stamps),
            latest_sequence=tuple(self.latest.items()),
            pending_jump_ns=self.pending,
            late_streak=tuple(self.late),
            floor_ns=self.floor,
            since_fresh=self.since_fresh,
            floor_spent=self.floor_spent,
        )


def _floor_after(floor_ns: int | None, since_fresh: int, accepted: int) -> tuple[int | None, int]:
    """``floor_ns`` and ``since_fresh`` after ``accepted`` more trades: the same whether they come
    one by one or as one ordinary run, so batch boundaries change nothing."""
    if floor_ns is None or since_fresh + accepted >= FLOOR_TRADES:
        return None, 0
    return floor_ns, since_fresh + accepted


def _median(stamps) -> int:
    ordered = sorted(stamps)
    return ordered[len(ordered) // 2]


def _with_latest(recent: tuple | dict, key: tuple[int, int, int], sequence: int) -> tuple:
    """The recent days' highest sequences (sorted by day, the last ``RECENT_DAYS``) with ``sequence`` added."""
    if isinstance(recent, tuple) and recent and recent[-1][0] == key:  # the latest day's key again: most calls
        return recent[:-1] + ((key, max(sequence, recent[-1][1])),)
    table = dict(recent)
    table[key] = max(sequence, table.get(key, -1))
    return tuple(sorted(table.items(), key=lambda item: item[0][2])[-RECENT_DAYS:])


def _identity(publisher: int, instrument: int, day: int, sequence: int) -> int:
    """A 64-bit hash of a trade's identity.

    Python's hash of a tuple of ints: not salted per process (only str and bytes are), so
    the same in every worker, process and restart, and an xxHash-style mix of its parts.
    """
    return hash((publisher, instrument, day, sequence)) & MASK64
