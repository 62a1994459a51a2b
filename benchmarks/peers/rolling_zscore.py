"""A plain rolling z-score: the first thing anyone tries.

A trade is flagged when its price or its size is more than 4 standard deviations
from the mean of its window of 100 trades (itself included).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from benchmarks.peers.columns import trade_features
from models.features import COLUMN

THRESHOLD = 4.0


def flag_rolling_zscore(trades: list[dict[str, Any]], seed: int = 0) -> np.ndarray:
    features = trade_features(trades)
    flagged = np.zeros(len(trades), bool)
    for value, mean, std in (("current_price", "price_mean", "price_std"), ("current_size", "volume_mean", "volume_std")):
        spread = features[:, COLUMN[std]]
        z = np.abs(features[:, COLUMN[value]] - features[:, COLUMN[mean]]) / np.where(spread > 0, spread, np.inf)
        flagged |= z > THRESHOLD
    return flagged
