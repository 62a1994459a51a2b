"""Live view of what the detection job finds: ``streamlit run dashboard/app.py``.

The page only reads Kafka. Its live part is one ``st.fragment`` that re-runs every
``DASHBOARD_REFRESH_SECONDS``: only that part is redrawn, in place, so the page
does not flicker and the filters keep their state. Kafka trouble never reaches
the user as a stack trace: the feed records it and the page shows a banner and
the error log while it keeps retrying. Data text (symbols, reasons, ids) is only
ever shown through text elements, never as HTML or Markdown.
"""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import streamlit as st

from dashboard.buffer import LEVELS
from dashboard.config import DashboardConfig, DashboardConfigError
from dashboard.feed import LiveFeed
from dashboard.figures import detector_figure, per_minute_figure, price_figure, severity_figure
from dashboard.metrics import compute_metrics, filter_records, latest_rows

# A new page waits this long at most to catch up with what is already published.
# (A comment, not a docstring: Streamlit's "magic" would print a bare string on the page.)
FIRST_READ_SECONDS = 5.0


def severity_text(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def utc_clock(moment: datetime) -> str:
    return moment.strftime("%H:%M:%S UTC")


def session_feed(config: DashboardConfig) -> LiveFeed:
    """One feed per browser session, replaced when the configuration changes."""
    feed = st.session_state.get("feed")
    if feed is None or feed.config != config:
        if feed is not None:
            feed.close()
        feed = st.session_state["feed"] = LiveFeed(config)
        st.session_state["first_read"] = True
    return feed


def show_metrics(records: list[dict]) -> None:
    metrics = compute_metrics(records)
    columns = st.columns(7)
    columns[0].metric("Anomalies", metrics.total)
    columns[1].metric("Average severity", severity_text(metrics.average_severity))
    columns[2].metric("Max severity", severity_text(metrics.max_severity))
    columns[3].metric("Critical", metrics.critical)
    for column, side in zip(columns[4:], ("Ask", "Bid", "None")):
        column.metric(f"Side {side}", metrics.by_side[side])


def show_error_log(feed: LiveFeed, broker_up: bool) -> None:
    entries = feed.errors.entries()
    with st.expander(f"Error log ({len(entries)})", expanded=not broker_up):
        if not entries:
            st.text("No problems so far.")
            return
        st.dataframe(
            pd.DataFrame([
                {"last seen (UTC)": entry.last_seen.strftime("%Y-%m-%d %H:%M:%S"), "kind": entry.kind,
                 "times": entry.count, "message": entry.message}
                for entry in entries
            ]),
            hide_index=True, key="error_log",
        )


def draw_anomalies(feed: LiveFeed) -> None:
    """Filters, metrics, figures and the table, for what the feed holds now."""
    records = feed.anomalies.records()
    known_symbols = sorted({record["symbol"] for record in records} | set(feed.prices.points()))
    # A chosen symbol stays an option after its anomalies leave the buffer.
    symbol_options = sorted(set(known_symbols) | set(st.session_state.get("symbols", [])))
    filter_columns = st.columns(2)
    chosen_symbols = filter_columns[0].multiselect("Symbols", symbol_options, key="symbols", placeholder="all")
    chosen_levels = filter_columns[1].multiselect("Levels", LEVELS, key="levels", placeholder="all")
    shown = filter_records(records, chosen_symbols, chosen_levels)
    show_metrics(shown)
    panels = chosen_symbols or known_symbols
    st.plotly_chart(price_figure(feed.prices.points(), shown, panels), key="price_chart")
    left, middle, right = st.columns(3)
    left.plotly_chart(severity_figure(shown), key="severity_chart")
    middle.plotly_chart(per_minute_figure(shown), key="per_minute_chart")
    right.plotly_chart(detector_figure(shown), key="detector_chart")
    st.subheader("Latest anomalies")
    if shown:
        st.dataframe(pd.DataFrame(latest_rows(shown)), hide_index=True, key="latest_table")
    else:
        st.text("No anomalies to show yet.")


def live_view(feed: LiveFeed) -> None:
    config = feed.config
    first = st.session_state.pop("first_read", False)
    status = feed.refresh(FIRST_READ_SECONDS if first else min(1.0, config.refresh_seconds / 2))
    if not status.broker_up:
        st.error(
            f"Kafka broker unreachable at {config.brokers}. Retrying every {config.refresh_seconds:g} s; "
            "the figures below show the last data received."
        )
        st.button("Retry now", key="retry")
    elif status.detail:
        st.info(status.detail)
    st.caption(
        f"Updated {utc_clock(status.checked_at)} · topic {config.anomaly_topic} · lag {status.anomaly_lag} · "
        f"keeping the last {config.buffer_size} anomalies · duplicates ignored {feed.anomalies.duplicates} · "
        f"undecodable {feed.undecodable}"
    )

    try:
        draw_anomalies(feed)
    except Exception as error:  # noqa: BLE001 - the page boundary: say what broke, keep the page
        feed.errors.add("page", f"could not draw the anomalies: {type(error).__name__}: {error}")
        st.error("Part of the page could not be drawn; the error log below says why.")
    show_error_log(feed, status.broker_up)


def main() -> None:
    st.set_page_config(page_title="Trade anomalies", layout="wide")
    st.title("Trade anomaly detector")
    try:
        config = DashboardConfig.from_env()
    except DashboardConfigError as error:
        st.error("The dashboard configuration is invalid:")
        st.code(str(error), language=None)
        st.stop()
    feed = session_feed(config)
    st.fragment(live_view, run_every=config.refresh_seconds)(feed)


main()
