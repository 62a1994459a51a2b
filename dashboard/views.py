"""The sections of the page, each drawn from one ``FeedView``.

Data text (symbols, ids, summaries, notes, reasons) only ever goes through
``st.text``, ``st.dataframe``, widget options and escaped Plotly labels, never
through Markdown or HTML. Settings (topic names) come from the environment and
may appear in captions.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import NamedTuple

import pandas as pd
import streamlit as st

from connectors.review_writer import ReviewNotConfirmed, ReviewNotSaved
from dashboard import figures
from dashboard.clock import both_text, duration_text
from dashboard.config import DashboardConfig
from dashboard.feed import FeedView, LiveFeed
from dashboard.incidents import QueueFilter, incident_queue, worst_open_level
from dashboard.metrics import (
    compute_metrics, decision_rows, filter_records, incident_label, latest_rows, member_rows, members_text,
    queue_rows, review_change_text, review_text,
)
from dashboard.records import (
    DECISIONS, LEVELS, MAX_ANALYST_LENGTH, MAX_NOTE_LENGTH, Incident, Review, visible_name,
)
from dashboard.reviews import ReviewedMeanwhile, decisions_by_kind, identity
from dashboard.totals import instrument_rows, topic_totals

PROGRESS_ALERTS = {"stalled": st.error, "falling behind": st.warning}
DECISION_LABELS = {"acknowledged": "Acknowledge", "dismissed": "Dismiss as false positive"}
DECISION_TEXT = {"acknowledged": "acknowledged", "dismissed": "dismissed (false positive)"}


def data_table(rows: list[dict[str, object]], key: str, **options: object) -> None:
    """A table of plain values in a container named ``key`` (what tests and styles find it by);
    the table keeps its own stable key so a refresh updates it in place."""
    with st.container(key=key):
        st.dataframe(pd.DataFrame(rows), hide_index=True, key=f"{key}_table", **options)


def severity_text(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def count_text(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def status(view: FeedView, config: DashboardConfig) -> None:
    """Broker banner, the job's progress, and what the page holds."""
    if not view.broker_up:
        st.error(f"Kafka broker unreachable at {config.brokers}. Retrying every {config.refresh_seconds:g} s; "
                 "the page shows the last data received.")
        st.button("Retry now", key="retry")
    elif view.detail:
        st.info(view.detail)
    progress = view.progress
    alert = PROGRESS_ALERTS.get(progress.state)
    if alert is not None:
        alert(f"Job {progress.state}: {progress.message} (input topic {config.input_topic}).")
    st.caption(
        f"Updated {view.checked_at:%H:%M:%S} UTC · job {progress.state} ({progress.message}) · "
        f"anomalies lag {view.anomaly_lag:,} · keeping the newest {config.buffer_size:,} anomalies across "
        f"all instruments · duplicates ignored {view.duplicates:,} · invalid records {sum(view.invalid.values()):,}"
    )


def tiles(view: FeedView, symbols: Collection[str], config: DashboardConfig) -> None:
    """Totals counted by the job (newest summary per instrument); the buffer only if the job does not count."""
    totals = topic_totals(view.summaries.values(), symbols)
    columns = st.columns(9)
    if totals is not None:
        values = [totals.anomalies, severity_text(totals.average_severity), severity_text(totals.max_severity),
                  totals.critical, *(totals.by_side[side] for side in "ABN"), count_text(totals.incidents),
                  totals.instruments]
        st.caption(
            f"Totals since the job started, counted by the job: the newest summary of each of "
            f"{totals.instruments:,} instruments on {config.summary_topic}"
            f"{' for the chosen symbols' if symbols else ''}, not the anomalies held in memory."
        )
    else:
        shown = filter_records(view.anomalies, symbols)
        metrics = compute_metrics(shown)
        values = [metrics.total, severity_text(metrics.average_severity), severity_text(metrics.max_severity),
                  metrics.critical, *(metrics.by_side[side] for side in "ABN"), "–",
                  len({record.symbol for record in shown})]
        st.caption(
            f"Counted over the {len(shown):,} anomalies held in memory: the instrument summaries do not "
            "carry the job's totals (an older job, or none read yet)."
        )
    labels = ["Anomalies", "Average severity", "Max severity", "Critical", "Side Ask", "Side Bid", "Side None",
              "Incidents", "Instruments"]
    for column, label, value in zip(columns, labels, values):
        column.metric(label, value if isinstance(value, str) else f"{value:,}")


def incident_section(feed: LiveFeed, view: FeedView, symbols: Collection[str]) -> None:
    left, right = st.columns(2)
    hide_auctions = left.checkbox("Hide auction incidents (opening and closing crosses)", key="hide_auctions")
    hide_reviewed = right.checkbox("Hide reviewed incidents", key="hide_reviewed")
    queue = incident_queue(view.incidents.values(), view.reviews, QueueFilter(hide_auctions, hide_reviewed, symbols))
    open_count = sum(incident.is_open for incident in queue)
    st.caption(f"{len(queue):,} incidents ({open_count:,} open) of {len(view.incidents):,} in memory: "
               "the crosses last; open ones first, then by level, newest first.")
    if queue:
        data_table(queue_rows(queue, view.reviews), "incident_queue", height=min(38 + 35 * len(queue), 420))
    else:
        st.text("No incidents to show." if view.incidents else "No incidents yet.")
    options = [incident.incident_id for incident in queue]
    chosen = st.session_state.get("incident")
    if chosen and chosen not in view.incidents:
        del st.session_state["incident"]  # no longer in memory (closed long ago and evicted)
    elif chosen and chosen not in options:
        options.append(chosen)  # stays open after a filter hides it (e.g. once reviewed)
    st.selectbox(
        "Open incident", options, key="incident", index=None, placeholder="choose an incident to open",
        format_func=lambda incident_id: incident_label(view.incidents[incident_id]) if incident_id in view.incidents
        else incident_id,
    )
    incident = view.incidents.get(st.session_state.get("incident") or "")
    if incident is not None:
        incident_detail(feed, view, incident)
    counts = decisions_by_kind(view.reviews.values(), view.incidents)
    if counts:
        st.text("Decisions per incident kind (a kind dismissed again and again is a threshold to review):")
        data_table(decision_rows(counts), "decisions_by_kind")


def incident_detail(feed: LiveFeed, view: FeedView, incident: Incident) -> None:
    with st.container(border=True, key="incident_detail"):
        st.text(incident.summary or f"{incident.symbol} {incident.kind}")
        st.text(f"Started {both_text(incident.first_ns)}; last anomaly {both_text(incident.last_ns)}. "
                f"Status {incident.status}, revision {incident.revision}.")
        facts = {
            "Level": incident.level, "Severity": f"{incident.severity:.3f}",
            "Duration": duration_text(incident.duration_s), "Trades": count_text(incident.trades),
            "Price move": "–" if incident.price_move_bps is None else f"{incident.price_move_bps / 100:+.2f}%",
            "Recovered": "–" if incident.recovered is None else f"{incident.recovered:.0%}",
        }
        for column, (label, value) in zip(st.columns(len(facts)), facts.items()):
            column.metric(label, value)
        members = _members(view, incident)
        st.plotly_chart(figures.incident_figure(incident, members), key="incident_chart")
        if incident.explanation:
            st.text("Why:\n" + "\n".join(f"- {line}" for line in incident.explanation))
        st.text(f"Member anomalies: {members_text(len(members), incident)} "
                "(each detector: score / threshold, and whether it voted).")
        if members:
            data_table(member_rows(members), "incident_members")
        review_form(feed, view, incident)


def _members(view: FeedView, incident: Incident) -> list:
    kept = {record.anomaly_id: record for record in view.members.get(incident.incident_id, [])}
    for record in view.anomalies:
        if record.incident_id == incident.incident_id:
            kept[record.anomaly_id] = record
    return sorted(kept.values(), key=lambda record: (record.ts_ns, record.anomaly_id))


MAX_DRAFTS = 50
REPLACED_MEANWHILE = ("Not saved: another review of this incident was recorded while you had it open (shown above). "
                      "Click 'Replace review' again to replace it with yours.")
NOT_CONFIRMED = ("Not confirmed yet: {reason}. It may still record the review: it shows here as saved once this "
                 "page reads it back; until then your text stays in the form.")


class SaveOutcome(NamedTuple):
    saved: bool
    message: str
    """What to tell the analyst."""
    on_record: Review | None = None
    """The review on the topic now: the one saved, or another page's the writer found meanwhile."""
    unconfirmed: Review | None = None
    """The review written whose acknowledgement did not come in time: it may still be recorded."""


def _keep_newest(by_incident: dict) -> None:
    """The ``MAX_DRAFTS`` incidents added last (a session's memory of reviews stays bounded)."""
    while len(by_incident) > MAX_DRAFTS:
        del by_incident[next(iter(by_incident))]


def review_form(feed: LiveFeed, view: FeedView, incident: Incident) -> None:
    """The decision and note are the incident's own (a note typed on one incident is not offered on
    the next); the name is the session's. What was submitted but not saved is kept as a draft and
    comes back with the form, though the form left the page in between (Streamlit forgets a
    widget's value once a run does not draw it: the incident closed, or the page started over).

    A review recorded by another page after this one opened the incident (or after its last
    click) is not replaced by the next click: that click says so, and the one after replaces it.
    That holds for one this page has not read yet too: the writer reads the incident's partition
    to its end just before writing (only one written in the moment between that read and the
    write is still replaced: Kafka has no compare-and-set).

    A write the broker did not answer in time may still be recorded: the click says it is not
    confirmed yet and keeps the draft, and once the page reads that review back it says saved."""
    reviewed = st.container()  # the decision on record, filled in once this run's submission is handled
    review = view.reviews.get(incident.incident_id)
    _read_back(incident.incident_id, review)
    seen: dict[str, tuple | None] = st.session_state.setdefault("reviews_seen", {})
    if incident.incident_id not in seen:
        seen[incident.incident_id] = identity(review)
        _keep_newest(seen)
    decision_key, note_key = f"decision:{incident.incident_id}", f"note:{incident.incident_id}"
    drafts: dict[str, tuple[str, str]] = st.session_state.setdefault("review_drafts", {})
    if incident.incident_id in drafts:
        st.session_state.setdefault(decision_key, drafts[incident.incident_id][0])
        st.session_state.setdefault(note_key, drafts[incident.incident_id][1])
    if "analyst" not in st.session_state and "review_name" in st.session_state:
        st.session_state["analyst"] = st.session_state["review_name"]
    with st.form("review_form", border=True):
        decision = st.radio("Decision", DECISIONS, format_func=DECISION_LABELS.__getitem__, horizontal=True,
                            key=decision_key)
        # No max_chars: the browser drops a paste longer than it whole, without a word; a text too
        # long is refused on saving instead, saying so, and stays in the form to be shortened.
        analyst = st.text_input("Your name", key="analyst", placeholder=f"at most {MAX_ANALYST_LENGTH} characters")
        note = st.text_area("Note", key=note_key, height=80, placeholder=f"at most {MAX_NOTE_LENGTH} characters")
        submitted = st.form_submit_button("Save review" if review is None else "Replace review")
    if submitted:
        review = _submit(feed, incident, review, decision, analyst, note)
    if review is not None:
        reviewed.text(f"Reviewed: {review_text(review)} at {both_text(review.reviewed_at_ns)}"
                      f"{review_change_text(review, incident)}"
                      + (f"\nNote: {review.note}" if review.note else ""))
    # The outcome stays on the page (live refreshes re-run this without the click) until another incident opens.
    outcome = st.session_state.get("review_outcome")
    if outcome is not None and outcome[0] == incident.incident_id:
        (st.success if outcome[1] else st.error)(outcome[2])


def _submit(feed: LiveFeed, incident: Incident, review: Review | None, decision: str, analyst: str,
            note: str) -> Review | None:
    """Handles a click: keeps the text as a draft until the broker has it, records the outcome to
    show, and returns the review on record now (to show above the form)."""
    incident_id = incident.incident_id
    seen: dict[str, tuple | None] = st.session_state["reviews_seen"]
    drafts: dict[str, tuple[str, str]] = st.session_state["review_drafts"]
    unconfirmed: dict[str, tuple | None] = st.session_state.setdefault("reviews_unconfirmed", {})
    st.session_state["review_name"] = analyst
    drafts[incident_id] = (decision, note)  # until the broker has it
    if seen.get(incident_id) != identity(review):  # another page's review, read since
        outcome = SaveOutcome(False, REPLACED_MEANWHILE)
    else:  # the page's own review not confirmed yet is no other page's, should it be on the topic
        outcome = save_review(feed, incident, decision, analyst, note,
                              known=[seen.get(incident_id), unconfirmed.get(incident_id)])
    seen[incident_id] = identity(outcome.on_record or review)
    if outcome.unconfirmed is not None:
        unconfirmed[incident_id] = identity(outcome.unconfirmed)
        _keep_newest(unconfirmed)
    if outcome.saved:
        del drafts[incident_id]
        unconfirmed.pop(incident_id, None)
    _keep_newest(drafts)
    st.session_state["review_outcome"] = (incident_id, outcome.saved, outcome.message)
    return outcome.on_record or review


def _read_back(incident_id: str, review: Review | None) -> None:
    """A review whose write was not confirmed, now read back from the topic: it was saved after all,
    so the page says so and drops the draft (before, the page said 'not saved' and showed it on
    record a moment later)."""
    unconfirmed: dict[str, tuple | None] = st.session_state.get("reviews_unconfirmed", {})
    if review is None or unconfirmed.get(incident_id) != identity(review):
        return
    del unconfirmed[incident_id]
    st.session_state.get("review_drafts", {}).pop(incident_id, None)
    st.session_state.setdefault("reviews_seen", {})[incident_id] = identity(review)
    st.session_state["review_outcome"] = (incident_id, True, f"Saved: {DECISION_TEXT[review.decision]}.")


def save_review(
    feed: LiveFeed, incident: Incident, decision: str, analyst: str, note: str, known: list[tuple | None]
) -> SaveOutcome:
    """Writes the decision. ``known``: the reviews of the incident the analyst knows of (identities)."""
    analyst, note = visible_name(analyst), note.strip()
    if not analyst:  # nothing that shows: whitespace, zero-width or bidi characters
        return SaveOutcome(False, "Enter your name: a review says who decided.")
    if len(analyst) > MAX_ANALYST_LENGTH:  # numbers only in the alert: alerts render Markdown
        return SaveOutcome(False, f"Your name is {len(analyst):,} characters; a review keeps at most "
                                  f"{MAX_ANALYST_LENGTH}.")
    if len(note) > MAX_NOTE_LENGTH:
        return SaveOutcome(False, f"The note is {len(note):,} characters; a review keeps at most {MAX_NOTE_LENGTH}: "
                                  "shorten it.")
    decided = Review(incident.incident_id, decision, note, analyst, time.time_ns(), incident.symbol, incident.kind,
                     incident.level, incident.revision)
    try:
        feed.save_review(decided, known)
    except ReviewedMeanwhile as meanwhile:
        return SaveOutcome(False, REPLACED_MEANWHILE, on_record=meanwhile.review)
    except ReviewNotConfirmed as error:
        feed.errors.add("review not confirmed", f"{incident.incident_id}: {error}")
        return SaveOutcome(False, NOT_CONFIRMED.format(reason=error), unconfirmed=decided)
    except ReviewNotSaved as error:
        feed.errors.add("review not saved", f"{incident.incident_id}: {error}")
        return SaveOutcome(False, f"The review was not saved: {error}")
    # The analyst's own words stay out of this alert (alerts render Markdown); "Reviewed: ..." shows them as text.
    return SaveOutcome(True, f"Saved: {DECISION_TEXT[decision]}.", on_record=decided)


def instrument_section(view: FeedView, symbols: Collection[str]) -> None:
    open_levels = worst_open_level(view.incidents.values())
    rows = [row for row in instrument_rows(view.summaries, view.in_memory, open_levels)
            if not symbols or row["symbol"] in symbols]
    st.caption("One row per instrument: totals from the job's newest summary; "
               "'anomalies in memory' is what this page holds for the charts.")
    if rows:
        data_table(rows, "instruments")
    else:
        st.text("No instrument seen yet.")
    panels = list(symbols) or [row["symbol"] for row in rows]
    if len(panels) > figures.MAX_PRICE_PANELS:
        st.caption(f"Price charts of the first {figures.MAX_PRICE_PANELS} of {len(panels)} instruments; "
                   "choose symbols above to see others.")
    with st.container(key="price_block"):
        st.plotly_chart(figures.price_figure(view.prices, filter_records(view.anomalies, symbols), panels),
                        key="price_chart")


def anomaly_section(view: FeedView, symbols: Collection[str]) -> None:
    levels = st.multiselect("Levels", LEVELS, key="levels", placeholder="all levels")
    shown = filter_records(view.anomalies, symbols, levels)
    st.caption(f"{len(shown):,} of the {len(view.anomalies):,} anomalies held in memory "
               "(the newest of every instrument).")
    left, middle, right = st.columns(3)
    left.plotly_chart(figures.severity_figure(shown), key="severity_chart")
    middle.plotly_chart(figures.per_minute_figure(shown), key="per_minute_chart")
    right.plotly_chart(figures.detector_figure(shown), key="detector_chart")
    if shown:
        data_table(latest_rows(shown), "latest_anomalies")
    else:
        st.text("No anomalies to show yet.")


def error_log(feed: LiveFeed, view: FeedView) -> None:
    entries = feed.log_entries()
    with st.expander(f"Error log ({len(entries)})", expanded=not view.broker_up):
        if not entries:
            st.text("No problems so far.")
            return
        data_table([
            {"last seen (UTC)": entry.last_seen.strftime("%Y-%m-%d %H:%M:%S"), "kind": entry.kind,
             "times": entry.count, "message": entry.message}
            for entry in entries
        ], "error_log")
