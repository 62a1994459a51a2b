"""Run the product on an injected tape exactly as a user would: through the backtest.

The injected tape is written as a Databento CSV and read back by
``flows.backtest.run_backtest``, so the numbers cover the file reader, the
Bytewax dataflow and the engine together, not the engine alone. The incidents
file the backtest writes beside its output (``OUT.incidents.jsonl``, issue 9) is
read when it exists; an engine that does not write it yet gives ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from benchmarks.incident_scoring import read_incidents
from connectors.codec import TRADE_FIELDS
from flows.backtest import run_backtest
from models.config import DetectorConfig
from models.incidents import IncidentSettings


@dataclass(frozen=True)
class ProductRun:
    records: list[dict[str, Any]]
    incidents: list[dict[str, Any]] | None
    """Final incident states, or None when the backtest wrote no incidents file."""
    unreadable_incidents: int
    seconds: float


def write_tape(trades: list[dict[str, Any]], path: Path) -> Path:
    """The trades as a Databento-style CSV (the columns and order of ``TRADE_FIELDS``)."""
    pd.DataFrame(trades, columns=list(TRADE_FIELDS)).to_csv(path, index=False)
    return path


def incidents_path(anomalies_path: Path) -> Path:
    """``OUT.jsonl`` -> ``OUT.incidents.jsonl``, where the backtest writes incidents."""
    return anomalies_path.with_name(anomalies_path.name.removesuffix(".jsonl") + ".incidents.jsonl")


def run_product(trades: list[dict[str, Any]], config: DetectorConfig, workdir: Path,
                incidents: IncidentSettings | None = None) -> ProductRun:
    """The anomaly records and incidents the backtest writes for ``trades``, and its wall seconds."""
    workdir.mkdir(parents=True, exist_ok=True)
    tape = write_tape(trades, workdir / "injected-tape.csv")
    report = run_backtest([tape], workdir / "anomalies.jsonl", config, incidents=incidents)
    records = [orjson.loads(line) for line in report.anomalies_path.read_bytes().splitlines() if line.strip()]
    rejected = sum(report.rejections_by_reason.values())
    if rejected:
        raise RuntimeError(f"the backtest rejected {rejected} injected trades: {report.rejections_by_reason}")
    found = read_incidents(incidents_path(report.anomalies_path))
    incidents, unreadable = found if found is not None else (None, 0)
    return ProductRun(records, incidents, unreadable, report.wall_seconds)
