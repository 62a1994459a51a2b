"""Workers and processes on a many-instrument, many-partition topic: what more hardware buys.

    python -m benchmarks.scaling [--symbols 100] [--trades 200000] [--partitions 4] [--repeat 2]

Publishes a market tape (``connectors.market``: Zipf activity, seed 0) to a topic of
``--partitions`` partitions on the embedded broker, then runs the streaming job
(``python -m bytewax.run flows.main``, ``STOP_AT_END=true``) as one worker, two
worker threads (``-w 2``) and two processes of one worker each (``-i 0/1 -a ...``).
For each: wall seconds from start to exit, trades/s, the same with the start-up
(a run over an empty topic) taken off, and CPU seconds per trade (user + system of
the job processes and their model-fitting helpers; also with the empty run's CPU taken off). Modes alternate within each
repeat, so a busy neighbour slows them alike; the median of the repeats is reported.
Results go to ``out/scaling.json`` (``--out benchmarks/results`` records them).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import OUTPUT, REPO

MODES = ("-w 1", "-w 2", "2 processes")


def job_env(brokers: str, topic: str, prefix: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("KAFKA_", "BYTEWAX_"))}
    env.update(PYTHONPATH=str(REPO), KAFKA_BROKERS=brokers, INPUT_TOPIC=topic, OUTPUT_TOPIC=f"{prefix}-anomalies",
               DLQ_TOPIC=f"{prefix}-dlq", SUMMARY_TOPIC=f"{prefix}-summaries", STOP_AT_END="true")
    return env


def run_mode(mode: str, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and CPU seconds (jobs and their helpers) of one run to the end of the topic."""
    from connectors.broker import free_port

    command = [sys.executable, "-m", "bytewax.run", "flows.main"]
    if mode == "2 processes":
        addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
        commands = [command + ["-i", str(i), "-a", addresses] for i in (0, 1)]
    else:
        commands = [command + mode.split()]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    jobs = [subprocess.Popen(c, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for c in commands]
    for job in jobs:
        _, errors = job.communicate()
        if job.returncode != 0:
            raise RuntimeError(f"{mode} failed:\n{errors[-3000:]}")
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--trades", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=OUTPUT, help=f"result directory (default {OUTPUT})")
    args = parser.parse_args(argv)

    from connectors.broker import EmbeddedBroker
    from connectors.kafka import ensure_topics
    from connectors.market import generate_market
    from connectors.publisher import publish

    tape, _ = generate_market(args.symbols, args.trades, seed=0)
    runs: dict[str, list[dict]] = {mode: [] for mode in MODES}
    with EmbeddedBroker() as broker:
        brokers = broker.bootstrap
        ensure_topics(brokers, {"scale-stocks": args.partitions, "scale-empty": args.partitions})
        summary = publish(tape, brokers, "scale-stocks")
        assert summary.failed == 0, summary.describe("scale-stocks")
        for attempt in range(args.repeat):
            for number, mode in enumerate(MODES):
                prefix = f"r{attempt}m{number}"
                startup, startup_cpu = run_mode(mode, job_env(brokers, "scale-empty", f"{prefix}-empty"))
                wall, cpu = run_mode(mode, job_env(brokers, "scale-stocks", prefix))
                run = {
                    "wall_seconds": round(wall, 2), "startup_seconds": round(startup, 2),
                    "trades_per_second": round(len(tape) / wall),
                    "trades_per_second_after_startup": round(len(tape) / max(wall - startup, 1e-9)),
                    "cpu_us_per_trade": round(1e6 * cpu / len(tape), 1),
                    "cpu_us_per_trade_after_startup": round(1e6 * max(cpu - startup_cpu, 0.0) / len(tape), 1),
                }
                runs[mode].append(run)
                print(f"{mode:>12}: {run['trades_per_second']:,} trades/s ({run['trades_per_second_after_startup']:,} "
                      f"after start-up), {run['cpu_us_per_trade']} CPU us per trade", flush=True)
    result = {"symbols": args.symbols, "trades": len(tape), "partitions": args.partitions, "cpus": os.cpu_count(),
              "modes": {}}
    for mode, mode_runs in runs.items():
        result["modes"][mode] = {key: statistics.median(run[key] for run in mode_runs) for key in mode_runs[0]}
        result["modes"][mode]["runs"] = mode_runs
    base = result["modes"]["-w 1"]
    for mode in MODES:
        entry = result["modes"][mode]
        entry["speedup"] = round(entry["trades_per_second"] / base["trades_per_second"], 2)
        entry["speedup_after_startup"] = round(
            entry["trades_per_second_after_startup"] / base["trades_per_second_after_startup"], 2)
        print(f"{mode:>12}: {entry['speedup']:.2f}x of -w 1 ({entry['speedup_after_startup']:.2f}x after start-up), "
              f"{entry['cpu_us_per_trade']} CPU us per trade")
    result["load_average_at_end"] = os.getloadavg()
    target = args.out / "scaling.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
