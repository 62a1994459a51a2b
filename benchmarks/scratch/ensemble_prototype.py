"""Prototype: which model inputs and z-score rules would let the product's ensemble
(IsolationForest + EllipticEnvelope + z-score, 2 of 3) reach the issue's targets.

    python -m benchmarks.scratch.ensemble_prototype FILE... [--seeds 0 1 2] [--cache scores.pkl]

For every injected tape it computes six stationary per-trade inputs, fits
scikit-learn's IsolationForest and EllipticEnvelope every 500 trades on the last
500 (serving the next 500, causal, as the product does), and keeps every trade's
scores. Thresholds are then swept offline and scored with ``benchmarks.scoring``,
alarms restricted to the regular session (09:30-16:00 New York). The numbers back
the recommendations to the engine's owner; nothing here is used by the product.
"""

from __future__ import annotations

import argparse
import pickle
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.covariance import EllipticEnvelope
from sklearn.ensemble import IsolationForest

from benchmarks.scoring import score_anomalies, symbol_sequences
from connectors.files import iter_trades
from connectors.injection import inject_events

INPUTS = ("log_size", "deviation_bps", "instant_move_bps", "momentum_bps", "prints_within_20ms", "side_imbalance")
RETRAIN_EVERY = 500
WINDOW = 100


def trade_inputs(trades: list[dict[str, Any]]) -> pd.DataFrame:
    """Per trade: the six inputs, plus the session flag."""
    price = np.array([t["price"] for t in trades], float)
    size = np.array([t["size"] for t in trades], float)
    stamps = pd.to_datetime(pd.Series([t["ts_event"] for t in trades]), format="ISO8601").astype("int64").to_numpy()
    side = np.array([t["side"] for t in trades])
    reference = pd.Series(price).shift(1).rolling(20, min_periods=1).median().bfill().to_numpy()
    new_stamp = np.concatenate([[True], np.diff(stamps) > 0])
    group = np.cumsum(new_stamp) - 1
    first_of_group = np.flatnonzero(new_stamp)
    before = np.concatenate([[price[0]], price[first_of_group[1:] - 1]])
    earlier = np.concatenate([np.full(WINDOW - 1, price[0]), price[: -WINDOW + 1]])
    # distinct timestamps among the last 100 trades that lie within 20 ms of this one
    distinct = np.cumsum(new_stamp)
    start = np.maximum(np.searchsorted(stamps, stamps - 20_000_000), np.arange(len(stamps)) - WINDOW + 1)
    within = distinct - distinct[start] + 1
    signed = np.where(side == "B", 1.0, np.where(side == "A", -1.0, 0.0))
    imbalance = pd.Series(signed).rolling(WINDOW, min_periods=1).mean().to_numpy()
    local = pd.to_datetime(stamps, utc=True).tz_convert("America/New_York")
    minute = np.asarray(local.hour * 60 + local.minute)
    return pd.DataFrame({
        "log_size": np.log1p(size),
        "deviation_bps": 1e4 * (price / reference - 1),
        "instant_move_bps": 1e4 * (price / before[group] - 1),
        "momentum_bps": 1e4 * (price / earlier - 1),
        "prints_within_20ms": within.astype(float),
        "side_imbalance": imbalance,
        "regular_session": (minute >= 570) & (minute < 960),
        "size": size,
    })


def model_scores(inputs: pd.DataFrame, seed: int = 7) -> pd.DataFrame:
    """IsolationForest score (0..1) and EllipticEnvelope distance for every trade, causal."""
    x = inputs[list(INPUTS)].to_numpy()
    forest = np.zeros(len(x))
    envelope = np.zeros(len(x))
    for start in range(RETRAIN_EVERY, len(x), RETRAIN_EVERY):
        training, block = x[start - RETRAIN_EVERY: start], x[start: start + RETRAIN_EVERY]
        center, scale = np.median(training, axis=0), training.std(axis=0) + 1e-9
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fitted_forest = IsolationForest(random_state=seed).fit((training - center) / scale)
            fitted_envelope = EllipticEnvelope(random_state=seed, support_fraction=0.9).fit((training - center) / scale)
        forest[start: start + RETRAIN_EVERY] = -fitted_forest.score_samples((block - center) / scale)
        envelope[start: start + RETRAIN_EVERY] = fitted_envelope.mahalanobis((block - center) / scale)
    return pd.DataFrame({"forest": forest, "envelope": envelope})


def zscore_rule(inputs: pd.DataFrame, *, deviation=30.0, instant=20.0, momentum=60.0, size=15_000, prints=60) -> np.ndarray:
    """The z-score detector's vote as fixed limits (each a 4-5 sigma move on NVDA, see README)."""
    return (
        (inputs["deviation_bps"].abs() >= deviation) | (inputs["instant_move_bps"].abs() >= instant)
        | (inputs["momentum_bps"].abs() >= momentum) | (inputs["size"] >= size)
        | (inputs["prints_within_20ms"] >= prints)
    ).to_numpy()


def sweep(tapes: list[tuple]) -> None:
    """Recall, false alarms per 100k and F1 for vote rules over thresholds, over all tapes."""
    print(f"{'rule':62s} recall  FA/100k   F1")
    rules = [("z-score vote alone", None, None, "z")]
    for forest_at in (0.60, 0.65, 0.70, 0.75):
        for envelope_at in (20.0, 60.0, 150.0):
            rules.append((f"2 of 3, IF>={forest_at} EE>={envelope_at}", forest_at, envelope_at, "2of3"))
            rules.append((f"z and one of IF>={forest_at}, EE>={envelope_at}", forest_at, envelope_at, "z+1"))
    for name, forest_at, envelope_at, kind in rules:
        found = events_total = false_alarms = trades_total = 0
        for _, _, injected, events, inputs, scores in tapes:
            z = zscore_rule(inputs)
            if kind == "z":
                flagged = z
            else:
                models = (scores["forest"].to_numpy() >= forest_at).astype(int) + (scores["envelope"].to_numpy() >= envelope_at)
                flagged = (models + z >= 2) if kind == "2of3" else (z & (models >= 1))
            flagged = flagged & inputs["regular_session"].to_numpy()
            anomalies = [{"symbol": injected[i]["symbol"], "sequence": injected[i]["sequence"]} for i in np.flatnonzero(flagged)]
            score = score_anomalies(symbol_sequences(injected), events, anomalies)
            found += score.found
            events_total += score.events
            false_alarms += score.false_alarms
            trades_total += score.trades
        recall = found / events_total
        precision = found / max(1, found + false_alarms)
        f1 = 2 * recall * precision / max(1e-9, recall + precision)
        print(f"{name:62s} {recall:.3f} {1e5 * false_alarms / trades_total:8.1f} {f1:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--cache", type=Path, help="pickle of the scored tapes, reused when present")
    args = parser.parse_args()
    if args.cache and args.cache.exists():
        tapes = pickle.loads(args.cache.read_bytes())
    else:
        tapes = []
        for path in args.files:
            trades = list(iter_trades(path))
            for seed in args.seeds:
                injected, events = inject_events(trades, seed)
                inputs = trade_inputs(injected)
                tapes.append((path.name, seed, injected, events, inputs, model_scores(inputs)))
                print(f"scored {path.name} seed {seed}", flush=True)
        if args.cache:
            args.cache.write_bytes(pickle.dumps(tapes))
    sweep(tapes)


if __name__ == "__main__":
    main()
