"""Per-call cost of the engine: the fixed part of one instrument's batch, and the part per trade.

    python -m benchmarks.engine_calls [FILE] [--repeat N]

With many instruments each ``process`` call carries a few trades, so the fixed cost
of a call decides the speed of a whole-market feed. This warms one instrument on
the first 30,000 trades of a real day (models serving), then times calls of 1, 5,
50 and 500 trades over the following trades with retraining paused (the scoring path
alone; refits run in the helper process), the validation timed apart, and fits
``time = fixed + per_trade * trades``. Times are the calling thread's CPU time
(``time.thread_time``), which a busy neighbour does not inflate the way it inflates
wall time (wall time is reported too). Also the cold start of the kernel: import
and first call with the cache in ``__pycache__`` (as every job process and test run
after the first), and without it. Results go to ``out/engine_calls.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import orjson

from benchmarks import OUTPUT, REPO, SHARED_NVDA, engine_config_from_env
from connectors.files import iter_trade_chunks
from models.config import DetectorConfig

DEFAULT_FILE = SHARED_NVDA / "xnas-itch-20250509.trades.csv.zst"
CALL_SIZES = (1, 5, 50, 500)
WARM_TRADES = 30_000
COLD_START = """
import time
started = time.perf_counter()
from models.engine import DetectionEngine
from models.config import DetectorConfig
imported = time.perf_counter()
engine = DetectionEngine(DetectorConfig(background_training=False))
state = engine.new_state("X")
trade = {"ts_recv": "2025-05-09T14:00:00.000001000Z", "ts_event": "2025-05-09T14:00:00.000000000Z", "rtype": 0,
         "publisher_id": 2, "instrument_id": 1, "action": "T", "side": "B", "depth": 0, "price": 100.0, "size": 10,
         "flags": 0, "ts_in_delta": 0, "sequence": 1, "symbol": "X"}
engine.process(state, [trade])
print(imported - started, time.perf_counter() - imported)
"""


def load(path: Path, trades: int) -> list[dict]:
    out: list[dict] = []
    for chunk in iter_trade_chunks(path):
        out += chunk
        if len(out) >= trades:
            break
    return out[:trades]


def time_calls(path: Path, repeat: int, config: DetectorConfig) -> dict:
    from models.engine import DetectionEngine
    from models.trades import validate_trades

    trades = load(path, WARM_TRADES + repeat * sum(CALL_SIZES) * 4)
    state = DetectionEngine(config).new_state("NVDA")
    DetectionEngine(config).process(state, trades[:WARM_TRADES])
    # The same state scored with retraining paused: the calls time the scoring path alone,
    # not waits for refits (about 9 ms per 500 trades of an instrument, in the helper).
    engine = DetectionEngine(dataclasses.replace(config, retrain_every=10**9))
    position = WARM_TRADES
    per_size: dict[int, dict[str, float]] = {}
    for size in CALL_SIZES:
        totals, cpu, validations = [], [], []
        calls = max(20, 2_000 // size)
        for _ in range(calls):
            batch = trades[position:position + size]
            position = WARM_TRADES + (position + size - WARM_TRADES) % (len(trades) - WARM_TRADES - size)
            started = time.thread_time()
            validate_trades(batch)
            validated, wall = time.thread_time(), time.perf_counter()
            engine.process(state, batch)
            totals.append(time.perf_counter() - wall)
            cpu.append(time.thread_time() - validated)
            validations.append(validated - started)
        per_size[size] = {
            "calls": calls,
            "median_us_per_call": round(1e6 * statistics.median(totals), 1),
            "median_cpu_us_per_call": round(1e6 * statistics.median(cpu), 1),
            "median_cpu_us_validation": round(1e6 * statistics.median(validations), 1),
        }
        print(f"{size:>4} trades: {per_size[size]['median_cpu_us_per_call']:8.1f} CPU us per call "
              f"({per_size[size]['median_cpu_us_validation']:.1f} of it validation), "
              f"{per_size[size]['median_us_per_call']:.1f} us wall")
    sizes = np.array(CALL_SIZES, float)
    costs = np.array([per_size[s]["median_cpu_us_per_call"] for s in CALL_SIZES])
    per_trade, fixed = np.polyfit(sizes, costs, 1)
    return {"calls": {str(size): value for size, value in per_size.items()}, "fit_fixed_cpu_us": round(float(fixed), 1),
            "fit_per_trade_cpu_us": round(float(per_trade), 2)}


def cold_start() -> dict:
    """Import and first call in a fresh interpreter: with the kernel cache, and with an empty one."""
    def run(env_extra: dict[str, str]) -> tuple[float, float]:
        import os

        env = {**os.environ, "PYTHONPATH": str(REPO), **env_extra}
        done = subprocess.run([sys.executable, "-c", COLD_START], cwd=REPO, env=env, capture_output=True, text=True, check=True)
        imported, first_call = map(float, done.stdout.split())
        return imported, first_call

    import tempfile

    run({})  # make sure the cache in __pycache__ is filled
    cached = run({})
    with tempfile.TemporaryDirectory() as empty:
        uncached = run({"NUMBA_CACHE_DIR": empty})
    return {
        "cached": {"import_s": round(cached[0], 2), "first_call_s": round(cached[1], 2)},
        "uncached": {"import_s": round(uncached[0], 2), "first_call_s": round(uncached[1], 2)},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine_calls")
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=OUTPUT, help=f"result directory (default {OUTPUT})")
    args = parser.parse_args(argv)
    config = engine_config_from_env()  # before the file: a misspelled setting is the first thing said
    if not args.file.exists():
        print(f"error: {args.file}: no such file (the shared NVDA days live in ../shared/data/nvda/)", file=sys.stderr)
        return 2
    result = {"file": args.file.name, **time_calls(args.file, args.repeat, config), "cold_start": cold_start()}
    from models.training import shutdown_helper

    shutdown_helper()
    print(f"fit: {result['fit_fixed_cpu_us']} CPU us per call + {result['fit_per_trade_cpu_us']} CPU us per trade; "
          f"cold start {result['cold_start']}")
    target = args.out / "engine_calls.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(f"-> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
