"""The detection engine: per-instrument state in, anomaly records out.

For every trade, in order: validate it, add it to the rolling window, compute its
18 features, score it with the three detectors, count the votes, and keep the
features as a training sample. Every ``retrain_every`` samples the detectors are
refitted on the most recent ``train_size`` samples; the trades after that point
are scored by the new models, also when the retrain point falls inside a batch.
Scoring is vectorised over the run of trades between two retrain points, so the
batch boundaries change the speed, never the result.

Models fitted at retrain point ``k`` serve from ``k + REFIT_LAG * retrain_every``
(they are fitted in the background meanwhile; see ``models.training``). Warm-up:
the first models are fitted on the first ``retrain_every`` valid trades of an
instrument and serve from trade ``(1 + REFIT_LAG) * retrain_every + 1`` (1,501 by
default); before that no trade can collect the
votes needed and no anomaly is reported, while the trades still fill the window
and the training data.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from models.config import DetectorConfig
from models.detectors import EllipticEnvelopeVote, IsolationForestVote, ZScoreVote
from models.features import FEATURE_NAMES, RollingWindow, model_inputs, scale_floors
from models.training import PendingRefit, forest_from_config, start_refit, zscore_from_config
from models.records import AnomalyRecord, anomaly_id
from models.session import is_auction_print
from models.severity import level, severity
from models.trades import TRADE_FIELDS, Rejection, ValidTrades, validate_trades

EXPLAINED_FEATURES = 3
REFIT_LAG = 2
"""Retrains between starting a refit and serving its models. Two keep the helper
process busy back to back (one refit queued behind the running one) instead of
idling for the hand-over latency after every run."""


@dataclass
class TrainingBuffer:
    """The last ``capacity`` feature rows, oldest first when read."""

    capacity: int
    rows: np.ndarray = field(init=False)
    filled: int = 0
    position: int = 0

    def __post_init__(self) -> None:
        self.rows = np.zeros((self.capacity, len(FEATURE_NAMES)))

    def add(self, rows: np.ndarray) -> None:
        for row in rows[-self.capacity:]:
            self.rows[self.position] = row
            self.position = (self.position + 1) % self.capacity
        self.filled = min(self.capacity, self.filled + len(rows))

    def chronological(self) -> np.ndarray:
        if self.filled < self.capacity:
            return self.rows[: self.filled].copy()
        return np.concatenate([self.rows[self.position:], self.rows[: self.position]])


@dataclass
class InstrumentState:
    """Everything the engine remembers about one instrument; picklable and bounded."""

    symbol: str
    window: RollingWindow
    history: TrainingBuffer
    forest: IsolationForestVote
    envelope: EllipticEnvelopeVote
    zscore: ZScoreVote
    feature_center: np.ndarray
    feature_scale: np.ndarray
    samples_seen: int = 0
    generation: int = 0
    anomalies: int = 0
    rejected: int = 0
    last_price: float = math.nan
    last_timestamp_ns: int = 0
    pending: list[PendingRefit] = field(default_factory=list)
    """The next generations, oldest first, being fitted in the background."""


class DetectionEngine:
    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()

    def new_state(self, symbol: str) -> InstrumentState:
        c = self.config
        return InstrumentState(
            symbol=symbol,
            window=RollingWindow(c.window_size),
            history=TrainingBuffer(c.train_size),
            forest=forest_from_config(c),
            envelope=EllipticEnvelopeVote(
                c.envelope_threshold, c.envelope_cold_every, scale_floor=scale_floors(c.model_features), seed=c.seed
            ),
            zscore=zscore_from_config(c),
            feature_center=np.zeros(len(FEATURE_NAMES)),
            feature_scale=np.ones(len(FEATURE_NAMES)),
        )

    def process(
        self, state: InstrumentState, trades: Sequence[Mapping[str, Any]]
    ) -> list[AnomalyRecord | Rejection]:
        """Score a batch of one instrument's trades, in order; learn from them.

        The batch is walked in runs that end at retrain points, so each run is scored
        by one set of models, and the background refit overlaps with the next run.
        """
        outcomes: list[tuple[int, AnomalyRecord | Rejection]] = []
        position = 0
        while position < len(trades):
            until_retrain = self.config.retrain_every - state.samples_seen % self.config.retrain_every
            run = trades[position: position + until_retrain]
            for index, outcome in self._process_run(state, run):
                if isinstance(outcome, Rejection):  # index it within the whole batch
                    outcome = Rejection(position + index, outcome.reason)
                outcomes.append((position + index, outcome))
            position += len(run)
        return [outcome for _, outcome in sorted(outcomes, key=lambda pair: pair[0])]

    def _process_run(
        self, state: InstrumentState, trades: Sequence[Mapping[str, Any]]
    ) -> list[tuple[int, AnomalyRecord | Rejection]]:
        """A run of trades that does not cross a retrain point."""
        valid, rejections = validate_trades(trades)
        state.rejected += len(rejections)
        outcomes: list[tuple[int, AnomalyRecord | Rejection]] = [(r.index, r) for r in rejections]
        if not len(valid):
            return outcomes
        features = state.window.extend(valid.prices, valid.sizes, valid.timestamps_ns, valid.sides)
        if state.generation > 0:
            anomalies = self._score(state, trades, valid, features)
            state.anomalies += len(anomalies)
            outcomes.extend(anomalies)
        state.history.add(features)
        state.samples_seen += len(valid)
        state.last_price = float(valid.prices[-1])
        state.last_timestamp_ns = int(valid.timestamps_ns[-1])
        if state.samples_seen % self.config.retrain_every == 0:
            self._retrain(state)
        return outcomes

    def summary(self, state: InstrumentState) -> dict[str, Any]:
        return {
            "symbol": state.symbol,
            "ts_event": state.last_timestamp_ns,
            "last_price": state.last_price,
            "trades_processed": state.samples_seen,
            "anomalies": state.anomalies,
            "rejected": state.rejected,
            "model_generation": state.generation,
        }

    def _retrain(self, state: InstrumentState) -> None:
        """Install the generation started ``REFIT_LAG`` retrains ago; start the next."""
        if len(state.pending) == REFIT_LAG:
            fitted = state.pending.pop(0).result()
            state.forest.add(fitted.trees)
            state.envelope, state.zscore = fitted.envelope, fitted.zscore
            state.feature_center, state.feature_scale = fitted.feature_center, fitted.feature_scale
            state.generation += 1
        fit_number = state.samples_seen // self.config.retrain_every
        state.pending.append(
            start_refit(state.history.chronological(), self.config, fit_number, state.envelope)
        )

    def _score(
        self, state: InstrumentState, trades: Sequence[Mapping[str, Any]], valid: ValidTrades,
        block: np.ndarray,
    ) -> list[tuple[int, AnomalyRecord]]:
        """The anomalies among the valid trades of a run, with their index in the run."""
        inputs = model_inputs(block, self.config.model_features)
        forest_scores = state.forest.score(inputs)
        envelope_scores = state.envelope.score(inputs)
        zscores = state.zscore.zscores(block)
        zscore_scores = state.zscore.score(zscores)
        votes = np.column_stack([
            state.forest.vote(forest_scores), state.envelope.vote(envelope_scores),
            state.zscore.vote(zscore_scores),
        ])
        flagged = np.flatnonzero(votes.sum(axis=1) >= self.config.votes_required)
        if not len(flagged):
            return []
        confidence = votes.mean(axis=1)
        severities = severity(forest_scores, confidence, zscores[:, 1], zscores[:, 0])
        thresholds = [state.forest.threshold, state.envelope.threshold, 1.0]
        records = []
        for row in flagged:
            at = row
            batch_index = int(valid.indices[at])
            trade = trades[batch_index]
            records.append((batch_index, AnomalyRecord(
                anomaly_id=anomaly_id(
                    state.symbol, int(valid.timestamps_ns[at]), int(valid.publisher_ids[at]),
                    int(valid.instrument_ids[at]), int(valid.sequences[at]),
                ),
                symbol=state.symbol,
                kind="auction" if is_auction_print(int(valid.timestamps_ns[at]), trade["side"]) else "trade",
                trade={name: trade[name] for name in TRADE_FIELDS},  # never unknown extra fields
                features=block[row].tolist(),
                detector_scores=[float(forest_scores[row]), float(envelope_scores[row]), float(zscore_scores[row])],
                detector_thresholds=thresholds,
                detector_votes=votes[row].tolist(),
                anomaly_score=float(forest_scores[row]),
                confidence=float(confidence[row]),
                zscores=tuple(float(z) for z in zscores[row]),
                severity=float(severities[row]),
                level=level(float(severities[row])),
                model_generation=state.generation,
                explanation=self._explain(state, block[row]),
            )))
        return records

    def _explain(self, state: InstrumentState, row: np.ndarray) -> list[dict[str, Any]]:
        """The features furthest from their recent mean, in standard deviations."""
        z = (row - state.feature_center) / state.feature_scale
        top = np.argsort(-np.abs(z), kind="stable")[:EXPLAINED_FEATURES]
        return [{"feature": FEATURE_NAMES[i], "value": float(row[i]), "zscore": float(z[i])} for i in top]
