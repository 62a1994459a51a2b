"""Detection quality on a real tape: inject labelled events, run the product and its peers, score.

    python -m benchmarks.evaluate FILE... [--seed S] [--out DIR] [--no-peers] [--spacing N] [--kinds K...]

For each file: inject events (``connectors.injection``, from the seed), run the
injected tape through the backtest (the real dataflow), run the peers on the same
tape, score everyone (``benchmarks.scoring``), print the tables and write them,
with a Plotly figure of the price, events and alarms, to DIR
(``out/`` by default; ``--out benchmarks/results`` records them). With several files a combined table follows.
Anomalies the product reports as ``kind = "auction"`` (opening and closing cross
prints) are counted apart, not as alarms: they are labelled as what they are.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from benchmarks import OUTPUT
from benchmarks.figure import positions_of, price_figure, save_figure
from benchmarks.peers import PEERS
from benchmarks.product import detect_with_backtest
from benchmarks.report import DetectorResult, detectors_table, kinds_table, recall_by_kind_table
from benchmarks.scoring import Score, score_anomalies, symbol_sequences
from connectors.files import iter_trades
from connectors.injection import EVENT_KINDS, inject_events
from models.config import DetectorConfig

PRODUCT = "product (dataflow)"
DEFAULT_OUT = OUTPUT
DEFAULT_SPACING = 5_000
"""Trades between events: about 35 events on a real NVDA day, six of each kind."""


def evaluate_file(
    path: Path, seed: int, out_dir: Path, config: DetectorConfig, with_peers: bool = True,
    spacing_trades: int = DEFAULT_SPACING, kinds: tuple[str, ...] = EVENT_KINDS,
) -> list[DetectorResult]:
    trades = list(iter_trades(path))
    injected, events = inject_events(trades, seed, kinds=kinds, spacing_trades=spacing_trades)
    del trades
    sequences = symbol_sequences(injected)
    with tempfile.TemporaryDirectory() as workdir:
        records, seconds = detect_with_backtest(injected, config, Path(workdir))
    alarms = [r for r in records if r.get("kind") != "auction"]
    auctions = len(records) - len(alarms)
    score = score_anomalies(sequences, events, alarms)
    results = [DetectorResult(PRODUCT, score, len(alarms), seconds)]
    if with_peers:
        for name, peer in PEERS.items():
            anomalies, seconds = _run_peer(peer, injected, seed)
            results.append(DetectorResult(name, score_anomalies(sequences, events, anomalies), len(anomalies), seconds))
    name = f"{_stem(path)}-seed{seed}"
    text = _render(f"{path.name}, seed {seed}: {len(injected):,} trades, {len(events)} events", results, auctions)
    print(text, flush=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.md").write_text(text + "\n")
    report = _as_json(path, seed, results, auctions)
    report["product_false_alarms"] = _false_alarm_trades(injected, score)
    (out_dir / f"{name}.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    for symbol in sequences:
        prices = np.array([t["price"] for t in injected if t["symbol"] == symbol], dtype=float)
        title = (
            f"{path.name} (seed {seed}): recall {score.recall:.2f}, {score.false_alarms} false alarms "
            f"({score.false_alarms_per_100k:.1f} per 100k), F1 {score.f1:.2f}"
        )
        figure = price_figure(symbol, prices, score, positions_of(sequences[symbol], alarms, symbol), title)
        save_figure(figure, out_dir / f"{name}-{symbol}")
    return results


def _run_peer(peer: Any, tape: list[dict[str, Any]], seed: int) -> tuple[list[dict[str, Any]], float]:
    by_symbol: dict[str, list[dict[str, Any]]] = {}
    for trade in tape:
        by_symbol.setdefault(trade["symbol"], []).append(trade)
    anomalies = []
    started = time.perf_counter()
    for symbol, trades in by_symbol.items():
        flags = peer(trades, seed)
        anomalies += [{"symbol": symbol, "sequence": trades[i]["sequence"]} for i in np.flatnonzero(flags)]
    return anomalies, time.perf_counter() - started


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".zst", ".csv", ".dbn", ".trades"):
        name = name.removesuffix(suffix)
    return name


def _render(heading: str, results: list[DetectorResult], auctions: int | None) -> str:
    parts = [f"## {heading}", "", detectors_table(results), ""]
    if auctions is not None:
        parts += [f"Auction prints reported by the product as kind 'auction' (not alarms): {auctions}", ""]
    parts += ["Events found per kind:", "", recall_by_kind_table(results), ""]
    parts += ["Product, per kind:", "", kinds_table(results[0].score), ""]
    return "\n".join(parts)


def _as_json(path: Path, seed: int, results: list[DetectorResult], auctions: int) -> dict[str, Any]:
    return {
        "file": path.name, "seed": seed, "auction_records": auctions,
        "detectors": [
            {
                "name": r.name, "trades": r.score.trades, "events": r.score.events, "found": r.score.found,
                "recall": r.score.recall, "precision": r.score.precision, "f1": r.score.f1,
                "false_alarms": r.score.false_alarms, "false_alarms_per_100k": r.score.false_alarms_per_100k,
                "median_delay": r.score.median_delay, "mean_delay": r.score.mean_delay,
                "flagged": r.flagged, "trades_per_second": r.trades_per_second,
                "by_kind": {k: {"events": v.events, "found": v.found, "median_delay": v.median_delay}
                            for k, v in r.score.by_kind().items()},
                "events_detail": [
                    {**o.event.to_dict(), "found": o.found, "delay_trades": o.delay_trades} for o in r.score.outcomes
                ],
            }
            for r in results
        ],
    }


def _false_alarm_trades(tape: list[dict[str, Any]], score: Score) -> list[dict[str, Any]]:
    """The first trade of each of the product's false alarms: what tuning has to look at."""
    by_symbol: dict[str, list[dict[str, Any]]] = {}
    for trade in tape:
        by_symbol.setdefault(trade["symbol"], []).append(trade)
    return [
        {name: by_symbol[symbol][position][name] for name in ("symbol", "sequence", "ts_event", "side", "price", "size", "flags")}
        for symbol, positions in sorted(score.false_alarm_positions.items())
        for position in positions
    ]


def combine(per_file: list[list[DetectorResult]]) -> list[DetectorResult]:
    """One result per detector over all files: counts added, then the ratios recomputed."""
    combined = []
    for rows in zip(*per_file):
        score = Score(
            sum(r.score.trades for r in rows), [o for r in rows for o in r.score.outcomes],
            sum(r.score.false_alarms for r in rows),
        )
        combined.append(DetectorResult(rows[0].name, score, sum(r.flagged for r in rows), sum(r.seconds for r in rows)))
    return combined


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="Databento trades files (one trading day each)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the injected events (default 0)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"result directory (default {DEFAULT_OUT})")
    parser.add_argument("--no-peers", action="store_true", help="score the product only (the seed design is slow)")
    parser.add_argument("--spacing", type=int, default=DEFAULT_SPACING, help="trades between injected events")
    parser.add_argument("--kinds", nargs="+", choices=EVENT_KINDS, default=list(EVENT_KINDS), help="event kinds to inject")
    args = parser.parse_args(argv)
    config = DetectorConfig.from_env()
    per_file = [
        evaluate_file(path, args.seed, args.out, config, not args.no_peers, args.spacing, tuple(args.kinds))
        for path in args.files
    ]
    if len(per_file) > 1:
        combined = combine(per_file)
        text = _render(f"all {len(per_file)} files, seed {args.seed}", combined, None)
        print(text)
        (args.out / f"combined-seed{args.seed}.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
