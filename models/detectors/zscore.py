"""Z-scores of price, volume and volatility, each against its own threshold.

* price: the trade's price against its own window, ``(price - mean) / std``, with the
  std floored at ``PRICE_STD_FLOOR`` of the price so a one-tick move after a run of
  identical prices is not a 10-sigma event;
* volume and volatility: ``log(1 + size)`` and ``log(1 + volatility in bps)`` against
  their median and MAD (scaled to a standard deviation) over the recent training
  samples. Sizes are heavy-tailed: on the log scale, and with robust statistics,
  a 20,000-share block stands out while a 700-share print (the 99th percentile) does not.
"""

from __future__ import annotations

import numpy as np

from models.features import COLUMN

PRICE_STD_FLOOR = 1e-4
"""The smallest price std, relative to the mean price (one basis point)."""
MAD_TO_STD = 1.4826
MIN_SCALE = 0.1
"""Smallest spread of log size and log volatility: before the open, a window's volatility
can sit on one value for hundreds of trades (MAD 0), and a tiny change is not a 10-sigma event."""


def price_zscores(features: np.ndarray) -> np.ndarray:
    mean = features[:, COLUMN["price_mean"]]
    std = np.maximum(features[:, COLUMN["price_std"]], PRICE_STD_FLOOR * mean)
    return (features[:, COLUMN["current_price"]] - mean) / std


def log_sizes(features: np.ndarray) -> np.ndarray:
    return np.log1p(features[:, COLUMN["current_size"]])


def log_volatilities(features: np.ndarray) -> np.ndarray:
    return np.log1p(1e4 * features[:, COLUMN["price_volatility"]])


class ZScoreVote:
    """Votes when any of the three |z| reaches its threshold; score is the largest |z| / threshold."""

    def __init__(
        self, price_threshold: float = 4.5, volume_threshold: float = 4.5,
        volatility_threshold: float = 4.5,
    ) -> None:
        self.price_threshold = price_threshold
        self.volume_threshold = volume_threshold
        self.volatility_threshold = volatility_threshold
        self.center_ = np.zeros(2)
        self.scale_ = np.ones(2)

    def fit(self, features: np.ndarray) -> ZScoreVote:
        """Learn median and MAD of log size and log volatility from recent features."""
        columns = np.column_stack([log_sizes(features), log_volatilities(features)])
        self.center_ = np.median(columns, axis=0)
        mad = np.median(np.abs(columns - self.center_), axis=0)
        self.scale_ = np.maximum(MAD_TO_STD * mad, MIN_SCALE)
        return self

    def zscores(self, features: np.ndarray) -> np.ndarray:
        """Columns: price z, volume z, volatility z."""
        volume = (log_sizes(features) - self.center_[0]) / self.scale_[0]
        volatility = (log_volatilities(features) - self.center_[1]) / self.scale_[1]
        return np.column_stack([price_zscores(features), volume, volatility])

    def score(self, zscores: np.ndarray) -> np.ndarray:
        thresholds = np.array([self.price_threshold, self.volume_threshold, self.volatility_threshold])
        return (np.abs(zscores) / thresholds).max(axis=1)

    def vote(self, scores: np.ndarray) -> np.ndarray:
        return scores >= 1.0
