"""Plotly figures for the page, built from validated records and price points.

Symbols come from the wire and Plotly renders a subset of HTML in trace names and
hover text, so every piece of data text is HTML-escaped before it reaches a
figure: it is shown as text, never interpreted. Every number reaching a figure
has passed ``dashboard.records`` (finite, in range, times within 1990-2100), so
one bad record cannot blank a chart. Time axes are New York wall-clock time.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.buffer import PriceLine
from dashboard.clock import new_york_index, utc_text
from dashboard.metrics import detector_vote_counts
from dashboard.records import LEVELS, Anomaly, Incident

LEVEL_COLOURS = {"low": "#8da0cb", "medium": "#f2c14e", "high": "#f28e2b", "critical": "#d62728"}
MAX_PRICE_PANELS = 6
SEVERITY_BIN = 0.05
NEW_YORK_AXIS = "event time (New York)"


def plain(text: Any) -> str:
    """Untrusted text made safe for Plotly's HTML-like labels: ``<``, ``>`` and ``&``
    become entities, which Plotly draws as the characters (it leaves ``&quot;`` as is,
    and quotes cannot open a tag anyway)."""
    return html.escape(str(text), quote=False)


def _markers(records: list[Anomaly], level: str, **extra: Any) -> go.Scatter:
    return go.Scatter(
        x=new_york_index([record.ts_ns for record in records]), y=[record.price for record in records],
        mode="markers", marker={"color": LEVEL_COLOURS[level], "size": 9, "line": {"width": 0.5}},
        name=level, legendgroup=level,
        hovertext=[f"{plain(record.symbol)} {level} severity {record.severity:.3f}<br>"
                   f"{utc_text(record.ts_ns)} UTC<br>{plain(record.anomaly_id)}" for record in records],
        hoverinfo="text+x+y", **extra,
    )


def price_figure(
    prices: Mapping[str, PriceLine], records: list[Anomaly], symbols: Sequence[str]
) -> go.Figure:
    """One panel per instrument: the price line from its summaries, anomalies as markers by level.

    Without summaries the anomalies' own prices still show where and when they happened.
    """
    shown = list(symbols)[:MAX_PRICE_PANELS]
    figure = make_subplots(
        rows=max(1, len(shown)), cols=1, shared_xaxes=False, vertical_spacing=0.08,
        subplot_titles=[plain(symbol) for symbol in shown] or [""],
    )
    legend_shown: set[str] = set()
    for row, symbol in enumerate(shown, start=1):
        # In event-time order, once each: a restarted job sends its replayed epoch's summaries again.
        points = sorted(set(prices[symbol].points())) if symbol in prices else []
        if points:
            figure.add_trace(go.Scattergl(
                x=new_york_index([stamp for stamp, _ in points]), y=[price for _, price in points],
                mode="lines", line={"color": "#4c72b0", "width": 1}, name=f"{plain(symbol)} price",
                showlegend=False, hoverinfo="x+y",
            ), row=row, col=1)
        for level in LEVELS:
            marked = [record for record in records if record.symbol == symbol and record.level == level]
            if marked:
                figure.add_trace(_markers(marked, level, showlegend=level not in legend_shown), row=row, col=1)
                legend_shown.add(level)
    figure.update_layout(
        title=f"Price and anomalies per instrument ({NEW_YORK_AXIS})", height=max(320, 230 * len(shown)),
        margin={"l": 50, "r": 10, "t": 60, "b": 30}, uirevision="price",
    )
    return figure


def incident_figure(incident: Incident, members: list[Anomaly]) -> go.Figure:
    """The incident's price path, zoomed to it and its members: the incident span shaded, the
    reference price dashed, member anomalies marked by level.

    An open incident is republished only when something an analyst sees changes (its kind or
    level, twice the members), so members read since its last message may lie past its path:
    the zoom takes them in too."""
    figure = go.Figure()
    path = incident.price_path
    if len(path):
        figure.add_trace(go.Scatter(
            x=new_york_index(list(path.times)), y=list(path.prices),
            mode="lines+markers", line={"color": "#4c72b0", "width": 1.5}, marker={"size": 3},
            name="trades", hoverinfo="text+x+y",
            hovertext=[f"size {size if size >= 0 else '?'} side {side}<br>{utc_text(stamp)} UTC"
                       for stamp, size, side in zip(path.times, path.sizes, path.sides)],
        ))
    for level in LEVELS:
        marked = [record for record in members if record.level == level]
        if marked:
            figure.add_trace(_markers(marked, level))
    start, end = new_york_index([incident.first_ns, incident.last_ns])
    figure.add_vrect(x0=start, x1=end if end > start else start + pd.Timedelta(milliseconds=1),
                     fillcolor=LEVEL_COLOURS[incident.level], opacity=0.12, line_width=0)
    if incident.reference_price is not None:
        figure.add_hline(y=incident.reference_price, line={"dash": "dash", "color": "#777", "width": 1},
                         annotation_text="reference price", annotation_position="bottom left")
    times = [*path.times, incident.first_ns, incident.last_ns, *(record.ts_ns for record in members)]
    left, right = new_york_index([min(times), max(times)])
    pad = max((right - left) * 0.03, pd.Timedelta(milliseconds=5)).floor("us")
    figure.update_layout(
        title=f"{plain(incident.symbol)}: the incident's trades ({NEW_YORK_AXIS})", height=420,
        xaxis={"range": [left - pad, right + pad]}, yaxis={"title": "price"},
        margin={"l": 50, "r": 10, "t": 50, "b": 30}, uirevision=plain(incident.incident_id),
    )
    return figure


def severity_figure(records: list[Anomaly]) -> go.Figure:
    figure = go.Figure()
    for level in LEVELS:
        figure.add_trace(go.Histogram(
            x=[record.severity for record in records if record.level == level], name=level,
            marker_color=LEVEL_COLOURS[level], xbins={"start": 0.0, "end": 1.0, "size": SEVERITY_BIN},
        ))
    figure.update_layout(
        title="Severity distribution", barmode="stack", xaxis={"range": [0, 1], "title": "severity"},
        yaxis={"title": "anomalies"}, height=320, margin={"l": 40, "r": 10, "t": 50, "b": 40},
        uirevision="severity",
    )
    return figure


def per_minute_counts(records: list[Anomaly]) -> pd.DataFrame:
    """Anomalies per minute of event time and level: columns minute (New York), level, anomalies."""
    if not records:
        return pd.DataFrame({"minute": new_york_index([]), "level": [], "anomalies": []})
    frame = pd.DataFrame({
        "minute": new_york_index([record.ts_ns for record in records]).floor("min"),
        "level": [record.level for record in records],
    })
    return frame.groupby(["minute", "level"]).size().rename("anomalies").reset_index()


def per_minute_figure(records: list[Anomaly]) -> go.Figure:
    counts = per_minute_counts(records)
    figure = go.Figure()
    for level in LEVELS:
        rows = counts[counts["level"] == level]
        figure.add_trace(go.Bar(x=rows["minute"], y=rows["anomalies"], name=level, marker_color=LEVEL_COLOURS[level]))
    figure.update_layout(
        title="Anomalies per minute (event time, New York)", barmode="stack", height=320,
        yaxis={"title": "anomalies"}, margin={"l": 40, "r": 10, "t": 50, "b": 40}, uirevision="per-minute",
    )
    return figure


def detector_figure(records: list[Anomaly]) -> go.Figure:
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
