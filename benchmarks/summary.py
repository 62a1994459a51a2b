"""The summary of an evaluation over several days and seeds: one markdown page, one JSON.

Tables follow what issue 12 asks to report: a row per day and seed, every kind,
false alarms by hour of the day (New York), the peers on the same tapes, and the
incident-level results of issue 9 when the engine writes incidents.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from benchmarks import REPO
from benchmarks.incident_scoring import IncidentScore, combine_incident_scores
from benchmarks.report import (
    INCIDENT_HEADER, SCORE_HEADER, DetectorResult, delay, detectors_table, hours_table, incident_cells,
    incident_kinds_table, incident_target_cells, number, recall_by_kind_table, score_cells, sessions_table, table,
)
from benchmarks.scoring import SINGLE_PRINT_KINDS, Score

TARGETS = ("recall >= 0.97, <= 4 false alarms per 100k trades, F1 >= 0.90, median delay <= 1 trade for "
           "single prints (off_market, block), on every day (not used for tuning) and seed (issue 12)")


@dataclass(frozen=True)
class RunResult:
    tape: str
    """The day's file stem, with ``-early-close`` for the cut variant and ``-second`` or ``-third``
    for those injectors (``RunSpec.tape_name``)."""
    variant: str
    seed: int
    config_label: str
    results: list[DetectorResult]
    """The product first, then the peers when they ran."""
    auctions: int
    false_alarm_hours: Counter
    """The product's false alarms by the New York hour of their first trade."""
    trades_by_hour: Counter
    incidents: IncidentScore | None

    @property
    def product(self) -> DetectorResult:
        return self.results[0]


def combined(results: list[DetectorResult]) -> DetectorResult:
    score = Score(sum(r.score.trades for r in results), [o for r in results for o in r.score.outcomes],
                  sum(r.score.false_alarms for r in results))
    return DetectorResult(results[0].name, score, sum(r.flagged for r in results), sum(r.seconds for r in results))


def engine_version() -> str:
    try:
        found = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO, capture_output=True, text=True,
                               timeout=10)
        return found.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def render_summary(runs: list[RunResult], command: str, version: str) -> str:
    """``version``: the commit the runs measured (``engine_version()`` when they started)."""
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    parts = [
        f"# Detection quality: {len(runs)} runs", "",
        f"Measured {when} (UTC) on commit {version} with `{command}`.", "",
        f"Targets: {TARGETS}.", "",
        "## The product, per day and seed", "", product_table(runs), "",
        "## Per kind (all runs; found/events, seeds added up)", "", kinds_by_tape_table(runs), "",
        "## Per kind and session (all runs)", "", sessions_table(combined([r.product for r in runs]).score), "",
        "## False alarms of the product by hour of the day (New York)", "", _hours(runs), "",
        "## Peers on the same tapes", "", *_peers(runs),
        "## Incidents", "", *_incidents(runs),
        "## Engine configuration per day", "",
        table(["tape", "configuration"], sorted({(r.tape, r.config_label) for r in runs})), "",
    ]
    return "\n".join(parts)


def product_table(runs: list[RunResult]) -> str:
    rows = [
        [r.tape, r.seed, r.product.score.events, *score_cells(r.product.score, r.product.flagged), r.auctions]
        for r in runs
    ]
    for variant in sorted({r.variant for r in runs}):
        chosen = [r for r in runs if r.variant == variant]
        total = combined([r.product for r in chosen])
        label = "all full days" if variant == "full" else f"all {variant}"
        rows.append([f"**{label}**", "", total.score.events, *score_cells(total.score, total.flagged),
                     sum(r.auctions for r in chosen)])
    return table(["tape", "seed", "events", *SCORE_HEADER, "auction records"], rows)


def kinds_by_tape_table(runs: list[RunResult]) -> str:
    tapes = list(dict.fromkeys(r.tape for r in runs))
    kinds = sorted({o.event.kind for r in runs for o in r.product.score.outcomes})
    rows = []
    for kind in kinds:
        row: list[object] = [kind]
        for tape in tapes:
            outcomes = [o for r in runs if r.tape == tape for o in r.product.score.outcomes if o.event.kind == kind]
            row.append(f"{sum(o.found for o in outcomes)}/{len(outcomes)}")
        everything = combined([r.product for r in runs]).score.by_kind()[kind]
        row += [f"{everything.found}/{everything.events}", number(everything.recall), delay(everything.median_delay)]
        rows.append(row)
    return table(["kind", *tapes, "all", "recall", "median delay"], rows)


def _hours(runs: list[RunResult]) -> str:
    columns = {}
    for variant in sorted({r.variant for r in runs}):
        chosen = [r for r in runs if r.variant == variant]
        columns[variant] = (sum((r.false_alarm_hours for r in chosen), Counter()),
                            sum((r.trades_by_hour for r in chosen), Counter()))
    return hours_table(columns)


def _peers(runs: list[RunResult]) -> list[str]:
    with_peers = [r for r in runs if len(r.results) > 1]
    if not with_peers:
        return ["The peers did not run (`--no-peers`).", ""]
    names = ", ".join(f"{r.tape} seed {r.seed}" for r in with_peers)
    totals = [combined([r.results[i] for r in with_peers]) for i in range(len(with_peers[0].results))]
    per_tape = [
        [d.name, f"{r.tape} seed {r.seed}", number(d.score.recall), f"{d.score.false_alarms_per_100k:.1f}",
         number(d.score.f1), delay(d.score.median_delay_of(SINGLE_PRINT_KINDS))]
        for r in with_peers for d in r.results
    ]
    return [
        f"Over {names}:", "", detectors_table(totals), "", "Events found per kind:", "", recall_by_kind_table(totals), "",
        "Per tape:", "",
        table(["detector", "tape", "recall", "false alarms per 100k", "F1", "median delay, single prints"], per_tape), "",
    ]


def _incidents(runs: list[RunResult]) -> list[str]:
    scored = [r for r in runs if r.incidents is not None]
    if not scored:
        return ["No incidents file: the backtest of this engine does not write `OUT.incidents.jsonl` yet "
                "(issue 9); incident-level results appear here once it does.", ""]
    rows = [[r.tape, r.seed, *incident_cells(r.incidents)] for r in scored]
    total = combine_incident_scores([r.incidents for r in scored])
    rows.append(["**all**", "", *incident_cells(total)])
    rows.append(["*target*", "", *incident_target_cells()])
    missing = len(runs) - len(scored)
    note = [f"{missing} run(s) without an incidents file are left out.", ""] if missing else []
    return [table(["tape", "seed", *INCIDENT_HEADER], rows), "", *note,
            "Kind accuracy per injected kind and the level mix (all runs):", "", incident_kinds_table(total), ""]


def summary_json(runs: list[RunResult], command: str, version: str) -> dict[str, Any]:
    return {
        "command": command, "engine": version,
        "measured": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "runs": [
            {
                "tape": r.tape, "variant": r.variant, "seed": r.seed, "config": r.config_label,
                "events": r.product.score.events, "found": r.product.score.found, "recall": r.product.score.recall,
                "precision": r.product.score.precision, "f1": r.product.score.f1,
                "false_alarms": r.product.score.false_alarms,
                "false_alarms_per_100k": r.product.score.false_alarms_per_100k,
                "median_delay_single_prints": r.product.score.median_delay_of(SINGLE_PRINT_KINDS),
                "median_delay": r.product.score.median_delay, "flagged": r.product.flagged, "trades": r.product.score.trades,
                "incidents": None if r.incidents is None else {
                    "covered_share": r.incidents.covered_share, "incidents_per_covered_event": r.incidents.incidents_per_event,
                    "kind_right": r.incidents.kind_right, "false_per_100k": r.incidents.false_per_100k,
                    "true_high_or_critical": r.incidents.true_urgent, "false_high_or_critical": r.incidents.false_urgent,
                },
            }
            for r in runs
        ],
    }
