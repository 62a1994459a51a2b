"""The literal seed design: all 18 raw features, IsolationForest and EllipticEnvelope
refitted from scratch every 500 trades with scikit-learn's default settings, a
z-score vote, and an anomaly when 2 of the 3 vote.

This is what the project started from, kept as the baseline the product has to beat.
Details the seed left open are filled in the plainest way: the models are fitted on
the features of the last 500 trades after a ``StandardScaler``; they then judge
the next 500 trades in one vectorised call (before the first fit nothing is
judged); the z-score detector votes when the trade's price or size is more than
3 standard deviations from its window's mean, or the window's volatility more than
3 standard deviations from the training trades' mean volatility.
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
    features = trade_features(trades)
    flags = np.zeros(len(trades), bool)
    for start in range(REFIT_EVERY, len(trades), REFIT_EVERY):
        training, block = features[start - REFIT_EVERY: start], features[start: start + REFIT_EVERY]
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
