"""One symbol's trades as the numpy columns and the 18 window features the peers use."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from models.features import SIDE_CODES, RollingWindow

WINDOW_SIZE = 100


def trade_features(trades: list[dict[str, Any]]) -> np.ndarray:
    """The product's 18 rolling-window features (``models.features``), one row per trade."""
    prices = np.array([float(t["price"]) for t in trades])
    sizes = np.array([float(t["size"]) for t in trades])
    stamps = pd.to_datetime(pd.Series([t["ts_event"] for t in trades]), utc=True, format="ISO8601")
    sides = np.array([SIDE_CODES[t["side"]] for t in trades], dtype=np.int8)
    return RollingWindow(WINDOW_SIZE).extend(prices, sizes, stamps.astype("int64").to_numpy(), sides)
