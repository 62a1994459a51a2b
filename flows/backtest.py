"""Offline backtest: Databento files through the same dataflow as the streaming job.

    python -m flows.backtest FILE... --out anomalies.jsonl

Writes one JSON anomaly per line, the final state of every incident to
``anomalies.incidents.jsonl`` and the dead letters to ``anomalies.dead-letters.jsonl``,
then prints what was read, rejected and found, and how fast.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from bytewax.recovery import RecoveryConfig
from bytewax.testing import run_main

from connectors.codec import encode_dead_letter, encode_record
from connectors.files import JsonLinesSink, TradeFileSource, UnsupportedFileError, keep_final_states, read_json_lines
from flows.dataflow import build_flow
from flows.runtime import tune_garbage_collector
from flows.settings import engine_settings_from_env
from models import training
from models.config import ConfigError, DetectorConfig
from models.incidents import IncidentSettings


@dataclass
class BacktestReport:
    trades_read: int
    anomalies_by_level: Counter
    rejections_by_reason: Counter
    wall_seconds: float
    anomalies_path: Path
    dead_letters_path: Path
    incidents_path: Path
    incidents_by_kind: Counter = field(default_factory=Counter)
    extra: dict = field(default_factory=dict)

    @property
    def trades_per_second(self) -> float:
        return self.trades_read / self.wall_seconds if self.wall_seconds else 0.0

    def render(self) -> str:
        lines = [
            f"trades read        {self.trades_read:,}",
            f"trades rejected    {sum(self.rejections_by_reason.values()):,}",
        ]
        lines += [f"  {count:>8,}  {reason}" for reason, count in self.rejections_by_reason.most_common(10)]
        lines.append(f"anomalies          {sum(self.anomalies_by_level.values()):,}")
        lines += [
            f"  {level:<9}{self.anomalies_by_level.get(level, 0):,}"
            for level in ("critical", "high", "medium", "low")
        ]
        lines.append(f"incidents          {sum(self.incidents_by_kind.values()):,}")
        lines += [f"  {kind:<17}{count:,}" for kind, count in sorted(self.incidents_by_kind.items())]
        lines += [
            f"wall seconds       {self.wall_seconds:.2f}",
            f"trades per second  {self.trades_per_second:,.0f}",
            f"anomalies written  {self.anomalies_path}",
            f"incidents written  {self.incidents_path}",
            f"dead letters       {self.dead_letters_path}",
        ]
        return "\n".join(lines)


def run_backtest(
    paths: list[str | Path], out: str | Path, config: DetectorConfig | None = None,
    dead_letters: str | Path | None = None, *, recovery: str | Path | None = None,
    epoch_interval: timedelta | None = None, incidents: IncidentSettings | None = None,
) -> BacktestReport:
    """Run the dataflow over the files; the output files are replaced.

    ``recovery``: a directory of Bytewax recovery partitions (``python -m bytewax.recovery
    DIR 1``) to snapshot into at every epoch (``epoch_interval``, Bytewax's default 10 s).
    """
    config = config or DetectorConfig()
    if config.background_training:
        # Now, not at the first retrain: its imports (about 1.5 s) overlap the file's first chunk.
        training.start_helper(config.fit_helpers)
    out = Path(out)
    dead_letters = Path(dead_letters) if dead_letters else out.with_suffix(".dead-letters.jsonl")
    incident_file = out.with_suffix(".incidents.jsonl")
    _refuse_overwriting_inputs(paths, (out, dead_letters, incident_file))
    source = TradeFileSource(paths)  # checks the inputs before the outputs of an earlier run are emptied
    for path in (out, dead_letters, incident_file):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    flow = build_flow(
        source,
        JsonLinesSink(out, lambda record: encode_record(record.to_dict())),
        JsonLinesSink(dead_letters, encode_dead_letter),
        config,
        incident_sink=JsonLinesSink(incident_file, lambda update: encode_record(update.to_dict())),
        incidents=incidents,
    )
    tune_garbage_collector()
    started = time.perf_counter()
    run_main(flow, epoch_interval=epoch_interval, recovery_config=RecoveryConfig(str(recovery)) if recovery else None)
    wall = time.perf_counter() - started
    levels = Counter(record["level"] for record in read_json_lines(out))
    reasons = Counter(letter["reason"] for letter in read_json_lines(dead_letters))
    final = keep_final_states(incident_file)
    return BacktestReport(source.trades_read, levels, reasons, wall, out, dead_letters, incident_file,
                          Counter(incident["kind"] for incident in final))


class OutputIsInput(ValueError):
    """An output file of the backtest is one of its input files."""


def _refuse_overwriting_inputs(inputs: list[str | Path], outputs: tuple[Path, ...]) -> None:
    """The outputs are emptied before the inputs are read: ``--out day.csv`` once wiped the day."""
    for output in outputs:
        for given in inputs:
            if output.exists() and Path(given).exists() and output.resolve() == Path(given).resolve():
                raise OutputIsInput(f"{output} is an input file; write the results elsewhere (--out)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.backtest", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", help="Databento trades files: .csv, .csv.zst, .dbn, .dbn.zst")
    parser.add_argument("--out", default="anomalies.jsonl", help="where to write the anomalies (JSON lines)")
    parser.add_argument("--dead-letters", help="where to write rejected input (default: next to --out)")
    args = parser.parse_args(argv)
    try:
        config, incidents = engine_settings_from_env(os.environ)
        report = run_backtest(args.files, args.out, config, args.dead_letters, incidents=incidents)
    except (ConfigError, OSError, UnsupportedFileError, OutputIsInput) as error:  # FileNotFoundError is an OSError
        print(f"flows.backtest: {error}", file=sys.stderr)
        return 2
    print(report.render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
