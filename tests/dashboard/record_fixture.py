"""Record the dashboard's test fixtures from the real engine on the synthetic tape.

The dashboard tests replay what the job would publish, so the fixtures are made
by the detection engine itself (not written by hand): a three-symbol synthetic
tape with injected events goes through ``models.engine.DetectionEngine`` and
every anomaly record is written as one JSON line, in event-time order, exactly
as ``connectors.codec.encode_record`` puts it on the ``anomalies`` topic. The
per-instrument summaries (topic ``instrument-summaries``) are derived from the
same tape, at most one per instrument per second of event time, as the contract
says.

Run ``.venv/bin/python tests/dashboard/record_fixture.py`` to regenerate them
(once ``flows.backtest`` exists, its output can replace this).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from connectors.codec import encode_record
from connectors.synthetic import generate_tape
from models.config import DetectorConfig
from models.engine import DetectionEngine
from models.records import AnomalyRecord

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ANOMALIES_FILE = FIXTURES / "anomalies_recorded.jsonl"
SUMMARIES_FILE = FIXTURES / "summaries_recorded.jsonl"
SYMBOLS, TRADES, SEED = 3, 12_000, 1


def record() -> tuple[list[dict], list[dict]]:
    trades, _events = generate_tape(symbols=SYMBOLS, trades=TRADES, seed=SEED)
    by_symbol: dict[str, list[dict]] = defaultdict(list)
    for trade in trades:
        by_symbol[trade["symbol"]].append(trade)
    engine = DetectionEngine(DetectorConfig(background_training=False))
    anomalies: list[dict] = []
    summaries: list[dict] = []
    for symbol, symbol_trades in sorted(by_symbol.items()):
        state = engine.new_state(symbol)
        outcomes = engine.process(state, symbol_trades)
        flagged = {}
        rejected = 0
        for outcome in outcomes:
            if isinstance(outcome, AnomalyRecord):
                row = outcome.to_dict()
                anomalies.append(row)
                flagged[row["sequence"]] = row["model_generation"]
            else:
                rejected += 1
        summaries.extend(_summaries(symbol, symbol_trades, flagged))
    anomalies.sort(key=lambda row: (row["ts_event"], row["symbol"], row["sequence"]))
    summaries.sort(key=lambda row: (row["ts_event"], row["symbol"]))
    return anomalies, summaries


def _summaries(symbol: str, trades: list[dict], flagged: dict[int, int]) -> list[dict]:
    """One summary at the last trade of each second of event time."""
    out = []
    found = generation = 0
    for index, trade in enumerate(trades):
        if trade["sequence"] in flagged:
            found += 1
            generation = flagged[trade["sequence"]]
        last_of_second = index + 1 == len(trades) or trades[index + 1]["ts_event"][:19] != trade["ts_event"][:19]
        if last_of_second:
            out.append({
                "symbol": symbol, "ts_event": trade["ts_event"], "last_price": trade["price"],
                "trades_processed": index + 1, "anomalies": found, "rejected": 0,
                "model_generation": generation,
            })
    return out


def main() -> None:
    anomalies, summaries = record()
    ANOMALIES_FILE.write_bytes(b"".join(encode_record(row) + b"\n" for row in anomalies))
    SUMMARIES_FILE.write_bytes(b"".join(encode_record(row) + b"\n" for row in summaries))
    print(f"{len(anomalies)} anomalies -> {ANOMALIES_FILE}\n{len(summaries)} summaries -> {SUMMARIES_FILE}")


if __name__ == "__main__":
    main()
