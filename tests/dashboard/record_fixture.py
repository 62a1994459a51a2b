"""Record the dashboard's test fixtures from the real engine on the synthetic tape.

The dashboard tests replay what the job would publish, so the fixtures are made
by the detection engine itself (not written by hand): a three-symbol synthetic
tape with injected events goes through ``models.engine.DetectionEngine`` and
every anomaly record is written as one JSON line, in event-time order, exactly
as ``connectors.codec.encode_record`` puts it on the ``anomalies`` topic. The
per-instrument summaries (topic ``instrument-summaries``) are the engine's own
``summary()`` after each second of event time, as the job publishes them.

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
    """The engine over each symbol's trades one second of event time at a time, like the
    job's batches; after each second the instrument's summary, as the job publishes it."""
    trades, _events = generate_tape(symbols=SYMBOLS, trades=TRADES, seed=SEED)
    seconds: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for trade in trades:
        seconds[trade["symbol"], trade["ts_event"][:19]].append(trade)
    engine = DetectionEngine(DetectorConfig(background_training=False))
    states = {}
    anomalies: list[dict] = []
    summaries: list[dict] = []
    for (symbol, _second), batch in seconds.items():
        state = states.get(symbol) or states.setdefault(symbol, engine.new_state(symbol))
        anomalies.extend(
            outcome.to_dict() for outcome in engine.process(state, batch) if isinstance(outcome, AnomalyRecord)
        )
        summaries.append(engine.summary(state))
    anomalies.sort(key=lambda row: (row["ts_event"], row["symbol"], row["sequence"]))
    return anomalies, summaries


def main() -> None:
    anomalies, summaries = record()
    ANOMALIES_FILE.write_bytes(b"".join(encode_record(row) + b"\n" for row in anomalies))
    SUMMARIES_FILE.write_bytes(b"".join(encode_record(row) + b"\n" for row in summaries))
    print(f"{len(anomalies)} anomalies -> {ANOMALIES_FILE}\n{len(summaries)} summaries -> {SUMMARIES_FILE}")


if __name__ == "__main__":
    main()
