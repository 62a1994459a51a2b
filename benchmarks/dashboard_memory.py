"""What one browser tab of the dashboard holds at worst: every book full of the largest records.

``python -m benchmarks.dashboard_memory`` fills the books of one ``LiveFeed`` at the
default settings (1,000 anomalies, 2,000 incidents, the 50 members of 500 incidents,
10,000 instrument states, 2,000 prices of 500 instruments) with records as large as
validation lets through (every id, name and text at its longest, in ASCII), decoded
as the feed decodes them, and prints the memory Python allocated for each book
(tracemalloc). Reviews are left out: there is one per reviewed incident, however
many analysts decide. No timing: this measures memory only.
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc
from collections.abc import Callable
from dataclasses import replace

import orjson

from dashboard.buffer import AnomalyBuffer, PriceHistory
from dashboard.incidents import IncidentBook, IncidentMembers
from dashboard.records import decode_anomaly, decode_incident, decode_summary
from dashboard.totals import SummaryBook

START_NS = 1_746_797_400_000_000_000  # 2025-05-09T13:30:00Z
LONGEST_ID, LONGEST_SYMBOL, LONGEST_TEXT, LONGEST_KIND = 200, 100, 1000, 40
"""The longest ids, symbols, text and incident kinds the dashboard has ever accepted."""


def padded(prefix: str, length: int) -> str:
    return (prefix + "-" + "x" * length)[:length]


def anomaly(number: int, incident: int) -> bytes:
    return orjson.dumps({
        "anomaly_id": padded(f"A{number}", LONGEST_ID), "incident_id": padded(f"I{incident}", LONGEST_ID),
        "symbol": padded(f"S{incident % 500}", LONGEST_SYMBOL), "ts_event": START_NS + number, "side": "A",
        "price": 117.5, "size": 100, "kind": "trade", "severity": 0.9, "level": "critical", "votes": 3,
        "sequence": number,
        "detectors": {padded(f"D{index}", LONGEST_ID): {"score": 1.5, "threshold": 1.0, "vote": True}
                      for index in range(10)},
        "explanation": [{"input": "size", "value": 1.0, "text": padded(f"E{index}", LONGEST_TEXT)}
                        for index in range(20)],
    })


def incident(number: int) -> bytes:
    return orjson.dumps({
        "incident_id": padded(f"I{number}", LONGEST_ID), "symbol": padded(f"S{number % 500}", LONGEST_SYMBOL),
        "status": "open", "revision": 0, "kind": padded("K", LONGEST_KIND), "first_ts_event": START_NS + number,
        "last_ts_event": START_NS + number + 10**9, "anomalies": 1000, "trades": 1000, "severity": 0.9,
        "level": "critical", "peak_anomaly_id": padded(f"P{number}", LONGEST_ID), "peak_severity": 0.9,
        "reference_price": 117.5, "price_move_bps": -240.0, "recovered": 0.9, "max_size": 100,
        "size_vs_median": 2.0, "summary": padded(f"U{number}", LONGEST_TEXT),
        "explanation": [{"input": "move", "value": 1.0, "text": padded(f"E{index}", LONGEST_TEXT)}
                        for index in range(20)],
        "anomaly_ids": [padded(f"A{number}-{index}", LONGEST_ID) for index in range(1000)],
        "price_path": [[START_NS + number + index, 117.5, 100, "A"] for index in range(1000)],
    })


def summary(symbol: int, second: int) -> bytes:
    return orjson.dumps({
        "symbol": padded(f"S{symbol}", LONGEST_SYMBOL), "ts_event": START_NS + second * 10**9, "last_price": 117.5,
        "trades_processed": second, "anomalies": 0, "rejected": 0, "model_generation": 1, "incidents": 0,
        "source": padded("stocks", LONGEST_ID), "partition": 0, "offset": second,
    })


def measured(name: str, fill: Callable[[], object]) -> int:
    """Bytes Python holds for the book ``fill`` returns, once filled (decoding's garbage collected)."""
    gc.collect()
    tracemalloc.start()
    book = fill()
    gc.collect()
    held, _peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del book
    print(f"{name:<44} {held / 2**20:>9,.1f} MiB")
    return held


def fill_anomalies() -> AnomalyBuffer:
    buffer = AnomalyBuffer(1000)
    for number in range(1000):
        buffer.add(decode_anomaly(anomaly(10**6 + number, 10**6 + number)))
    return buffer


def fill_members() -> IncidentMembers:
    book = IncidentMembers()
    for incident_number in range(500):
        for member in range(50):
            book.add(decode_anomaly(anomaly(incident_number * 50 + member, incident_number)))
    return book


def fill_incidents() -> IncidentBook:
    book = IncidentBook(2000)
    for number in range(2000):
        book.add(decode_incident(incident(number)))
    return book


def fill_summaries() -> SummaryBook:
    book = SummaryBook()
    for symbol in range(10_000):
        book.add(decode_summary(summary(symbol, 1)))
    return book


def fill_prices() -> PriceHistory:
    history = PriceHistory()
    line = decode_summary(summary(0, 1))
    for symbol in range(500):
        name = padded(f"S{symbol}", LONGEST_SYMBOL)
        for second in range(2000):
            history.add(replace(line, symbol=name, ts_ns=START_NS + second * 10**9))
    return history


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    total = sum(measured(name, fill) for name, fill in (
        ("anomalies (1,000)", fill_anomalies),
        ("incident members (50 of each of 500)", fill_members),
        ("incidents (2,000)", fill_incidents),
        ("instrument states (10,000)", fill_summaries),
        ("prices (2,000 of each of 500 instruments)", fill_prices),
    ))
    print(f"{'in all':<44} {total / 2**20:>9,.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
