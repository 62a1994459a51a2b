"""The reference implementation of ``models.kernel.score_run``: numpy and plain Python.

Same arguments, same state layout, same outputs, written the straightforward way:
the 18 features with the vectorised window code of ``models.features``, the
per-trade inputs with ``np.median`` and sets over the trade history, the forest
walked level by level over all rows at once, the envelope with ``einsum``, the
z-scores with ``models.detectors.zscore``. Many times slower than the kernel; the
engine uses it with ``DetectorConfig(compiled=False)``, and the tests check that
both give the same numbers.
"""

from __future__ import annotations

import math

import numpy as np

from models.detectors.zscore import ZScoreVote, price_zscores
from models.features import DERIVED_INPUTS, LARGE_VS_TAIL, SINCE_LARGE_CAP, _window_features
from models.kernel import (
    BREAKOUT_EVERY, BREAKOUT_SAMPLES, CALIB_FILL, CALIB_POS, CALIBRATED, ENSEMBLE, ENSEMBLE_CAP, F_HEADER,
    F_MOVE_TOTAL, F_MOVE_WEIGHT, F_STAMP_PREV, F_SWING_TOTAL, F_SWING_WEIGHT, F_TAIL_TOTAL, F_TAIL_WEIGHT,
    LARGE_END, SWING_SHARE, TRADES,
    FILL, HAS_STAMP_PREV, HEAD, I_HEADER, P_ALONE, P_ENVELOPE, P_ENVELOPE_T, P_FOREST_T, P_LIMITS, P_NORMALISER,
    P_ZCENTER, P_ZSCALE, P_ZT, PRICE_MEDIAN_TRADES, QUANTITY, SCORES, SIZE_MEDIAN_TRADES, SORTED_FILL, STAMP_TS,
    MOVE_TAIL_SHARE, STAMP_WINDOW_NS, TAIL_BINS, TAIL_EDGES, TAIL_GROWTH, TAIL_RESCALE_AT, TAIL_SHARE, VOTES, ZSCORES,
)
from models.session import DAY_NS


def score_run(
    prices, sizes, stamps, sides, opening_rush, window_size, fstate, istate, calib,
    scoring, input_codes, offsets, nodes, depth, params, votes_required, out, flagged,
) -> int:
    n = len(prices)
    ring = (len(istate) - I_HEADER) // 2
    ring_p, ring_s = fstate[F_HEADER:F_HEADER + ring], fstate[F_HEADER + ring:F_HEADER + 2 * ring]
    ring_t, ring_side = istate[I_HEADER:I_HEADER + ring], istate[I_HEADER + ring:]
    fill, head = int(istate[FILL]), int(istate[HEAD])
    order = [(head - fill + j) % ring for j in range(fill)]
    history_p = [float(ring_p[slot]) for slot in order] + [float(p) for p in prices]
    history_s = [float(ring_s[slot]) for slot in order] + [float(s) for s in sizes]
    history_t = [int(ring_t[slot]) for slot in order] + [int(t) for t in stamps]
    history_side = [int(ring_side[slot]) for slot in order] + [int(s) for s in sides]

    out[:, :] = np.nan
    out[:, :18] = _features(history_p, history_s, history_t, history_side, fill, window_size)
    for name, derive in DERIVED_INPUTS.items():
        out[:, QUANTITY[name]] = derive(out[:, :18])
    stamp_ts, stamp_prev, has_prev = int(istate[STAMP_TS]), float(fstate[F_STAMP_PREV]), bool(istate[HAS_STAMP_PREV])
    tails_at = F_HEADER + 2 * ring + SIZE_MEDIAN_TRADES
    tail = Tail(fstate[tails_at:tails_at + TAIL_BINS], float(fstate[F_TAIL_WEIGHT]), float(fstate[F_TAIL_TOTAL]),
                TAIL_SHARE)
    move_tail = Tail(fstate[tails_at + TAIL_BINS:tails_at + 2 * TAIL_BINS], float(fstate[F_MOVE_WEIGHT]),
                     float(fstate[F_MOVE_TOTAL]), MOVE_TAIL_SHARE)
    swing_tail = Tail(fstate[tails_at + 2 * TAIL_BINS:tails_at + 3 * TAIL_BINS], float(fstate[F_SWING_WEIGHT]),
                      float(fstate[F_SWING_TOTAL]), SWING_SHARE)
    samples = fstate[tails_at + 3 * TAIL_BINS:tails_at + 3 * TAIL_BINS + BREAKOUT_SAMPLES]
    trades = int(istate[TRADES])
    large_at = int(istate[LARGE_END]) - 1  # the last large print's number among the instrument's trades
    for i in range(n):
        at = fill + i  # this trade's position in the history
        earlier_p = history_p[max(0, at - PRICE_MEDIAN_TRADES):at]
        earlier_s = history_s[max(0, at - SIZE_MEDIAN_TRADES):at]
        price, size, stamp = history_p[at], history_s[at], history_t[at]
        out[i, QUANTITY["deviation_bps"]] = 1e4 * (price / np.median(earlier_p) - 1.0) if earlier_p else 0.0
        out[i, QUANTITY["size_vs_median"]] = size / max(1.0, float(np.median(earlier_s))) if earlier_s else 1.0
        out[i, QUANTITY["size_vs_max"]] = size / max(earlier_s) if earlier_s else 1.0
        window_t = history_t[max(0, at - window_size + 1):at + 1]
        out[i, QUANTITY["distinct_stamps_50ms"]] = len({t for t in window_t if stamp - STAMP_WINDOW_NS <= t <= stamp})
        # instant move: the price before the current timestamp began; 0 if time went backwards
        reference = None
        if at > 0 and stamp > stamp_ts:
            reference = history_p[at - 1]
        elif at > 0 and stamp == stamp_ts and has_prev:
            reference = stamp_prev
        out[i, QUANTITY["instant_move_bps"]] = 1e4 * (price / reference - 1.0) if reference else 0.0
        percentile = tail.percentile()
        out[i, QUANTITY["size_vs_tail"]] = size / max(1.0, percentile) if percentile > 0 else 1.0
        tail.add(size)
        move = abs(float(out[i, QUANTITY["instant_move_bps"]]))
        percentile = move_tail.percentile()
        out[i, QUANTITY["instant_move_vs_tail"]] = move / max(1.0, percentile) if percentile > 0 else 1.0
        move_tail.add(move)
        taken = samples[:min(trades // BREAKOUT_EVERY, BREAKOUT_SAMPLES)]
        beyond = len(taken) and (price < taken.min() or price > taken.max())
        out[i, QUANTITY["breakout_bps"]] = 1e4 * (price / np.median(taken) - 1.0) if beyond else 0.0
        percentile = swing_tail.percentile()
        breakout = abs(float(out[i, QUANTITY["breakout_bps"]]))
        out[i, QUANTITY["breakout_vs_swing"]] = breakout / max(1.0, percentile) if percentile > 0 else 0.0
        swing_tail.add(abs(float(out[i, QUANTITY["momentum_bps"]])))
        since = trades - large_at if large_at >= 0 else SINCE_LARGE_CAP
        out[i, QUANTITY["trades_since_large"]] = min(since, SINCE_LARGE_CAP)
        if out[i, QUANTITY["size_vs_tail"]] >= LARGE_VS_TAIL:
            large_at = trades
        trades += 1
        if trades % BREAKOUT_EVERY == 0:
            samples[(trades // BREAKOUT_EVERY - 1) % BREAKOUT_SAMPLES] = np.median(earlier_p) if earlier_p else price
        if at == 0 or stamp > stamp_ts:
            if at > 0:
                stamp_prev, has_prev = history_p[at - 1], True
            stamp_ts = stamp

    count = 0
    if scoring:
        rush = _in_windows(opening_rush, np.asarray(stamps, np.int64))
        count = _score(out, input_codes, offsets, nodes, params, votes_required, calib, istate, flagged, rush)

    # The state after the run, in the kernel's layout.
    total = fill + n
    keep = min(total, ring)
    new_head = (head + n) % ring
    for j in range(keep):
        slot = (new_head - keep + j) % ring
        at = total - keep + j
        ring_p[slot], ring_s[slot], ring_t[slot], ring_side[slot] = (
            history_p[at], history_s[at], history_t[at], history_side[at])
    last_sizes = np.sort(np.array(history_s[max(0, total - SIZE_MEDIAN_TRADES):]))
    fstate[F_HEADER + 2 * ring:F_HEADER + 2 * ring + len(last_sizes)] = last_sizes
    istate[SORTED_FILL] = len(last_sizes)
    istate[FILL], istate[HEAD], istate[TRADES], istate[LARGE_END] = keep, new_head, trades, large_at + 1
    istate[STAMP_TS], istate[HAS_STAMP_PREV] = stamp_ts, int(has_prev)
    fstate[F_STAMP_PREV] = stamp_prev
    fstate[F_TAIL_WEIGHT], fstate[F_TAIL_TOTAL] = tail.weight, tail.total
    fstate[F_MOVE_WEIGHT], fstate[F_MOVE_TOTAL] = move_tail.weight, move_tail.total
    fstate[F_SWING_WEIGHT], fstate[F_SWING_TOTAL] = swing_tail.weight, swing_tail.total
    return count


class Tail:
    """A weighted histogram behind ``size_vs_tail``, ``instant_move_vs_tail`` and ``breakout_vs_swing``,
    updated in place in ``masses``."""

    def __init__(self, masses: np.ndarray, weight: float, total: float, share: float) -> None:
        self.masses, self.weight, self.total, self.share = masses, weight, total, share

    def percentile(self) -> float:
        if self.total <= 0:
            return 0.0
        target = self.share * self.total
        above = 0.0
        for b in reversed(range(TAIL_BINS)):
            mass = float(self.masses[b])
            if mass > 0 and above + mass >= target:
                return float(TAIL_EDGES[b + 1] - (target - above) / mass * (TAIL_EDGES[b + 1] - TAIL_EDGES[b]))
            above += mass
        return float(TAIL_EDGES[0])

    def add(self, value: float) -> None:
        b = min(max(int(np.searchsorted(TAIL_EDGES, value, side="right")) - 1, 0), TAIL_BINS - 1)
        self.masses[b] += self.weight
        self.total += self.weight
        self.weight *= TAIL_GROWTH
        if self.weight >= TAIL_RESCALE_AT:
            self.masses /= self.weight
            self.total /= self.weight
            self.weight = 1.0


def _features(history_p, history_s, history_t, history_side, fill, window_size) -> np.ndarray:
    """The 18 features of the run's trades with the numpy window code, over the padded history."""
    previous = min(fill, window_size - 1)
    padding = window_size - 1 - previous
    cut = fill - previous
    valid = np.concatenate([np.zeros(padding, bool), np.ones(len(history_p) - cut, bool)])
    columns = [
        np.concatenate([np.zeros(padding, dtype), np.array(history[cut:], dtype)])
        for history, dtype in ((history_p, np.float64), (history_s, np.float64), (history_t, np.int64),
                               (history_side, np.int8))
    ]
    return _window_features(*columns, valid, window_size)


def _in_windows(windows: np.ndarray, stamps: np.ndarray) -> np.ndarray:
    """Per trade: inside its UTC day's [start, end) row of ``windows`` (row 0: the first trade's day)."""
    day = stamps // DAY_NS - stamps[0] // DAY_NS
    inside = np.zeros(len(stamps), bool)
    for row, (start, end) in enumerate(windows):
        inside |= (day == row) & (stamps >= start) & (stamps < end)
    return inside


def _score(out, input_codes, offsets, nodes, params, votes_required, calib, istate, flagged, rush) -> int:
    X = out[:, input_codes]
    k = X.shape[1]
    forest = forest_scores(X, offsets, nodes, params[P_NORMALISER])
    mean, scale = params[P_ENVELOPE:P_ENVELOPE + k], params[P_ENVELOPE + k:P_ENVELOPE + 2 * k]
    location = params[P_ENVELOPE + 2 * k:P_ENVELOPE + 3 * k]
    precision = params[P_ENVELOPE + 3 * k:P_ENVELOPE + 3 * k + k * k].reshape(k, k)
    centred = (X - mean) / scale - location
    envelope = np.einsum("ij,jk,ik->i", centred, precision, centred)
    zscore = ZScoreVote(*params[P_ZT:P_ZT + 5], *params[P_LIMITS:P_LIMITS + 7])
    zscore.center_, zscore.scale_ = params[P_ZCENTER:P_ZCENTER + 4], params[P_ZSCALE:P_ZSCALE + 4]
    features = out[:, :18]
    learned = out[:, [QUANTITY[name] for name in ("log_size", "log_volatility_bps", "two_sided_intensity", "momentum_bps")]]
    zscores = np.column_stack([price_zscores(features), (learned - zscore.center_) / zscore.scale_])
    stamps = out[:, QUANTITY["distinct_stamps_50ms"]]
    paced = zscores.copy()
    paced[rush, 3] = 0.0  # no intensity vote in the opening rush
    zscore_scores = zscore.score(paced, zscore.limited_inputs(out[:, QUANTITY["size_vs_tail"]],
                                     np.where(rush, 0.0, stamps), out[:, QUANTITY["instant_move_bps"]],
                                     out[:, QUANTITY["instant_move_vs_tail"]],
                                     out[:, QUANTITY["breakout_bps"]], out[:, QUANTITY["breakout_vs_swing"]],
                                     out[:, QUANTITY["trades_since_large"]]))
    votes = np.column_stack([forest >= params[P_FOREST_T], envelope >= params[P_ENVELOPE_T], zscore_scores >= 1.0])
    out[:, SCORES], out[:, SCORES + 1], out[:, SCORES + 2] = forest, envelope, zscore_scores
    out[:, ZSCORES:ZSCORES + 5] = zscores
    out[:, VOTES:VOTES + 3] = votes
    out[:, ENSEMBLE] = (
        np.minimum(forest / params[P_FOREST_T], ENSEMBLE_CAP) + np.minimum(envelope / params[P_ENVELOPE_T], ENSEMBLE_CAP)
        + np.minimum(zscore_scores / 1.0, ENSEMBLE_CAP)
    ) / 3.0
    stamps_alone, bps_alone, vs_tail_alone = params[P_ALONE:P_ALONE + 3]
    burst = ~rush & (stamps_alone > 0) & (stamps >= stamps_alone)
    off_market = ((bps_alone > 0) & (np.abs(out[:, QUANTITY["deviation_bps"]]) >= bps_alone)
                  & (out[:, QUANTITY["instant_move_vs_tail"]] >= vs_tail_alone))
    alone = votes[:, 2] & (burst | off_market)
    count = 0
    for i in range(len(X)):
        score = out[i, ENSEMBLE]
        filled = int(istate[CALIB_FILL])
        if votes[i].sum() >= votes_required or alone[i]:
            out[i, CALIBRATED] = calibrated_score(calib[:filled], score)
            flagged[count] = i
            count += 1
        position = int(istate[CALIB_POS])
        calib[position] = score
        istate[CALIB_POS] = (position + 1) % len(calib)
        istate[CALIB_FILL] = min(len(calib), filled + 1)
    return count


def calibrated_score(recent: np.ndarray, score: float) -> float:
    """``min(1, -log10((1 + #recent >= score) / (N + 1)) / log10(N + 1))``; 1 when N = 0."""
    if not len(recent):
        return 1.0
    higher = int((recent >= score).sum())
    return min(1.0, -math.log10((1.0 + higher) / (len(recent) + 1.0)) / math.log10(len(recent) + 1.0))


def forest_scores(X, offsets, nodes, normaliser) -> np.ndarray:
    """The flat forest's score of every row, walking all rows one tree level at a time until all reach a leaf."""
    X32 = np.ascontiguousarray(X, dtype=np.float32)
    rows = np.arange(len(X))
    total = np.zeros(len(X))
    trees = len(offsets) - 1
    leaf_feature = X.shape[1]
    for tree in range(trees):
        at = nodes[int(offsets[tree]):int(offsets[tree + 1])]
        node = np.zeros(len(X), np.int64)
        while True:
            inner = at["feature"][node] != leaf_feature
            if not inner.any():
                break
            split = np.minimum(at["feature"][node], leaf_feature - 1)
            go_left = X32[rows, split] <= at["threshold"][node]
            node = np.where(inner, np.where(go_left, node + 1, at["right"][node]), node)
        total += at["threshold"][node]
    return 2.0 ** (-(total / trees) / normaliser)
