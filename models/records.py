"""The anomaly record: everything a reader needs to trust, explain and dedupe an alert."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from models.features import FEATURE_NAMES

DETECTOR_NAMES = ("isolation_forest", "elliptic_envelope", "zscore")


def anomaly_id(symbol: str, timestamp_ns: int, publisher_id: int, instrument_id: int, sequence: int) -> str:
    """``SYMBOL-YYYYMMDD-PUBLISHER-INSTRUMENT-SEQUENCE``: unique per distinct trade.

    Venue sequences restart every day, so the date is part of it; two venues (publishers)
    can print the same sequence number, and so can two instruments of one symbol.
    """
    day = datetime.fromtimestamp(timestamp_ns // 1_000_000_000, tz=timezone.utc).strftime("%Y%m%d")
    return f"{symbol}-{day}-{publisher_id}-{instrument_id}-{sequence}"


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat()


@dataclass
class AnomalyRecord:
    anomaly_id: str
    symbol: str
    kind: str
    trade: dict[str, Any]
    features: list[float]
    detector_scores: list[float]
    detector_thresholds: list[float]
    detector_votes: list[bool]
    anomaly_score: float
    confidence: float
    zscores: tuple[float, ...]  # price, volume, volatility, intensity, momentum
    severity: float
    level: str
    model_generation: int
    explanation: list[dict[str, Any]]
    inputs: dict[str, float] = field(default_factory=dict)
    """Model inputs beyond the 18 features (derived and per-trade ones, ``models.features``)."""
    ensemble_score: float = 0.0
    """Mean over the detectors of ``min(score / threshold, 10)``; ``anomaly_score`` is its
    calibrated rank among the instrument's recent ensemble scores."""
    model: str = "instrument"
    """Which models scored the trade: ``instrument`` (its own) or ``shared`` (the cold-start model)."""
    detected_at: str = field(default_factory=_utc_now)
    """Processing time: the one field that differs between two runs over the same tape."""
    incident_id: str | None = None
    """The incident this anomaly belongs to (``models.incidents``), once it is tracked."""
    detector_names: tuple[str, ...] = DETECTOR_NAMES
    """Names of the detectors the scores, thresholds and votes belong to: the instrument's
    three, or the cold-start detector's two votes (``models.detectors.cold_start``)."""

    @property
    def votes(self) -> int:
        return sum(self.detector_votes)

    def to_dict(self) -> dict[str, Any]:
        trade = self.trade
        return {
            "anomaly_id": self.anomaly_id,
            "incident_id": self.incident_id,
            "symbol": self.symbol,
            "instrument_id": trade.get("instrument_id"),
            "publisher_id": trade.get("publisher_id"),
            "sequence": trade.get("sequence"),
            "ts_event": trade.get("ts_event"),
            "side": trade.get("side"),
            "price": trade.get("price"),
            "size": trade.get("size"),
            "kind": self.kind,
            "model": self.model,
            "trade": dict(trade),
            "features": dict(zip(FEATURE_NAMES, self.features)),
            "inputs": dict(self.inputs),
            "detectors": {
                name: {"score": score, "threshold": threshold, "vote": vote}
                for name, score, threshold, vote in zip(
                    self.detector_names, self.detector_scores, self.detector_thresholds, self.detector_votes
                )
            },
            "votes": self.votes,
            "ensemble_score": self.ensemble_score,
            "anomaly_score": self.anomaly_score,
            "confidence": self.confidence,
            "zscores": dict(zip(("price", "volume", "volatility", "intensity", "momentum"), self.zscores)),
            "severity": self.severity,
            "level": self.level,
            "model_generation": self.model_generation,
            "explanation": self.explanation,
            "detected_at": self.detected_at,
        }
