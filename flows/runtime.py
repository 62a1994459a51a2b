"""Process-wide settings every entry point applies before the first trade.

Python's cyclic garbage collector runs a young-generation pass every 700 net
allocations and, about every hundred of those, a full pass over every tracked object
(CPython skips it while few objects have become long-lived since the last one).
The engine allocates several short-lived dicts and tuples per trade (records,
features, incident updates) that reference counting frees anyway, while the
long-lived per-instrument state (windows, models, incident trackers) grows with
the number of instruments: full passes walked all of it again and again. Measured
on a 400k-trade, 1,000-symbol Zipf tape (``benchmarks.market_scale``), the
collector cost 6-11 µs of main-process CPU per trade, a fifth to a third of the total
(37-40 µs with CPython's defaults, 30-32 with these settings; docs/PERFORMANCE.md).

Raising the young threshold to 10,000 and freezing what exists after start-up (the
imported modules, the flow) keeps the collector for real reference cycles at a
fraction of the cost; it is not disabled, so memory stays bounded.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 10_000
"""Net allocations between young-generation passes (CPython's default: 700)."""
OLDER_THRESHOLD = 10
"""Passes of one generation between passes of the next (CPython's default: 10)."""


def tune_garbage_collector() -> None:
    """Collect once, freeze the survivors out of future passes, then raise the threshold."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, OLDER_THRESHOLD, OLDER_THRESHOLD)
