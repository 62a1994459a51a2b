"""What the job published for the recorded tapes, as the dashboard tests read it.

``record_fixture.py`` ran the job's dataflow over each tape and kept everything its
sinks received; ``World`` holds those messages in the order the job wrote them, and
answers the questions the tests ask of them (the last revision of each incident,
the newest summary of each instrument) the plain way, independently of the
dashboard's own code. A plain module (not a conftest) so the tests can import it:
tests/dashboard is put on ``sys.path`` by its conftest.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import orjson

from record_fixture import NVDA_OPEN, NVDA_TWO_DAYS, SYNTHETIC, read_lines, recording_path


@dataclass(frozen=True)
class World:
    """Every anomaly, incident update and instrument summary the job wrote, in its order."""

    anomalies: list[dict]
    incident_messages: list[dict]
    summaries: list[dict]
    dead_letters: list[dict]

    @staticmethod
    def lines(rows: list[dict]) -> list[bytes]:
        return [orjson.dumps(row) for row in rows]

    def symbols(self) -> list[str]:
        return sorted({summary["symbol"] for summary in self.summaries})

    def anomaly_counts(self) -> Counter:
        """Anomalies written per symbol: what the page must show as each instrument's total."""
        return Counter(record["symbol"] for record in self.anomalies)

    def final_incidents(self) -> dict[str, dict]:
        """The highest revision of each incident: what a reader of the compacted topic ends with."""
        final: dict[str, dict] = {}
        for message in self.incident_messages:
            known = final.get(message["incident_id"])
            if known is None or message["revision"] > known["revision"]:
                final[message["incident_id"]] = message
        return final

    def newest_summaries(self) -> dict[str, dict]:
        """The last summary the job wrote for each symbol (its newest state's)."""
        return {summary["symbol"]: summary for summary in self.summaries}

    def states(self, symbol: str) -> dict[int, dict]:
        """The last summary of each state (``since``) of ``symbol``, oldest state first."""
        return {summary["since"]: summary for summary in self.summaries if summary["symbol"] == symbol}


def load(*runs: str) -> World:
    """The recordings of ``runs``, one after the other, as one job's output."""
    parts = {part: [orjson.loads(line) for run in runs if recording_path(run, part).exists()
                    for line in read_lines(recording_path(run, part))]
             for part in ("anomalies", "incidents", "summaries", "dead_letters")}
    return World(parts["anomalies"], parts["incidents"], parts["summaries"], parts["dead_letters"])


def recorded_world() -> World:
    """The NVDA opening and the synthetic tape: the world most dashboard tests are run on."""
    return load(NVDA_OPEN, SYNTHETIC)


def two_day_world() -> World:
    """NVDA on 2020-12-28 (four trades) then 2025-05-09: one instrument, two states."""
    return load(NVDA_TWO_DAYS)
