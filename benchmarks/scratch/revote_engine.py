"""Prototype: the engine's own IsolationForest and EllipticEnvelope scores, re-voted with
other thresholds and with the prototype's z-score rule as the third detector.

    python -m benchmarks.scratch.revote_engine FILE... [--seeds 0 1 2]

The engine runs once per injected tape with ``votes_required=1``, so every trade that
any detector votes for comes back with all three scores. A trade that is not among
them has no IsolationForest or EllipticEnvelope vote, so under any 2-of-3 rule it
needs two votes it does not have: re-voting these records is exact, not an estimate.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from benchmarks.scoring import Score, score_anomalies, symbol_sequences
from benchmarks.scratch.ensemble_prototype import trade_inputs, zscore_rule
from connectors.files import iter_trades
from connectors.injection import inject_events
from models.config import DetectorConfig
from models.engine import DetectionEngine
from models.records import AnomalyRecord


def engine_votes(injected: list[dict]) -> list[tuple[int, str, float, float, bool]]:
    """(sequence, kind, forest score, envelope score, z vote) of every trade with a vote."""
    engine = DetectionEngine(DetectorConfig(background_training=False, votes_required=1))
    state = engine.new_state(injected[0]["symbol"])
    rows = []
    for outcome in engine.process(state, injected):
        if isinstance(outcome, AnomalyRecord):
            record = outcome.to_dict()
            detectors = record["detectors"]
            rows.append((
                record["sequence"], record["kind"], detectors["isolation_forest"]["score"],
                detectors["elliptic_envelope"]["score"], detectors["zscore"]["vote"],
            ))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    tapes = []
    for path in args.files:
        trades = list(iter_trades(path))
        for seed in args.seeds:
            injected, events = inject_events(trades, seed)
            inputs = trade_inputs(injected)
            sequences = np.array([t["sequence"] for t in injected])
            session = inputs["regular_session"].to_numpy()
            prototype_z = set(sequences[zscore_rule(inputs) & session].tolist())
            tapes.append((symbol_sequences(injected), events, engine_votes(injected), prototype_z, set(sequences[session].tolist())))
            print(f"ran the engine on {path.name} seed {seed}", flush=True)
    rules = {
        "engine as configured (IF 0.60, EE 4000, its z)": lambda f, e, z, pz, s: (f >= 0.60) + (e >= 4000) + z >= 2,
        "IF 0.58, EE 2000, its z": lambda f, e, z, pz, s: (f >= 0.58) + (e >= 2000) + z >= 2,
        "IF 0.60, EE 4000, prototype z": lambda f, e, z, pz, s: (f >= 0.60) + (e >= 4000) + pz >= 2,
        "IF 0.55, EE 4000, prototype z": lambda f, e, z, pz, s: (f >= 0.55) + (e >= 4000) + pz >= 2,
        "IF 0.55, EE 2000, prototype z": lambda f, e, z, pz, s: (f >= 0.55) + (e >= 2000) + pz >= 2,
        "IF 0.55, EE 4000, its z or prototype z, session": lambda f, e, z, pz, s: s and (f >= 0.55) + (e >= 4000) + (z or pz) >= 2,
        "IF 0.60, EE 4000, its z or prototype z, session": lambda f, e, z, pz, s: s and (f >= 0.60) + (e >= 4000) + (z or pz) >= 2,
    }
    for name, decide in rules.items():
        outcomes, false_alarms, trades_total = [], 0, 0
        for sequences, events, rows, prototype_z, session in tapes:
            anomalies = [
                {"symbol": "NVDA", "sequence": sequence}
                for sequence, kind, forest, envelope, z in rows
                if kind != "auction" and decide(forest, envelope, z, sequence in prototype_z, sequence in session)
            ]
            score = score_anomalies(sequences, events, anomalies)
            outcomes += score.outcomes
            false_alarms += score.false_alarms
            trades_total += score.trades
        total = Score(trades_total, outcomes, false_alarms)
        kinds = " ".join(f"{k} {v.found}/{v.events} (delay {v.median_delay})" for k, v in total.by_kind().items())
        print(
            f"{name:50s} recall {total.recall:.3f}  per 100k {total.false_alarms_per_100k:5.1f}  "
            f"F1 {total.f1:.3f}  median delay {total.median_delay}  | {kinds}", flush=True,
        )


if __name__ == "__main__":
    main()
