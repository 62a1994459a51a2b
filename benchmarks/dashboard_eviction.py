"""How long a full book of instrument states takes to make room: ``python -m benchmarks.dashboard_eviction``.

5,000 new instruments arrive at a book of instrument states that is already full, so each
one evicts the stalest. The book holds 10,000 states here by default (``--book``); the
dashboard's holds 20,000 (``dashboard.totals.MAX_INSTRUMENT_STATES``, as many as the job's
``MAX_INSTRUMENTS``): ``--book 20000`` measures that. The reader does this under the lock
the page draws with; with a book of 10,000, scanning it for the stalest state took 5.6 s
here, the heap of ``dashboard.eviction`` 0.01 s. Incidents go through the same heap.
"""

from __future__ import annotations

import argparse
import time

import orjson

from dashboard.records import decode_summary
from dashboard.totals import SummaryBook

START_NS = 1_746_797_400_000_000_000  # 2025-05-09T13:30:00Z


def states(prefix: str, count: int, first_ns: int) -> list:
    return [decode_summary(orjson.dumps({"symbol": f"{prefix}{number}", "ts_event": first_ns + number,
                                         "last_price": 117.5})) for number in range(count)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--book", type=int, default=10_000, help="states the book holds (default 10000)")
    parser.add_argument("--new", type=int, default=5_000, help="new instruments that arrive (default 5000)")
    args = parser.parse_args()
    book = SummaryBook(args.book)
    for summary in states("S", args.book, START_NS):
        book.add(summary)
    arriving = states("N", args.new, START_NS + 10**12)
    started = time.perf_counter()
    for summary in arriving:
        book.add(summary)
    print(f"{args.new:,} new instruments into a full book of {args.book:,}: {time.perf_counter() - started:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
