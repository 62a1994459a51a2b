"""Cold start: obvious events on illiquid symbols, caught on the print itself.

    python -m benchmarks.cold_start [--seeds 0 1 2] [--symbols 1000] [--trades 400000] [--out DIR]

For each seed, the market tape of ``connectors.market`` with its labelled events (one
print 5% off the market, or one print 50 times the symbol's largest so far, on every
symbol with fewer than 1,500 trades: none of them ever reaches its own models) goes
through the backtest dataflow (``flows.backtest``). An event is caught when the
anomaly is on its own print (delay 0); every other anomaly counts against the budget
of ``TARGET_OTHER_PER_100K``. The cold-start thresholds were chosen on seed 0; the
other seeds are tapes they never saw. Results go to ``out/cold_start.json``
(``--out benchmarks/results`` records them).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

import orjson

from benchmarks import OUTPUT

TARGET_CAUGHT = 0.90
TARGET_OTHER_PER_100K = 10.0


def measure(seed: int, symbols: int, trades: int, workdir: Path) -> dict:
    from benchmarks.product import write_tape
    from connectors.market import generate_market
    from flows.backtest import run_backtest

    tape, events = generate_market(symbols, trades, seed=seed, events=True)
    path = write_tape(tape, workdir / f"market-seed{seed}.csv")
    out = workdir / f"market-seed{seed}.jsonl"
    report = run_backtest([path], out)
    labelled = {(event.symbol, event.first_sequence): event.kind for event in events}
    caught: Counter[str] = Counter()
    others: Counter[str] = Counter()
    for line in out.read_bytes().splitlines():
        record = orjson.loads(line)
        kind = labelled.get((record["symbol"], record["sequence"]))
        if kind is None:
            others[record["model"]] += 1
        else:
            caught[kind] += 1
    per_kind = Counter(labelled.values())
    found = sum(caught.values())
    return {
        "seed": seed,
        "trades": report.trades_read,
        "events": dict(per_kind),
        "caught_on_print": dict(caught),
        "caught_share": round(found / max(1, len(labelled)), 4),
        "other_anomalies": dict(others),
        "other_per_100k": round(1e5 * sum(others.values()) / max(1, report.trades_read), 2),
        "trades_per_second": round(report.trades_per_second),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.cold_start", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--symbols", type=int, default=1_000)
    parser.add_argument("--trades", type=int, default=400_000)
    parser.add_argument("--out", type=Path, default=OUTPUT, help=f"result directory (default {OUTPUT})")
    args = parser.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory() as workdir:
        for seed in args.seeds:
            result = measure(seed, args.symbols, args.trades, Path(workdir))
            runs.append(result)
            print(f"seed {seed}: {sum(result['caught_on_print'].values())} of {sum(result['events'].values())} "
                  f"events caught on the print ({result['caught_share']:.1%}), other anomalies "
                  f"{result['other_anomalies']} = {result['other_per_100k']} per 100k trades", flush=True)
    target = args.out / "cold_start.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    summary = {"symbols": args.symbols, "trades": args.trades, "tuned_on_seed": 0, "runs": runs,
               "targets": {"caught_share": TARGET_CAUGHT, "other_per_100k": TARGET_OTHER_PER_100K}}
    target.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"-> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
