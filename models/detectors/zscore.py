"""Z-scores of price, volume, volatility, trade intensity and price momentum, each against its own threshold.

* price: the trade's price against its own window, ``(price - mean) / std``, with the
  std floored at ``PRICE_STD_FLOOR`` of the price so a one-tick move after a run of
  identical prices is not a 10-sigma event;
* volume and volatility: ``log(1 + size)`` and ``log(1 + volatility in bps)`` against
  their mean and standard deviation over the recent training samples. Sizes are
  heavy-tailed: on the log scale a 2,300-share print is about 3 sigma and a
  20,000-share block only about 4.4 (2025-05-09, 10:00-16:00 New York, medians over
  windows of 500 trades), which is why blocks vote on ``size_vs_tail`` below. A
  median/MAD version was tried and dropped: sizes come in round lots, so over 500
  trades the MAD can collapse to a few lots and put a 2,300-share print at 7 sigma.

* intensity: ``two_sided_intensity`` (the trade rate discounted by how one-sided the
  window is; see ``models.features``) against its mean and standard deviation. A
  burst of hundreds of small two-sided prints within milliseconds moves none of
  price, volume or volatility, so without this fourth z-score it could never
  gather two votes.

* momentum: ``price_momentum`` in bp (the move from the window's first trade) against
  its mean and standard deviation, spread floored at 5 bp. A flash crash walks the
  price 1.5-3% down over a few hundred trades, each a small step from the last: the
  price against its own window and the volatility rise only a little, the move does.

Only large sizes, high volatility and high intensity vote: a one-share print is not
an anomaly. The price and momentum z-scores vote both ways.

Four per-trade measures vote against fixed limits instead of a z-score, because what
they measure means the same on every instrument and a z-score over 500 calm trades
would make their ordinary jitter look extreme (``benchmarks/TUNING.md``):

* ``size_vs_tail``: the size against the instrument's recent 99.9th-percentile size
  (a block; a log-size z puts a 15,000-share print at about 4 sigma on NVDA, a 2,300-share one at 3),
  against a higher limit within ``AFTER_LARGE_TRADES`` trades of a large print
  (``trades_since_large``): large prints come in clusters, and the next of a cluster is
  less of a surprise than one out of the blue;
* ``distinct_stamps_50ms``: distinct event times within 50 ms (a two-sided burst; one
  aggressive order prints hundreds of trades at a single timestamp);
* ``|instant_move_bps|``: the move within one timestamp (a sweep through the book), when it
  is also ``instant_move_vs_tail`` times the instrument's recent 95th percentile (one tick
  of a $5 stock is 20 bp: its limit in bp alone would flag ordinary trading);
* ``|breakout_bps|``: the move from where the price was over the last ~2,000 trades, while
  it is beyond all of them (a crash or a spike slower than one window: its momentum over
  100 trades is a fraction of its depth), when ``breakout_vs_swing`` is also at least
  ``breakout_swing_limit`` (a volatile $5 stock walks 80 bp as NVDA walks 10).
"""

from __future__ import annotations

import numpy as np

from models.features import AFTER_LARGE_TRADES, COLUMN, DERIVED_INPUTS, PRICE_STD_FLOOR

LEARNED_COLUMNS = ("log_size", "log_volatility_bps", "two_sided_intensity", "momentum_bps")
"""The model inputs (``models.features``) the volume, volatility, intensity and momentum z-scores use."""
MIN_SCALE = np.array([0.1, 0.1, 1.0, 5.0])
"""Smallest spread of log size, log volatility, intensity and momentum (bp). Before the open a
window's volatility can sit on one value for hundreds of trades, and in a calm
hour the intensity varies by a few tenths and the momentum by a basis point or two:
a small change is not a 10-sigma event."""


def price_zscores(features: np.ndarray) -> np.ndarray:
    mean = features[:, COLUMN["price_mean"]]
    std = np.maximum(features[:, COLUMN["price_std"]], PRICE_STD_FLOOR * mean)
    return (features[:, COLUMN["current_price"]] - mean) / std


def log_sizes(features: np.ndarray) -> np.ndarray:
    return np.log1p(features[:, COLUMN["current_size"]])


def log_volatilities(features: np.ndarray) -> np.ndarray:
    return np.log1p(1e4 * features[:, COLUMN["price_volatility"]])


def intensities(features: np.ndarray) -> np.ndarray:
    return DERIVED_INPUTS["two_sided_intensity"](features)


def momenta_bps(features: np.ndarray) -> np.ndarray:
    return DERIVED_INPUTS["momentum_bps"](features)


class ZScoreVote:
    """Votes when a z-score reaches its threshold or a limited input its limit.

    The score is the largest of every z / threshold and every limited input / limit
    (``limited_inputs``: a size against the recent tail, distinct timestamps, a move within
    one timestamp, a breakout; the last two each have two limits and count by the smaller ratio;
    the size's limit is ``size_tail_limit_after_large`` within ``AFTER_LARGE_TRADES`` trades of a
    large print).
    """

    def __init__(
        self, price_threshold: float = 6.0, volume_threshold: float = 8.0,
        volatility_threshold: float = 25.0, intensity_threshold: float = 10.0,
        momentum_threshold: float = 8.0, size_tail_limit: float = 5.0, stamps_limit: float = 80.0,
        instant_move_limit: float = 20.0, instant_move_tail_limit: float = 3.0,
        breakout_limit: float = 80.0, breakout_swing_limit: float = 8.0,
        size_tail_limit_after_large: float = 6.0,
    ) -> None:
        self.momentum_threshold = momentum_threshold
        self.size_tail_limit = size_tail_limit
        self.size_tail_limit_after_large = size_tail_limit_after_large
        self.stamps_limit = stamps_limit
        self.instant_move_limit = instant_move_limit
        self.instant_move_tail_limit = instant_move_tail_limit
        self.breakout_limit = breakout_limit
        self.breakout_swing_limit = breakout_swing_limit
        self.price_threshold = price_threshold
        self.volume_threshold = volume_threshold
        self.volatility_threshold = volatility_threshold
        self.intensity_threshold = intensity_threshold

    def fit(self, features: np.ndarray) -> ZScoreVote:
        """Learn mean and standard deviation of log size, log volatility, intensity and momentum."""
        return self.fit_columns(self._learned_columns(features))

    def fit_columns(self, columns: np.ndarray) -> ZScoreVote:
        """Fit on the learned columns already computed: log size, log volatility, intensity, momentum."""
        self.center_ = columns.mean(axis=0)
        self.scale_ = np.maximum(columns.std(axis=0), MIN_SCALE)
        return self

    def zscores(self, features: np.ndarray) -> np.ndarray:
        """Columns: price z, volume z, volatility z, intensity z, momentum z."""
        others = (self._learned_columns(features) - self.center_) / self.scale_
        return np.column_stack([price_zscores(features), others])

    @staticmethod
    def _learned_columns(features: np.ndarray) -> np.ndarray:
        return np.column_stack([
            log_sizes(features), log_volatilities(features), intensities(features), momenta_bps(features),
        ])

    @staticmethod
    def limited_inputs(size_vs_tail: np.ndarray, distinct_stamps: np.ndarray, instant_move_bps: np.ndarray,
                       instant_move_vs_tail: np.ndarray, breakout_bps: np.ndarray,
                       breakout_vs_swing: np.ndarray, trades_since_large: np.ndarray) -> np.ndarray:
        """The columns ``score`` compares with the fixed limits, one row per trade."""
        return np.column_stack([size_vs_tail, distinct_stamps, np.abs(instant_move_bps), instant_move_vs_tail,
                                np.abs(breakout_bps), breakout_vs_swing, trades_since_large])

    def score(self, zscores: np.ndarray, limited: np.ndarray | None = None) -> np.ndarray:
        """The largest of every z / threshold and, given ``limited_inputs``, every input / limit."""
        thresholds = np.array([
            self.price_threshold, self.volume_threshold, self.volatility_threshold,
            self.intensity_threshold, self.momentum_threshold,
        ])
        surprise = np.column_stack([
            np.abs(zscores[:, 0]), np.maximum(zscores[:, 1:4], 0.0), np.abs(zscores[:, 4]),
        ])
        ratios = surprise / thresholds
        if limited is not None:
            limits = np.array([self.size_tail_limit, self.stamps_limit, self.instant_move_limit,
                               self.instant_move_tail_limit, self.breakout_limit, self.breakout_swing_limit])
            size_limits = np.where(limited[:, 6] <= AFTER_LARGE_TRADES, self.size_tail_limit_after_large,
                                   self.size_tail_limit)
            sizes = limited[:, 0] / size_limits
            limited = limited[:, :6] / limits
            limited[:, 0] = sizes
            instant = np.minimum(limited[:, 2], limited[:, 3])  # both limits, or no vote
            breakout = np.minimum(limited[:, 4], limited[:, 5])  # likewise
            ratios = np.column_stack([ratios, limited[:, :2], instant, breakout])
        return ratios.max(axis=1)

    def vote(self, scores: np.ndarray) -> np.ndarray:
        return scores >= 1.0
