"""The compiled per-trade path: one call per run of trades between two retrain points.

``score_run`` makes three passes over the run's trades:

1. ``_quantities``, trade by trade, in order (each depends on the ones before): the window's 18
   features (``_window_features``), the derived inputs (``_derived_inputs``), the inputs that
   need the instrument's history (``_price_inputs``, ``_distinct_stamps``, ``_size_inputs``) and
   the model inputs; then the trade joins what the next is measured against (``_learn``). The
   windows are slices of the tape (``_tape``): the ring's last trades, then the run's;
2. when the instrument has models, the forest, tree by tree over all rows (``forest_totals``);
3. ``_votes``, trade by trade: the envelope and the z-scores, the votes, the ensemble score
   (``_score_trade``) and, for flagged trades only, the calibrated rank (``calibrated``).

Python then builds records for the flagged trades alone.

Why compiled: with many instruments each call carries a handful of trades, so the
fixed cost of a call is what matters; numpy pays it once per operation (dozens per
call), the kernel once. The window sums reproduce numpy's pairwise summation
(``_pairwise``), so the features are bit for bit those of ``models.features``.
``nogil=True``: worker threads of one process overlap inside the kernel.

What the compiled code reads lives in this one file on purpose: numba's cache (``cache=True``)
is checked against the file of the function called, not the files it reads from, so a step or
a constant moved to another module could be served stale from the cache after it changes. The
few constants imported from ``models.features`` and ``models.session`` are the exception, which
``models.compiled_cache`` covers: when those modules change, the cache is emptied (the last
line of this file).

State layout (all arrays owned by ``models.state``; the kernel mutates the working
copies it is given; R = ``ring_length(window_size)``, the offsets are named below):

* ``fstate`` (float64): ``[header (F_HEADER), ring prices (R), ring sizes (R), the last sizes
  sorted (SIZE_MEDIAN_TRADES), size tail masses (TAIL_BINS), |instant move| tail masses,
  |window move| tail masses, price samples (BREAKOUT_SAMPLES)]``
* ``istate`` (int64): ``[header (I_HEADER), ring timestamps (R), ring sides (R)]``
* ``calib``: the last ensemble scores (empty until the instrument has models).
* ``params``: the serving models' thresholds, limits and statistics (``P_*``).
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit

from models import features, session
from models.compiled_cache import forget_when_changed
from models.features import (
    AFTER_LARGE_TRADES, DERIVED_NAMES, FEATURE_NAMES, HISTORY_INPUTS, LARGE_VS_TAIL, MIN_DURATION_SECONDS,
    PRICE_STD_FLOOR, SINCE_LARGE_CAP,
)
from models.session import DAY_NS

# -- What the kernel writes: one row of ``out`` per trade ---------------------------------------------

# Quantities computed for every trade: the 18 features, the derived inputs, the new inputs.
QUANTITY_NAMES = FEATURE_NAMES + DERIVED_NAMES + HISTORY_INPUTS
QUANTITY = {name: index for index, name in enumerate(QUANTITY_NAMES)}
N_QUANTITIES = len(QUANTITY_NAMES)

# Columns by name (numba compiles module-level ints as constants). The 18 features:
Q_PRICE, Q_SIZE = QUANTITY["current_price"], QUANTITY["current_size"]
Q_PRICE_MEAN, Q_PRICE_STD = QUANTITY["price_mean"], QUANTITY["price_std"]
Q_PRICE_MIN, Q_PRICE_MAX = QUANTITY["price_min"], QUANTITY["price_max"]
Q_PRICE_RANGE = QUANTITY["price_range"]
Q_VOLUME_MEAN, Q_VOLUME_STD = QUANTITY["volume_mean"], QUANTITY["volume_std"]
Q_VOLUME_TOTAL, Q_TRADE_COUNT = QUANTITY["volume_total"], QUANTITY["trade_count"]
Q_TPS, Q_AVG_GAP = QUANTITY["trades_per_second"], QUANTITY["avg_time_between_trades"]
Q_VOLATILITY, Q_PRICE_MOMENTUM = QUANTITY["price_volatility"], QUANTITY["price_momentum"]
Q_VOLUME_MOMENTUM = QUANTITY["volume_momentum"]
Q_ASK_RATIO, Q_BID_RATIO = QUANTITY["ask_ratio"], QUANTITY["bid_ratio"]
# the derived inputs (models.features.DERIVED_INPUTS):
Q_LOG_SIZE = QUANTITY["log_size"]
Q_SIZE_VS_WINDOW = QUANTITY["size_vs_window"]
Q_SIZE_SHARE = QUANTITY["size_share"]
Q_PRICE_DEVIATION = QUANTITY["price_deviation_bps"]
Q_LOG_VOLATILITY = QUANTITY["log_volatility_bps"]
Q_LOG_TPS = QUANTITY["log_trades_per_second"]
Q_MOMENTUM = QUANTITY["momentum_bps"]
Q_SIDE_IMBALANCE = QUANTITY["side_imbalance"]
Q_INTENSITY = QUANTITY["two_sided_intensity"]
# the history inputs (models.features.HISTORY_INPUTS):
Q_DEVIATION = QUANTITY["deviation_bps"]
Q_INSTANT_MOVE = QUANTITY["instant_move_bps"]
Q_STAMPS = QUANTITY["distinct_stamps_50ms"]
Q_SIZE_VS_MEDIAN = QUANTITY["size_vs_median"]
Q_SIZE_VS_MAX = QUANTITY["size_vs_max"]
Q_SIZE_VS_TAIL = QUANTITY["size_vs_tail"]
Q_MOVE_VS_TAIL = QUANTITY["instant_move_vs_tail"]
Q_BREAKOUT = QUANTITY["breakout_bps"]
Q_BREAKOUT_VS_SWING = QUANTITY["breakout_vs_swing"]
Q_SINCE_LARGE = QUANTITY["trades_since_large"]

# Output columns after the quantities.
SCORES = N_QUANTITIES          # forest, envelope, zscore
ZSCORES = SCORES + 3           # price, volume, volatility, intensity, momentum
VOTES = ZSCORES + 5            # forest, envelope, zscore (0.0 / 1.0)
ENSEMBLE = VOTES + 3
CALIBRATED = ENSEMBLE + 1
N_OUT = CALIBRATED + 1

# -- What the history inputs remember, and how --------------------------------------------------------

PRICE_MEDIAN_TRADES = 20
"""``deviation_bps`` compares with the median of this many previous prices."""
SIZE_MEDIAN_TRADES = 100
"""``size_vs_median`` and ``size_vs_max`` compare with this many previous sizes."""
STAMP_WINDOW_NS = 50_000_000
"""``distinct_stamps_50ms`` counts distinct event times within this span."""
TAIL_TRADES = 10_000
"""``size_vs_tail``, ``instant_move_vs_tail`` and ``breakout_vs_swing``: the memory, in trades, of the
instrument's distribution of sizes, |instant moves| and |window moves| (a value's weight halves
after about 6,900 trades)."""
TAIL_SHARE = 0.001
"""``size_vs_tail`` compares with the size above which this share of the sizes lies (p99.9)."""
MOVE_TAIL_SHARE = 0.05
"""``instant_move_vs_tail`` compares with the 95th percentile of |instant moves|: one sweep
prints dozens of large moves, enough to lift a 99.9th percentile for thousands of trades."""
SWING_SHARE = 0.5
"""``breakout_vs_swing`` compares with the median |momentum_bps|: a slow crash's own windows are
hundreds of large ones, enough to lift a 95th percentile, never a median."""
TAIL_BINS_PER_OCTAVE = 4
TAIL_BINS = 128
"""Log-spaced bins, each about 19% wide, from 1 (share or bp) to 2^32; smaller values count in the first."""
TAIL_EDGES = 2.0 ** (np.arange(TAIL_BINS + 1) / TAIL_BINS_PER_OCTAVE)
TAIL_GROWTH = 1.0 / (1.0 - 1.0 / TAIL_TRADES)
"""Each trade weighs this much more than the one before (older ones fade, none is rewritten)."""
TAIL_RESCALE_AT = 1e100
"""Weights are brought back to 1 when they reach this, so they never overflow."""
BREAKOUT_EVERY = 100
"""``breakout_bps`` samples the instrument's price after every this many trades..."""
BREAKOUT_SAMPLES = 20
"""...and keeps this many samples (the last ~2,000 trades): a move that builds over hundreds
of trades, longer than the window, is measured against where the price was before it."""
CALIBRATION_SCORES = 1_000
"""Ensemble scores kept per instrument to calibrate the anomaly score against."""
ENSEMBLE_CAP = 10.0
"""Each detector adds at most ``min(score / threshold, 10)`` to the ensemble score."""

# -- State layout: the headers of istate and fstate, and params ----------------------------------------

# istate header (int64)
FILL = 0            # trades held in the ring (at most R)
HEAD = 1            # the ring slot the next trade goes to
STAMP_TS = 2        # the latest event time seen: the timestamp instant_move_bps measures within
HAS_STAMP_PREV = 3  # 1 once F_STAMP_PREV holds a price
SORTED_FILL = 4     # sizes held in the sorted last sizes (at most SIZE_MEDIAN_TRADES)
CALIB_FILL = 5      # ensemble scores held in calib
CALIB_POS = 6       # the calib slot the next ensemble score goes to
TRADES = 7          # the instrument's trades so far
LARGE_END = 8       # trades up to and including the last large print (0: none yet)
I_HEADER = 9

# fstate header (float64)
F_STAMP_PREV = 0                      # the last price before STAMP_TS began (instant_move_bps' reference)
F_TAIL_WEIGHT, F_TAIL_TOTAL = 1, 2    # size tail: the next trade's weight, and the total weight so far
F_MOVE_WEIGHT, F_MOVE_TOTAL = 3, 4    # |instant move| tail, the same
F_SWING_WEIGHT, F_SWING_TOTAL = 5, 6  # |window move| (momentum_bps) tail, the same
F_HEADER = 7

# params (float64), packed in this order by models.engine.DetectionEngine._install
P_NORMALISER = 0              # the forest's average path length of its sample size: path length -> score
P_FOREST_T = 1                # the forest's threshold
P_ENVELOPE_T = 2              # the envelope's threshold
P_ZT = 3                      # 5 z thresholds, in ZSCORES order: price, volume, volatility, intensity, momentum
P_LIMITS = P_ZT + 5           # 7 limits of the z-score voter, named below
P_ALONE = P_LIMITS + 7        # 3 limits of an anomaly on the z-score vote alone (0: off), named below
P_ZCENTER = P_ALONE + 3       # 4 centres of the learned z-scores: volume, volatility, intensity, momentum
P_ZSCALE = P_ZCENTER + 4      # their 4 scales
P_ENVELOPE = P_ZSCALE + 4     # the envelope: mean (k), scale (k), location (k), precision (k * k)

L_SIZE_TAIL = P_LIMITS                    # size_vs_tail
L_STAMPS = P_LIMITS + 1                   # distinct_stamps_50ms
L_INSTANT_MOVE = P_LIMITS + 2             # |instant_move_bps|, together with...
L_MOVE_VS_TAIL = P_LIMITS + 3             # ...instant_move_vs_tail
L_BREAKOUT = P_LIMITS + 4                 # |breakout_bps|, together with...
L_BREAKOUT_VS_SWING = P_LIMITS + 5        # ...breakout_vs_swing
L_SIZE_TAIL_AFTER_LARGE = P_LIMITS + 6    # size_vs_tail within AFTER_LARGE_TRADES of a large print
A_BURST_STAMPS = P_ALONE                  # a burst: distinct_stamps_50ms
A_OFF_MARKET_BPS = P_ALONE + 1            # an off-market print: |deviation_bps|, together with...
A_OFF_MARKET_VS_TAIL = P_ALONE + 2        # ...instant_move_vs_tail

MIN_DURATION = MIN_DURATION_SECONDS
SIDE_A, SIDE_B = 1, 2


def ring_length(window_size: int) -> int:
    """Slots of the ring of last trades: the window's earlier trades, and enough for both medians."""
    return max(window_size - 1, SIZE_MEDIAN_TRADES, PRICE_MEDIAN_TRADES)


def fstate_length(ring: int) -> int:
    """Length of ``fstate`` for a ring of ``ring`` slots (the layout above; ``_memory`` carves it)."""
    return F_HEADER + 2 * ring + SIZE_MEDIAN_TRADES + 3 * TAIL_BINS + BREAKOUT_SAMPLES


Samples = namedtuple("Samples", ("count", "low", "median", "high"))
"""The breakout samples in use: how many, their lowest, median and highest (0s when none)."""

compiled = njit(cache=True, nogil=True)
"""A compiled function of its own (the tests call some of them directly)."""
step = njit(cache=True, nogil=True, inline="always")
"""A step of ``score_run``, inlined into it by numba. Called per trade as functions of their own,
the steps pass a dozen arrays and pay their reference counts on every call: the trade-by-trade
pass took 10% longer so, and compiled no faster."""


# -- The call ---------------------------------------------------------------------------------------

@compiled
def score_run(
    prices, sizes, stamps, sides, opening_rush, window_size, fstate, istate, calib,
    scoring, input_codes, offsets, nodes, depth, params, votes_required, out, flagged,
):
    """Process one run of valid trades; returns how many were flagged (their rows in ``flagged``).

    ``opening_rush``: ``models.session.opening_rush_windows`` for the run's days; a trade inside
    one is not judged on its pace (distinct timestamps, two-sided intensity): the market's own
    rush after the open.

    ``out`` (n x N_OUT) receives every trade's quantities and, when ``scoring``, its
    scores; unscored columns are NaN. Three passes: the window and inputs trade by
    trade (each depends on the ones before), the forest tree by tree over all rows,
    then the other detectors, the votes and the calibration trade by trade.
    """
    n = prices.shape[0]
    X32 = np.empty((n, input_codes.shape[0] + 1), np.float32)
    _quantities(prices, sizes, stamps, sides, window_size, fstate, istate, scoring, input_codes, out, X32)
    if not scoring:
        out[:, SCORES:] = np.nan
        return 0
    totals = np.zeros(n)
    forest_totals(X32, offsets, nodes, depth, totals)
    return _votes(out, totals, offsets.shape[0] - 1, stamps, opening_rush, input_codes, params, votes_required,
                  calib, istate, flagged)


# -- Pass 1: quantities, trade by trade ---------------------------------------------------------------

@step
def _quantities(prices, sizes, stamps, sides, window_size, fstate, istate, scoring, input_codes, out, X32):
    """Every trade's quantities into ``out`` (and its model inputs into ``X32`` when ``scoring``),
    in order: each trade is learnt before the next is described against it.

    The ring's trades and the run's are laid out oldest first on one tape (``_tape``), so the
    window of every trade is a plain slice ending at its place on the tape, ``at``."""
    slots, fill = (istate.shape[0] - I_HEADER) // 2, istate[FILL]  # the ring's length R; the trades in it
    tape_p, tape_s, tape_t, tape_side = _tape(fstate, istate, prices, sizes, stamps, sides)
    sorted_sizes, size_tail, move_tail, swing_tail, price_samples = _memory(fstate, slots)
    squares, medians = np.zeros(window_size), np.empty(PRICE_MEDIAN_TRADES)
    near, ordered = np.empty(window_size, np.int64), np.empty(BREAKOUT_SAMPLES)
    samples = _breakout_samples(price_samples, istate[TRADES], ordered)
    for i in range(prices.shape[0]):
        at, seen = slots + i, fill + i  # the trade's place on the tape; the trades before it there
        earlier = min(seen, window_size - 1)  # of which in its window
        row = out[i]
        _window_features(row, tape_p, tape_s, tape_t, tape_side, at, earlier, window_size, squares)
        _derived_inputs(row)
        recent_median = _price_inputs(row, tape_p, at, seen, stamps[i], fstate, istate, move_tail, swing_tail,
                                      samples, medians)
        row[Q_STAMPS] = float(_distinct_stamps(tape_t, at, earlier, near))
        _size_inputs(row, sorted_sizes, size_tail, fstate, istate)
        if scoring:
            _model_inputs(X32[i], row, input_codes)
        _learn(row, tape_p, tape_s, at, seen, stamps[i], fstate, istate, sorted_sizes, size_tail, move_tail,
               swing_tail)
        if istate[TRADES] % BREAKOUT_EVERY == 0:  # the median of the 20 prices before it: a sample
            price_samples[(istate[TRADES] // BREAKOUT_EVERY - 1) % BREAKOUT_SAMPLES] = recent_median
            samples = _breakout_samples(price_samples, istate[TRADES], ordered)
    _into_ring(fstate, istate, tape_p, tape_s, tape_t, tape_side)


@compiled
def _ring(fstate, istate):
    """The ring of last trades: prices and sizes in ``fstate``, timestamps and sides in ``istate``."""
    ring = (istate.shape[0] - I_HEADER) // 2
    return (fstate[F_HEADER:F_HEADER + ring], fstate[F_HEADER + ring:F_HEADER + 2 * ring],
            istate[I_HEADER:I_HEADER + ring], istate[I_HEADER + ring:])


@compiled
def _memory(fstate, ring):
    """What the history inputs remember beside the ring, after it in ``fstate`` (``fstate_length``
    adds it up): the last sizes sorted, the three tails' masses and the price samples."""
    at = F_HEADER + 2 * ring
    sorted_sizes = fstate[at:at + SIZE_MEDIAN_TRADES]
    at += SIZE_MEDIAN_TRADES
    size_tail = fstate[at:at + TAIL_BINS]
    move_tail = fstate[at + TAIL_BINS:at + 2 * TAIL_BINS]
    swing_tail = fstate[at + 2 * TAIL_BINS:at + 3 * TAIL_BINS]
    at += 3 * TAIL_BINS
    return sorted_sizes, size_tail, move_tail, swing_tail, fstate[at:at + BREAKOUT_SAMPLES]


@compiled
def _tape(fstate, istate, prices, sizes, stamps, sides):
    """The tape: the ring's trades oldest first, after zeros up to the ring's length R, then the run's.
    The run's trade i sits at ``R + i`` and its window ends there; a window of fewer trades than
    ``window_size`` is zero-padded on the left, as numpy's sliding view is (the sums then match)."""
    ring_p, ring_s, ring_t, ring_side = _ring(fstate, istate)
    slots, fill, head, run = ring_p.shape[0], istate[FILL], istate[HEAD], prices.shape[0]
    tape_p, tape_s = np.zeros(slots + run), np.zeros(slots + run)
    tape_t, tape_side = np.zeros(slots + run, np.int64), np.zeros(slots + run, np.int64)
    slot = head - fill if head >= fill else head - fill + slots  # the oldest
    for at in range(slots - fill, slots):
        tape_p[at], tape_s[at] = ring_p[slot], ring_s[slot]
        tape_t[at], tape_side[at] = ring_t[slot], ring_side[slot]
        slot = slot + 1 if slot + 1 < slots else 0
    for i in range(run):
        tape_p[slots + i], tape_s[slots + i] = prices[i], sizes[i]
        tape_t[slots + i], tape_side[slots + i] = stamps[i], sides[i]
    return tape_p, tape_s, tape_t, tape_side


@compiled
def _into_ring(fstate, istate, tape_p, tape_s, tape_t, tape_side):
    """The run's trades (the tape after the ring's R slots) into the ring, as if added one by one
    from ``istate[HEAD]`` on, wrapping around: only the last R of them stay."""
    ring_p, ring_s, ring_t, ring_side = _ring(fstate, istate)
    slots, fill, head = ring_p.shape[0], istate[FILL], istate[HEAD]
    run = tape_p.shape[0] - slots
    kept = min(run, slots)
    slot = (head + run - kept) % slots
    for at in range(slots + run - kept, slots + run):
        ring_p[slot], ring_s[slot] = tape_p[at], tape_s[at]
        ring_t[slot], ring_side[slot] = tape_t[at], tape_side[at]
        slot = slot + 1 if slot + 1 < slots else 0
    istate[FILL] = min(fill + run, slots)
    istate[HEAD] = (head + run) % slots


@step
def _window_features(row, tape_p, tape_s, tape_t, tape_side, at, earlier, window_size, squares):
    """The 18 features (``models.features``) of the window of the trade at ``at`` and the ``earlier``
    trades before it, bit for bit numpy's: the same values, laid out and summed the same way."""
    start = at - window_size + 1  # the window's first place, padding included
    count = earlier + 1
    fcount = float(count)
    price_mean = _pairwise(tape_p, start, window_size) / fcount
    price_std = _window_std(tape_p, start, window_size - count, window_size, price_mean, squares, fcount)
    volume_total = _pairwise(tape_s, start, window_size)
    volume_mean = volume_total / fcount
    volume_std = _window_std(tape_s, start, window_size - count, window_size, volume_mean, squares, fcount)
    price, size, oldest = tape_p[at], tape_s[at], at - earlier
    low, high, asks, bids = _range_and_sides(tape_p, tape_side, oldest, at)
    elapsed = tape_t[at] - tape_t[oldest]
    if elapsed < 0:
        elapsed = 0
    duration = elapsed / 1e9
    gaps = fcount - 1.0
    row[Q_PRICE] = price
    row[Q_SIZE] = size
    row[Q_PRICE_MEAN] = price_mean
    row[Q_PRICE_STD] = price_std
    row[Q_PRICE_MIN] = low
    row[Q_PRICE_MAX] = high
    row[Q_PRICE_RANGE] = high - low
    row[Q_VOLUME_MEAN] = volume_mean
    row[Q_VOLUME_STD] = volume_std
    row[Q_VOLUME_TOTAL] = volume_total
    row[Q_TRADE_COUNT] = fcount
    row[Q_TPS] = gaps / max(duration, MIN_DURATION)
    row[Q_AVG_GAP] = duration / max(gaps, 1.0) if gaps > 0 else 0.0
    row[Q_VOLATILITY] = price_std / price_mean
    row[Q_PRICE_MOMENTUM] = (price - tape_p[oldest]) / tape_p[oldest]
    row[Q_VOLUME_MOMENTUM] = (size - tape_s[oldest]) / max(tape_s[oldest], 1.0)
    row[Q_ASK_RATIO] = asks / fcount
    row[Q_BID_RATIO] = bids / fcount


@step
def _window_std(values, start, padding, window_size, mean, squares, count):
    """Population std of the window ``values[start:start + window_size]`` whose first ``padding``
    are zeros, not trades; the squared deviations summed pairwise as numpy does."""
    for j in range(window_size):
        squares[j] = (values[start + j] - mean) ** 2 if j >= padding else 0.0
    return math.sqrt(_pairwise(squares, np.int64(0), window_size) / count)


@step
def _range_and_sides(tape_p, tape_side, oldest, at):
    """Lowest and highest price of the trades ``oldest`` to ``at``, and how many are asks and bids."""
    low = high = tape_p[at]
    asks = bids = 0
    for j in range(oldest, at + 1):
        p = tape_p[j]
        if p < low:
            low = p
        if p > high:
            high = p
        if tape_side[j] == SIDE_A:
            asks += 1
        elif tape_side[j] == SIDE_B:
            bids += 1
    return low, high, asks, bids


@step
def _derived_inputs(row):
    """The inputs derived from the row's features alone (``models.features.DERIVED_INPUTS``, same formulas)."""
    size, tps, imbalance = row[Q_SIZE], row[Q_TPS], row[Q_BID_RATIO] - row[Q_ASK_RATIO]
    row[Q_LOG_SIZE] = math.log1p(size)
    row[Q_SIZE_VS_WINDOW] = math.log1p(size) - math.log1p(row[Q_VOLUME_MEAN])
    row[Q_SIZE_SHARE] = size / max(row[Q_VOLUME_TOTAL], 1.0)
    row[Q_PRICE_DEVIATION] = 1e4 * (row[Q_PRICE] / row[Q_PRICE_MEAN] - 1.0)
    row[Q_LOG_VOLATILITY] = math.log1p(1e4 * row[Q_VOLATILITY])
    row[Q_LOG_TPS] = math.log1p(tps)
    row[Q_MOMENTUM] = 1e4 * row[Q_PRICE_MOMENTUM]
    row[Q_SIDE_IMBALANCE] = imbalance
    row[Q_INTENSITY] = math.log1p(tps) * (1.0 - abs(imbalance))


@step
def _price_inputs(row, tape_p, at, seen, stamp, fstate, istate, move_tail, swing_tail, samples, medians):
    """``deviation_bps``, ``instant_move_bps``, ``breakout_bps`` and their ratios to the instrument's own
    moves: the price against the last 20 prices, within its timestamp, and against the ~2,000 trades
    before. Returns the median of the last 20 prices (the trade's own when none): the next sample."""
    price = tape_p[at]
    m = min(seen, PRICE_MEDIAN_TRADES)
    if m > 0:
        for j in range(m):
            medians[j] = tape_p[at - m + j]
        _insertion_sort(medians, m)
        recent_median = _median_of_sorted(medians, m)
        row[Q_DEVIATION] = 1e4 * (price / recent_median - 1.0)
    else:
        recent_median = price
        row[Q_DEVIATION] = 0.0
    # instant move: against the price before this event time began; 0 if time went backwards
    reference = -1.0
    if seen > 0:
        if stamp > istate[STAMP_TS]:
            reference = tape_p[at - 1]
        elif stamp == istate[STAMP_TS] and istate[HAS_STAMP_PREV] == 1:
            reference = fstate[F_STAMP_PREV]
    row[Q_INSTANT_MOVE] = 1e4 * (price / reference - 1.0) if reference > 0 else 0.0
    tail = tail_size(move_tail, fstate[F_MOVE_TOTAL], MOVE_TAIL_SHARE)
    row[Q_MOVE_VS_TAIL] = abs(row[Q_INSTANT_MOVE]) / max(1.0, tail) if tail > 0.0 else 1.0
    # breakout: against the median of the price samples, when beyond all of them
    row[Q_BREAKOUT] = 0.0
    if samples.count > 0 and (price < samples.low or price > samples.high):
        row[Q_BREAKOUT] = 1e4 * (price / samples.median - 1.0)
    tail = tail_size(swing_tail, fstate[F_SWING_TOTAL], SWING_SHARE)
    row[Q_BREAKOUT_VS_SWING] = abs(row[Q_BREAKOUT]) / max(1.0, tail) if tail > 0.0 else 0.0
    return recent_median


@compiled
def _distinct_stamps(tape_t, at, earlier, near):
    """Distinct event times among the trade at ``at`` and the ``earlier`` before it, within
    ``STAMP_WINDOW_NS`` up to its own (``distinct_stamps_50ms``); ``near`` is scratch."""
    stamp = tape_t[at]
    found = 0
    for j in range(at - earlier, at):
        t = tape_t[j]
        if stamp - STAMP_WINDOW_NS <= t <= stamp:
            near[found] = t
            found += 1
    near[found] = stamp
    found += 1
    ordered = True
    for j in range(1, found):
        if near[j] < near[j - 1]:
            ordered = False
            break
    if not ordered:
        near[:found].sort()
    distinct = 1
    for j in range(1, found):
        if near[j] != near[j - 1]:
            distinct += 1
    return distinct


@step
def _size_inputs(row, sorted_sizes, size_tail, fstate, istate):
    """``size_vs_median``, ``size_vs_max``, ``size_vs_tail`` and ``trades_since_large``: the size against
    the last 100 trades and against the instrument's recent 99.9th percentile, and how recent the
    last large print is."""
    size, sorted_fill = row[Q_SIZE], istate[SORTED_FILL]
    if sorted_fill > 0:
        row[Q_SIZE_VS_MEDIAN] = size / max(1.0, _median_of_sorted(sorted_sizes, sorted_fill))
    else:
        row[Q_SIZE_VS_MEDIAN] = 1.0
    row[Q_SIZE_VS_MAX] = size / sorted_sizes[sorted_fill - 1] if sorted_fill > 0 else 1.0
    tail = tail_size(size_tail, fstate[F_TAIL_TOTAL], TAIL_SHARE)
    row[Q_SIZE_VS_TAIL] = size / max(1.0, tail) if tail > 0.0 else 1.0
    since = istate[TRADES] - istate[LARGE_END] + 1 if istate[LARGE_END] > 0 else SINCE_LARGE_CAP
    row[Q_SINCE_LARGE] = float(min(since, SINCE_LARGE_CAP))


@step
def _model_inputs(x, row, input_codes):
    """The row's model inputs in float32, as scikit-learn's trees compare them, and the +inf column
    every leaf splits on (so a walk that reached a leaf stays on it)."""
    k = input_codes.shape[0]
    for j in range(k):
        x[j] = np.float32(row[input_codes[j]])
    x[k] = np.inf


@step
def _learn(row, tape_p, tape_s, at, seen, stamp, fstate, istate, sorted_sizes, size_tail, move_tail,
           swing_tail):
    """Learn the trade: what the next is measured against beside the ring (which takes the run's
    trades at its end, ``_into_ring``): the price before the current timestamp began, the last
    100 sizes sorted, the three tails and the trade counters."""
    if seen == 0 or stamp > istate[STAMP_TS]:
        if seen > 0:
            fstate[F_STAMP_PREV] = tape_p[at - 1]
            istate[HAS_STAMP_PREV] = 1
        istate[STAMP_TS] = stamp
    sorted_fill = istate[SORTED_FILL]
    if sorted_fill == SIZE_MEDIAN_TRADES:  # the size 100 trades back leaves
        _sorted_remove(sorted_sizes, sorted_fill, tape_s[at - SIZE_MEDIAN_TRADES])
        sorted_fill -= 1
    _sorted_insert(sorted_sizes, sorted_fill, tape_s[at])
    istate[SORTED_FILL] = sorted_fill + 1
    tail_add(size_tail, fstate, F_TAIL_WEIGHT, tape_s[at])
    tail_add(move_tail, fstate, F_MOVE_WEIGHT, abs(row[Q_INSTANT_MOVE]))
    tail_add(swing_tail, fstate, F_SWING_WEIGHT, abs(row[Q_MOMENTUM]))
    istate[TRADES] += 1
    if row[Q_SIZE_VS_TAIL] >= LARGE_VS_TAIL:
        istate[LARGE_END] = istate[TRADES]


@compiled
def _breakout_samples(price_samples, trades, ordered):
    """The samples ``breakout_bps`` compares with after ``trades`` trades; ``ordered`` is scratch.
    Summarised once per sample taken (every ``BREAKOUT_EVERY`` trades), not per trade."""
    n = min(trades // BREAKOUT_EVERY, BREAKOUT_SAMPLES)
    if n == 0:
        return Samples(n, 0.0, 0.0, 0.0)
    for j in range(n):
        ordered[j] = price_samples[j]
    _insertion_sort(ordered, n)
    return Samples(n, ordered[0], _median_of_sorted(ordered, n), ordered[n - 1])


# -- Pass 2: the forest, tree by tree over all rows -------------------------------------------------

@compiled
def forest_totals(X32, offsets, nodes, depth, totals):
    """Add every tree's path length for every row of ``X32`` to ``totals``, tree by tree.

    Each tree is walked as scikit-learn's ``Tree.apply`` does (the float32 input
    against the float64 threshold, ``<=`` goes left, to the next node) for ``depth``
    steps; a leaf splits on the column past the inputs, held at +inf, so it stays on
    itself, and its ``threshold`` is its path length. Trees are the outer loop, so a
    tree (about 2 KB) stays in the first-level cache while all rows of a run walk it,
    and four rows walk side by side so their chains of loads overlap. Each row's
    path lengths are added in tree order, as the reference does.
    """
    rows = X32.shape[0]
    for tree in range(offsets.shape[0] - 1):
        base = offsets[tree]
        row = 0
        while row + 4 <= rows:
            n0 = 0
            n1 = 0
            n2 = 0
            n3 = 0
            for _ in range(depth):
                a = nodes[base + n0]
                n0 = n0 + 1 if X32[row, a.feature] <= a.threshold else np.int64(a.right)
                a = nodes[base + n1]
                n1 = n1 + 1 if X32[row + 1, a.feature] <= a.threshold else np.int64(a.right)
                a = nodes[base + n2]
                n2 = n2 + 1 if X32[row + 2, a.feature] <= a.threshold else np.int64(a.right)
                a = nodes[base + n3]
                n3 = n3 + 1 if X32[row + 3, a.feature] <= a.threshold else np.int64(a.right)
            totals[row] += nodes[base + n0].threshold
            totals[row + 1] += nodes[base + n1].threshold
            totals[row + 2] += nodes[base + n2].threshold
            totals[row + 3] += nodes[base + n3].threshold
            row += 4
        while row < rows:
            n0 = 0
            for _ in range(depth):
                a = nodes[base + n0]
                n0 = n0 + 1 if X32[row, a.feature] <= a.threshold else np.int64(a.right)
            totals[row] += nodes[base + n0].threshold
            row += 1


# -- Pass 3: scores, votes and calibration, trade by trade ----------------------------------------------

@step
def _votes(out, totals, trees, stamps, opening_rush, input_codes, params, votes_required, calib, istate, flagged):
    """Every trade's scores, votes and ensemble score; the flagged trades' rows into ``flagged`` and
    their calibrated rank (against the ensemble scores before theirs); returns how many."""
    n = out.shape[0]
    first_day = stamps[0] // DAY_NS if n else 0  # row 0 of opening_rush
    centred = np.empty(input_codes.shape[0])
    flagged_count = 0
    for i in range(n):
        row = out[i]
        rush = in_windows(opening_rush, stamps[i], first_day)
        if _score_trade(row, totals[i], trees, rush, input_codes, params, votes_required, centred):
            row[CALIBRATED] = calibrated(calib, istate[CALIB_FILL], row[ENSEMBLE])
            flagged[flagged_count] = i
            flagged_count += 1
        _remember_score(calib, istate, row[ENSEMBLE])
    return flagged_count


@step
def _score_trade(row, path_total, trees, rush, input_codes, params, votes_required, centred):
    """The three detectors' scores and votes and the ensemble score, into the row; whether the trade
    is an anomaly (enough votes, or the z-score vote on evidence strong enough alone)."""
    forest = 2.0 ** (-(path_total / trees) / params[P_NORMALISER])
    envelope = _envelope_distance(row, input_codes, params, centred)
    zscore = _zscore_score(row, params, rush)
    vote_forest = forest >= params[P_FOREST_T]
    vote_envelope = envelope >= params[P_ENVELOPE_T]
    vote_zscore = zscore >= 1.0
    row[SCORES] = forest
    row[SCORES + 1] = envelope
    row[SCORES + 2] = zscore
    row[VOTES] = 1.0 if vote_forest else 0.0
    row[VOTES + 1] = 1.0 if vote_envelope else 0.0
    row[VOTES + 2] = 1.0 if vote_zscore else 0.0
    row[ENSEMBLE] = (
        min(forest / params[P_FOREST_T], ENSEMBLE_CAP)
        + min(envelope / params[P_ENVELOPE_T], ENSEMBLE_CAP)
        + min(zscore / 1.0, ENSEMBLE_CAP)
    ) / 3.0
    row[CALIBRATED] = np.nan
    votes = int(vote_forest) + int(vote_envelope) + int(vote_zscore)
    return votes >= votes_required or (vote_zscore and _anomaly_alone(row, params, rush))


@step
def _anomaly_alone(row, params, rush):
    """Whether the z-score voter's evidence needs no second vote: a two-sided burst (outside the opening
    rush) or an off-market print, both beyond anything natural trades of the shared days came near."""
    burst = not rush and params[A_BURST_STAMPS] > 0.0 and row[Q_STAMPS] >= params[A_BURST_STAMPS]
    off_market = (params[A_OFF_MARKET_BPS] > 0.0 and abs(row[Q_DEVIATION]) >= params[A_OFF_MARKET_BPS]
                  and row[Q_MOVE_VS_TAIL] >= params[A_OFF_MARKET_VS_TAIL])
    return burst or off_market


@step
def _remember_score(calib, istate, ensemble):
    """Keep the ensemble score in the instrument's calibration ring, the oldest overwritten first."""
    position = istate[CALIB_POS]
    calib[position] = ensemble
    istate[CALIB_POS] = (position + 1) % calib.shape[0]
    if istate[CALIB_FILL] < calib.shape[0]:
        istate[CALIB_FILL] += 1


@compiled
def _envelope_distance(row, input_codes, params, centred):
    """The envelope's squared Mahalanobis distance of the row's model inputs; ``centred`` is scratch."""
    k = input_codes.shape[0]
    mean_at = P_ENVELOPE
    scale_at = mean_at + k
    location_at = scale_at + k
    precision_at = location_at + k
    for j in range(k):
        centred[j] = (row[input_codes[j]] - params[mean_at + j]) / params[scale_at + j] - params[location_at + j]
    distance = 0.0
    for a in range(k):
        inner = 0.0
        for b in range(k):
            inner += params[precision_at + a * k + b] * centred[b]
        distance += centred[a] * inner
    return distance


@compiled
def _zscore_score(row, params, rush):
    """The z-score voter's score (``models.detectors.zscore.ZScoreVote.score``); writes the five
    z-scores into the row's ``ZSCORES`` columns. In the opening ``rush`` the pace (two-sided
    intensity, distinct timestamps) does not count: the market's own rush is fast and two-sided."""
    price_mean = row[Q_PRICE_MEAN]
    z_price = (row[Q_PRICE] - price_mean) / max(row[Q_PRICE_STD], PRICE_STD_FLOOR * price_mean)
    z_volume = (row[Q_LOG_SIZE] - params[P_ZCENTER]) / params[P_ZSCALE]
    z_volatility = (row[Q_LOG_VOLATILITY] - params[P_ZCENTER + 1]) / params[P_ZSCALE + 1]
    z_intensity = (row[Q_INTENSITY] - params[P_ZCENTER + 2]) / params[P_ZSCALE + 2]
    z_momentum = (row[Q_MOMENTUM] - params[P_ZCENTER + 3]) / params[P_ZSCALE + 3]
    row[ZSCORES] = z_price
    row[ZSCORES + 1] = z_volume
    row[ZSCORES + 2] = z_volatility
    row[ZSCORES + 3] = z_intensity
    row[ZSCORES + 4] = z_momentum
    score = abs(z_price) / params[P_ZT]
    score = max(score, max(z_volume, 0.0) / params[P_ZT + 1])
    score = max(score, max(z_volatility, 0.0) / params[P_ZT + 2])
    score = max(score, abs(z_momentum) / params[P_ZT + 4])
    after_large = row[Q_SINCE_LARGE] <= AFTER_LARGE_TRADES
    score = max(score, row[Q_SIZE_VS_TAIL] / params[L_SIZE_TAIL_AFTER_LARGE if after_large else L_SIZE_TAIL])
    if not rush:
        score = max(score, max(z_intensity, 0.0) / params[P_ZT + 3])
        score = max(score, row[Q_STAMPS] / params[L_STAMPS])
    move = min(abs(row[Q_INSTANT_MOVE]) / params[L_INSTANT_MOVE], row[Q_MOVE_VS_TAIL] / params[L_MOVE_VS_TAIL])
    score = max(score, move)
    breakout = min(abs(row[Q_BREAKOUT]) / params[L_BREAKOUT], row[Q_BREAKOUT_VS_SWING] / params[L_BREAKOUT_VS_SWING])
    score = max(score, breakout)
    return score


@compiled
def in_windows(windows, stamp, first_day):
    """Whether ``stamp`` lies in its day's [start, end) row of ``windows`` (row 0: ``first_day``)."""
    day = stamp // DAY_NS - first_day
    return 0 <= day < windows.shape[0] and windows[day, 0] <= stamp < windows[day, 1]


@compiled
def calibrated(calib, fill, score):
    """Rank of ``score`` among the instrument's last ``fill`` ensemble scores, in [0, 1].

    ``-log10((1 + scores at least as high) / (N + 1)) / log10(N + 1)``: 1 when no
    recent score was as high, 0 when all were; 1 before any score is kept.
    """
    if fill == 0:
        return 1.0
    higher = 0
    for j in range(fill):
        if calib[j] >= score:
            higher += 1
    return min(1.0, -math.log10((1.0 + higher) / (fill + 1.0)) / math.log10(fill + 1.0))


# -- Building blocks: weighted tails, numpy's pairwise sum, small sorted arrays -------------------------

@compiled
def tail_size(masses, total, share):
    """The value above which ``share`` of the weighted values lie; 0 before any value.

    Walks the bins from the largest values down and interpolates linearly inside the bin
    where the share is reached (plain arithmetic on the bin edges, so the reference
    gets the same number).
    """
    if total <= 0.0:
        return 0.0
    target = share * total
    above = 0.0
    for b in range(TAIL_BINS - 1, -1, -1):
        mass = masses[b]
        if mass > 0.0 and above + mass >= target:
            inside = (target - above) / mass
            return TAIL_EDGES[b + 1] - inside * (TAIL_EDGES[b + 1] - TAIL_EDGES[b])
        above += mass
    return TAIL_EDGES[0]


@compiled
def tail_add(masses, fstate, at, value):
    """Weigh ``value`` into its bin; every earlier value now counts ``1 / TAIL_GROWTH`` as much.

    ``fstate[at]`` is the histogram's next weight, ``fstate[at + 1]`` its total.
    """
    weight = fstate[at]
    b = np.searchsorted(TAIL_EDGES, value, side="right") - 1
    b = min(max(b, 0), TAIL_BINS - 1)
    masses[b] += weight
    fstate[at + 1] += weight
    weight *= TAIL_GROWTH
    if weight >= TAIL_RESCALE_AT:
        for j in range(TAIL_BINS):
            masses[j] /= weight
        fstate[at + 1] /= weight
        weight = 1.0
    fstate[at] = weight


@compiled
def _block_sum(values, start, n):
    """numpy's pairwise sum of at most 128 values: eight accumulators, then the tail."""
    if n < 8:
        total = 0.0
        for i in range(start, start + n):
            total += values[i]
        return total
    r0, r1, r2, r3 = values[start], values[start + 1], values[start + 2], values[start + 3]
    r4, r5, r6, r7 = values[start + 4], values[start + 5], values[start + 6], values[start + 7]
    i = 8
    limit = n - n % 8
    while i < limit:
        r0 += values[start + i]
        r1 += values[start + i + 1]
        r2 += values[start + i + 2]
        r3 += values[start + i + 3]
        r4 += values[start + i + 4]
        r5 += values[start + i + 5]
        r6 += values[start + i + 6]
        r7 += values[start + i + 7]
        i += 8
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        total += values[start + i]
        i += 1
    return total


@compiled
def _pairwise(values, start, n):
    """numpy's pairwise sum of ``values[start:start + n]``, bit for bit.

    Above 128 values numpy sums two halves (the first a multiple of 8) and adds them;
    done here with an explicit stack, since numba's cache cannot hold recursive functions.
    """
    if n <= 128:
        return _block_sum(values, start, n)
    starts = np.empty(64, np.int64)
    sizes = np.empty(64, np.int64)
    phases = np.empty(64, np.int64)
    lefts = np.empty(64)
    starts[0], sizes[0], phases[0] = start, n, 0
    top = 0
    result = 0.0
    while top >= 0:
        size = sizes[top]
        if size <= 128:
            result = _block_sum(values, starts[top], size)
            top -= 1
            continue
        half = size // 2
        half -= half % 8
        if phases[top] == 0:
            phases[top] = 1
            top += 1
            starts[top], sizes[top], phases[top] = starts[top - 1], half, 0
        elif phases[top] == 1:
            lefts[top] = result
            phases[top] = 2
            top += 1
            starts[top], sizes[top], phases[top] = starts[top - 1] + half, size - half, 0
        else:
            result = lefts[top] + result
            top -= 1
    return result


@compiled
def _median_of_sorted(values, n):
    if n % 2 == 1:
        return values[n // 2]
    return (values[n // 2 - 1] + values[n // 2]) / 2.0


@compiled
def _insertion_sort(values, n):
    for i in range(1, n):
        item = values[i]
        j = i - 1
        while j >= 0 and values[j] > item:
            values[j + 1] = values[j]
            j -= 1
        values[j + 1] = item


@compiled
def _sorted_remove(values, n, item):
    """Remove one occurrence of ``item`` from the sorted ``values[:n]``."""
    low, high = 0, n
    while low < high:
        middle = (low + high) // 2
        if values[middle] < item:
            low = middle + 1
        else:
            high = middle
    for i in range(low, n - 1):
        values[i] = values[i + 1]


@compiled
def _sorted_insert(values, n, item):
    low, high = 0, n
    while low < high:
        middle = (low + high) // 2
        if values[middle] <= item:
            low = middle + 1
        else:
            high = middle
    for i in range(n, low, -1):
        values[i] = values[i - 1]
    values[low] = item


forget_when_changed(globals(), features, session)  # the modules the compiled code reads constants from
