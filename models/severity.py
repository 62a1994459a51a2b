"""Severity of an anomaly, and of an incident: one number in [0, 1] and its level.

    severity = 0.40 * anomaly_score + 0.20 * confidence
             + 0.25 * min(|volume z| / Z_CAP, 1) + 0.15 * min(|price z| / Z_CAP, 1)

``anomaly_score`` is the calibrated ensemble score (``models.kernel.calibrated``: how
rare the trade's ensemble score is among the instrument's last 1,000, in [0, 1]);
``confidence`` is the share of the three detectors that voted. A z-score of
``Z_CAP`` or more counts fully: within a window of 100 trades one trade's z-score
cannot exceed sqrt(99) = 9.95 with the population standard deviation, so 10 is "as extreme as it gets".

An incident's severity (``incident_severity``) weighs what happened (``magnitude``: the price
move, the size against the median, the burst density, each on a log scale) far above how sure
the detectors were and how long it lasted; its level uses the anomaly's thresholds.
"""

from __future__ import annotations

import math

import numpy as np

from models.kinds import KindEvidence

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


# --- an incident's severity ---------------------------------------------------------

SEVERITY_WEIGHTS = {"magnitude": 0.8, "confidence": 0.15, "extent": 0.05}
MAGNITUDE_SCALES = {
    # input: (value scoring 0, value scoring 1), on a log scale in between
    "price_move_bps": (5.0, 100.0),
    "size_vs_median": (20.0, 1_000.0),
    "burst_stamps": (40.0, 400.0),
}
EXTENT_SCALE = (1.0, 1_000.0)
"""Trades from the first to the last anomaly: 1 scores 0, 1,000 or more score 1."""
BLOCK_NOVELTY_SCALE = (0.5, 2.0)
"""A block's size against the largest block of the instrument's earlier incidents within
``BLOCK_MEMORY_S``: half of it or less scores 0, twice or more 1. The size part of a
block's magnitude is at most this score, so the fifth 30,000-share print of a day is not as
much news as the first (tuned on 2024-09-23 and 2025-05-09, reported on all four days)."""
BLOCK_MEMORY_S = 86_400
"""How long an instrument's block is remembered, in event time: one trading day."""


def log_scale(value: float, low: float, high: float) -> float:
    """0 at ``low`` or below, 1 at ``high`` or above, logarithmic in between."""
    if not value > low:
        return 0.0
    return min(math.log(value / low) / math.log(high / low), 1.0)


def magnitude(evidence: KindEvidence, earlier_block_size: float | None = None) -> float:
    """The largest of the price move, the size against the median and the burst density,
    each on its log scale (``MAGNITUDE_SCALES``).

    ``earlier_block_size``, for a block: the largest block the instrument printed before it
    (``BLOCK_MEMORY_S``). A print is then only as big news as it is new: the size part is
    capped by its size against that block (``BLOCK_NOVELTY_SCALE``).
    """
    size = log_scale(evidence.size_vs_median, *MAGNITUDE_SCALES["size_vs_median"])
    if earlier_block_size:
        size = min(size, log_scale(evidence.max_size / earlier_block_size, *BLOCK_NOVELTY_SCALE))
    return max(
        log_scale(abs(evidence.move_bps), *MAGNITUDE_SCALES["price_move_bps"]),
        size,
        log_scale(evidence.burst_stamps, *MAGNITUDE_SCALES["burst_stamps"]),
    )


def incident_severity(magnitude_score: float, confidence: float, trades: int) -> float:
    """Weighted sum of magnitude, confidence and extent, in [0, 1]; non-decreasing in each."""
    return (
        SEVERITY_WEIGHTS["magnitude"] * min(max(magnitude_score, 0.0), 1.0)
        + SEVERITY_WEIGHTS["confidence"] * min(max(confidence, 0.0), 1.0)
        + SEVERITY_WEIGHTS["extent"] * log_scale(trades, *EXTENT_SCALE)
    )


def member_confidence(peak_anomaly_score: float, peak_vote_share: float, members: int) -> float:
    """How sure the detectors are: the best calibrated anomaly score, the largest share of
    detectors that agreed, and how many anomalies the incident has (10 or more count fully)."""
    return (0.4 * min(max(peak_anomaly_score, 0.0), 1.0) + 0.3 * min(max(peak_vote_share, 0.0), 1.0)
            + 0.3 * min(members / 10.0, 1.0))
