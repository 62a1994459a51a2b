"""The detect step alone: one input batch grouped by symbol, then each instrument's engine call.

    python -m benchmarks.detect_step [--trades 400000] [--batch 5000] [--repeat 3] [--out DIR]

``benchmarks.market_scale`` times the whole backtest (file reader, Bytewax, sinks), where
the machine's noise hides a change of a microsecond per instrument batch. This calls what
the dataflow's two per-batch steps call, ``flows.detect_step.group_by_symbol`` and
``InstrumentDetector.on_batch``, on batches of the market tape (``connectors.market``,
seed 0) with 1 and 1,000 Zipf symbols, and reports the calling thread's CPU µs per trade of
each step and the number of instrument batches. It also hashes every anomaly record and
incident update (without their wall-clock fields): a change that should not change the
records shows the same digest, and so does any batch size. Results go to
``out/detect_step.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from pathlib import Path
from typing import Any

import orjson

from benchmarks import OUTPUT
from connectors.messages import Origin, TradeMessage
from flows.detect_step import InstrumentDetector, group_by_symbol
from flows.instruments import EventClock
from flows.runtime import tune_garbage_collector
from models import training
from models.config import DetectorConfig
from models.engine import DetectionEngine
from models.incidents import IncidentUpdate
from models.records import AnomalyRecord

TAPES = {"1 symbol": 1, "1,000 Zipf": 1_000}
WALL_CLOCK_FIELDS = ("detected_at", "updated_at")


def market_messages(symbols: int, trades: int) -> list[TradeMessage]:
    from connectors.market import generate_market

    tape, _ = generate_market(symbols, trades, seed=0)
    return [TradeMessage(trade["symbol"], trade, Origin("market", 0, offset), b"") for offset, trade in enumerate(tape)]


def measure(messages: list[TradeMessage], batch: int, config: DetectorConfig | None = None) -> dict[str, Any]:
    """Both steps over the messages in batches of ``batch``, as one worker of the dataflow runs them."""
    config = config or DetectorConfig()
    engine, clock = DetectionEngine(config), EventClock()
    detectors: dict[str, InstrumentDetector] = {}
    digest, counts = hashlib.sha256(), {"anomalies": 0, "incident_updates": 0, "instrument_batches": 0}
    grouping = detecting = 0.0
    tune_garbage_collector()
    for start in range(0, len(messages), batch):
        started = time.thread_time()
        items = group_by_symbol(messages[start:start + batch])
        grouped = time.thread_time()
        for symbol, item in items:
            detector = detectors.get(symbol) or detectors.setdefault(
                symbol, InstrumentDetector(engine, clock, None, summaries=False))
            out, discard = detector.on_batch([item])
            if discard:
                del detectors[symbol]
            _hash_outcomes(out, digest, counts)
        counts["instrument_batches"] += len(items)
        grouping += grouped - started
        detecting += time.thread_time() - grouped
    per_trade = 1e6 / len(messages)
    return {"trades": len(messages), "batch": batch, **counts,
            "group_cpu_us_per_trade": round(grouping * per_trade, 2),
            "detect_cpu_us_per_trade": round(detecting * per_trade, 2),
            "records_sha256": digest.hexdigest()}


def _hash_outcomes(out: list[Any], digest: Any, counts: dict[str, int]) -> None:
    for outcome in out:
        if isinstance(outcome, AnomalyRecord):
            counts["anomalies"] += 1
        elif isinstance(outcome, IncidentUpdate):
            counts["incident_updates"] += 1
        else:
            continue
        fields = {name: value for name, value in outcome.to_dict().items() if name not in WALL_CLOCK_FIELDS}
        digest.update(orjson.dumps(fields, option=orjson.OPT_SERIALIZE_NUMPY))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detect_step", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=400_000)
    parser.add_argument("--batch", type=int, default=5_000, help="trades per input batch (the file source's)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    training.start_helper()
    results = {}
    for name, symbols in TAPES.items():
        messages = market_messages(symbols, args.trades)
        runs = [measure(messages, args.batch) for _ in range(args.repeat)]
        median = {key: statistics.median(run[key] for run in runs)
                  for key in ("group_cpu_us_per_trade", "detect_cpu_us_per_trade")}
        results[name] = {"runs": runs, **median}
        print(f"{name:>11}: group {median['group_cpu_us_per_trade']:.2f} and detect "
              f"{median['detect_cpu_us_per_trade']:.2f} CPU µs/trade (medians), {runs[0]['instrument_batches']:,} "
              f"instrument batches, {runs[0]['anomalies']} anomalies, records {runs[0]['records_sha256'][:16]}")
    training.shutdown_helper()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "detect_step.json"
    path.write_text(json.dumps({"trades": args.trades, "batch": args.batch, "tapes": results}, indent=1) + "\n")
    print(f"-> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
