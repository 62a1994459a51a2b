"""Run the product on an injected tape exactly as a user would: through the backtest.

The injected tape is written as a Databento CSV and read back by
``flows.backtest.run_backtest``, so the numbers cover the file reader, the
Bytewax dataflow and the engine together, not the engine alone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pandas as pd

from connectors.codec import TRADE_FIELDS
from flows.backtest import run_backtest
from models.config import DetectorConfig


def write_tape(trades: list[dict[str, Any]], path: Path) -> Path:
    """The trades as a Databento-style CSV (the columns and order of ``TRADE_FIELDS``)."""
    pd.DataFrame(trades, columns=list(TRADE_FIELDS)).to_csv(path, index=False)
    return path


def detect_with_backtest(
    trades: list[dict[str, Any]], config: DetectorConfig, workdir: Path
) -> tuple[list[dict[str, Any]], float]:
    """The anomaly records the backtest writes for ``trades``, and its wall seconds."""
    workdir.mkdir(parents=True, exist_ok=True)
    tape = write_tape(trades, workdir / "injected-tape.csv")
    report = run_backtest([tape], workdir / "anomalies.jsonl", config)
    records = [orjson.loads(line) for line in report.anomalies_path.read_bytes().splitlines() if line.strip()]
    rejected = sum(report.rejections_by_reason.values())
    if rejected:
        raise RuntimeError(f"the backtest rejected {rejected} injected trades: {report.rejections_by_reason}")
    return records, report.wall_seconds
