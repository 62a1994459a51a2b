"""The literal seed design: all 18 raw features, IsolationForest and EllipticEnvelope
refitted from scratch every 500 trades with scikit-learn's default settings, a
z-score vote, and an anomaly when 2 of the 3 vote.

This is what the project started from, kept as the baseline the product has to beat.
Details the seed left open are filled in the plainest way. Every 500 trades the
models are fitted (after a ``StandardScaler``) on the features of 500 trades and
judge a block of 500 in one vectorised call:

* ``flag_seed_design`` fits on the block it then judges. This is what reproduces
  the seed's measured behaviour (about 8% of a real day's trades flagged; 9% here),
  because EllipticEnvelope's default contamination flags 10% of what it was fitted
  on. It looks up to 499 trades ahead, which only flatters it.
* ``flag_seed_design_causal`` fits on the previous 500 trades and judges the next
  500 (nothing before the first fit). Raw price levels drift out of the range the
  models saw, so on a real day it flags about two thirds of all trades.

The z-score detector votes when the trade's price or size is more than 3 standard
deviations from its window's mean, or the window's volatility more than 3 standard
deviations from the training trades' mean volatility.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.covariance import EllipticEnvelope
from sklearn.ensemble import IsolationForest
from sklearn.preprocessing import StandardScaler

from benchmarks.peers.columns import trade_features
from models.features import COLUMN

REFIT_EVERY = 500
ZSCORE_THRESHOLD = 3.0


def flag_seed_design(trades: list[dict[str, Any]], seed: int = 0) -> np.ndarray:
    return _flag(trades, seed, causal=False)


def flag_seed_design_causal(trades: list[dict[str, Any]], seed: int = 0) -> np.ndarray:
    return _flag(trades, seed, causal=True)


def _flag(trades: list[dict[str, Any]], seed: int, causal: bool) -> np.ndarray:
    features = trade_features(trades)
    flags = np.zeros(len(trades), bool)
    for start in range(REFIT_EVERY if causal else 0, len(trades), REFIT_EVERY):
        block = features[start: start + REFIT_EVERY]
        training = features[start - REFIT_EVERY: start] if causal else block
        scaler = StandardScaler().fit(training)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the covariance of 18 raw features is singular
            forest = IsolationForest(random_state=seed).fit(scaler.transform(training))
            envelope = EllipticEnvelope(random_state=seed).fit(scaler.transform(training))
            scaled = scaler.transform(block)
            votes = (
                (forest.predict(scaled) == -1).astype(int)
                + (envelope.predict(scaled) == -1).astype(int)
                + _zscore_votes(training, block).astype(int)
            )
        flags[start: start + REFIT_EVERY] = votes >= 2
    return flags


def _zscore_votes(training: np.ndarray, block: np.ndarray) -> np.ndarray:
    def z(value: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
        return np.abs(value - mean) / np.where(std > 0, std, np.inf)

    price = z(block[:, COLUMN["current_price"]], block[:, COLUMN["price_mean"]], block[:, COLUMN["price_std"]])
    volume = z(block[:, COLUMN["current_size"]], block[:, COLUMN["volume_mean"]], block[:, COLUMN["volume_std"]])
    volatility_history = training[:, COLUMN["price_volatility"]]
    volatility = z(block[:, COLUMN["price_volatility"]], volatility_history.mean(), volatility_history.std())
    return np.maximum.reduce([price, volume, volatility]) > ZSCORE_THRESHOLD
