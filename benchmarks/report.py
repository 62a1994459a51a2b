"""The result tables (markdown): per detector, per event kind, per hour, per incident measure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.incident_scoring import EXPECTED_KIND, LEVELS, TARGETS, IncidentScore
from benchmarks.scoring import SINGLE_PRINT_KINDS, Score


@dataclass(frozen=True)
class DetectorResult:
    name: str
    score: Score
    flagged: int
    """Anomalies reported (auction prints excluded), to show how much a detector flags."""
    seconds: float

    @property
    def trades_per_second(self) -> float:
        return self.score.trades / self.seconds if self.seconds else 0.0


def number(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def delay(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def score_cells(score: Score, flagged: int) -> list[str]:
    """recall, precision, F1, false alarms per 100k, median delays (single prints, all), flagged."""
    return [
        number(score.recall), number(score.precision), number(score.f1), f"{score.false_alarms_per_100k:.1f}",
        delay(score.median_delay_of(SINGLE_PRINT_KINDS)), delay(score.median_delay),
        f"{flagged:,} ({100 * flagged / score.trades:.2f}%)" if score.trades else "-",
    ]


SCORE_HEADER = ["recall", "precision", "F1", "false alarms per 100k", "median delay, single prints",
                "median delay, all", "trades flagged"]


def detectors_table(results: Sequence[DetectorResult]) -> str:
    rows = [
        [r.name, r.score.events, r.score.found, r.score.false_alarms, *score_cells(r.score, r.flagged),
         f"{r.trades_per_second:,.0f}"]
        for r in results
    ]
    return table(["detector", "events", "found", "false alarms", *SCORE_HEADER, "trades/s"], rows)


def kinds_table(score: Score) -> str:
    rows = [[kind, k.events, k.found, number(k.recall), delay(k.median_delay)] for kind, k in score.by_kind().items()]
    rows.append(["all", score.events, score.found, number(score.recall), delay(score.median_delay)])
    return table(["kind", "events", "found", "recall", "median delay"], rows)


def recall_by_kind_table(results: Sequence[DetectorResult]) -> str:
    """Events found per kind, one row per detector: which detector catches what."""
    kinds = sorted({kind for r in results for kind in r.score.by_kind()})
    rows = []
    for r in results:
        by_kind = r.score.by_kind()
        rows.append([r.name] + [f"{by_kind[k].found}/{by_kind[k].events}" if k in by_kind else "-" for k in kinds])
    return table(["detector", *kinds], rows)


def sessions_table(score: Score) -> str:
    """Events found per kind and session (pre-market, regular, after-hours)."""
    cells: dict[tuple[str, str], list[int]] = {}
    for outcome in score.outcomes:
        tally = cells.setdefault((outcome.event.kind, outcome.event.session), [0, 0])
        tally[0] += outcome.found
        tally[1] += 1
    kinds = sorted({kind for kind, _ in cells})
    sessions = [s for s in ("pre_market", "regular", "after_hours") if any(s == b for _, b in cells)]
    rows = [[kind] + [_fraction(cells.get((kind, s))) for s in sessions] for kind in kinds]
    return table(["kind", *sessions], rows)


def _fraction(tally: list[int] | None) -> str:
    return "-" if not tally else f"{tally[0]}/{tally[1]}"


def hours_table(columns: dict[str, tuple[Counter, Counter]]) -> str:
    """False alarms by hour of the day (New York): per column, (false alarms, trades) by hour."""
    hours = sorted({h for alarms, trades in columns.values() for h in trades})
    header = ["hour (New York)"]
    for name in columns:
        header += [f"{name}: false alarms", f"{name}: trades", f"{name}: per 100k"]
    rows = []
    for hour in hours:
        row: list[object] = [f"{hour:02d}:00-{hour + 1:02d}:00"]
        for alarms, trades in columns.values():
            per = 1e5 * alarms[hour] / trades[hour] if trades[hour] else None
            row += [alarms[hour], f"{trades[hour]:,}", number(per, 1)]
        rows.append(row)
    return table(header, rows)


INCIDENT_HEADER = ["events covered", "incidents per covered event", "kind right", "false incidents per 100k",
                   "true at high/critical", "false at high/critical", "false incidents", "auction incidents"]


def incident_cells(score: IncidentScore) -> list[str]:
    return [
        f"{number(score.covered_share)} ({score.covered}/{score.events})", number(score.incidents_per_event, 2),
        number(score.kind_right), f"{score.false_per_100k:.1f}", number(score.true_urgent, 2),
        number(score.false_urgent, 2), str(score.false_incidents), str(score.auctions),
    ]


def incident_target_cells() -> list[str]:
    return [TARGETS[k] for k in ("covered", "incidents_per_event", "kind_right", "false_per_100k",
                                 "true_urgent", "false_urgent")] + ["", ""]


def incident_kinds_table(score: IncidentScore) -> str:
    rows = [
        [kind, EXPECTED_KIND[kind], right, total, number(right / total if total else None)]
        for kind, (right, total) in score.kind_checks.items()
    ]
    levels = table(
        ["incidents", *LEVELS],
        [["true", *(score.true_levels[level] for level in LEVELS)],
         ["false", *(score.false_levels[level] for level in LEVELS)]],
    )
    return table(["injected kind", "expected incident kind", "right", "covered", "kind right"], rows) + "\n\n" + levels
