"""Tapes, flags and records for the incident tests (tests/models/test_incidents.py, test_kinds.py).

The tracker is tested on its own, without the engine: the anomalies are placed by a rule
that imitates where the engine raises them (a single print is flagged at once; a burst
only once the 100-trade window is full of it; every event echoes while it is in the
window), so the tests pin the tracker's behaviour, not the detectors' of the day.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from connectors.injection import LabelledEvent, inject_events
from connectors.synthetic import generate_quiet_tape
from models.incidents import IncidentTracker, IncidentUpdate, TradeColumns
from models.records import AnomalyRecord
from models.severity import level
from models.trades import validate_trades

FIRST_FLAG = {"off_market": 0, "block": 0, "sweep": 3, "ramp": 5, "flash_crash": 30, "burst": 100}
"""Trades into each kind of event before the first anomaly, about as the engine does."""


def quiet_tape(trades: int = 4_000, seed: int = 0) -> list[dict[str, Any]]:
    """One synthetic instrument (SYN0) from 10:00 New York, nothing injected."""
    return generate_quiet_tape(symbols=1, trades=trades, seed=seed)


def injected(kind: str, seed: int, trades: int = 4_000) -> tuple[list[dict[str, Any]], LabelledEvent]:
    """A quiet tape with one labelled event of ``kind`` (``connectors.injection``), alone."""
    tape, events = inject_events(quiet_tape(trades, seed), seed, kinds=(kind,), spacing_trades=2_000,
                                 warmup_trades=1_500, close_pair_share=0.0, pre_market_events=0,
                                 after_hours_events=0)
    assert len(events) == 1, events
    return tape, events[0]


def event_rows(tape: Sequence[dict[str, Any]], event: LabelledEvent) -> range:
    sequences = [trade["sequence"] for trade in tape]
    first = sequences.index(event.first_sequence)
    return range(first, first + event.trade_count)


def engine_like_flags(tape: Sequence[dict[str, Any]], event: LabelledEvent) -> list[int]:
    """Rows the engine would flag: from a kind-specific delay into the event every third
    trade, then every 20th trade of the 100 after it (the window still holds the event)."""
    rows = event_rows(tape, event)
    start = rows.start + min(FIRST_FLAG[event.kind], len(rows) - 1)
    flagged = list(range(start, rows.stop, 3))
    flagged += list(range(rows.stop + 19, min(rows.stop + 100, len(tape)), 20))
    return flagged


def record(trade: dict[str, Any], severity: float = 0.5, anomaly_score: float = 0.7, votes: int = 2,
           kind: str = "trade") -> AnomalyRecord:
    """A real anomaly record for ``trade``; its id is unique per symbol and sequence."""
    return AnomalyRecord(
        anomaly_id=f"{trade['symbol']}-{trade['sequence']}", symbol=trade["symbol"], kind=kind,
        trade=dict(trade), features=[0.0] * 18, detector_scores=[0.7, 10.0, 2.0],
        detector_thresholds=[0.58, 4000.0, 1.0], detector_votes=[True] * votes + [False] * (3 - votes),
        anomaly_score=anomaly_score, confidence=votes / 3, zscores=(0.0,) * 5, severity=severity,
        level=level(severity), model_generation=1, explanation=[],
    )


def columns(trades: Sequence[dict[str, Any]]) -> TradeColumns:
    valid, rejections = validate_trades(trades)
    assert not rejections, rejections
    return TradeColumns.of(valid)


def track(
    tape: Sequence[dict[str, Any]], flagged: Sequence[int], runs: Sequence[int] | None = None,
    tracker: IncidentTracker | None = None, records: dict[int, AnomalyRecord] | None = None,
    start: int = 0, whole: TradeColumns | None = None,
) -> tuple[list[tuple[int, IncidentUpdate]], IncidentTracker, dict[int, AnomalyRecord]]:
    """Feed ``tape[start:]`` in runs of the given sizes (one run by default).

    Returns (row in the tape, update) pairs, the tracker and the records by row.
    ``whole`` is ``columns(tape)`` when the caller has it already.
    """
    tracker = tracker or IncidentTracker(tape[0]["symbol"])
    records = records if records is not None else {row: record(tape[row]) for row in flagged}
    out: list[tuple[int, IncidentUpdate]] = []
    whole = whole or columns(tape)
    flagged_rows = sorted(records)
    position = start
    for size in runs or [len(tape) - start]:
        stop = min(position + size, len(tape))
        low, high = np.searchsorted(flagged_rows, [position, stop])
        run_flags = [(row - position, records[row]) for row in flagged_rows[low:high]]
        run = TradeColumns(*(getattr(whole, name)[position:stop]
                             for name in ("prices", "sizes", "timestamps_ns", "sides", "sequences")))
        out += [(position + row, update) for row, update in tracker.observe(run, run_flags)]
        position = stop
        if position >= len(tape):
            break
    return out, tracker, records


def random_runs(total: int, seed: int) -> list[int]:
    rng, sizes = np.random.default_rng(seed), []
    while sum(sizes) < total:
        sizes.append(int(rng.choice([1, 2, 3, 7, 50, 99, 100, 101, 333, 1000])))
    return sizes


def comparable(updates: Sequence[tuple[int, IncidentUpdate]]) -> list[tuple[int, dict[str, Any]]]:
    """Updates without their processing time."""
    out = []
    for row, update in updates:
        message = update.to_dict()
        del message["updated_at"]
        out.append((row, message))
    return out


def final_states(updates: Sequence[tuple[int, IncidentUpdate]]) -> dict[str, IncidentUpdate]:
    last: dict[str, IncidentUpdate] = {}
    for _, update in updates:
        last[update.incident_id] = update
    return last
