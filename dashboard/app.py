"""The analyst's page: ``streamlit run dashboard/app.py`` (from the repository root).

Incidents first (the queue, one incident opened with its trades, anomalies and
explanation, and the analyst's decision on it), then every instrument, then the
anomalies held in memory, and the error log. The live part is one
``st.fragment`` that re-runs every ``DASHBOARD_REFRESH_SECONDS``; it only draws
what the feed's background reader has already read, so a refresh is quick, only
that part is redrawn, in place, and widgets keep their state. Kafka trouble and
bad records never reach the page as a stack trace: they are a banner and lines
in the error log, and a section that fails to draw says so while the others stay.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from dashboard import views
from dashboard.config import DashboardConfig, DashboardConfigError
from dashboard.feed import FeedView, LiveFeed

# A new page (or "Retry now") waits this long at most per topic to catch up with what is
# already published. (Comments, not docstrings: Streamlit's "magic" would print a bare string.)
FIRST_READ_SECONDS = 5.0

# Streamlit fades what it is redrawing once a rerun takes over half a second: with the job and
# the replay on the same two cores (the demo), the live part then greyed out at every refresh.
# The page says when it was updated; a redraw in place should not look like a page in trouble.
NO_FADING = """<style>
[data-testid="stElementContainer"][data-stale="true"] { opacity: 1 !important; transition: none !important; }
</style>"""


def session_feed(config: DashboardConfig) -> LiveFeed:
    """One feed per browser session, replaced when the configuration changes."""
    feed = st.session_state.get("feed")
    if feed is None or feed.config != config:
        if feed is not None:
            feed.close()
        feed = st.session_state["feed"] = LiveFeed(config)
        with st.spinner("Reading the topics ..."):
            feed.refresh(FIRST_READ_SECONDS)
    return feed


def section(feed: LiveFeed, name: str, draw: Callable[[], None]) -> None:
    """Draw one section; if it fails, say so and log why, and let the rest of the page draw."""
    try:
        draw()
    except Exception as error:  # noqa: BLE001 - the page boundary: say what broke, keep the page
        feed.errors.add("page", f"could not draw the {name}: {type(error).__name__}: {error}")
        st.error(f"The {name} could not be drawn; the error log below says why.")


def live_view(feed: LiveFeed) -> None:
    config = feed.config
    if st.session_state.get("retry"):
        feed.refresh(FIRST_READ_SECONDS)
    view: FeedView = feed.view(st.session_state.get("incident"))
    views.status(view, config)
    known = set(view.summaries) | set(view.in_memory) | {item.symbol for item in view.incidents.values()}
    options = sorted(known | set(st.session_state.get("symbols", [])))  # a choice stays an option
    symbols = st.multiselect("Symbols", options, key="symbols", placeholder="all instruments")
    section(feed, "totals", lambda: views.tiles(view, symbols, config))
    st.subheader("Incidents")
    section(feed, "incidents", lambda: views.incident_section(feed, view, symbols))
    st.subheader("Instruments")
    section(feed, "instruments", lambda: views.instrument_section(view, symbols))
    st.subheader("Anomalies in memory")
    section(feed, "anomalies", lambda: views.anomaly_section(view, symbols))
    views.error_log(feed, view)


def main() -> None:
    st.set_page_config(page_title="Trade anomalies", layout="wide")
    st.html(NO_FADING)
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
