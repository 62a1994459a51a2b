"""Is the job keeping up? Its position in the input topic against the input topic's end.

"Lag 0" on the anomalies topic only says the page has read what the job wrote;
a job that stopped reading trades writes nothing, so that lag stays 0 while
detection is dead. The instrument summaries carry the input partition and offset
of each instrument's last processed trade: the furthest per partition is how far
the job got. Compared with the input topic's end (its high watermarks), over
time, that tells a working job from a stalled one:

- **stalled**: trades kept arriving (the end moved, at least half the stall time
  after the job's last progress) and the job did not move for the stall time;
- **falling behind**: the job moves, but the gap to the end grew by at least
  ``lag_warning`` trades over the stall time;
- otherwise **processing** (a gap that shrinks or holds) or **caught up**.

Summaries come at most once per second of event time per instrument, so the
last few trades before a pause may never show as processed: a gap alone is not
a stall, only a gap while new trades keep arriving.

A position is only what a summary claims, and anyone can write a summary. The
job cannot have processed a trade that is not on the topic yet, so a claim past
its partition's end is not believed: one summary claiming offset 2**63 used to
read as the job's position from then on, the gap stayed 0 and a stalled job
showed as caught up for good. A partition's position is the furthest claim its
end has reached, of every summary read. So a forged claim within the end counts
once, as a moment of progress, and a stall shows a stall time later.

Some brokers (the development broker, Tansu) report high watermarks per produce
batch rather than per message: the job's newest claims can lie past the end
until the next batch, so against them the gap may read a batch high; a stall
still shows, because the end still moves.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    state: str
    """"unknown", "waiting", "caught up", "processing", "falling behind" or "stalled"."""
    message: str
    gap: int | None
    """Trades on the input topic the job has not reported as processed (None when unknown)."""
    seconds_since_progress: float | None


class ProgressMonitor:
    def __init__(self, stall_seconds: float, lag_warning: int) -> None:
        self.stall_seconds = stall_seconds
        self.lag_warning = lag_warning
        self._reached: dict[int, int] = {}
        self._ends: dict[int, int] = {}
        self._progress_at: float | None = None
        self._end_moved_at: float | None = None
        self._gaps: deque[tuple[float, int]] = deque()

    def observe(self, now: float, ends: Mapping[int, int] | None, claims: Iterable[tuple[int, int]]) -> Progress:
        """``ends``: high watermark per input partition (None: topic missing); ``claims``: (partition,
        next offset to process) from summaries, those read since the last call and each instrument's
        newest (whose claim may lie past an end that catches up later). ``now`` in seconds (monotonic)."""
        if ends is None:
            return Progress("unknown", "the input topic does not exist (yet)", None, None)
        reached = _reached(ends, claims)
        if self._progress_at is None or any(
                offset > self._reached.get(partition, -1) for partition, offset in reached.items()):
            self._progress_at = now
        if self._end_moved_at is None or any(
                end > self._ends.get(partition, -1) for partition, end in ends.items()):
            self._end_moved_at = now
        self._reached.update({partition: max(offset, self._reached.get(partition, 0))
                              for partition, offset in reached.items()})
        self._ends = dict(ends)
        idle = now - self._progress_at
        if not self._reached:
            # No position to measure: no summary yet, or a job whose summaries do not carry one.
            # Saying nothing is better than calling a working job stalled.
            return Progress("waiting", "no instrument summary with an input position yet", None, None)
        gap = sum(max(0, end - self._reached.get(partition, 0)) for partition, end in ends.items())
        self._remember_gap(now, gap)
        arrived_later = self._end_moved_at - self._progress_at >= self.stall_seconds / 2
        if gap > 0 and idle >= self.stall_seconds and arrived_later:
            return Progress("stalled", f"no progress for {idle:.0f} s while trades keep arriving; "
                            f"{gap:,} trades behind the input end", gap, idle)
        growth = gap - self._gaps[0][1]
        if growth >= self.lag_warning and now - self._gaps[0][0] >= self.stall_seconds / 2:
            return Progress("falling behind", f"{gap:,} trades behind the input end, {growth:,} more than "
                            f"{now - self._gaps[0][0]:.0f} s ago", gap, idle)
        if gap == 0:
            return Progress("caught up", "no trade waiting on the input topic", 0, idle)
        return Progress("processing", f"{gap:,} trades behind the input end", gap, idle)

    def _remember_gap(self, now: float, gap: int) -> None:
        self._gaps.append((now, gap))
        while len(self._gaps) > 1 and now - self._gaps[1][0] >= self.stall_seconds:
            self._gaps.popleft()


def _reached(ends: Mapping[int, int], claims: Iterable[tuple[int, int]]) -> dict[int, int]:
    """Per partition, the furthest claimed position its end has reached (the others are not believed)."""
    reached: dict[int, int] = {}
    for partition, offset in claims:
        if offset <= ends.get(partition, -1):
            reached[partition] = max(offset, reached.get(partition, 0))
    return reached
