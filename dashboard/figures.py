"""Plotly figures for the page, built from anomaly records and price points.

Symbols come from the wire and Plotly renders a subset of HTML in trace names and
hover text, so every piece of data text is HTML-escaped before it reaches a
figure: it is shown as text, never interpreted.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.buffer import LEVELS
from dashboard.metrics import detector_vote_counts

LEVEL_COLOURS = {"low": "#8da0cb", "medium": "#f2c14e", "high": "#f28e2b", "critical": "#d62728"}
MAX_PRICE_PANELS = 6
SEVERITY_BIN = 0.05


def plain(text: Any) -> str:
    """Untrusted text made safe for Plotly's HTML-like labels: ``<``, ``>`` and ``&``
    become entities, which Plotly draws as the characters (it leaves ``&quot;`` as is,
    and quotes cannot open a tag anyway)."""
    return html.escape(str(text), quote=False)


def event_times(stamps: Sequence[str]) -> pd.DatetimeIndex:
    """ISO-8601 UTC strings with nanoseconds as UTC-aware timestamps, to the microsecond
    (what a browser can draw; Plotly would otherwise warn for every point)."""
    return pd.DatetimeIndex(pd.to_datetime(list(stamps), utc=True, format="ISO8601")).floor("us")


def price_figure(
    prices: dict[str, list[tuple[str, float]]], records: list[dict[str, Any]], symbols: Sequence[str]
) -> go.Figure:
    """One panel per instrument: the price line, anomalies as markers coloured by level.

    The line comes from the instrument summaries; without them the anomalies'
    own prices still show where and when they happened.
    """
    shown = list(symbols)[:MAX_PRICE_PANELS]
    figure = make_subplots(
        rows=max(1, len(shown)), cols=1, shared_xaxes=True, vertical_spacing=0.06,
        subplot_titles=[plain(symbol) for symbol in shown] or [""],
    )
    legend_shown: set[str] = set()
    for row, symbol in enumerate(shown, start=1):
        points = prices.get(symbol, [])
        if points:
            figure.add_trace(go.Scattergl(
                x=event_times([stamp for stamp, _ in points]), y=[price for _, price in points],
                mode="lines", line={"color": "#4c72b0", "width": 1}, name=f"{plain(symbol)} price",
                showlegend=False, hoverinfo="x+y",
            ), row=row, col=1)
        for level in LEVELS:
            marked = [record for record in records if record["symbol"] == symbol and record["level"] == level]
            if not marked:
                continue
            figure.add_trace(go.Scattergl(
                x=event_times([record["ts_event"] for record in marked]),
                y=[record["price"] for record in marked],
                mode="markers", marker={"color": LEVEL_COLOURS[level], "size": 8, "line": {"width": 0.5}},
                name=level, legendgroup=level, showlegend=level not in legend_shown,
                hovertext=[f"{plain(record['anomaly_id'])} severity {record['severity']:.3f}" for record in marked],
                hoverinfo="text+x+y",
            ), row=row, col=1)
            legend_shown.add(level)
    figure.update_layout(
        title="Price over time (UTC) with anomalies", height=max(320, 220 * len(shown)),
        margin={"l": 40, "r": 10, "t": 60, "b": 30}, uirevision="price",
    )
    return figure


def severity_figure(records: list[dict[str, Any]]) -> go.Figure:
    figure = go.Figure()
    for level in LEVELS:
        values = [float(record["severity"]) for record in records if record["level"] == level]
        figure.add_trace(go.Histogram(
            x=values, name=level, marker_color=LEVEL_COLOURS[level],
            xbins={"start": 0.0, "end": 1.0, "size": SEVERITY_BIN},
        ))
    figure.update_layout(
        title="Severity distribution", barmode="stack", xaxis={"range": [0, 1], "title": "severity"},
        yaxis={"title": "anomalies"}, height=320, margin={"l": 40, "r": 10, "t": 50, "b": 40},
        uirevision="severity",
    )
    return figure


def per_minute_counts(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Anomalies per minute of event time and level: columns minute (UTC), level, anomalies."""
    if not records:
        return pd.DataFrame({"minute": pd.DatetimeIndex([], tz="UTC"), "level": [], "anomalies": []})
    frame = pd.DataFrame({
        "minute": event_times([record["ts_event"] for record in records]).floor("min"),
        "level": [record["level"] for record in records],
    })
    return frame.groupby(["minute", "level"]).size().rename("anomalies").reset_index()


def per_minute_figure(records: list[dict[str, Any]]) -> go.Figure:
    counts = per_minute_counts(records)
    figure = go.Figure()
    for level in LEVELS:
        rows = counts[counts["level"] == level]
        figure.add_trace(go.Bar(x=rows["minute"], y=rows["anomalies"], name=level, marker_color=LEVEL_COLOURS[level]))
    figure.update_layout(
        title="Anomalies per minute (event time, UTC)", barmode="stack", height=320,
        yaxis={"title": "anomalies"}, margin={"l": 40, "r": 10, "t": 50, "b": 40}, uirevision="per-minute",
    )
    return figure


def detector_figure(records: list[dict[str, Any]]) -> go.Figure:
    counts = detector_vote_counts(records)
    figure = go.Figure(go.Bar(
        x=[plain(name) for name in counts], y=list(counts.values()), marker_color="#55a868",
        text=list(counts.values()), textposition="auto",
    ))
    figure.update_layout(
        title="Which detectors voted", yaxis={"title": "anomalies voted for"}, height=320,
        margin={"l": 40, "r": 10, "t": 50, "b": 40}, uirevision="detectors",
    )
    return figure
