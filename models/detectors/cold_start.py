"""The cold-start detector: one model shared by every instrument that has none of its own yet.

An instrument's own models serve from its 1,501st trade; most symbols of a real market
never trade that often in a day, and an obvious event on them (a print 5% off the
market, a block fifty times anything the symbol printed) would go unreported. This
detector scores those trades on two inputs that mean the same on any instrument, so
one set of thresholds serves all of them:

* ``deviation_bps``: the price against the median of the previous 20 prices, in bp;
* ``size_vs_max``: the size against the largest of the previous 100 sizes.

Each is one vote (``score >= threshold``); one vote is an anomaly. It scores from an
instrument's ``from_trade``-th trade (the medians need a few trades behind them) until
its own models serve, and then never again: the instrument's three detectors refine it.

The thresholds were measured, not guessed (``docs/PERFORMANCE.md``, *Cold start*): on
the market tape of ``connectors.market`` (seed 0) no natural trade of an illiquid symbol
deviates 150 bp, and 17 of 261,710 are 30 times the largest of the 100 before them;
on the first 1,500 trades of the four NVDA days the largest deviation is 15 bp and the
largest size ratio 6.9.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

NAMES = ("cold_start_price", "cold_start_size")
INPUTS = ("deviation_bps", "size_vs_max")


@dataclass(frozen=True)
class ColdStartVote:
    from_trade: int = 30
    """The first trade (1-based, per instrument) this detector scores."""
    price_bps: float = 200.0
    """``|deviation_bps|`` at which the price votes."""
    size_vs_max: float = 30.0
    """``size_vs_max`` at which the size votes."""

    @property
    def thresholds(self) -> tuple[float, float]:
        return self.price_bps, self.size_vs_max

    def score(self, deviation_bps: np.ndarray, size_vs_max: np.ndarray) -> np.ndarray:
        """One row per trade: ``|deviation_bps|`` and ``size_vs_max``."""
        return np.column_stack([np.abs(deviation_bps), size_vs_max])

    def vote(self, scores: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """Votes per trade and input; trades before ``from_trade`` never vote."""
        votes = scores >= np.array(self.thresholds)
        votes[positions < self.from_trade] = False
        return votes

    def flagged(self, deviation_bps: np.ndarray, size_vs_max: np.ndarray, first_position: int) -> np.ndarray:
        """Rows with at least one vote, for trades at positions ``first_position`` onwards: what
        ``vote(score(...), positions).any(axis=1)`` selects, in one compiled pass (called once per
        instrument batch of every young instrument, where five numpy calls cost several µs for a
        handful of trades that nearly never vote)."""
        rows = np.empty(len(deviation_bps), np.int64)
        count = _voting_rows(deviation_bps, size_vs_max, max(0, self.from_trade - first_position),
                             self.price_bps, self.size_vs_max, rows)
        return rows[:count]


@njit(cache=True, nogil=True)
def _voting_rows(deviation_bps, size_vs_max, start, price_bps, size_threshold, rows):
    """Write the rows from ``start`` on with a vote into ``rows``; return how many."""
    count = 0
    for row in range(start, deviation_bps.shape[0]):
        if abs(deviation_bps[row]) >= price_bps or size_vs_max[row] >= size_threshold:
            rows[count] = row
            count += 1
    return count
