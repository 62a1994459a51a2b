"""A market-like tape: many symbols, a few trading most, the rest illiquid.

A real equities feed is not a handful of busy symbols: activity is Zipf-skewed (the
top names print tens of thousands of trades a day, thousands of others a few
hundred), and the engine's cost per trade must not depend on that spread. This
generator makes such a tape for the benchmarks and the demo:

* ``symbols`` instruments ``M0000``, ``M0001``, ... (instrument ids 20,000 + index);
  symbol ``r`` (0-based) gets ``floor + (trades - floor * symbols) * w_r / sum(w)``
  trades with ``w_r = 1 / (r + 1) ** zipf``, so every symbol has at least ``floor``
  (120 by default: the illiquid tail trades 120-1,500 times a day at 1,000 symbols
  and 400,000 trades) and the top few most of the tape; ``even=True`` splits the
  trades evenly instead;
* each symbol follows the synthetic tape's per-symbol model (``connectors.synthetic``:
  one-cent ticks around a random-walk mid, heavy-tailed round-lot sizes, aggressor
  mix, clustered executions sharing a timestamp) at its own price level (log-uniform,
  5-500) and pace, spread over about the same six hours, and the symbols are merged in
  event-time order;
* ``events=True`` labels obvious events on illiquid symbols (fewer than
  ``ILLIQUID_MAX`` trades): one print repriced 5% off the market, or one print
  resized to 50 times the symbol's largest so far, at most one per symbol, after
  its first 30 trades. They come back as ``connectors.injection.LabelledEvent``.

Deterministic: the same arguments give the same tape. Use it from Python
(``generate_market(...)``, as ``benchmarks.market_scale`` and ``benchmarks.scaling`` do),
or write it as a Databento CSV that the backtest, the replay and the demo read:

    python -m connectors.market --symbols 1000 --trades 400000 --out out/market.csv [--events]
    DEMO_FILE=out/market.csv make demo
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

from connectors.injection import LabelledEvent
from connectors.synthetic import MEAN_PRINTS_PER_EXECUTION, REACTION_SHARE, SESSION_START_NS, _merge, _symbol_tape

SESSION_SECONDS = 6 * 3600
SPELL_STRETCH = float(np.exp(0.8**2 / 2))
FLOOR_TRADES = 120
ILLIQUID_MAX = 1_500
EVENT_OFF_MARKET = 0.05
EVENT_BLOCK_FACTOR = 50
EVENT_MIN_POSITION = 30


def symbol_counts(symbols: int, trades: int, zipf: float = 1.0, even: bool = False) -> np.ndarray:
    """Trades per symbol, most active first; they add up to ``trades``."""
    if symbols < 1 or trades < symbols:
        raise ValueError("need at least one symbol and one trade per symbol")
    if even:
        weights = np.ones(symbols)
        floor = 0
    else:
        weights = 1.0 / np.arange(1, symbols + 1) ** zipf
        floor = min(FLOOR_TRADES, trades // symbols)
    shares = (trades - floor * symbols) * weights / weights.sum()
    counts = floor + np.floor(shares).astype(np.int64)
    counts[: trades - int(counts.sum())] += 1  # hand out the rounding, busiest first
    return counts


def generate_market(
    symbols: int = 1_000, trades: int = 400_000, seed: int = 0, *, zipf: float = 1.0, even: bool = False,
    events: bool = False,
) -> tuple[list[dict[str, Any]], list[LabelledEvent]]:
    """The merged tape (time order) and, with ``events``, the labelled events on illiquid symbols."""
    rng = np.random.default_rng(seed)
    counts = symbol_counts(symbols, trades, zipf, even)
    prices = np.exp(rng.uniform(np.log(5.0), np.log(500.0), symbols)).round(2)
    tapes = []
    for index, count in enumerate(counts):
        executions = max(1.0, count / MEAN_PRINTS_PER_EXECUTION)
        # Half the gaps are reactions within milliseconds; the others are stretched by the
        # busy and quiet spells (E[1 / intensity] = exp(0.8 ** 2 / 2) for the lognormal spells).
        mean_gap_s = SESSION_SECONDS / ((1.0 - REACTION_SHARE) * executions * SPELL_STRETCH)
        tapes.append(_symbol_tape(
            index, int(count), rng, symbol=f"M{index:04d}", base_price=float(prices[index]), mean_gap_s=mean_gap_s,
            start_ns=SESSION_START_NS + int(rng.integers(0, 600)) * 1_000_000_000,
        ))
    labelled = _label_events(tapes, rng) if events else []
    return _merge(tapes), labelled


def _label_events(tapes: list[list[dict[str, Any]]], rng: np.random.Generator) -> list[LabelledEvent]:
    """Change one trade on each illiquid symbol into an obvious event, alternating the kinds."""
    labelled = []
    for tape in tapes:
        if not EVENT_MIN_POSITION * 2 <= len(tape) < ILLIQUID_MAX:
            continue
        at = int(rng.integers(EVENT_MIN_POSITION, len(tape)))
        trade = tape[at]
        if len(labelled) % 2 == 0:
            direction = 1.0 if rng.random() < 0.5 else -1.0
            market = float(np.median([t["price"] for t in tape[max(0, at - 10):at]]))
            trade["price"] = round(market * (1.0 + direction * EVENT_OFF_MARKET), 2)
            kind, description = "off_market", f"print {direction * 100 * EVENT_OFF_MARKET:+.0f}% off the market ({market:.2f})"
        else:
            largest = max(t["size"] for t in tape[:at])
            trade["size"] = int(largest * EVENT_BLOCK_FACTOR)
            kind, description = "block", f"{trade['size']:,} shares: {EVENT_BLOCK_FACTOR}x the symbol's largest so far"
        labelled.append(LabelledEvent(kind, trade["symbol"], trade["sequence"], trade["sequence"], 1, trade["ts_event"], description))
    return labelled


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m connectors.market", description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=1_000)
    parser.add_argument("--trades", type=int, default=400_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--zipf", type=float, default=1.0, help="exponent of the activity skew (default 1)")
    parser.add_argument("--even", action="store_true", help="the same number of trades for every symbol")
    parser.add_argument("--events", action="store_true", help="label obvious events on illiquid symbols")
    parser.add_argument("--out", default="out/market.csv",
                        help="Databento-style CSV to write, its folder created (events beside it; default out/market.csv)")
    args = parser.parse_args(argv)
    import json

    import pandas as pd

    from connectors.codec import TRADE_FIELDS

    tape, events = generate_market(args.symbols, args.trades, args.seed, zipf=args.zipf, even=args.even, events=args.events)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(tape, columns=list(TRADE_FIELDS)).to_csv(args.out, index=False)
    print(f"{len(tape):,} trades of {args.symbols:,} symbols -> {args.out}")
    if events:
        labels = args.out.rsplit(".", 1)[0] + ".events.json"
        with open(labels, "w") as handle:
            json.dump([event.to_dict() for event in events], handle, indent=1)
        print(f"{len(events)} labelled events -> {labels}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
