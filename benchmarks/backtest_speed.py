"""Backtest throughput: a real trade day through the dataflow, one worker, retraining on.

    python -m benchmarks.backtest_speed [FILE] [--repeat N]

Runs ``flows.backtest`` as a user would (file reader, Bytewax dataflow, engine,
JSON-lines sinks) and reports trades per second and the peak memory of the job and
of the helper process that fits the models. Results go to ``out/backtest_speed.json``
(``--out benchmarks/results`` records them).
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import sys
import tempfile
from pathlib import Path

import orjson

from flows.backtest import run_backtest
from models.config import DetectorConfig

from benchmarks import OUTPUT, SHARED_NVDA, engine_config_from_env

DEFAULT_FILE = SHARED_NVDA / "xnas-itch-20250509.trades.csv.zst"


def measure(path: Path, repeat: int, config: DetectorConfig) -> dict:
    runs = []
    with tempfile.TemporaryDirectory() as workdir:
        for attempt in range(repeat):
            cpu_before = _cpu_seconds(resource.RUSAGE_SELF)
            report = run_backtest([path], Path(workdir) / f"anomalies-{attempt}.jsonl", config)
            main_cpu = _cpu_seconds(resource.RUSAGE_SELF) - cpu_before
            runs.append({
                "trades": report.trades_read,
                "wall_seconds": round(report.wall_seconds, 3),
                "trades_per_second": round(report.trades_per_second),
                "anomalies": sum(report.anomalies_by_level.values()),
                # CPU time moves less than wall time on a shared machine
                "main_process_cpu_us_per_trade": round(1e6 * main_cpu / max(1, report.trades_read), 1),
            })
            print(f"run {attempt + 1}: {report.trades_read:,} trades in {report.wall_seconds:.2f} s "
                  f"= {report.trades_per_second:,.0f} trades/s, {runs[-1]['anomalies']} anomalies, "
                  f"main process {runs[-1]['main_process_cpu_us_per_trade']} CPU us/trade")
    kib = 1024
    return {
        "file": path.name,
        "config": {"retrain_every": config.retrain_every, "forest_trees": config.forest_trees,
                   "trees_per_retrain": config.trees_per_retrain,
                   "background_training": config.background_training},
        "runs": runs,
        "median_trades_per_second": round(statistics.median(r["trades_per_second"] for r in runs)),
        "peak_rss_mib_job": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib),
        "peak_rss_mib_fit_helper": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kib),
        "python": platform.python_version(),
        "cpus": __import__("os").cpu_count(),
    }


def _cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.backtest_speed")
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUTPUT, help=f"result directory (default {OUTPUT})")
    args = parser.parse_args(argv)
    config = engine_config_from_env()  # before the file: a misspelled setting is the first thing said
    if not args.file.exists():
        print(f"error: {args.file}: no such file (the shared NVDA day lives in ../shared/data/nvda/)", file=sys.stderr)
        return 2
    result = measure(args.file, args.repeat, config)
    # The helper process is reaped only at exit; read its peak after shutting it down.
    from models.training import shutdown_helper

    shutdown_helper()
    trades = sum(run["trades"] for run in result["runs"])
    result["fit_helper_cpu_us_per_trade"] = round(1e6 * _cpu_seconds(resource.RUSAGE_CHILDREN) / max(1, trades), 1)
    result["peak_rss_mib_fit_helper"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    results = args.out / "backtest_speed.json"
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(f"median {result['median_trades_per_second']:,} trades/s; fit helper "
          f"{result['fit_helper_cpu_us_per_trade']} CPU us/trade (start-up included); peak RSS job {result['peak_rss_mib_job']} MiB, "
          f"fit helper {result['peak_rss_mib_fit_helper']} MiB -> {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
