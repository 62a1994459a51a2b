"""Detection quality on real tapes: inject labelled events, run the product and its peers, score.

    python -m benchmarks.evaluate --days all --seeds 0 1 [--peer-seeds 0 | --no-peers]
        [--early-close [also|only]] [--config-per-day FILE.json] [--out DIR]
        [--figure-seeds S... | --no-figures] [--spacing N] [--kinds K...] [--injector broad|second|third]
    python -m benchmarks.evaluate FILE... [the same options]

For every day (``--days all``: every trades file of ``../shared/data/nvda``; or
file stems or dates; or FILE paths), every variant (the full day and, with
``--early-close``, the day cut to a 13:00 close by
``connectors.injection.cut_to_early_close``, declared an early close to the
engine as an exchange calendar would) and every seed: inject labelled
events (``connectors.injection``), run the injected tape through the backtest
(the real dataflow), run the peers on the same tape (seeds in ``--peer-seeds``),
score everyone (``benchmarks.scoring``; ``benchmarks.incident_scoring`` when the
backtest writes incidents), and write one ``NAME-seedS.md`` / ``.json`` (and a
Plotly figure) per run and ``summary.md`` / ``summary.json`` over all runs to DIR
(``out/`` by default; ``--out benchmarks/results`` records them).

Leave-one-day-out tuning: ``--config-per-day FILE.json`` maps a day's file stem
to ``DETECTOR_*`` overrides used for that day (its early-close variant too, and
``DETECTOR_INCIDENT_*`` for the incident tracker), on top of the environment;
every run records the settings it used. Anomalies
the product reports as ``kind = "auction"`` are counted apart, not as alarms.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import re
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd

from benchmarks import OUTPUT, SHARED_NVDA
from benchmarks.figure import positions_of, price_figure, save_figure
from benchmarks.incident_scoring import IncidentScore, score_incidents
from benchmarks.peers import PEERS
from benchmarks.product import run_product
from benchmarks.report import DetectorResult, detectors_table, incident_cells, incident_kinds_table, kinds_table
from benchmarks.report import INCIDENT_HEADER, recall_by_kind_table, sessions_table, table
from benchmarks.scoring import SINGLE_PRINT_KINDS, Score, score_anomalies, symbol_sequences
from benchmarks.second_injector import inject_second
from benchmarks.third_injector import inject_third
from benchmarks.summary import RunResult, engine_version, render_summary, summary_json
from connectors.files import iter_trades, unusable_files
from connectors.injection import (
    EARLY_CLOSE, EVENT_KINDS, NEW_YORK, SESSION_CLOSE, LabelledEvent, cut_to_early_close, inject_events,
)
from connectors.replay import MAX_SEED, bounded_number
from flows.settings import engine_settings_from_env
from models.config import ENV_PREFIX, ConfigError, DetectorConfig
from models.incidents import IncidentSettings

PRODUCT = "product (dataflow)"
DEFAULT_OUT = OUTPUT
DEFAULT_SPACING = 5_000
"""Trades between regular-session events: about 45-60 events on a real NVDA day."""
DAY_FILE = re.compile(r"\d{8}\.trades\.(csv|dbn)(\.zst)?$")
"""A day's trades file carries its date (``xnas-itch-20250509.trades.csv.zst``)."""
VARIANTS = {"no": ("full",), "also": ("full", "early-close"), "only": ("early-close",)}


@dataclass(frozen=True)
class RunSpec:
    """One evaluation run: a day, a variant of it, a seed, and the engine configuration."""

    day: str
    variant: str
    seed: int
    config: DetectorConfig
    config_label: str
    with_peers: bool
    spacing_trades: int = DEFAULT_SPACING
    kinds: tuple[str, ...] = EVENT_KINDS
    figures: bool = True
    injector: str = "broad"
    """"broad" (``connectors.injection``), "second" (``benchmarks.second_injector``) or "third"
    (``benchmarks.third_injector``)."""
    incidents: IncidentSettings = field(default_factory=IncidentSettings)

    @property
    def tape_name(self) -> str:
        name = self.day if self.variant == "full" else f"{self.day}-{self.variant}"
        return name if self.injector == "broad" else f"{name}-{self.injector}"

    @property
    def name(self) -> str:
        return f"{self.tape_name}-seed{self.seed}"


def inject(tape: list[dict[str, Any]], spec: RunSpec) -> tuple[list[dict[str, Any]], list[LabelledEvent]]:
    """The run's tape with its injector's events, closing at 13:00 on an early-close variant."""
    close = EARLY_CLOSE if spec.variant == "early-close" else SESSION_CLOSE
    if spec.injector == "broad":
        return inject_events(tape, spec.seed, kinds=spec.kinds, spacing_trades=spec.spacing_trades,
                             session_close=close)
    if spec.injector == "second":
        return inject_second(tape, spec.seed, session_close=close)
    if spec.injector == "third":
        return inject_third(tape, spec.seed, session_close=close)
    raise ValueError(f"unknown injector {spec.injector!r}: broad, second or third")


def evaluate_tape(tape: list[dict[str, Any]], spec: RunSpec, out_dir: Path) -> RunResult:
    """Inject, detect, score and write one run's tables, JSON and figure."""
    injected, events = inject(tape, spec)
    sequences = symbol_sequences(injected)
    with tempfile.TemporaryDirectory() as workdir:
        run = run_product(injected, spec.config, Path(workdir), spec.incidents)
    alarms = [r for r in run.records if r.get("kind") != "auction"]
    score = score_anomalies(sequences, events, alarms)
    results = [DetectorResult(PRODUCT, score, len(alarms), run.seconds)]
    if spec.with_peers:
        for name, peer in PEERS.items():
            anomalies, seconds = _run_peer(peer, injected, spec.seed)
            results.append(DetectorResult(name, score_anomalies(sequences, events, anomalies), len(anomalies), seconds))
    incidents = None
    if run.incidents is not None:
        incidents = score_incidents(sequences, events, run.incidents, unreadable=run.unreadable_incidents)
    hours = _new_york_hours(injected)
    result = RunResult(
        spec.tape_name, spec.variant, spec.seed, spec.config_label, results, len(run.records) - len(alarms),
        _false_alarm_hours(injected, hours, score), Counter(hours.tolist()), incidents,
    )
    _write_run(spec, result, injected, hours, sequences, alarms, out_dir)
    return result


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


def _new_york_hours(tape: list[dict[str, Any]]) -> np.ndarray:
    stamps = pd.to_datetime(pd.Series([t["ts_event"] for t in tape]), utc=True, format="ISO8601")
    return stamps.dt.tz_convert(NEW_YORK).dt.hour.to_numpy()


def with_early_close(config: DetectorConfig, label: str, tape: list[dict[str, Any]]) -> tuple[DetectorConfig, str]:
    """The configuration for a day cut to a 13:00 close: that day is declared an early close, as
    an exchange calendar declares the real ones, so its 13:00 closing cross is an auction."""
    first = pd.Timestamp(tape[0]["ts_event"]).tz_convert(NEW_YORK).date().isoformat()
    days = config.early_close_days + (first,)
    return dataclasses.replace(config, early_close_days=days), f"{label}; {first} declared an early close"


def _symbol_positions(tape: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    """Per symbol, the tape index of its i-th trade."""
    positions: dict[str, list[int]] = {}
    for index, trade in enumerate(tape):
        positions.setdefault(trade["symbol"], []).append(index)
    return {symbol: np.asarray(values) for symbol, values in positions.items()}


def _false_alarm_hours(tape: list[dict[str, Any]], hours: np.ndarray, score: Score) -> Counter:
    where = _symbol_positions(tape)
    return Counter(
        int(hours[where[symbol][p]]) for symbol, starts in score.false_alarm_positions.items() for p in starts
    )


def _write_run(
    spec: RunSpec, result: RunResult, tape: list[dict[str, Any]], hours: np.ndarray,
    sequences: dict[str, np.ndarray], alarms: list[dict[str, Any]], out_dir: Path,
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    score = result.product.score
    text = render_run(spec, result)
    print(text, flush=True)
    (out_dir / f"{spec.name}.md").write_text(text + "\n")
    report = run_json(spec, result)
    report["product_false_alarms"] = _false_alarm_trades(tape, hours, score)
    (out_dir / f"{spec.name}.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    if not spec.figures:
        return
    where = _symbol_positions(tape)
    for symbol in sequences:
        prices = np.array([tape[i]["price"] for i in where[symbol]], dtype=float)
        title = (
            f"{spec.tape_name} (seed {spec.seed}): recall {score.recall:.2f}, {score.false_alarms} false alarms "
            f"({score.false_alarms_per_100k:.1f} per 100k), F1 {score.f1:.2f}"
        )
        figure = price_figure(symbol, prices, score, positions_of(sequences[symbol], alarms, symbol), title)
        save_figure(figure, out_dir / f"{spec.name}-{symbol}")


def render_run(spec: RunSpec, result: RunResult) -> str:
    score = result.product.score
    parts = [
        f"## {spec.tape_name}, seed {spec.seed}: {score.trades:,} trades, {score.events} events",
        "", f"Engine configuration: {spec.config_label}", "", detectors_table(result.results), "",
        f"Auction prints reported by the product as kind 'auction' (not alarms): {result.auctions}", "",
        "Events found per kind:", "", recall_by_kind_table(result.results), "",
        "Product, per kind:", "", kinds_table(score), "",
        "Product, per kind and session:", "", sessions_table(score), "",
    ]
    if result.incidents is None:
        parts += ["Incidents: the backtest wrote no incidents file (this engine does not produce incidents yet).", ""]
    else:
        parts += ["Incidents (product):", "", table(INCIDENT_HEADER, [incident_cells(result.incidents)]), "",
                  incident_kinds_table(result.incidents), ""]
    return "\n".join(parts)


def run_json(spec: RunSpec, result: RunResult) -> dict[str, Any]:
    return {
        "tape": spec.tape_name, "day": spec.day, "variant": spec.variant, "seed": spec.seed, "injector": spec.injector,
        "config_label": spec.config_label, "config": asdict(spec.config), "incident_settings": asdict(spec.incidents),
        "auction_records": result.auctions,
        "false_alarms_by_new_york_hour": {str(h): n for h, n in sorted(result.false_alarm_hours.items())},
        "trades_by_new_york_hour": {str(h): n for h, n in sorted(result.trades_by_hour.items())},
        "incidents": incident_json(result.incidents),
        "detectors": [detector_json(r) for r in result.results],
    }


def detector_json(r: DetectorResult) -> dict[str, Any]:
    s = r.score
    return {
        "name": r.name, "trades": s.trades, "events": s.events, "found": s.found,
        "recall": s.recall, "precision": s.precision, "f1": s.f1,
        "false_alarms": s.false_alarms, "false_alarms_per_100k": s.false_alarms_per_100k,
        "median_delay": s.median_delay, "median_delay_single_prints": s.median_delay_of(SINGLE_PRINT_KINDS),
        "mean_delay": s.mean_delay, "flagged": r.flagged, "trades_per_second": r.trades_per_second,
        "by_kind": {k: {"events": v.events, "found": v.found, "median_delay": v.median_delay}
                    for k, v in s.by_kind().items()},
        "events_detail": [{**o.event.to_dict(), "found": o.found, "delay_trades": o.delay_trades} for o in s.outcomes],
    }


def incident_json(score: IncidentScore | None) -> dict[str, Any] | None:
    if score is None:
        return None
    return {
        "events": score.events, "covered": score.covered, "covered_share": score.covered_share,
        "incidents_per_covered_event": score.incidents_per_event, "kind_right": score.kind_right,
        "kind_checks": {k: {"right": r, "covered": t} for k, (r, t) in score.kind_checks.items()},
        "false_incidents": score.false_incidents, "false_incidents_per_100k": score.false_per_100k,
        "true_levels": dict(score.true_levels), "false_levels": dict(score.false_levels),
        "true_high_or_critical": score.true_urgent, "false_high_or_critical": score.false_urgent,
        "auction_incidents": score.auctions, "unreadable_lines": score.unreadable,
    }


def _false_alarm_trades(tape: list[dict[str, Any]], hours: np.ndarray, score: Score) -> list[dict[str, Any]]:
    """The first trade of each of the product's false alarms: what tuning has to look at."""
    where = _symbol_positions(tape)
    names = ("symbol", "sequence", "ts_event", "side", "price", "size", "flags")
    return [
        {**{name: tape[where[symbol][p]][name] for name in names}, "new_york_hour": int(hours[where[symbol][p]])}
        for symbol, starts in sorted(score.false_alarm_positions.items())
        for p in starts
    ]


def file_stem(path: Path) -> str:
    name = path.name
    for suffix in (".zst", ".csv", ".dbn", ".trades"):
        name = name.removesuffix(suffix)
    return name


def resolve_days(files: list[Path], days: list[str], data_dir: Path) -> list[Path]:
    """FILE paths, and ``--days``: ``all`` or file stems or dates of the day files in ``data_dir``."""
    if not days:
        return list(files)
    available = sorted(p for p in data_dir.glob("*.trades.*") if DAY_FILE.search(p.name))
    if "all" in days:
        if not available:
            raise SystemExit(f"error: no trades files in {data_dir}")
        return list(files) + available
    chosen = list(files)
    for day in days:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", day):  # a date as the docs write it; the files name it 20250509
            day = day.replace("-", "")
        matches = [p for p in available if file_stem(p) == day or day in file_stem(p)]
        if len(matches) != 1:
            raise SystemExit(f"error: --days {day!r} matches {len(matches)} files in {data_dir}")
        chosen.append(matches[0])
    return chosen


def day_configs(path: Path | None, stems: list[str]) -> dict[str, tuple[DetectorConfig, IncidentSettings, str]]:
    """Each day's engine and incident settings and a label saying what they are; bad input stops here."""
    overrides: dict[str, dict[str, str]] = {}
    if path is not None:
        try:
            loaded = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as error:
            raise SystemExit(f"error: --config-per-day {path}: {error}") from None
        if not isinstance(loaded, dict) or not all(isinstance(v, dict) for v in loaded.values()):
            raise SystemExit(f"error: {path} must map day file stems to objects of DETECTOR_* settings")
        unknown = sorted(set(loaded) - set(stems))
        if unknown:
            raise SystemExit(f"error: {path} names days that are not evaluated: {unknown}; days: {stems}")
        overrides = {day: {str(k): str(v) for k, v in values.items()} for day, values in loaded.items()}
    configs = {}
    for stem in stems:
        settings = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)} | overrides.get(stem, {})
        wrong = [k for k in settings if not k.startswith(ENV_PREFIX)]
        try:
            if wrong:
                raise ConfigError(f"not DETECTOR_* settings: {wrong}")
            config, incidents = engine_settings_from_env(settings)
        except ConfigError as error:
            raise SystemExit(f"error: configuration for {stem}: {error}") from None
        label = ", ".join(f"{k}={v}" for k, v in sorted(settings.items())) or "defaults"
        configs[stem] = (config, incidents, label)
    return configs


seed_number = bounded_number(int, 0, MAX_SEED)
"""An argparse type: the seeds every numpy generator takes."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="Databento trades files (one trading day each)")
    parser.add_argument("--days", nargs="+", default=[], help="'all', or file stems or dates in --data-dir")
    parser.add_argument("--data-dir", type=Path, default=SHARED_NVDA, help="where --days looks (default ../shared/data/nvda)")
    parser.add_argument("--seeds", "--seed", nargs="+", type=seed_number, default=[0],
                        help="seeds of the injected events")
    parser.add_argument("--peer-seeds", nargs="+", type=seed_number,
                        help="seeds the peers also run on (default: every seed)")
    parser.add_argument("--no-peers", action="store_true", help="score the product only (the seed design is slow)")
    parser.add_argument("--early-close", nargs="?", const="also", default="no", choices=sorted(VARIANTS),
                        help="also (or only) evaluate each day cut to a 13:00 New York close")
    parser.add_argument("--config-per-day", type=Path, help="JSON: day file stem -> {DETECTOR_*: value}")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"result directory (default {DEFAULT_OUT})")
    parser.add_argument("--no-figures", action="store_true", help="skip the Plotly figures")
    parser.add_argument("--figure-seeds", nargs="+", type=seed_number,
                        help="seeds that get a figure (default: every seed)")
    parser.add_argument("--spacing", type=bounded_number(int, 1, 10**9),
                        help=f"trades between regular-session events (broad injector; "
                                                    f"default {DEFAULT_SPACING})")
    parser.add_argument("--kinds", nargs="+", choices=EVENT_KINDS, help="event kinds to inject (broad injector; "
                                                                        "default all)")
    parser.add_argument("--injector", choices=["broad", "second", "third"], default="broad",
                        help="connectors.injection (broad, default), benchmarks.second_injector (second) "
                             "or benchmarks.third_injector (third)")
    args = parser.parse_args(argv)
    if not args.files and not args.days:
        parser.error("give trades FILEs or --days")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error("--seeds: each seed once (a repeated seed counts its events twice)")
    if "all" in args.days and len(args.days) > 1:
        parser.error("--days all takes no other names")
    if args.injector != "broad" and (args.spacing is not None or args.kinds is not None):
        parser.error(f"--spacing and --kinds shape the broad injector's events; the {args.injector} one places its own")
    args.spacing = DEFAULT_SPACING if args.spacing is None else args.spacing
    args.kinds = list(EVENT_KINDS) if args.kinds is None else args.kinds
    return args


def check_inputs(paths: list[Path], out: Path) -> None:
    """Every file and the output directory before the first run, which takes minutes: a bad one
    found later stopped the evaluation with a traceback and no summary."""
    refused = unusable_files(paths)
    if refused:
        raise SystemExit(f"error: {refused}")
    if len({path.resolve() for path in paths}) != len(paths):
        raise SystemExit("error: a day is given twice (its events would count twice)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise SystemExit(f"error: {error}") from None
    if not os.access(out, os.W_OK):
        raise SystemExit(f"error: the result directory {out} cannot be written")


def read_day(path: Path) -> list[dict]:
    """The day's trades, or one line saying why it cannot be evaluated."""
    try:
        trades = list(iter_trades(path))
    except (OSError, ValueError) as error:  # CorruptFile is an OSError
        raise SystemExit(f"error: {path}: {error}") from None
    if not trades or not all(isinstance(trade.get("symbol"), str) for trade in trades[:1000]):
        raise SystemExit(f"error: {path}: no trades with a symbol (an empty file, or another schema)")
    return trades


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    paths = resolve_days(args.files, args.days, args.data_dir)
    check_inputs(paths, args.out)
    configs = day_configs(args.config_per_day, [file_stem(p) for p in paths])
    peer_seeds = set() if args.no_peers else set(args.peer_seeds if args.peer_seeds is not None else args.seeds)
    figure_seeds = set() if args.no_figures else set(args.figure_seeds if args.figure_seeds is not None else args.seeds)
    version = engine_version()
    runs = []
    for path in paths:
        trades = read_day(path)
        for variant in VARIANTS[args.early_close]:
            tape = trades if variant == "full" else cut_to_early_close(trades)
            for seed in args.seeds:
                config, incidents, label = configs[file_stem(path)]
                if variant == "early-close":
                    config, label = with_early_close(config, label, tape)
                spec = RunSpec(file_stem(path), variant, seed, config, label, seed in peer_seeds,
                               args.spacing, tuple(args.kinds), seed in figure_seeds, args.injector, incidents)
                runs.append(evaluate_tape(tape, spec, args.out))
        del trades
    command = "python -m benchmarks.evaluate " + " ".join(argv if argv is not None else sys.argv[1:])
    text = render_summary(runs, command, version)
    print(text)
    (args.out / "summary.md").write_text(text + "\n")
    (args.out / "summary.json").write_bytes(orjson.dumps(summary_json(runs, command, version), option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
