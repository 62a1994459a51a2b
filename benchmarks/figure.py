"""A figure of one symbol's price with the injected events and the product's alarms.

The x axis is the trade number, not time, because the scoring counts in trades
and because pre-market minutes would otherwise squeeze the session. The price is
drawn as the low and high of each bucket of trades, so a one-trade spike stays
visible on a day of 200,000 trades.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from benchmarks.scoring import Score

KIND_COLOURS = {
    "off_market": "#d62728", "block": "#9467bd", "burst": "#ff7f0e",
    "ramp": "#2ca02c", "flash_crash": "#8c564b", "sweep": "#17becf",
}
BUCKETS = 4_000


def price_figure(
    symbol: str, prices: np.ndarray, score: Score, alarm_positions: np.ndarray, title: str
) -> go.Figure:
    figure = go.Figure()
    x, y = _low_high(prices)
    figure.add_trace(go.Scattergl(x=x, y=y, mode="lines", name=f"{symbol} price", line={"width": 1, "color": "#555"}))
    for outcome in (o for o in score.outcomes if o.event.symbol == symbol):
        end = outcome.position + outcome.event.trade_count - 1
        figure.add_vrect(
            x0=outcome.position - 50, x1=end + 50, line_width=0, opacity=0.25,
            fillcolor=KIND_COLOURS.get(outcome.event.kind, "#999"),
        )
    for found in (True, False):
        chosen = [o for o in score.outcomes if o.event.symbol == symbol and o.found == found]
        figure.add_trace(go.Scatter(
            x=[o.position for o in chosen], y=[prices[o.position] for o in chosen], mode="markers",
            name="event found" if found else "event missed",
            marker={"symbol": "circle" if found else "circle-open", "size": 11, "color": "#2ca02c" if found else "#d62728"},
            text=[f"{o.event.kind}: {o.event.description}; delay {o.delay_trades}" for o in chosen],
        ))
    false_starts = score.false_alarm_positions.get(symbol, [])
    figure.add_trace(go.Scatter(
        x=false_starts, y=prices[false_starts] if len(false_starts) else [], mode="markers",
        name="false alarm", marker={"symbol": "x", "size": 9, "color": "#d62728"},
    ))
    figure.add_trace(go.Scattergl(
        x=alarm_positions, y=prices[alarm_positions] if len(alarm_positions) else [], mode="markers",
        name="anomaly (product)", marker={"size": 4, "color": "#1f77b4"},
    ))
    figure.update_layout(title=title, xaxis_title=f"{symbol} trade number", yaxis_title="price", height=600, width=1400)
    return figure


def _low_high(prices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    size = max(1, len(prices) // BUCKETS)
    starts = np.arange(0, len(prices), size)
    lows = np.minimum.reduceat(prices, starts)
    highs = np.maximum.reduceat(prices, starts)
    x = np.repeat(starts, 2)
    y = np.column_stack([lows, highs]).ravel()
    return x, y


def save_figure(figure: go.Figure, stem: Path) -> list[Path]:
    """HTML always; PNG when kaleido finds a Chrome (Debian's chromium is used if present)."""
    written = [stem.with_suffix(".html")]
    figure.write_html(written[0], include_plotlyjs="cdn")
    chromium = shutil.which("chromium")
    if chromium:
        os.environ.setdefault("BROWSER_PATH", chromium)
    try:
        figure.write_image(stem.with_suffix(".png"))
        written.append(stem.with_suffix(".png"))
    except Exception as error:  # kaleido raises several kinds when no browser is usable
        print(f"PNG not written ({type(error).__name__}: {error}); the HTML figure has everything")
    return written


def positions_of(sequences: np.ndarray, anomalies: list[dict[str, Any]], symbol: str) -> np.ndarray:
    wanted = np.array([a["sequence"] for a in anomalies if a["symbol"] == symbol], dtype=np.int64)
    return np.searchsorted(sequences, wanted)
