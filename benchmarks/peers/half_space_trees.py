"""River's HalfSpaceTrees the way Bytewax's Redpanda anomaly example uses it.

The example keeps one ``HalfSpaceTrees(n_trees=5, height=3, window_size=5, seed=42)``
per key, feeds each value normalised into [0, 1], learns it, scores it and flags a
score above 0.7. A trade is two values here, both put into [0, 1] the simple way
the example implies: the price's place between its window's low and high, and the
size on a log scale up to 10 million shares.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from river import anomaly

from benchmarks.peers.columns import trade_features
from models.features import COLUMN

SCORE_THRESHOLD = 0.7
LOG_SIZE_CEILING = np.log1p(1e7)


def flag_half_space_trees(trades: list[dict[str, Any]], seed: int = 42) -> np.ndarray:
    features = trade_features(trades)
    price_range = features[:, COLUMN["price_range"]]
    price_place = np.where(
        price_range > 0,
        (features[:, COLUMN["current_price"]] - features[:, COLUMN["price_min"]]) / np.where(price_range > 0, price_range, 1),
        0.5,
    )
    log_size = np.minimum(np.log1p(features[:, COLUMN["current_size"]]) / LOG_SIZE_CEILING, 1.0)
    model = anomaly.HalfSpaceTrees(n_trees=5, height=3, window_size=5, seed=seed)
    flags = np.zeros(len(trades), bool)
    for index, (place, size) in enumerate(zip(price_place.tolist(), log_size.tolist())):
        values = {"price": place, "size": size}
        model.learn_one(values)
        flags[index] = model.score_one(values) > SCORE_THRESHOLD
    return flags
