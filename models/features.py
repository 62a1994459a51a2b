"""The 18 rolling-window features of each trade, and the model inputs derived from them.

Every trade is described by the window of the last ``window_size`` trades of its
instrument, itself included. Each window is reduced on its own, with the same numpy
operations on the same values laid out the same way, so a trade's features do not
depend on how the tape was cut into batches.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

FEATURE_NAMES = (
    "current_price", "current_size", "price_mean", "price_std", "price_min", "price_max",
    "price_range", "volume_mean", "volume_std", "volume_total", "trade_count",
    "trades_per_second", "avg_time_between_trades", "price_volatility", "price_momentum",
    "volume_momentum", "ask_ratio", "bid_ratio",
)
COLUMN = {name: index for index, name in enumerate(FEATURE_NAMES)}

MIN_DURATION_SECONDS = 1e-3
"""A window shorter than this (2,000+ windows of 100 trades share one timestamp on
a real day) counts as this long, which keeps trades_per_second finite."""

PRICE_STD_FLOOR = 1e-4
"""The smallest price std of a window, relative to its mean price (one basis point), for
the price z-score: a one-tick move after a run of identical prices is not 10 sigma."""

SIDE_CODES = {"A": 1, "B": 2, "N": 0}


@dataclass
class RollingWindow:
    """The last ``size - 1`` trades before the next one: all the features need."""

    size: int = 100
    prices: np.ndarray = field(default_factory=lambda: np.empty(0))
    sizes: np.ndarray = field(default_factory=lambda: np.empty(0))
    timestamps_ns: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))
    sides: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int8))

    def extend(
        self, prices: np.ndarray, sizes: np.ndarray, timestamps_ns: np.ndarray, sides: np.ndarray
    ) -> np.ndarray:
        """Add trades (in order) and return their features, one row of 18 per trade."""
        keep = self.size - 1
        padding = keep - len(self.prices)
        columns = []
        for history, new, dtype in (
            (self.prices, prices, np.float64), (self.sizes, sizes, np.float64),
            (self.timestamps_ns, timestamps_ns, np.int64), (self.sides, sides, np.int8),
        ):
            columns.append(np.concatenate([np.zeros(padding, dtype), history.astype(dtype), new.astype(dtype)]))
        valid = np.concatenate([np.zeros(padding, bool), np.ones(len(self.prices) + len(prices), bool)])
        features = _window_features(*columns, valid, self.size)
        self.prices, self.sizes, self.timestamps_ns, self.sides = (
            column[-keep:][valid[-keep:]].copy() for column in columns
        )
        return features


def _window_features(
    prices: np.ndarray, sizes: np.ndarray, timestamps_ns: np.ndarray, sides: np.ndarray,
    valid: np.ndarray, size: int,
) -> np.ndarray:
    """Features of every full-length window over the padded columns (n rows)."""
    mask = sliding_window_view(valid, size)
    count = mask.sum(axis=1).astype(np.float64)
    price = sliding_window_view(prices, size)
    volume = sliding_window_view(sizes, size)
    n = len(mask)
    out = np.empty((n, len(FEATURE_NAMES)))
    current_price, current_size = price[:, -1], volume[:, -1]
    first = size - count.astype(np.int64)  # index of the oldest trade inside each window
    rows = np.arange(n)

    price_mean = np.where(mask, price, 0.0).sum(axis=1) / count
    price_std = np.sqrt((np.where(mask, price - price_mean[:, None], 0.0) ** 2).sum(axis=1) / count)
    price_min = np.where(mask, price, np.inf).min(axis=1)
    price_max = np.where(mask, price, -np.inf).max(axis=1)
    volume_total = np.where(mask, volume, 0.0).sum(axis=1)
    volume_mean = volume_total / count
    volume_std = np.sqrt((np.where(mask, volume - volume_mean[:, None], 0.0) ** 2).sum(axis=1) / count)

    stamps = sliding_window_view(timestamps_ns, size)
    duration = np.maximum(stamps[:, -1] - stamps[rows, first], 0) / 1e9
    gaps = count - 1.0
    side = sliding_window_view(sides, size)
    first_price, first_size = price[rows, first], volume[rows, first]

    out[:, COLUMN["current_price"]] = current_price
    out[:, COLUMN["current_size"]] = current_size
    out[:, COLUMN["price_mean"]] = price_mean
    out[:, COLUMN["price_std"]] = price_std
    out[:, COLUMN["price_min"]] = price_min
    out[:, COLUMN["price_max"]] = price_max
    out[:, COLUMN["price_range"]] = price_max - price_min
    out[:, COLUMN["volume_mean"]] = volume_mean
    out[:, COLUMN["volume_std"]] = volume_std
    out[:, COLUMN["volume_total"]] = volume_total
    out[:, COLUMN["trade_count"]] = count
    out[:, COLUMN["trades_per_second"]] = gaps / np.maximum(duration, MIN_DURATION_SECONDS)
    out[:, COLUMN["avg_time_between_trades"]] = np.where(gaps > 0, duration / np.maximum(gaps, 1.0), 0.0)
    out[:, COLUMN["price_volatility"]] = price_std / price_mean
    out[:, COLUMN["price_momentum"]] = (current_price - first_price) / first_price
    out[:, COLUMN["volume_momentum"]] = (current_size - first_size) / np.maximum(first_size, 1.0)
    out[:, COLUMN["ask_ratio"]] = ((side == SIDE_CODES["A"]) & mask).sum(axis=1) / count
    out[:, COLUMN["bid_ratio"]] = ((side == SIDE_CODES["B"]) & mask).sum(axis=1) / count
    return out


# Model inputs: stationary transforms of the features. Raw price levels drift all day
# and trade_count is constant once the window is full (a singular covariance), so
# the models see relative quantities instead.
def _log_size(f: np.ndarray) -> np.ndarray:
    return np.log1p(f[:, COLUMN["current_size"]])


def _size_vs_window(f: np.ndarray) -> np.ndarray:
    return np.log1p(f[:, COLUMN["current_size"]]) - np.log1p(f[:, COLUMN["volume_mean"]])


def _size_share(f: np.ndarray) -> np.ndarray:
    """The trade's share of the window's volume, in [0, 1].

    Linear in the size, unlike ``log_size``: a 20,000-share block is seven times a
    natural 2,900-share print (the day's 99.9th percentile) here, not 1.2 times.
    """
    return f[:, COLUMN["current_size"]] / np.maximum(f[:, COLUMN["volume_total"]], 1.0)


def _price_deviation_bps(f: np.ndarray) -> np.ndarray:
    return 1e4 * (f[:, COLUMN["current_price"]] / f[:, COLUMN["price_mean"]] - 1.0)


def _log_volatility_bps(f: np.ndarray) -> np.ndarray:
    return np.log1p(1e4 * f[:, COLUMN["price_volatility"]])


def _log_trades_per_second(f: np.ndarray) -> np.ndarray:
    return np.log1p(f[:, COLUMN["trades_per_second"]])


def _momentum_bps(f: np.ndarray) -> np.ndarray:
    return 1e4 * f[:, COLUMN["price_momentum"]]


def _side_imbalance(f: np.ndarray) -> np.ndarray:
    return f[:, COLUMN["bid_ratio"]] - f[:, COLUMN["ask_ratio"]]


def _two_sided_intensity(f: np.ndarray) -> np.ndarray:
    """Trade rate, discounted by how one-sided the window is.

    Hundreds of prints in one instant are ordinary when one aggressive order sweeps
    the book (all prints share its side); the same rate with buyers and sellers
    evenly mixed is not. On a real day the windows faster than 20,000 trades/s
    have a median |bid_ratio - ask_ratio| of 1.0.
    """
    one_sided = np.abs(f[:, COLUMN["bid_ratio"]] - f[:, COLUMN["ask_ratio"]])
    return np.log1p(f[:, COLUMN["trades_per_second"]]) * (1.0 - one_sided)


DERIVED_INPUTS = {
    "log_size": _log_size,
    "size_vs_window": _size_vs_window,
    "size_share": _size_share,
    "price_deviation_bps": _price_deviation_bps,
    "log_volatility_bps": _log_volatility_bps,
    "log_trades_per_second": _log_trades_per_second,
    "momentum_bps": _momentum_bps,
    "side_imbalance": _side_imbalance,
    "two_sided_intensity": _two_sided_intensity,
}
DERIVED_NAMES = tuple(DERIVED_INPUTS)

HISTORY_INPUTS = (
    "deviation_bps", "instant_move_bps", "distinct_stamps_50ms", "size_vs_median", "size_vs_max", "size_vs_tail",
    "instant_move_vs_tail", "breakout_bps", "breakout_vs_swing", "trades_since_large",
)
"""Inputs that need the instrument's trade history, not only the window's 18 features,
computed trade by trade (``models.kernel``; reference ``models.reference``):

* ``deviation_bps``: ``1e4 * (price / median of the previous up-to-20 prices - 1)``,
  0 for an instrument's first trade. The median of earlier trades, without the trade
  itself: one print cannot hide by inflating the spread it is measured against (unlike
  ``price_deviation_bps`` above, the price against the mean of a window that holds it).
* ``instant_move_bps``: ``1e4 * (price / price of the most recent trade with an earlier
  event time - 1)``, 0 when there is none or when the event time goes backwards: the
  move within one timestamp (a sweep).
* ``distinct_stamps_50ms``: distinct event times among the window's trades within 50 ms
  up to and including this one: one aggressive order prints at one timestamp, a
  two-sided burst at many. 50 ms is the slowest burst worth an alert (100 prints in
  50 ms); natural windows outside the opening minute reach at most 67-78 on the
  shared days (55-75 within 20 ms).
* ``size_vs_median``: ``size / max(1, median size of the previous up-to-100 trades)``,
  1 for an instrument's first trade.
* ``size_vs_max``: ``size / largest size of the previous up-to-100 trades``, 1 for an
  instrument's first trade: a block among an illiquid symbol's few trades (the
  cold-start detector, ``models.detectors.cold_start``).
* ``size_vs_tail``: ``size / max(1, the instrument's recent 99.9th-percentile size)``, 1 for
  its first trade. The percentile is read from a histogram of all its earlier sizes in
  log-spaced bins, each size weighed less as trades follow it (half after about 6,900;
  ``models.kernel.TAIL_TRADES``). A block is outsized against the instrument's own day,
  not against the last 100 trades, whose median can be a few shares.
* ``instant_move_vs_tail``: ``|instant_move_bps| / max(1, the instrument's recent 95th
  percentile of |instant_move_bps|)`` (``models.kernel.MOVE_TAIL_SHARE``), from a histogram of
  the same kind, 1 for the first trade. One tick is 1 bp of a $100 stock and 20 bp of a $5 one: a move in bp alone is not
  unusual the same way on every instrument.
* ``breakout_bps``: ``1e4 * (price / median of the instrument's price samples - 1)`` when
  the price is below the lowest sample or above the highest, else 0. After every 100th
  trade the median of the 20 prices before it is sampled; the last 20 samples are kept
  (about 2,000 trades, ``models.kernel.BREAKOUT_EVERY`` and ``BREAKOUT_SAMPLES``), 0 before
  the first. A crash that walks down over hundreds of trades moves each window of 100 by
  a fraction of its depth; against where the price was before it, the whole depth shows.
  Beyond every sample means the move is still under way: once the price comes back, a
  mean dragged down by the crash would make the recovery look like a jump up.
* ``breakout_vs_swing``: ``|breakout_bps| / max(1, the instrument's recent median
  |momentum_bps|)`` (``models.kernel.SWING_SHARE``), from a histogram of the same kind as
  ``instant_move_vs_tail``'s, 0 before any: NVDA's window moves 2.5-4 bp at the median, a
  volatile $5 stock's many times that, and a slow crash's own windows are too few to move
  the median.
* ``trades_since_large``: trades since the instrument's last large print, one of at least
  ``LARGE_VS_TAIL`` times its recent 99.9th-percentile size (``size_vs_tail``): 1 when the
  previous trade was one, ``SINCE_LARGE_CAP`` before any and beyond. Large prints come in
  clusters (an institution works its order in pieces): on the shared NVDA days a third of the
  natural prints of 4 times the tail or more follow another print of 3 times within 2,000
  trades, against about a quarter of all trades; a block inserted at random, like an erroneous
  one, follows one no more often than any trade does.
"""

LARGE_VS_TAIL = 3.0
"""A print of at least this many times the recent 99.9th percentile is large (``trades_since_large``)."""
SINCE_LARGE_CAP = 10_000
"""``trades_since_large`` counts up to this, the memory of the size tail (``models.kernel.TAIL_TRADES``)."""
AFTER_LARGE_TRADES = 2_000
"""For this many trades after a large print the size limit is ``zscore_size_tail_limit_after_large``."""

INPUT_SCALE_FLOORS = {
    "log_size": 0.25,
    "size_vs_window": 0.25,
    "size_share": 0.01,
    "price_deviation_bps": 2.0,
    "log_volatility_bps": 0.1,
    "log_trades_per_second": 0.25,
    "momentum_bps": 5.0,
    "side_imbalance": 0.05,
    "two_sided_intensity": 0.25,
    "deviation_bps": 2.0,
    "instant_move_bps": 2.0,
    "distinct_stamps_50ms": 1.0,
    "size_vs_median": 0.25,
    "size_vs_max": 0.25,
    "size_vs_tail": 0.25,
    "instant_move_vs_tail": 0.25,
    "breakout_bps": 2.0,
    "breakout_vs_swing": 0.25,
    "trades_since_large": 1.0,
}
"""The smallest spread each input is scaled by. Over 500 quiet trades an input can sit
on one value (no price change at all: momentum 0 for every sample), and scaling by a
near-zero spread would make the next 2 bp move a 1,000-sigma event."""

MODEL_FEATURES = ("size_share", "price_deviation_bps", "momentum_bps", "two_sided_intensity")


def scale_floors(names: tuple[str, ...]) -> np.ndarray:
    return np.array([INPUT_SCALE_FLOORS.get(name, 1e-12) for name in names])
