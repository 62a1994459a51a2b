"""The detection engine: per-instrument state in, anomaly records out.

For every trade, in order: validate it, add it to the rolling window, compute its
18 features and model inputs, score it with the three detectors, count the votes,
and keep its training columns as a sample. Every ``retrain_every`` samples the
detectors are refitted on the most recent ``train_size`` samples; the trades after
that point are scored by the new models, also when the retrain point falls inside a
batch. The per-trade work is one compiled call per run of trades between two
retrain points (``models.kernel``), so the batch boundaries change the speed, never
the result.

Models fitted at retrain point ``k`` serve from ``k + REFIT_LAG * retrain_every``
(they are fitted in the background meanwhile; see ``models.training``). Warm-up:
the first models are fitted on the first ``retrain_every`` valid trades of an
instrument and serve from trade ``(1 + REFIT_LAG) * retrain_every + 1`` (1,501 by
default); before that only the shared cold-start detector (``models.detectors.cold_start``,
from the instrument's ``cold_start_from``-th trade) can report an anomaly, while the
trades fill the window and the training data.

Before scoring, the instrument's guard (``models.guard``) refuses repeated trades and
trades off the instrument's clock, and a trade a day (``idle_s``) after the last one
starts the instrument afresh. After scoring, its incident tracker
(``models.incidents``) groups the anomalies into incidents.

``process`` computes first and commits last: it works on copies of the state's
small arrays, tracker and guard memory and swaps them in only when the whole batch
went through, so an exception leaves the state exactly as it was.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from models import kernel
from models.config import ENV_PREFIX as CONFIG_PREFIX
from models.config import DetectorConfig
from models.detectors.cold_start import INPUTS as COLD_START_INPUTS
from models.detectors.cold_start import NAMES as COLD_START_NAMES
from models.detectors.cold_start import ColdStartVote
from models.detectors.flat_trees import FlatForest
from models.detectors.zscore import price_zscores
from models.kernel import CALIBRATED, ENSEMBLE, N_OUT, QUANTITY, SCORES, VOTES, ZSCORES
from models.explain import explain_record
from models.guard import GuardMemory, GuardSettings, GuardVerdict, TradeGuard
from models.incidents import ENV_PREFIX as INCIDENT_PREFIX
from models.incidents import IncidentSettings, IncidentTracker, IncidentUpdate, TradeColumns
from models.records import AnomalyRecord, anomaly_id
from models.session import is_auction_print, opening_rush_windows, parse_days
from models.severity import LEVEL_NAMES, level, severity
from models.state import InstrumentSnapshot, InstrumentState, ServingModels, Tally, frozen, new_window, window_lengths
from models.training import Refit, RefitJob, start_refit, training_columns
from models.trades import TRADE_FIELDS, Rejection, Validation, ValidTrades

REFIT_LAG = 2
"""Retrains between starting a refit and serving its models. Two keep the helper
process busy back to back (one refit queued behind the running one) instead of
idling for the hand-over latency after every run."""
INPUT_NAMES = kernel.QUANTITY_NAMES[18:]
"""The inputs a record carries beside the 18 features (derived and per-trade ones)."""
NO_FOREST = FlatForest.empty()
SIDE_ORDER = {"A": 0, "B": 1, "N": 2}


@dataclass(frozen=True)
class StateEnded:
    """The instrument started afresh in this batch: the totals its previous state ended with."""

    summary: dict[str, Any]


Outcome = AnomalyRecord | Rejection | IncidentUpdate | StateEnded


@dataclass
class _Work:
    """Working copies of one instrument's state during one ``process`` call."""

    fstate: np.ndarray
    istate: np.ndarray
    calib: np.ndarray
    models: ServingModels | None
    pending: list
    training: np.ndarray | None
    new_rows: list[np.ndarray]
    samples_seen: int
    anomalies: int
    tracker: IncidentTracker
    since_ns: int
    tally: Tally
    rejected_before: int = 0
    """Rejections counted to this state before the batch: the committed state's (for a dormant or
    new state, those refused since it went dormant or was made), or none when the batch started
    the instrument afresh after trades of its old state."""


EXECUTION_SETTINGS = frozenset({"background_training", "fit_helpers", "compiled"})
"""Settings that change how results are computed, not what they are."""


def result_settings(config: DetectorConfig, incidents: IncidentSettings) -> tuple[str, tuple[tuple[str, str], ...]]:
    """What a snapshot keeps of the settings that change an instrument's results: a digest of all of
    them (a default changed by an upgrade counts too), and those off their defaults as (variable,
    value) pairs, to name what changed. Small enough to go with every snapshot."""
    every, changed = [], []
    for settings, prefix in ((config, CONFIG_PREFIX), (incidents, INCIDENT_PREFIX)):
        default = type(settings)()
        for setting in fields(settings):
            if setting.name in EXECUTION_SETTINGS:
                continue
            pair = (prefix + setting.name.upper(), repr(getattr(settings, setting.name)))
            every.append(pair)
            if getattr(settings, setting.name) != getattr(default, setting.name):
                changed.append(pair)
    return hashlib.sha256(repr(every).encode()).hexdigest()[:16], tuple(changed)


class DetectionEngine:
    def __init__(self, config: DetectorConfig | None = None, incidents: IncidentSettings | None = None) -> None:
        self.config = config or DetectorConfig()
        self.incidents = incidents or IncidentSettings()
        self.settings = result_settings(self.config, self.incidents)
        c = self.config
        self.guard_settings = GuardSettings(c.remembered_trades, c.max_lateness_s, c.max_clock_jump_s, c.idle_s)
        self.training_columns = training_columns(self.config)
        self._input_codes = np.array([QUANTITY[name] for name in self.config.model_features], np.int64)
        self._training_codes = np.array([QUANTITY[name] for name in self.training_columns], np.int64)
        self._no_params = np.zeros(self._params_size())
        self._early_closes = parse_days(c.early_close_days)
        self._cold_start = None if not c.cold_start_from else ColdStartVote(
            c.cold_start_from, c.cold_start_price_bps, c.cold_start_size_vs_max)
        if self.config.compiled:
            self._score_run = kernel.score_run
        else:
            from models.reference import score_run

            self._score_run = score_run

    def new_state(self, symbol: str) -> InstrumentState:
        """An instrument's state before its first trade: no arrays until it trades."""
        return InstrumentState(symbol, guard=TradeGuard(self.guard_settings))

    def dormant(self, state: InstrumentState) -> InstrumentState:
        """What an idle instrument keeps once its window, models and incidents are let go: the
        guard's memory (a few KB) and the time of its last trade. Its next trade is judged as
        the full state would judge it, so a replay of trades it processed is still refused;
        one a day after its last starts it afresh, as it would have anyway."""
        return self._keeping_memory(state.symbol, state.last_timestamp_ns, state.guard.settled())

    def _keeping_memory(self, symbol: str, last_timestamp_ns: int, memory: GuardMemory) -> InstrumentState:
        return InstrumentState(symbol, last_timestamp_ns=last_timestamp_ns, guard=TradeGuard(self.guard_settings, memory))

    def process(
        self, state: InstrumentState, trades: Sequence[Mapping[str, Any]], validation: Validation | None = None,
    ) -> list[Outcome]:
        """Score a batch of one instrument's trades, in order; learn from them.

        Returns the anomaly records and rejections in input order, each incident update
        right after the trade that caused it. Mutates ``state`` only if it returns.
        ``validation``: the verdicts on ``trades`` when the caller validated them already
        (a whole input batch at once, ``Validation.split``); the same as validating here.
        """
        validation = validation or Validation.of(trades)
        valid, rejections = validation.valid, list(validation.rejections)
        verdict = state.guard.check(valid.timestamps_ns, valid.publisher_ids, valid.instrument_ids, valid.sequences)
        rejections += [Rejection(int(valid.indices[row]), reason, stage)
                       for row, (stage, reason) in verdict.refused.items()]
        accepted, fresh_starts = _accepted(valid, verdict)
        outcomes: list[tuple[int, int, Outcome]] = [(r.index, 0, r) for r in rejections]
        refused = sorted(r.index for r in rejections)  # counted to the state the trades before them belong to
        work = self._begin(state) if len(accepted) else None
        since = 0  # input index where the trades of ``work`` begin
        for start, stop in _segments(len(accepted), fresh_starts):
            if start in fresh_starts and (start or state.samples_seen):  # a dormant state said its last word
                index = int(accepted.indices[start])
                outcomes += self._start_afresh(state, work, accepted, start, _between(refused, since, index))
                work, since = self._fresh_work(state), index
            outcomes += self._segment(state, work, trades, accepted, start, stop)
        self._commit(state, work, accepted, _between(refused, since, len(trades)), verdict)
        outcomes.sort(key=lambda item: (item[0], item[1]))
        return [outcome for _, _, outcome in outcomes]

    def _segment(
        self, state: InstrumentState, work: _Work, trades: Sequence[Mapping[str, Any]], valid: ValidTrades,
        start: int, stop: int,
    ) -> list[tuple[int, int, Outcome]]:
        """Accepted trades of one state, in runs that end at retrain points."""
        outcomes: list[tuple[int, int, Outcome]] = []
        every = self.config.retrain_every
        if not work.since_ns:
            work.since_ns = int(valid.timestamps_ns[start])
        while start < stop:
            end = min(stop, start + every - work.samples_seen % every)
            records = self._run(state.symbol, work, trades, valid, start, end)
            outcomes += [(index, 0, record) for index, _, record in records]
            flagged = [(row - start, record) for _, row, record in records]
            run = valid if (start, end) == (0, len(valid)) else valid.subset(slice(start, end))
            for row, update in work.tracker.observe(TradeColumns.of(run), flagged):
                outcomes.append((int(valid.indices[start + row]), 1, update))
            work.samples_seen += end - start
            if work.samples_seen % every == 0:
                self._retrain(work)
            start = end
        return outcomes

    def _start_afresh(self, state: InstrumentState, work: _Work, valid: ValidTrades, row: int, rejected: int,
                      ) -> list[tuple[int, int, Outcome]]:
        """Close what the old state had open before a trade that comes after an idle day, and say
        what it ended with (its last summary may be seconds old); ``rejected``: this batch's
        rejections before that trade."""
        index = int(valid.indices[row])
        closing = work.tracker.close_open("idle") if work.tracker is not None else None
        ended = StateEnded(self._summary_of_work(state, work, valid, row, rejected))
        return [(index, -2, ended)] + ([] if closing is None else [(index, -1, closing)])

    def _summary_of_work(self, state: InstrumentState, work: _Work, valid: ValidTrades, row: int,
                         rejected: int) -> dict[str, Any]:
        if row == 0 or not work.samples_seen:
            return {**self.summary(state), "rejected": state.rejected + rejected}
        ended = InstrumentState(
            state.symbol, models=work.models, samples_seen=work.samples_seen, anomalies=work.anomalies,
            rejected=work.rejected_before + rejected, last_price=float(valid.prices[row - 1]),
            last_timestamp_ns=int(valid.timestamps_ns[row - 1]), since_ns=work.since_ns, tracker=work.tracker,
            tally=work.tally,
        )
        return self.summary(ended)

    def snapshot(self, state: InstrumentState) -> InstrumentSnapshot:
        """The state as it is now, without copying arrays or waiting for refits in flight."""
        return InstrumentSnapshot(
            state.symbol, state.fstate, state.istate, state.calib, state.training, state.models,
            tuple(refit.job for refit in state.pending), state.samples_seen, state.anomalies, state.rejected,
            state.last_price, state.last_timestamp_ns, state.since_ns, state.guard.memory, state.tracker,
            state.tally, self.training_columns, self.settings,
        )

    def restore(self, snapshot: InstrumentSnapshot) -> InstrumentState:
        """A state that continues exactly as the snapshotted one would; its refits start again.

        One that cannot be continued (``cannot_continue``) starts afresh, as after an idle day,
        keeping only its memory of trades (``dormant``): repeats are still refused.
        """
        if self.cannot_continue(snapshot):
            return self._keeping_memory(snapshot.symbol, snapshot.last_timestamp_ns, snapshot.guard)
        return InstrumentState(
            snapshot.symbol, snapshot.fstate, snapshot.istate, snapshot.calib, snapshot.training,
            snapshot.models, [start_refit(job, self.config) for job in snapshot.pending],
            snapshot.samples_seen, snapshot.anomalies, snapshot.rejected, snapshot.last_price,
            snapshot.last_timestamp_ns, snapshot.since_ns, TradeGuard(self.guard_settings, snapshot.guard),
            snapshot.tracker, snapshot.tally,
        )

    def cannot_continue(self, snapshot: InstrumentSnapshot) -> str | None:
        """Why ``snapshot`` cannot be continued here, or None. Saved under other settings, its
        models and incidents would mix two configurations that neither a run with the old nor one
        with the new would give; saved with another state layout (an older version, another window
        size or model inputs), the kernel would read its arrays at the wrong places."""
        if snapshot.settings is not None and snapshot.settings[0] != self.settings[0]:
            old, new = dict(snapshot.settings[1]), dict(self.settings[1])
            changed = sorted(name for name in old.keys() | new.keys() if old.get(name) != new.get(name))
            return f"saved under other settings ({', '.join(changed) or 'defaults of this version'} changed)"
        if not self._fits_layout(snapshot):
            return "saved by an engine with another state layout"
        return None

    def _fits_layout(self, snapshot: InstrumentSnapshot) -> bool:
        if snapshot.fstate is None:
            return True
        if (len(snapshot.fstate), len(snapshot.istate)) != window_lengths(self.config.window_size):
            return False
        if snapshot.training_columns and snapshot.training_columns != self.training_columns:
            return False
        return snapshot.models is None or len(snapshot.models.params) == self._params_size()

    def summary(self, state: InstrumentState) -> dict[str, Any]:
        """The instrument's totals since its state started (``since``), for the summaries topic."""
        tally, tracker = state.tally, state.tracker
        return {
            "symbol": state.symbol,
            "ts_event": state.last_timestamp_ns,
            "since": state.since_ns,
            "last_price": state.last_price,
            "trades_processed": state.samples_seen,
            "anomalies": state.anomalies,
            "rejected": state.rejected,
            "model_generation": state.generation,
            "incidents": 0 if tracker is None else tracker.incidents_opened,
            "open_incident_level": None if tracker is None else tracker.open_incident_level,
            "anomalies_by_level": dict(zip(LEVEL_NAMES, tally.by_level)),
            "anomalies_by_side": dict(zip(SIDE_ORDER, tally.by_side)),
            "severity_sum": tally.severity_sum,
            "severity_max": tally.severity_max,
        }

    # -- one batch ---------------------------------------------------------------

    def _begin(self, state: InstrumentState) -> _Work:
        if state.fstate is None:
            return self._fresh_work(state, rejected_before=state.rejected)
        return _Work(
            state.fstate.copy(), state.istate.copy(), state.calib.copy(), state.models, list(state.pending),
            state.training, [], state.samples_seen, state.anomalies, state.tracker.copy(), state.since_ns,
            state.tally, state.rejected,
        )

    def _fresh_work(self, state: InstrumentState, rejected_before: int = 0) -> _Work:
        fstate, istate = new_window(self.config.window_size)
        return _Work(fstate, istate, np.zeros(0), None, [], None, [], 0, 0,
                     IncidentTracker(state.symbol, self.incidents), 0, Tally(), rejected_before)

    def _commit(self, state: InstrumentState, work: _Work | None, valid: ValidTrades, rejected: int,
                verdict: GuardVerdict) -> None:
        state.guard.commit(verdict)
        state.rejected = (state.rejected if work is None else work.rejected_before) + rejected
        if work is None:
            return
        state.fstate, state.istate, state.calib = frozen(work.fstate), frozen(work.istate), frozen(work.calib)
        state.training = frozen(self._training_rows(work))
        state.models, state.pending = work.models, work.pending
        state.samples_seen, state.anomalies = work.samples_seen, work.anomalies
        state.tracker, state.since_ns, state.tally = work.tracker, work.since_ns, work.tally
        state.last_price = float(valid.prices[-1])
        state.last_timestamp_ns = int(valid.timestamps_ns[-1])

    def _training_rows(self, work: _Work) -> np.ndarray:
        parts = ([] if work.training is None else [work.training]) + work.new_rows
        rows = parts[0] if len(parts) == 1 else np.concatenate(parts)
        if len(rows) > self.config.train_size:  # a copy, so a big batch's rows are not kept alive
            rows = rows[-self.config.train_size:].copy()
        return rows

    def _run(
        self, symbol: str, work: _Work, trades: Sequence[Mapping[str, Any]], valid: ValidTrades,
        start: int, stop: int,
    ) -> list[tuple[int, int, AnomalyRecord]]:
        """One run of valid trades that does not cross a retrain point: one kernel call.

        Returns (index in the batch, row among the valid trades, record) of its anomalies.
        """
        n = stop - start
        out = np.empty((n, N_OUT))
        flagged = np.empty(n, np.int64)
        models = work.models
        forest = NO_FOREST if models is None else models.forest
        stamps = valid.timestamps_ns[start:stop]
        rush = opening_rush_windows(int(stamps[0]), int(stamps[-1]), self.config.opening_rush_s)
        count = self._score_run(
            valid.prices[start:stop], valid.sizes[start:stop].astype(np.float64),
            stamps, valid.sides[start:stop], rush, self.config.window_size,
            work.fstate, work.istate, work.calib, models is not None, self._input_codes,
            forest.offsets, forest.nodes, forest.depth,
            self._no_params if models is None else models.params, self.config.votes_required, out, flagged,
        )
        work.new_rows.append(np.ascontiguousarray(out[:, self._training_codes]))
        if models is None and self._cold_start is not None:
            return self._cold_start_run(symbol, work, trades, valid, start, out)
        if not count:
            return []
        work.anomalies += count
        records = [
            (int(valid.indices[start + row]), start + int(row),
             self._record(symbol, models, trades, valid, start + int(row), out[row]))
            for row in flagged[:count]
        ]
        work.tally = _tallied(work.tally, [record for _, _, record in records])
        return records

    def _record(
        self, symbol: str, models: ServingModels, trades: Sequence[Mapping[str, Any]], valid: ValidTrades,
        at: int, row: np.ndarray,
    ) -> AnomalyRecord:
        votes = [bool(v) for v in row[VOTES:VOTES + 3]]
        return self._trade_record(
            symbol, trades, valid, at, row,
            detector_scores=row[SCORES:SCORES + 3].tolist(),
            detector_thresholds=[self.config.forest_threshold, self.config.envelope_threshold, 1.0],
            detector_votes=votes,
            anomaly_score=float(row[CALIBRATED]),
            confidence=sum(votes) / 3,
            zscores=tuple(float(z) for z in row[ZSCORES:ZSCORES + 5]),
            model_generation=models.generation,
            ensemble_score=float(row[ENSEMBLE]),
        )

    def _trade_record(
        self, symbol: str, trades: Sequence[Mapping[str, Any]], valid: ValidTrades, at: int, row: np.ndarray,
        **scored: Any,
    ) -> AnomalyRecord:
        """What every anomaly record says about its trade, beside the detectors' ``scored`` fields;
        severity and level from the anomaly score, the confidence and the volume and price z-scores."""
        trade = trades[int(valid.indices[at])]
        timestamp = int(valid.timestamps_ns[at])
        zscores = scored["zscores"]
        value = float(severity(scored["anomaly_score"], scored["confidence"], zscores[1], zscores[0]))
        features = row[:18].tolist()
        inputs = dict(zip(INPUT_NAMES, row[18:kernel.N_QUANTITIES].tolist()))
        return AnomalyRecord(
            anomaly_id=anomaly_id(
                symbol, timestamp, int(valid.publisher_ids[at]), int(valid.instrument_ids[at]), int(valid.sequences[at]),
            ),
            symbol=symbol,
            kind="auction" if is_auction_print(timestamp, trade["side"], self._early_closes) else "trade",
            trade={name: trade[name] for name in TRADE_FIELDS},  # never unknown extra fields
            features=features,
            severity=value,
            level=level(value),
            explanation=explain_record(features, inputs),
            inputs=inputs,
            **scored,
        )

    # -- cold start --------------------------------------------------------------

    def _cold_start_run(
        self, symbol: str, work: _Work, trades: Sequence[Mapping[str, Any]], valid: ValidTrades,
        start: int, out: np.ndarray,
    ) -> list[tuple[int, int, AnomalyRecord]]:
        """A run of an instrument without models of its own: the shared detector's anomalies."""
        detector = self._cold_start
        inputs = [out[:, QUANTITY[name]] for name in COLD_START_INPUTS]
        rows = detector.flagged(*inputs, first_position=work.samples_seen + 1)
        if not len(rows):
            return []
        scores = detector.score(*(column[rows] for column in inputs))
        votes = detector.vote(scores, work.samples_seen + 1 + rows)
        work.anomalies += len(rows)
        records = [
            (int(valid.indices[start + row]), start + int(row),
             self._shared_record(symbol, trades, valid, start + int(row), out[row], scores[at], votes[at]))
            for at, row in enumerate(rows)
        ]
        work.tally = _tallied(work.tally, [record for _, _, record in records])
        return records

    def _shared_record(
        self, symbol: str, trades: Sequence[Mapping[str, Any]], valid: ValidTrades, at: int,
        row: np.ndarray, scores: np.ndarray, votes: np.ndarray,
    ) -> AnomalyRecord:
        """A cold-start anomaly. Its anomaly score grows with the largest score over its threshold
        (0.5 at the threshold, 1 at ten times it); the price and volume z-scores are the trade's
        against its own window, as no training statistics exist yet."""
        thresholds = self._cold_start.thresholds
        excess = float(np.max(scores / np.array(thresholds)))
        features = row[None, :18]
        size, mean, std = (float(row[QUANTITY[name]]) for name in ("current_size", "volume_mean", "volume_std"))
        return self._trade_record(
            symbol, trades, valid, at, row,
            detector_scores=scores.tolist(),
            detector_thresholds=list(thresholds),
            detector_votes=[bool(v) for v in votes],
            anomaly_score=min(1.0, 0.5 + 0.5 * math.log10(excess)),
            confidence=float(votes.sum()) / len(votes),
            zscores=(float(price_zscores(features)[0]), (size - mean) / max(std, 1.0), 0.0, 0.0, 0.0),
            model_generation=0,
            ensemble_score=excess,
            model="shared",
            detector_names=COLD_START_NAMES,
        )

    # -- retraining --------------------------------------------------------------

    def _retrain(self, work: _Work) -> None:
        """Install the generation started ``REFIT_LAG`` retrains ago; start the next."""
        if len(work.pending) == REFIT_LAG:
            work.models = self._install(work.models, work.pending.pop(0).result())
            if not len(work.calib):
                work.calib = np.zeros(kernel.CALIBRATION_SCORES)
        job = RefitJob(
            self._training_rows(work), work.samples_seen // self.config.retrain_every,
            None if work.models is None else work.models.envelope,
        )
        work.pending.append(start_refit(job, self.config))

    def _install(self, serving: ServingModels | None, fitted: Refit) -> ServingModels:
        c = self.config
        forest = (NO_FOREST if serving is None else serving.forest).add(
            fitted.trees, c.forest_trees, c.forest_max_samples
        )
        envelope = fitted.envelope
        params = np.concatenate([
            [forest.normaliser, c.forest_threshold, c.envelope_threshold],
            [c.zscore_price_threshold, c.zscore_volume_threshold, c.zscore_volatility_threshold,
             c.zscore_intensity_threshold, c.zscore_momentum_threshold],
            [c.zscore_size_tail_limit, c.zscore_stamps_limit, c.zscore_instant_move_limit,
             c.zscore_instant_move_tail_limit, c.zscore_breakout_limit, c.zscore_breakout_swing_limit,
             c.zscore_size_tail_limit_after_large],
            [c.burst_alone_stamps, c.off_market_alone_bps, c.off_market_alone_vs_tail],
            fitted.zscore_center, fitted.zscore_scale,
            envelope.scaler_mean, envelope.scaler_scale, envelope.location, envelope.precision.ravel(),
        ])
        return ServingModels(
            generation=1 if serving is None else serving.generation + 1,
            forest=forest, envelope=envelope, params=frozen(params),
        )

    def _params_size(self) -> int:
        k = len(self.config.model_features)
        return kernel.P_ENVELOPE + 3 * k + k * k


def _accepted(valid: ValidTrades, verdict: GuardVerdict) -> tuple[ValidTrades, frozenset[int]]:
    """The trades the guard let through, and where among them the instrument starts afresh."""
    if not verdict.refused:
        return valid, frozenset(verdict.fresh_starts)
    keep = np.ones(len(valid), bool)
    keep[list(verdict.refused)] = False
    position = np.cumsum(keep) - 1
    return valid.subset(keep), frozenset(int(position[row]) for row in verdict.fresh_starts)


def _between(indices: list[int], start: int, stop: int) -> int:
    """How many of the sorted ``indices`` lie in [start, stop)."""
    return bisect_left(indices, stop) - bisect_left(indices, start)


def _segments(count: int, fresh_starts: frozenset[int]) -> list[tuple[int, int]]:
    """[start, stop) of the runs of trades that belong to one state."""
    bounds = sorted({0, count, *fresh_starts})
    return [(start, stop) for start, stop in zip(bounds, bounds[1:]) if start < stop]


def _tallied(tally: Tally, records: list[AnomalyRecord]) -> Tally:
    if not records:
        return tally
    by_level, by_side = list(tally.by_level), list(tally.by_side)
    for record in records:
        by_level[LEVEL_NAMES.index(record.level)] += 1
        by_side[SIDE_ORDER.get(record.trade.get("side"), 2)] += 1
    severities = [record.severity for record in records]
    return Tally(tuple(by_level), tuple(by_side), tally.severity_sum + sum(severities),
                 max(tally.severity_max, *severities))
