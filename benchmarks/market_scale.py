"""The engine at market scale: the same number of trades spread over 1 to 1,000 symbols.

    python -m benchmarks.market_scale [--trades 400000] [--repeat 1] [--out DIR]

For 1 symbol, 10, 100 and 1,000 symbols with Zipf activity and 1,000 with even
activity (``connectors.market``, seed 0), the tape is written as a Databento CSV and
run through the backtest dataflow (``flows.backtest``: file reader, Bytewax,
engine, JSON-lines sinks), each in a fresh process so its peak memory is its own.
The tapes run in turn, round after round (``--repeat``), so each run sits next in time to a
run of the one-symbol tape: a machine whose speed drifts over minutes moves both. Reported
per tape: trades/s and main-process CPU µs per trade (medians), each as a ratio to the
one-symbol tape's run of the same round, and the median of those ratios (CPU is the
steadier figure on a shared machine),
the time spent in the detect step's ``snapshot()`` (Bytewax calls it at every epoch
for every instrument that traded, recovery or not; here every second), symbols
ever served by their own models (those with more than 1,500 trades), anomalies and
peak RSS of the job and of the model-fitting helper. The 1,000-symbol Zipf tape runs
once more with a Bytewax recovery store snapshotting every 5 s (as ``-s 5`` in the
job): its size on disk at the end and the snapshot share of wall time.
Results go to ``out/market_scale.json`` (``--out benchmarks/results`` records them).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from benchmarks import OUTPUT, REPO

TAPES = {
    "1 symbol": {"symbols": 1},
    "10 Zipf": {"symbols": 10},
    "100 Zipf": {"symbols": 100},
    "1,000 Zipf": {"symbols": 1_000},
    "1,000 even": {"symbols": 1_000, "even": True},
}
SERVED_AFTER = 1_500
"""An instrument's own models serve from its 1,501st trade (default settings)."""


def write_tape(name: str, trades: int, path: Path) -> dict:
    from benchmarks.product import write_tape as write_csv
    from connectors.market import generate_market, symbol_counts

    spec = TAPES[name]
    tape, _ = generate_market(spec["symbols"], trades, seed=0, even=spec.get("even", False))
    write_csv(tape, path)
    counts = symbol_counts(spec["symbols"], trades, even=spec.get("even", False))
    return {"symbols": spec["symbols"], "served_symbols": int((counts > SERVED_AFTER).sum())}


def measure(tape: Path, recovery: Path | None, epoch_s: float) -> dict:
    """One backtest in this process, with the detect step's snapshot() timed."""
    from flows import detect_step
    from flows.backtest import run_backtest
    from models.training import shutdown_helper

    spent = {"seconds": 0.0, "calls": 0}
    snapshot = detect_step.InstrumentDetector.snapshot

    def timed_snapshot(self):
        started = time.perf_counter()
        try:
            return snapshot(self)
        finally:
            spent["seconds"] += time.perf_counter() - started
            spent["calls"] += 1

    detect_step.InstrumentDetector.snapshot = timed_snapshot
    cpu_started = time.process_time()
    with tempfile.TemporaryDirectory() as workdir:
        report = run_backtest([tape], Path(workdir) / "anomalies.jsonl", recovery=recovery,
                              epoch_interval=timedelta(seconds=epoch_s))
    main_cpu = time.process_time() - cpu_started
    shutdown_helper()
    result = {
        "trades": report.trades_read,
        "wall_seconds": round(report.wall_seconds, 2),
        "trades_per_second": round(report.trades_per_second),
        "anomalies": sum(report.anomalies_by_level.values()),
        "main_cpu_us_per_trade": round(1e6 * main_cpu / max(report.trades_read, 1), 1),
        "snapshot_seconds": round(spent["seconds"], 3),
        "snapshot_calls": spent["calls"],
        "snapshot_share": round(spent["seconds"] / report.wall_seconds, 4),
        "peak_rss_mib_job": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "peak_rss_mib_fit_helper": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
    }
    if recovery is not None:
        result["recovery_store_mb"] = round(sum(f.stat().st_size for f in recovery.iterdir()) / 1e6, 1)
    return result


def child(*args: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-m", "benchmarks.market_scale", *args], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.market_scale", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trades", type=int, default=400_000)
    parser.add_argument("--repeat", type=int, default=1, help="runs per tape (the median is reported)")
    parser.add_argument("--out", type=Path, default=OUTPUT, help=f"result directory (default {OUTPUT})")
    parser.add_argument("--write", nargs=2, metavar=("TAPE", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--measure", metavar="PATH", help=argparse.SUPPRESS)
    parser.add_argument("--recovery", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--epoch", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.write:
        print(json.dumps(write_tape(args.write[0], args.trades, Path(args.write[1]))))
        return 0
    if args.measure:
        print(json.dumps(measure(Path(args.measure), Path(args.recovery) if args.recovery else None, args.epoch)))
        return 0

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as workdir:
        paths = {name: Path(workdir) / f"{name.replace(',', '').replace(' ', '-')}.csv" for name in TAPES}
        for name, path in paths.items():
            results[name] = {**child("--write", name, str(path), "--trades", str(args.trades)), "runs": []}
        for _ in range(args.repeat):  # round after round, so each tape's k-th run is beside the others'
            for name, path in paths.items():
                results[name]["runs"].append(child("--measure", str(path)))
        for name in TAPES:
            results[name].update(_median(results[name]["runs"]))
            print(f"{name:>11}: {results[name]['trades_per_second']:>7,} trades/s, main process "
                  f"{results[name]['main_cpu_us_per_trade']:.1f} CPU µs/trade, snapshot "
                  f"{100 * results[name]['snapshot_share']:.1f}% of wall, {results[name]['served_symbols']} symbols "
                  f"served, {results[name]['anomalies']} anomalies, peak RSS {results[name]['peak_rss_mib_job']} MiB",
                  flush=True)
        recovery = Path(workdir) / "recovery"
        recovery.mkdir()
        subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "1"], check=True)
        zipf = Path(workdir) / "1000-Zipf.csv"
        with_recovery = child("--measure", str(zipf), "--recovery", str(recovery), "--epoch", "5")
        print(f"1,000 Zipf with recovery every 5 s: {with_recovery['trades_per_second']:,} trades/s, store "
              f"{with_recovery['recovery_store_mb']} MB, snapshot {100 * with_recovery['snapshot_share']:.1f}% of wall")
    one = results["1 symbol"]["runs"]
    for result in results.values():
        by_round = [(run["trades_per_second"] / base["trades_per_second"],
                     base["main_cpu_us_per_trade"] / run["main_cpu_us_per_trade"]) for run, base in zip(result["runs"], one)]
        result["ratios_by_round"] = [round(ratio, 3) for ratio, _ in by_round]
        result["cpu_ratios_by_round"] = [round(ratio, 3) for _, ratio in by_round]
        result["ratio_to_one_symbol"] = round(statistics.median(ratio for ratio, _ in by_round), 3)
        result["cpu_ratio_to_one_symbol"] = round(statistics.median(ratio for _, ratio in by_round), 3)
    summary = {"trades": args.trades, "tapes": results, "zipf_1000_with_recovery": with_recovery,
               "cpus": os.cpu_count(), "load_average_at_end": os.getloadavg()}
    for name, result in results.items():
        print(f"{name:>11}: ratio {result['ratio_to_one_symbol']:.2f} in trades/s "
              f"(rounds: {', '.join(f'{r:.2f}' for r in result['ratios_by_round'])}), "
              f"{result['cpu_ratio_to_one_symbol']:.2f} in main-process CPU per trade")
    target = args.out / "market_scale.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"-> {target}")
    return 0


def _median(runs: list[dict]) -> dict:
    keys = ("trades_per_second", "main_cpu_us_per_trade", "wall_seconds", "snapshot_seconds", "snapshot_share",
            "peak_rss_mib_job", "peak_rss_mib_fit_helper", "anomalies")
    return {key: statistics.median_low(run[key] for run in runs) for key in keys}  # a value one run had


if __name__ == "__main__":
    sys.exit(main())
