"""Severity of an anomaly: one number in [0, 1] and its level.

    severity = 0.40 * anomaly_score + 0.20 * confidence
             + 0.25 * min(|volume z| / Z_CAP, 1) + 0.15 * min(|price z| / Z_CAP, 1)

``anomaly_score`` is the calibrated ensemble score (``models.kernel.calibrated``: how
rare the trade's ensemble score is among the instrument's last 1,000, in [0, 1]);
``confidence`` is the share of the three detectors that voted. A z-score of
``Z_CAP`` or more counts fully: within a window of 100 trades one trade's z-score
cannot exceed sqrt(99) = 9.95 with the population standard deviation, so 10 is "as extreme as it gets".
"""

from __future__ import annotations

import numpy as np

WEIGHTS = {"anomaly_score": 0.40, "confidence": 0.20, "volume_z": 0.25, "price_z": 0.15}
Z_CAP = 10.0
LEVELS = (("critical", 0.8), ("high", 0.6), ("medium", 0.4))
LEVEL_NAMES = ("low", "medium", "high", "critical")


def severity(anomaly_score, confidence, volume_z, price_z) -> np.ndarray:
    return (
        WEIGHTS["anomaly_score"] * np.clip(anomaly_score, 0.0, 1.0)
        + WEIGHTS["confidence"] * np.clip(confidence, 0.0, 1.0)
        + WEIGHTS["volume_z"] * np.minimum(np.abs(volume_z) / Z_CAP, 1.0)
        + WEIGHTS["price_z"] * np.minimum(np.abs(price_z) / Z_CAP, 1.0)
    )


def level(value: float) -> str:
    """critical > 0.8, high > 0.6, medium > 0.4, low otherwise."""
    for name, floor in LEVELS:
        if value > floor:
            return name
    return "low"
