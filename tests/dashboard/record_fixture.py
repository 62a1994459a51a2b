"""Record the dashboard's test fixtures from the real engine.

The dashboard tests replay what the job would publish, so the anomaly fixtures
are made by the detection engine itself (not written by hand):

- ``anomalies_recorded.jsonl``: a three-symbol synthetic tape with injected
  events, run one second of event time at a time like the job's batches; and
  ``summaries_recorded.jsonl``, the engine's own ``summary()`` after each second;
- ``anomalies_nvda_open.jsonl``: the real NVDA opening slice
  (``nvda-20250509-open.csv.zst``, pre-market and the opening cross), so the
  page is tested on real prices and on ``auction`` anomalies.

Each line is one anomaly record exactly as ``connectors.codec.encode_record``
puts it on the ``anomalies`` topic, in event-time order. Incidents and the
richer summaries are not written by the engine yet: ``contract_fixtures.py``
builds them from these recordings. Once the engine writes incidents, record
them here too and let ``contract_fixtures.py`` only fill what is missing.

Run ``.venv/bin/python tests/dashboard/record_fixture.py`` to regenerate.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from connectors.codec import encode_record
from connectors.files import iter_trades
from connectors.synthetic import generate_tape
from models.config import DetectorConfig
from models.engine import DetectionEngine
from models.records import AnomalyRecord

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ANOMALIES_FILE = FIXTURES / "anomalies_recorded.jsonl"
SUMMARIES_FILE = FIXTURES / "summaries_recorded.jsonl"
NVDA_OPEN_TRADES = FIXTURES / "nvda-20250509-open.csv.zst"
NVDA_OPEN_ANOMALIES = FIXTURES / "anomalies_nvda_open.jsonl"
SYMBOLS, TRADES, SEED = 3, 12_000, 1


def synthetic_tape() -> tuple[list[dict], list]:
    """The tape the synthetic recording was made from, with its injected events."""
    return generate_tape(symbols=SYMBOLS, trades=TRADES, seed=SEED)


def record_by_second(trades: list[dict]) -> tuple[list[dict], list[dict]]:
    """The engine over each symbol's trades one second of event time at a time, like the
    job's batches; after each second the instrument's summary, as the job publishes it."""
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


def write_lines(path: Path, rows: list[dict]) -> None:
    path.write_bytes(b"".join(encode_record(row) + b"\n" for row in rows))
    print(f"{len(rows)} lines -> {path}")


def main() -> None:
    trades, _events = synthetic_tape()
    anomalies, summaries = record_by_second(trades)
    write_lines(ANOMALIES_FILE, anomalies)
    write_lines(SUMMARIES_FILE, summaries)
    nvda_anomalies, _ = record_by_second(list(iter_trades(NVDA_OPEN_TRADES)))
    write_lines(NVDA_OPEN_ANOMALIES, nvda_anomalies)


if __name__ == "__main__":
    main()
