"""The result tables: one row per detector, and per event kind for the product."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.scoring import Score


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


def _delay(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def detectors_table(results: list[DetectorResult]) -> str:
    header = "| detector | recall | precision | F1 | false alarms | per 100k trades | median delay | flagged | trades/s |"
    lines = [header, "|" + "---|" * 9]
    for r in results:
        s = r.score
        lines.append(
            f"| {r.name} | {s.recall:.3f} | {s.precision:.3f} | {s.f1:.3f} | {s.false_alarms} "
            f"| {s.false_alarms_per_100k:.1f} | {_delay(s.median_delay)} "
            f"| {r.flagged:,} ({100 * r.flagged / s.trades:.2f}%) | {r.trades_per_second:,.0f} |"
        )
    return "\n".join(lines)


def kinds_table(score: Score) -> str:
    lines = ["| kind | events | found | recall | median delay |", "|---|---|---|---|---|"]
    for kind, k in score.by_kind().items():
        lines.append(f"| {kind} | {k.events} | {k.found} | {k.recall:.3f} | {_delay(k.median_delay)} |")
    lines.append(
        f"| all | {score.events} | {score.found} | {score.recall:.3f} | {_delay(score.median_delay)} |"
    )
    return "\n".join(lines)


def recall_by_kind_table(results: list[DetectorResult]) -> str:
    """Events found per kind, one row per detector: which detector catches what."""
    kinds = sorted({kind for r in results for kind in r.score.by_kind()})
    lines = ["| detector | " + " | ".join(kinds) + " |", "|" + "---|" * (len(kinds) + 1)]
    for r in results:
        by_kind = r.score.by_kind()
        cells = [f"{by_kind[k].found}/{by_kind[k].events}" if k in by_kind else "-" for k in kinds]
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
