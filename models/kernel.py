"""The compiled per-trade path: one call per run of trades between two retrain points.

For every trade of the run, in order, ``score_run`` updates the instrument's window
ring, computes the 18 features, the derived and the per-trade inputs, and, when the
instrument has models, the three detector scores, the z-scores, the votes, the
ensemble score and (for flagged trades only) its calibrated rank. Python then builds
records for the flagged trades alone.

Why compiled: with many instruments each call carries a handful of trades, so the
fixed cost of a call is what matters; numpy pays it once per operation (dozens per
call), the kernel once. The window sums reproduce numpy's pairwise summation
(``_pairwise``), so the features are bit for bit those of ``models.features``.
``nogil=True``: worker threads of one process overlap inside the kernel.

State layout (all arrays owned by ``models.state``; the kernel mutates the working
copies it is given):

* ``fstate``: ``[stamp_prev_price, size tail weight and total, move tail weight and total,
  swing tail weight and total, ring prices (R), ring sizes (R), sorted sizes (M), size tail masses (H),
  move tail masses (H), swing tail masses (H), price samples (S)]``
* ``istate``: ``[fill, head, stamp_ts, has_stamp_prev, sorted_fill, calib_fill, calib_pos,
  trades, trades up to the last large print (0: none), ring timestamps (R), ring sides (R)]``
* ``calib``: the last ensemble scores (empty until the instrument has models).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from models.features import (
    AFTER_LARGE_TRADES, DERIVED_NAMES, FEATURE_NAMES, HISTORY_INPUTS, LARGE_VS_TAIL, MIN_DURATION_SECONDS,
    PRICE_STD_FLOOR, SINCE_LARGE_CAP,
)
from models.session import DAY_NS

# Quantities computed for every trade: the 18 features, the derived inputs, the new inputs.
QUANTITY_NAMES = FEATURE_NAMES + DERIVED_NAMES + HISTORY_INPUTS
QUANTITY = {name: index for index, name in enumerate(QUANTITY_NAMES)}
N_QUANTITIES = len(QUANTITY_NAMES)

# Columns of the derived and history inputs, by name (numba compiles module-level ints as constants).
Q_LOG_SIZE = QUANTITY["log_size"]
Q_SIZE_VS_WINDOW = QUANTITY["size_vs_window"]
Q_SIZE_SHARE = QUANTITY["size_share"]
Q_PRICE_DEVIATION = QUANTITY["price_deviation_bps"]
Q_LOG_VOLATILITY = QUANTITY["log_volatility_bps"]
Q_LOG_TPS = QUANTITY["log_trades_per_second"]
Q_MOMENTUM = QUANTITY["momentum_bps"]
Q_SIDE_IMBALANCE = QUANTITY["side_imbalance"]
Q_INTENSITY = QUANTITY["two_sided_intensity"]
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

# istate header
FILL, HEAD, STAMP_TS, HAS_STAMP_PREV, SORTED_FILL, CALIB_FILL, CALIB_POS, TRADES, LARGE_END = range(9)
I_HEADER = 9
F_STAMP_PREV, F_TAIL_WEIGHT, F_TAIL_TOTAL, F_MOVE_WEIGHT, F_MOVE_TOTAL, F_SWING_WEIGHT, F_SWING_TOTAL = range(7)
F_HEADER = 7

# params header (model parameters packed in one float64 array)
P_NORMALISER, P_FOREST_T, P_ENVELOPE_T = 0, 1, 2
P_ZT = 3       # 5 z thresholds
P_LIMITS = 8   # 7 limits: size_vs_tail, distinct_stamps_50ms, |instant_move_bps|, instant_move_vs_tail,
#               |breakout_bps|, breakout_vs_swing, size_vs_tail after a large print
P_ALONE = 15  # 3 limits of an anomaly on the z-score vote alone (0: off): distinct_stamps_50ms,
#               |deviation_bps| with instant_move_vs_tail
P_ZCENTER = 18  # 4
P_ZSCALE = 22  # 4
P_ENVELOPE = 26  # mean (k), scale (k), location (k), precision (k * k)

MIN_DURATION = MIN_DURATION_SECONDS
SIDE_A, SIDE_B = 1, 2


def ring_length(window_size: int) -> int:
    return max(window_size - 1, SIZE_MEDIAN_TRADES, PRICE_MEDIAN_TRADES)


def fstate_length(ring: int) -> int:
    return F_HEADER + 2 * ring + SIZE_MEDIAN_TRADES + 3 * TAIL_BINS + BREAKOUT_SAMPLES


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def _median_of_sorted(values, n):
    if n % 2 == 1:
        return values[n // 2]
    return (values[n // 2 - 1] + values[n // 2]) / 2.0


@njit(cache=True, nogil=True)
def _sample_summary(samples, n, ordered):
    """Lowest, median and highest of the first ``n`` samples (0s when there are none), via ``ordered``."""
    if n == 0:
        return 0.0, 0.0, 0.0
    for j in range(n):
        ordered[j] = samples[j]
    _insertion_sort(ordered, n)
    return ordered[0], _median_of_sorted(ordered, n), ordered[n - 1]


@njit(cache=True, nogil=True)
def _insertion_sort(values, n):
    for i in range(1, n):
        item = values[i]
        j = i - 1
        while j >= 0 and values[j] > item:
            values[j + 1] = values[j]
            j -= 1
        values[j + 1] = item


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
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
    ring = (istate.shape[0] - I_HEADER) // 2
    ring_p = fstate[F_HEADER:F_HEADER + ring]
    ring_s = fstate[F_HEADER + ring:F_HEADER + 2 * ring]
    sorted_sizes = fstate[F_HEADER + 2 * ring:F_HEADER + 2 * ring + SIZE_MEDIAN_TRADES]
    tail_masses = fstate[F_HEADER + 2 * ring + SIZE_MEDIAN_TRADES:F_HEADER + 2 * ring + SIZE_MEDIAN_TRADES + TAIL_BINS]
    samples_at = F_HEADER + 2 * ring + SIZE_MEDIAN_TRADES + 3 * TAIL_BINS
    move_masses = fstate[samples_at - 2 * TAIL_BINS:samples_at - TAIL_BINS]
    swing_masses = fstate[samples_at - TAIL_BINS:samples_at]
    price_samples = fstate[samples_at:samples_at + BREAKOUT_SAMPLES]
    ordered_samples = np.empty(BREAKOUT_SAMPLES)
    # the samples change every BREAKOUT_EVERY trades: their range and median are kept between
    sampled = min(istate[TRADES] // BREAKOUT_EVERY, BREAKOUT_SAMPLES)
    sample_low, sample_median, sample_high = _sample_summary(price_samples, sampled, ordered_samples)
    ring_t = istate[I_HEADER:I_HEADER + ring]
    ring_side = istate[I_HEADER + ring:]
    keep = window_size - 1
    bp = np.zeros(window_size)
    bs = np.zeros(window_size)
    work = np.zeros(window_size)
    medians = np.empty(PRICE_MEDIAN_TRADES)
    near = np.empty(window_size, np.int64)
    k = input_codes.shape[0]
    X32 = np.empty((n, k + 1), np.float32)
    centred = np.empty(k)
    calib_size = calib.shape[0]
    flagged_count = 0
    first_day = stamps[0] // DAY_NS if n else 0  # row 0 of opening_rush

    for i in range(n):
        price, size, stamp, side = prices[i], sizes[i], stamps[i], sides[i]
        fill = istate[FILL]
        head = istate[HEAD]
        previous = fill if fill < keep else keep
        count = previous + 1
        first = window_size - count
        # The window, oldest first, padded with zeros on the left as numpy's view is.
        for j in range(first):
            bp[j] = 0.0
            bs[j] = 0.0
        asks = 0
        bids = 0
        low = price
        high = price
        first_stamp = stamp
        for j in range(previous):
            slot = (head - previous + j) % ring
            p = ring_p[slot]
            bp[first + j] = p
            bs[first + j] = ring_s[slot]
            if p < low:
                low = p
            if p > high:
                high = p
            if ring_side[slot] == SIDE_A:
                asks += 1
            elif ring_side[slot] == SIDE_B:
                bids += 1
            if j == 0:
                first_stamp = ring_t[slot]
        bp[window_size - 1] = price
        bs[window_size - 1] = size
        if side == SIDE_A:
            asks += 1
        elif side == SIDE_B:
            bids += 1
        fcount = float(count)
        price_mean = _pairwise(bp, 0, window_size) / fcount
        for j in range(window_size):
            work[j] = (bp[j] - price_mean) ** 2 if j >= first else 0.0
        price_std = math.sqrt(_pairwise(work, 0, window_size) / fcount)
        volume_total = _pairwise(bs, 0, window_size)
        volume_mean = volume_total / fcount
        for j in range(window_size):
            work[j] = (bs[j] - volume_mean) ** 2 if j >= first else 0.0
        volume_std = math.sqrt(_pairwise(work, 0, window_size) / fcount)
        elapsed = stamp - first_stamp
        if elapsed < 0:
            elapsed = 0
        duration = elapsed / 1e9
        gaps = fcount - 1.0
        tps = gaps / max(duration, MIN_DURATION)
        first_price = bp[first]
        first_size = bs[first]
        volatility = price_std / price_mean
        momentum = (price - first_price) / first_price
        ask_ratio = asks / fcount
        bid_ratio = bids / fcount

        row = out[i]
        row[0] = price
        row[1] = size
        row[2] = price_mean
        row[3] = price_std
        row[4] = low
        row[5] = high
        row[6] = high - low
        row[7] = volume_mean
        row[8] = volume_std
        row[9] = volume_total
        row[10] = fcount
        row[11] = tps
        row[12] = duration / max(gaps, 1.0) if gaps > 0 else 0.0
        row[13] = volatility
        row[14] = momentum
        row[15] = (size - first_size) / max(first_size, 1.0)
        row[16] = ask_ratio
        row[17] = bid_ratio
        # derived inputs (models.features.DERIVED_INPUTS, same formulas)
        row[Q_LOG_SIZE] = math.log1p(size)
        row[Q_SIZE_VS_WINDOW] = math.log1p(size) - math.log1p(volume_mean)
        row[Q_SIZE_SHARE] = size / max(volume_total, 1.0)
        row[Q_PRICE_DEVIATION] = 1e4 * (price / price_mean - 1.0)
        row[Q_LOG_VOLATILITY] = math.log1p(1e4 * volatility)
        row[Q_LOG_TPS] = math.log1p(tps)
        row[Q_MOMENTUM] = 1e4 * momentum
        row[Q_SIDE_IMBALANCE] = bid_ratio - ask_ratio
        row[Q_INTENSITY] = math.log1p(tps) * (1.0 - abs(bid_ratio - ask_ratio))

        # deviation_bps: against the median of the previous (up to 20) prices
        m = fill if fill < PRICE_MEDIAN_TRADES else PRICE_MEDIAN_TRADES
        if m > 0:
            for j in range(m):
                medians[j] = ring_p[(head - m + j) % ring]
            _insertion_sort(medians, m)
            recent_median = _median_of_sorted(medians, m)
            row[Q_DEVIATION] = 1e4 * (price / recent_median - 1.0)
        else:
            recent_median = price
            row[Q_DEVIATION] = 0.0
        # instant_move_bps: against the price before this event time began; 0 if time went backwards
        reference = -1.0
        if fill > 0:
            if stamp > istate[STAMP_TS]:
                reference = ring_p[(head - 1) % ring]
            elif stamp == istate[STAMP_TS] and istate[HAS_STAMP_PREV] == 1:
                reference = fstate[F_STAMP_PREV]
        row[Q_INSTANT_MOVE] = 1e4 * (price / reference - 1.0) if reference > 0 else 0.0
        row[Q_STAMPS] = float(_distinct_stamps(ring_t, head, previous, stamp, near))
        # size_vs_median: against the median of the previous (up to 100) sizes
        sorted_fill = istate[SORTED_FILL]
        if sorted_fill > 0:
            row[Q_SIZE_VS_MEDIAN] = size / max(1.0, _median_of_sorted(sorted_sizes, sorted_fill))
        else:
            row[Q_SIZE_VS_MEDIAN] = 1.0
        # size_vs_max: against the largest of the previous (up to 100) sizes
        row[Q_SIZE_VS_MAX] = size / sorted_sizes[sorted_fill - 1] if sorted_fill > 0 else 1.0
        # size_vs_tail: against the instrument's recent 99.9th-percentile size
        tail = tail_size(tail_masses, fstate[F_TAIL_TOTAL], TAIL_SHARE)
        row[Q_SIZE_VS_TAIL] = size / max(1.0, tail) if tail > 0.0 else 1.0
        # instant_move_vs_tail: |instant move| against the instrument's recent 95th percentile
        move = abs(row[Q_INSTANT_MOVE])
        tail = tail_size(move_masses, fstate[F_MOVE_TOTAL], MOVE_TAIL_SHARE)
        row[Q_MOVE_VS_TAIL] = move / max(1.0, tail) if tail > 0.0 else 1.0
        # breakout_bps: against the median of the price samples, when beyond all of them
        row[Q_BREAKOUT] = 0.0
        if sampled > 0 and (price < sample_low or price > sample_high):
            row[Q_BREAKOUT] = 1e4 * (price / sample_median - 1.0)
        # breakout_vs_swing: |breakout| against the instrument's recent median |momentum_bps|
        swing = abs(row[Q_MOMENTUM])
        tail = tail_size(swing_masses, fstate[F_SWING_TOTAL], SWING_SHARE)
        row[Q_BREAKOUT_VS_SWING] = abs(row[Q_BREAKOUT]) / max(1.0, tail) if tail > 0.0 else 0.0
        # trades_since_large: since the last print of LARGE_VS_TAIL times the tail, at most SINCE_LARGE_CAP
        since = istate[TRADES] - istate[LARGE_END] + 1 if istate[LARGE_END] > 0 else SINCE_LARGE_CAP
        row[Q_SINCE_LARGE] = float(min(since, SINCE_LARGE_CAP))

        if scoring:
            for j in range(k):
                X32[i, j] = np.float32(row[input_codes[j]])
            X32[i, k] = np.inf
        # Learn the trade into the ring (and its side state) after scoring it.
        if fill == 0 or stamp > istate[STAMP_TS]:
            if fill > 0:
                fstate[F_STAMP_PREV] = ring_p[(head - 1) % ring]
                istate[HAS_STAMP_PREV] = 1
            istate[STAMP_TS] = stamp
        if sorted_fill == SIZE_MEDIAN_TRADES:
            _sorted_remove(sorted_sizes, sorted_fill, ring_s[(head - SIZE_MEDIAN_TRADES) % ring])
            sorted_fill -= 1
        _sorted_insert(sorted_sizes, sorted_fill, size)
        tail_add(tail_masses, fstate, F_TAIL_WEIGHT, size)
        tail_add(move_masses, fstate, F_MOVE_WEIGHT, move)
        tail_add(swing_masses, fstate, F_SWING_WEIGHT, swing)
        istate[SORTED_FILL] = sorted_fill + 1
        ring_p[head] = price
        ring_s[head] = size
        ring_t[head] = stamp
        ring_side[head] = side
        istate[HEAD] = (head + 1) % ring
        if fill < ring:
            istate[FILL] = fill + 1
        istate[TRADES] += 1
        if row[Q_SIZE_VS_TAIL] >= LARGE_VS_TAIL:
            istate[LARGE_END] = istate[TRADES]
        if istate[TRADES] % BREAKOUT_EVERY == 0:
            price_samples[(istate[TRADES] // BREAKOUT_EVERY - 1) % BREAKOUT_SAMPLES] = recent_median
            sampled = min(istate[TRADES] // BREAKOUT_EVERY, BREAKOUT_SAMPLES)
            sample_low, sample_median, sample_high = _sample_summary(price_samples, sampled, ordered_samples)

    if not scoring:
        for i in range(n):
            for j in range(SCORES, N_OUT):
                out[i, j] = np.nan
        return 0
    totals = np.zeros(n)
    forest_totals(X32, offsets, nodes, depth, totals)
    trees = offsets.shape[0] - 1
    for i in range(n):
        row = out[i]
        forest = 2.0 ** (-(totals[i] / trees) / params[P_NORMALISER])
        envelope = _envelope_distance(row, input_codes, params, centred)
        rush = in_windows(opening_rush, stamps[i], first_day)
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
        ensemble = (
            min(forest / params[P_FOREST_T], ENSEMBLE_CAP)
            + min(envelope / params[P_ENVELOPE_T], ENSEMBLE_CAP)
            + min(zscore / 1.0, ENSEMBLE_CAP)
        ) / 3.0
        row[ENSEMBLE] = ensemble
        row[CALIBRATED] = np.nan
        burst = not rush and params[P_ALONE] > 0.0 and row[Q_STAMPS] >= params[P_ALONE]
        off_market = (params[P_ALONE + 1] > 0.0 and abs(row[Q_DEVIATION]) >= params[P_ALONE + 1]
                      and row[Q_MOVE_VS_TAIL] >= params[P_ALONE + 2])
        alone = vote_zscore and (burst or off_market)
        if int(vote_forest) + int(vote_envelope) + int(vote_zscore) >= votes_required or alone:
            row[CALIBRATED] = calibrated(calib, istate[CALIB_FILL], ensemble)
            flagged[flagged_count] = i
            flagged_count += 1
        position = istate[CALIB_POS]
        calib[position] = ensemble
        istate[CALIB_POS] = (position + 1) % calib_size
        if istate[CALIB_FILL] < calib_size:
            istate[CALIB_FILL] += 1
    return flagged_count


@njit(cache=True, nogil=True)
def _distinct_stamps(ring_t, head, previous, stamp, near):
    """Distinct event times among the window's ``previous`` trades and this one, within
    ``STAMP_WINDOW_NS`` up to ``stamp`` (``distinct_stamps_50ms``); ``near`` is scratch."""
    ring = ring_t.shape[0]
    found = 0
    for j in range(previous):
        t = ring_t[(head - previous + j) % ring]
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


@njit(cache=True, nogil=True)
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


@njit(cache=True, nogil=True)
def _zscore_score(row, params, rush):
    """The z-score voter's score (``models.detectors.zscore.ZScoreVote.score``); writes the five
    z-scores into the row's ``ZSCORES`` columns. In the opening ``rush`` the pace (two-sided
    intensity, distinct timestamps) does not count: the market's own rush is fast and two-sided."""
    price_mean = row[2]
    z_price = (row[0] - price_mean) / max(row[3], PRICE_STD_FLOOR * price_mean)
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
    score = max(score, row[Q_SIZE_VS_TAIL] / params[P_LIMITS + 6 if after_large else P_LIMITS])
    if not rush:
        score = max(score, max(z_intensity, 0.0) / params[P_ZT + 3])
        score = max(score, row[Q_STAMPS] / params[P_LIMITS + 1])
    score = max(score, min(abs(row[Q_INSTANT_MOVE]) / params[P_LIMITS + 2], row[Q_MOVE_VS_TAIL] / params[P_LIMITS + 3]))
    score = max(score, min(abs(row[Q_BREAKOUT]) / params[P_LIMITS + 4], row[Q_BREAKOUT_VS_SWING] / params[P_LIMITS + 5]))
    return score


@njit(cache=True, nogil=True)
def in_windows(windows, stamp, first_day):
    """Whether ``stamp`` lies in its day's [start, end) row of ``windows`` (row 0: ``first_day``)."""
    day = stamp // DAY_NS - first_day
    return 0 <= day < windows.shape[0] and windows[day, 0] <= stamp < windows[day, 1]


@njit(cache=True, nogil=True)
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
