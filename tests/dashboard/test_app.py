"""The page, run by Streamlit's AppTest against the real broker holding what the job would publish.

Expected values are computed here from the published messages, not by the
dashboard's own functions, so a wrong count or order in the dashboard fails.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from streamlit.testing.v1 import AppTest

from connectors.broker import EmbeddedBroker, free_port
from connectors.publisher import timestamp_ns
from connectors.review_writer import ReviewWriter
from connectors.topic_readers import TopicTail
from dashboard.config import DashboardConfig
from dashboard.records import Review, decode_review
from publishing import REPUBLISHED, create_topics, publish, publish_world, topics_for
from recordings import World

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")
LEVELS = ("low", "medium", "high", "critical")

pytestmark = pytest.mark.broker


@pytest.fixture
def pages(monkeypatch):
    """``open_page(environment)`` runs the page as a new browser session would; every session's
    background reader is stopped at the end of the test."""
    opened: list[AppTest] = []

    def open_page(environment: dict[str, str]) -> AppTest:
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        app = AppTest.from_file(APP, default_timeout=60)
        app.run()
        assert not app.exception, [exception.message for exception in app.exception]
        opened.append(app)
        return app

    yield open_page
    for app in opened:
        feed = app.session_state["feed"] if "feed" in app.session_state else None
        if feed is not None:
            feed.close()


def metric_values(app: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric}


def table(app: AppTest, key: str):
    return app.get_by_key(key).dataframe[0].value


def queue_ids(app: AppTest) -> set[str]:
    """The incidents in the queue (none while the page has no queue to draw)."""
    try:
        return set(table(app, "incident_queue")["incident_id"])
    except KeyError:
        return set()


def until(app: AppTest, condition, timeout_s: float = 20.0) -> None:
    """Re-run the page until ``condition(app)`` holds: the background reader needs a moment."""
    deadline = time.monotonic() + timeout_s
    while True:
        app.run()
        assert not app.exception, [exception.message for exception in app.exception]
        if condition(app):
            return
        assert time.monotonic() < deadline, "the page never showed what was expected"
        time.sleep(0.3)


def reviews_on_topic(published) -> list:
    """Every message of the reviews topic, oldest first, as a reader from its start finds them."""
    tail = TopicTail(published.brokers, published.reviews, start_back=None)
    try:
        messages, _ = tail.read(max_seconds=10)
    finally:
        tail.close()
    return messages


def expected_tiles(anomalies: list[dict], incidents: int, instruments: int) -> dict[str, str]:
    """What the tiles must show, computed the plain way from the published records."""
    severities = [record["severity"] for record in anomalies]
    sides = Counter(record["side"] for record in anomalies)
    return {
        "Anomalies": f"{len(anomalies):,}", "Average severity": f"{sum(severities) / len(severities):.3f}",
        "Max severity": f"{max(severities):.3f}", "Critical": str(sum(r["level"] == "critical" for r in anomalies)),
        "Side Ask": str(sides["A"]), "Side Bid": str(sides["B"]), "Side None": str(sides["N"]),
        "Incidents": str(incidents), "Instruments": str(instruments),
    }


def queue_order(incidents: dict[str, dict]) -> list[str]:
    """Alarms before the crosses, then open first, then critical > high > medium > low, then the newest first."""
    return [incident_id for incident_id, _ in sorted(incidents.items(), key=lambda item: (
        item[1]["kind"] == "auction", item[1]["status"] == "closed", -LEVELS.index(item[1]["level"]),
        -timestamp_ns(item[1]["first_ts_event"]), item[0]))]


def test_totals_and_every_instrument_come_from_the_topics_not_the_small_buffer(pages, published, world):
    app = pages(published.environment(DASHBOARD_BUFFER_SIZE="100"))
    symbols = world.symbols()
    assert len(world.anomalies) > 100
    assert metric_values(app) == expected_tiles(world.anomalies, len(world.final_incidents()), len(symbols))
    instruments = table(app, "instruments")
    assert dict(zip(instruments["symbol"], instruments["anomalies"])) == world.anomaly_counts()
    in_memory = dict(zip(instruments["symbol"], instruments["anomalies in memory"]))
    assert sum(in_memory.values()) == 100 and min(in_memory.values()) > 0  # every instrument is in the charts
    held = app.session_state["feed"].view().anomalies
    for symbol in symbols:  # each one's newest, even one whose partition-mate wrote 100 more since
        newest = sorted((r for r in world.anomalies if r["symbol"] == symbol),
                        key=lambda r: (timestamp_ns(r["ts_event"]), r["anomaly_id"]))[-in_memory[symbol]:]
        assert {r.anomaly_id for r in held if r.symbol == symbol} == {r["anomaly_id"] for r in newest}
    newest = world.newest_summaries()
    assert dict(zip(instruments["symbol"], instruments["trades"])) == {
        symbol: summary["trades_processed"] for symbol, summary in newest.items()}
    caption = " ".join(caption.value for caption in app.caption)
    assert f"the newest summary of each of {len(symbols)} instruments" in caption


def test_an_instrument_that_started_afresh_shows_the_totals_of_both_its_states(pages, topics, two_days):
    """NVDA traded in 2020 and again in 2025: the job started it afresh, so its newest summary
    counts 2025 only; the page adds the 2020 state's summary to it."""
    publish_world(topics, two_days)
    app = pages(topics.environment())
    old, new = two_days.states("NVDA").values()
    [row] = table(app, "instruments").to_dict("records")
    assert (row["symbol"], row["trades"], row["anomalies"], row["last price"]) == (
        "NVDA", old["trades_processed"] + new["trades_processed"], len(two_days.anomalies), new["last_price"])
    assert row["trades"] > new["trades_processed"] and row["rejected"] == len(two_days.dead_letters)
    assert metric_values(app) == expected_tiles(two_days.anomalies, len(two_days.final_incidents()), 1)


def test_tiles_follow_the_symbol_filter(pages, published, world):
    app = pages(published.environment())
    symbols = world.symbols()[::2]  # NVDA and a synthetic one
    app.multiselect(key="symbols").set_value(symbols).run()
    chosen = [record for record in world.anomalies if record["symbol"] in symbols]
    incidents = {i for i, m in world.final_incidents().items() if m["symbol"] in symbols}
    assert metric_values(app) == expected_tiles(chosen, len(incidents), len(symbols))
    assert set(table(app, "incident_queue")["symbol"]) == set(symbols)
    assert set(table(app, "instruments")["symbol"]) == set(symbols)


def test_the_queue_puts_alarms_first_then_open_incidents_then_level_then_time(pages, published, world):
    app = pages(published.environment())
    assert len(world.anomalies) + REPUBLISHED + 1 <= DashboardConfig().buffer_size  # every message is read
    assert f"duplicates ignored {REPUBLISHED}" in app.caption[0].value  # a restarted job's repeats, counted once
    assert "invalid records 1" in app.caption[0].value  # the message that is not JSON
    queue = table(app, "incident_queue")
    final = world.final_incidents()
    assert list(queue["incident_id"]) == queue_order(final)
    first = final[queue["incident_id"][0]]
    row = queue.iloc[0]
    assert (row["status"], row["level"], row["symbol"], row["trades"]) == (
        first["status"], first["level"], first["symbol"], first["trades"])
    assert row["summary"] == first["summary"]
    assert row["start (UTC)"] == first["first_ts_event"].replace("T", " ")[:23]
    assert row["price move"] == f"{first['price_move_bps']:+,.0f} bp ({first['price_move_bps'] / 100:+.2f}%)"


def test_auction_incidents_are_marked_and_can_be_hidden(pages, published, world):
    app = pages(published.environment())
    auctions = {i for i, message in world.final_incidents().items() if message["kind"] == "auction"}
    queue = table(app, "incident_queue")
    marked = set(queue[queue["kind"] == "AUCTION (opening/closing cross)"]["incident_id"])
    assert marked == auctions and auctions  # the NVDA opening cross
    app.checkbox(key="hide_auctions").check().run()
    assert not auctions & set(table(app, "incident_queue")["incident_id"])
    assert len(table(app, "incident_queue")) == len(world.final_incidents()) - len(auctions)


def test_opening_an_incident_shows_its_trades_anomalies_and_explanation(pages, published, world):
    app = pages(published.environment())
    crash_id, crash = next((i, m) for i, m in world.final_incidents().items() if m["kind"] == "flash_crash")
    app.selectbox(key="incident").set_value(crash_id).run()
    texts = [text.value for text in app.text]
    assert crash["summary"] in texts
    assert any(text.startswith("Why:\n- ") and crash["explanation"][0]["text"] in text for text in texts)
    details = metric_values(app)
    assert details["Trades"] == f"{crash['trades']:,}" and details["Level"] == crash["level"]
    assert details["Price move"] == f"{crash['price_move_bps'] / 100:+.2f}%"
    members = table(app, "incident_members")
    expected = sorted((r for r in world.anomalies if r["incident_id"] == crash_id), key=lambda r: r["ts_event"])
    assert len(world.anomalies) <= DashboardConfig().buffer_size  # every member is in memory
    assert list(members["anomaly_id"]) == [r["anomaly_id"] for r in expected]
    first = expected[0]["detectors"]["isolation_forest"]
    assert members["isolation_forest"][0] == (
        f"{first['score']:.4g} / {first['threshold']:.4g} {'VOTE' if first['vote'] else 'no'}")
    chart = orjson.loads(app.get("plotly_chart")[0].proto.spec)
    path = chart["data"][0]
    assert path["name"] == "trades" and len(path["y"]) == len(crash["price_path"])
    assert sum(len(trace["y"]) for trace in chart["data"][1:]) == len(expected)  # every member marked
    held = len(expected)  # an open incident's last message may count fewer: it is republished as they double
    said = (f"{held:,} in memory of {crash['anomalies']:,}" if held <= crash["anomalies"] else
            f"{held:,} in memory; the incident's last message (revision {crash['revision']}) counted "
            f"{crash['anomalies']:,}")
    assert any(said in text for text in texts), said


def test_a_review_round_trip_through_the_broker(pages, published, world):
    environment = published.environment()
    watcher = pages(environment)  # another analyst's page, already open
    app = pages(environment)
    block_id, block = next((i, m) for i, m in world.final_incidents().items()
                           if m["status"] == "closed" and m["kind"] != "auction")
    app.selectbox(key="incident").set_value(block_id).run()
    app.radio(key=f"decision:{block_id}").set_value("dismissed")
    app.text_input(key="analyst").input("Ada Lovelace")
    app.text_area(key=f"note:{block_id}").input("a real move, confirmed with the desk: no action")
    app.button(key="FormSubmitter:review_form-Save review").click().run()
    assert [message.value for message in app.success] == ["Saved: dismissed (false positive)."]
    assert any(text.value.startswith("Reviewed: dismissed (false positive) by Ada Lovelace at ") for text in app.text)

    messages = reviews_on_topic(published)
    [saved] = [decode_review(message.value) for message in messages]
    assert (saved.incident_id, saved.decision, saved.analyst) == (block_id, "dismissed", "Ada Lovelace")
    assert (saved.symbol, saved.kind, saved.level) == (block["symbol"], block["kind"], block["level"])
    assert saved.note == "a real move, confirmed with the desk: no action"

    def shows_review(page: AppTest) -> bool:
        queue = table(page, "incident_queue")
        return list(queue[queue["incident_id"] == block_id]["review"]) == ["dismissed (false positive) by Ada Lovelace"]

    until(watcher, shows_review)  # an open page sees it
    restarted = pages(environment)  # a new page (or a restarted dashboard) reads it back
    assert shows_review(restarted)
    assert list(table(restarted, "decisions_by_kind").itertuples(index=False, name=None)) == [(block["kind"], 1, 0)]
    restarted.checkbox(key="hide_reviewed").check().run()
    assert block_id not in set(table(restarted, "incident_queue")["incident_id"])


def test_a_review_recorded_by_another_page_meanwhile_is_not_replaced_unawares(pages, published, world):
    """Two analysts open the same incident; Bob saves first. Ada's click, on a form she opened
    before Bob's review, does not overwrite it silently: it is refused once, saying a review was
    recorded meanwhile (Bob's, shown above), and her text stays; her next click replaces it, and
    Bob's page shows hers. The topic holds both, hers last."""
    environment = published.environment()
    ada, bob = pages(environment), pages(environment)
    incident_id = next(i for i, m in world.final_incidents().items() if m["kind"] != "auction")
    for page in (ada, bob):
        page.selectbox(key="incident").set_value(incident_id).run()
    bob.text_input(key="analyst").input("Bob")
    bob.button(key="FormSubmitter:review_form-Save review").click().run()
    assert [message.value for message in bob.success] == ["Saved: acknowledged."]
    until(ada, lambda page: any(text.value.startswith("Reviewed: acknowledged by Bob at ") for text in page.text))
    ada.text_input(key="analyst").input("Ada Lovelace")  # what she typed meanwhile, sent with her click
    ada.radio(key=f"decision:{incident_id}").set_value("dismissed")
    ada.text_area(key=f"note:{incident_id}").input("a stub quote")
    ada.button(key="FormSubmitter:review_form-Replace review").click().run()
    assert not ada.success
    assert [message.value for message in ada.error] == [
        "Not saved: another review of this incident was recorded while you had it open (shown above). "
        "Click 'Replace review' again to replace it with yours."]
    assert ada.text_area(key=f"note:{incident_id}").value == "a stub quote"
    ada.button(key="FormSubmitter:review_form-Replace review").click().run()
    assert [message.value for message in ada.success] == ["Saved: dismissed (false positive)."]
    until(bob, lambda page: any(text.value.startswith("Reviewed: dismissed (false positive) by Ada Lovelace at ")
                                for text in page.text))
    messages = reviews_on_topic(published)
    assert [orjson.loads(m.value)["analyst"] for m in messages] == ["Bob", "Ada Lovelace"]


def test_a_review_recorded_by_another_page_just_before_the_click_is_not_replaced_unawares(pages, published, world):
    """Bob's review reaches the topic in the instant before Ada clicks, before her page's reader has
    read it (the reader is held here by its lock, as a reader busy elsewhere would be). Her click is
    refused as if her page had read it: Bob's review shows above, her text stays, and her next click
    replaces it. Before, her click replaced Bob's without a word."""
    ada = pages(published.environment())
    incident_id = next(i for i, m in world.final_incidents().items() if m["kind"] != "auction")
    ada.selectbox(key="incident").set_value(incident_id).run()
    ada.text_input(key="analyst").input("Ada Lovelace")
    ada.radio(key=f"decision:{incident_id}").set_value("dismissed")
    ada.text_area(key=f"note:{incident_id}").input("a stub quote")
    bob = Review(incident_id, "acknowledged", "the desk confirmed the print", "Bob", time.time_ns())
    with ada.session_state["feed"]._read_lock:
        writer = ReviewWriter(published.brokers, published.reviews)
        writer.write(incident_id, bob.to_dict())
        writer.close()
        ada.button(key="FormSubmitter:review_form-Save review").click().run()
    assert not ada.success
    assert [message.value for message in ada.error] == [
        "Not saved: another review of this incident was recorded while you had it open (shown above). "
        "Click 'Replace review' again to replace it with yours."]
    assert any(text.value.startswith("Reviewed: acknowledged by Bob at ") for text in ada.text)
    assert ada.text_area(key=f"note:{incident_id}").value == "a stub quote"
    ada.run()  # a live refresh: the form was drawn before the click was handled, so it said 'Save review'
    ada.button(key="FormSubmitter:review_form-Replace review").click().run()
    assert [message.value for message in ada.success] == ["Saved: dismissed (false positive)."]
    messages = reviews_on_topic(published)
    assert [orjson.loads(m.value)["analyst"] for m in messages] == ["Bob", "Ada Lovelace"]


def test_a_review_larger_than_the_client_may_send_says_to_shorten_the_note(pages, published, world):
    """KAFKA_MESSAGE_MAX_BYTES=1000 (librdkafka's least) and a note of 500 emoji (2,000 bytes): the
    analyst read the client's error object ('KafkaError{code=MSG_SIZE_TOO_LARGE,val=10,...}'); now
    what is too large and what to do. Her text stays; a shorter note saves."""
    app = pages(published.environment(KAFKA_MESSAGE_MAX_BYTES="1000"))
    incident_id = next(iter(world.final_incidents()))
    app.selectbox(key="incident").set_value(incident_id).run()
    app.text_input(key="analyst").input("Ada Lovelace")
    app.text_area(key=f"note:{incident_id}").input("\U0001F600" * 500)
    app.button(key="FormSubmitter:review_form-Save review").click().run()
    [said] = [message.value for message in app.error]
    assert said.startswith("The review was not saved: it is ") and said.endswith(
        " bytes, more than the 1000 this dashboard's Kafka client may send (KAFKA_MESSAGE_MAX_BYTES): "
        "shorten the note."), said
    assert "KafkaError" not in said
    assert app.text_area(key=f"note:{incident_id}").value == "\U0001F600" * 500
    app.text_area(key=f"note:{incident_id}").input("\U0001F600" * 50)
    app.button(key="FormSubmitter:review_form-Save review").click().run()
    assert [message.value for message in app.success] == ["Saved: acknowledged."]


@pytest.mark.parametrize("name", ["", "   ", "\u200b\u200b", "\u200d\u2060\ufeff", "\u202e\u2066 \t", "\x00\x1b"],
                         ids=["empty", "spaces", "zero-width spaces", "joiners", "bidi controls", "control characters"])
def test_a_review_needs_a_name(pages, published, world, name):
    """A name that shows nothing (whitespace, zero-width or bidi characters) is no name: the review
    would read 'acknowledged by ' with nobody named. Nothing is written."""
    app = pages(published.environment())
    app.selectbox(key="incident").set_value(next(iter(world.final_incidents()))).run()
    app.text_input(key="analyst").input(name)
    app.button(key="FormSubmitter:review_form-Save review").click().run()
    assert [message.value for message in app.error] == ["Enter your name: a review says who decided."]
    assert not app.success
    assert not any(text.value.startswith("Reviewed:") for text in app.text)


def test_a_note_belongs_to_its_incident_and_an_unsaved_one_comes_back(pages, published, world):
    """A note typed on one incident was offered on the next one opened (one form, one note for
    the session), to be saved there by a click; and a note not saved was gone once its incident was
    closed. Now the note and decision are the incident's, and one submitted but not saved is kept."""
    app = pages(published.environment())
    first, second = [i for i, m in world.final_incidents().items() if m["kind"] != "auction"][:2]
    app.selectbox(key="incident").set_value(first).run()
    app.radio(key=f"decision:{first}").set_value("dismissed")
    app.text_area(key=f"note:{first}").input("stub quote on the first incident")
    app.button(key="FormSubmitter:review_form-Save review").click().run()  # no name: not saved
    assert [message.value for message in app.error] == ["Enter your name: a review says who decided."]
    app.selectbox(key="incident").set_value(second).run()
    assert (app.radio(key=f"decision:{second}").value, app.text_area(key=f"note:{second}").value) == (
        "acknowledged", "")
    app.selectbox(key="incident").set_value(None).run()  # the analyst closes the incident
    app.selectbox(key="incident").set_value(first).run()
    assert (app.radio(key=f"decision:{first}").value, app.text_area(key=f"note:{first}").value) == (
        "dismissed", "stub quote on the first incident")


def test_a_name_loses_its_bidi_and_control_characters(pages, published, world):
    """A right-to-left override in a name turned the rest of the line around ('Reviewed: acknowledged
    by <RLO>Mallory at ...' read backwards after the name); the name is saved and shown without it."""
    app = pages(published.environment())
    incident_id = next(iter(world.final_incidents()))
    app.selectbox(key="incident").set_value(incident_id).run()
    app.text_input(key="analyst").input("\u202eMal\u200blory\x1b ")
    app.button(key="FormSubmitter:review_form-Save review").click().run()
    assert [message.value for message in app.success] == ["Saved: acknowledged."]
    messages = reviews_on_topic(published)
    assert [orjson.loads(message.value)["analyst"] for message in messages] == ["Mallory"]


def test_a_review_says_which_revision_it_decided_and_an_escalation_comes_back(pages, topics, world):
    """An analyst dismisses an incident while it is a low 'other' of 2 anomalies; it then grows into
    a critical burst of 356. The review stays attached, says which revision it decided and what
    changed since, and 'Hide reviewed' does not hide the escalated incident."""
    burst_id = next(m["incident_id"] for m in world.incident_messages if m["kind"] == "burst")
    early = [m for m in world.incident_messages if m["incident_id"] == burst_id and m["revision"] <= 1]
    later = [m for m in world.incident_messages if m["incident_id"] == burst_id and m["revision"] > 1]
    others = [m for m in world.incident_messages if m["incident_id"] != burst_id]
    publish_world(topics, World(world.anomalies, others + early, world.summaries, world.dead_letters))
    app = pages(topics.environment())
    app.selectbox(key="incident").set_value(burst_id).run()
    app.radio(key=f"decision:{burst_id}").set_value("dismissed")
    app.text_input(key="analyst").input("Ada Lovelace")
    app.button(key="FormSubmitter:review_form-Save review").click().run()
    assert [message.value for message in app.success] == ["Saved: dismissed (false positive)."]
    until(app, lambda page: list(table(page, "incident_queue").set_index("incident_id").loc[[burst_id], "review"])
          == ["dismissed (false positive) by Ada Lovelace"])  # the incident as decided: nothing more said

    publish(topics.brokers, topics.incidents, world.lines(later), key_field="incident_id")
    final = later[-1]

    def escalated(page: AppTest) -> bool:
        return metric_values(page).get("Level") == "critical"

    until(app, escalated)
    queue = table(app, "incident_queue")
    [said] = list(queue[queue["incident_id"] == burst_id]["review"])
    change = f" on revision 1 (low, other); since then: level critical, kind burst, revision {final['revision']}"
    assert said == "dismissed (false positive) by Ada Lovelace" + change
    assert any(text.value.startswith("Reviewed: dismissed (false positive) by Ada Lovelace at ")
               and text.value.endswith(change) for text in app.text)
    app.checkbox(key="hide_reviewed").check().run()
    assert burst_id in set(table(app, "incident_queue")["incident_id"])  # not hidden: it escalated

    tail = TopicTail(topics.brokers, topics.reviews, start_back=None)
    try:
        messages, _ = tail.read(max_seconds=10)
    finally:
        tail.close()
    [saved] = [orjson.loads(message.value) for message in messages]
    assert (saved["revision"], saved["level"], saved["kind"]) == (1, "low", "other")


HOSTILE_ANOMALIES = [
    {"ts_event": "2999-01-01T00:00:00Z"}, {"ts_event": 2**64 - 1}, {"severity": 1e308}, {"severity": -5},
    {"price": "117"}, {"level": "urgent"}, {"detectors": {"zscore": {"score": "big", "vote": True}}},
    {"symbol": 7}, {"size": -1},
]


def test_hostile_records_go_to_the_error_log_and_hide_nothing(pages, topics, world):
    """Each bad record is logged with where it was; the valid ones before and after all show."""
    create_topics(topics.brokers, topics.anomalies, topics.summaries, topics.stocks)
    create_topics(topics.brokers, topics.incidents, compacted=True)
    template = world.anomalies[0]
    hostile = [orjson.dumps(template | changes | {"anomaly_id": f"hostile-{n}"}) for n, changes in
               enumerate(HOSTILE_ANOMALIES)]
    producer = Producer({"bootstrap.servers": topics.brokers})
    for line in hostile:  # all on partition 0, before the valid records of that partition
        producer.produce(topics.anomalies, value=line, partition=0)
    producer.produce(topics.incidents, value=orjson.dumps(world.incident_messages[0] | {"first_ts_event": 2**64 - 1}))
    producer.produce(topics.summaries, value=orjson.dumps(world.summaries[-1] | {"ts_event": 2**64 - 1}))
    producer.produce(topics.reviews, value=orjson.dumps({"incident_id": "x", "decision": "ok", "analyst": "a"}))
    assert producer.flush(10) == 0
    publish_world(topics, world, create=False)
    app = pages(topics.environment())
    log = table(app, "error_log")
    invalid = [message for kind, message in zip(log["kind"], log["message"]) if kind == "invalid record"]
    for n, changes in enumerate(HOSTILE_ANOMALIES):
        assert any(message.startswith(f"{topics.anomalies} partition 0 offset {n}: ") for message in invalid), changes
    assert any(m.startswith(f"{topics.anomalies} partition 0 offset 0: 'ts_event' is outside 1990-2100") for m in invalid)
    assert any(": 'severity' is outside 0 to 1: 1e+308" in message for message in invalid)
    assert any(m.startswith(f"{topics.incidents} partition ") and "'first_ts_event' is outside" in m for m in invalid)
    assert any(m.startswith(f"{topics.summaries} partition ") and "'ts_event' is outside" in m for m in invalid)
    assert any(m.startswith(f"{topics.reviews} partition ") and "'decision' must be one of" in m for m in invalid)
    assert metric_values(app) == expected_tiles(world.anomalies, len(world.final_incidents()), len(world.symbols()))
    assert len(table(app, "latest_anomalies")) == 50
    instruments = table(app, "instruments")
    assert list(instruments["symbol"]) == world.symbols()
    assert len(world.anomalies) <= DashboardConfig().buffer_size
    assert instruments["anomalies in memory"].sum() == len(world.anomalies)  # every valid record, before and after
    assert not app.error


def test_broker_down_shows_a_banner_and_the_error_log_not_a_stack_trace(pages):
    nobody = f"127.0.0.1:{free_port()}"
    app = pages({"KAFKA_BROKERS": nobody})
    assert len(app.error) == 1
    assert app.error[0].value.startswith(f"Kafka broker unreachable at {nobody}. Retrying every")
    assert app.button(key="retry").label == "Retry now"
    assert app.expander[0].label.startswith("Error log (")
    assert "broker unreachable" in list(table(app, "error_log")["kind"])
    assert metric_values(app)["Anomalies"] == "0"
    app.button(key="retry").click().run()
    assert not app.exception and app.error[0].value.startswith("Kafka broker unreachable")


def test_a_bad_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("DASHBOARD_STALL_SECONDS", "soon")
    app = AppTest.from_file(APP, default_timeout=10)
    app.run()
    assert not app.exception
    assert "DASHBOARD_STALL_SECONDS must be a (finite) number, got 'soon'" in app.code[0].value


def test_the_page_recovers_when_the_broker_comes_up(pages, topic_prefix, world):
    port = free_port()
    topics = topics_for(f"127.0.0.1:{port}", topic_prefix)
    app = pages(topics.environment())
    assert app.error[0].value.startswith("Kafka broker unreachable")
    with EmbeddedBroker(port):
        publish_world(topics, world)
        app.button(key="retry").click().run()
        assert not app.exception and not app.error
        assert metric_values(app) == expected_tiles(
            world.anomalies, len(world.final_incidents()), len(world.symbols()))
        app.session_state["feed"].close()  # before the broker goes


def test_a_review_while_the_broker_is_down_says_not_saved_and_keeps_the_text(pages, topic_prefix, world):
    """The broker goes away while an analyst writes: saving says it was not saved (within the
    writer's time limits, not a hung page), claims nothing, keeps the name and note typed, and the
    same click once the broker is back saves them."""
    port = free_port()
    topics = topics_for(f"127.0.0.1:{port}", topic_prefix)
    note = "checked with the desk — " + "x" * 400
    with EmbeddedBroker(port):
        publish_world(topics, world)
        app = pages(topics.environment())
        incident_id = next(iter(world.final_incidents()))
        app.selectbox(key="incident").set_value(incident_id).run()
        app.text_input(key="analyst").input("Ada Lovelace")
        app.text_area(key=f"note:{incident_id}").input(note)
    started = time.monotonic()
    app.button(key="FormSubmitter:review_form-Save review").click().run()
    took = time.monotonic() - started
    assert not app.exception and not app.success
    [said] = [message.value for message in app.error if message.value.startswith("The review was not saved: ")]
    assert took < 20, took
    assert not any(text.value.startswith("Reviewed:") for text in app.text)
    assert (app.text_input(key="analyst").value, app.text_area(key=f"note:{incident_id}").value) == (
        "Ada Lovelace", note)
    assert "review not saved" in list(table(app, "error_log")["kind"])
    app.run()  # a live refresh: the outcome stays until another incident opens
    assert said in [message.value for message in app.error]
    with EmbeddedBroker(port):
        publish_world(topics, world)
        app.button(key="retry").click().run()
        until(app, lambda page: incident_id in queue_ids(page))
        app.selectbox(key="incident").set_value(incident_id).run()
        # The page started over (the broker came back empty) and the form left it: the draft is kept.
        assert (app.text_input(key="analyst").value, app.text_area(key=f"note:{incident_id}").value) == (
            "Ada Lovelace", note)
        app.button(key="FormSubmitter:review_form-Save review").click().run()
        assert [message.value for message in app.success] == ["Saved: acknowledged."]
        assert said not in [message.value for message in app.error]
        tail = TopicTail(topics.brokers, topics.reviews, start_back=None)
        try:
            messages, _ = tail.read(max_seconds=10)
        finally:
            tail.close()
        assert [(orjson.loads(m.value)["analyst"], orjson.loads(m.value)["note"]) for m in messages] == [
            ("Ada Lovelace", note)]
        app.session_state["feed"].close()  # before the broker goes


def test_a_review_the_broker_confirms_late_is_not_confirmed_yet_then_saved(pages, topic_prefix, world, monkeypatch):
    """The broker stops (SIGSTOP) as a review is sent and goes on 7 s later, past the writer's 5 s,
    recording the review then (the page's producer was connected by a first review). Before, the
    page said 'The review was not saved' and the review then showed as on record anyway. Now the
    click says it is not confirmed yet and keeps the text as a draft; once the page reads the review
    back, it shows it saved and the draft is gone."""
    from connectors import review_writer

    port = free_port()
    topics = topics_for(f"127.0.0.1:{port}", topic_prefix)
    with EmbeddedBroker(port) as embedded:
        pid = embedded._process.pid
        resume = threading.Timer(7.0, os.kill, (pid, signal.SIGCONT))
        stop_at_next_send = threading.Event()

        class StoppingProducer(review_writer.Producer):
            def produce(self, *args, **kwargs):
                if stop_at_next_send.is_set():
                    os.kill(pid, signal.SIGSTOP)
                    resume.start()
                return super().produce(*args, **kwargs)

        monkeypatch.setattr(review_writer, "Producer", StoppingProducer)
        publish_world(topics, world)
        app = pages(topics.environment())
        first, incident_id = list(world.final_incidents())[:2]
        app.selectbox(key="incident").set_value(first).run()
        app.text_input(key="analyst").input("Ada Lovelace")
        app.button(key="FormSubmitter:review_form-Save review").click().run()
        assert [message.value for message in app.success] == ["Saved: acknowledged."]
        app.selectbox(key="incident").set_value(incident_id).run()
        app.text_area(key=f"note:{incident_id}").input("late but real")
        stop_at_next_send.set()
        try:
            started = time.monotonic()
            app.button(key="FormSubmitter:review_form-Save review").click().run()
            took = time.monotonic() - started
        finally:
            resume.join()
        if [message.value for message in app.success] == ["Saved: acknowledged."]:  # seen 1 in 3 under the full suite
            pytest.skip(f"the broker acknowledged the review although stopped (after {took:.1f} s): the late case "
                        "did not happen this time")
        assert not app.exception and not app.success
        assert [message.value for message in app.error] == [
            "Not confirmed yet: the broker did not answer within 5 s. It may still record the review: it "
            "shows here as saved once this page reads it back; until then your text stays in the form."]
        assert took < 20, took
        assert app.session_state["review_drafts"][incident_id] == ("acknowledged", "late but real")
        until(app, lambda page: [message.value for message in page.success] == ["Saved: acknowledged."])
        assert not [message.value for message in app.error if message.value.startswith("Not confirmed")]
        assert any(text.value.startswith("Reviewed: acknowledged by Ada Lovelace at ") for text in app.text)
        assert incident_id not in app.session_state["review_drafts"]
        tail = TopicTail(topics.brokers, topics.reviews, start_back=None)
        try:
            messages, _ = tail.read(max_seconds=10)
        finally:
            tail.close()
        assert [(m.key.decode(), orjson.loads(m.value)["note"]) for m in messages] == [
            (first, ""), (incident_id, "late but real")]
        app.session_state["feed"].close()  # before the broker goes


def test_a_drawing_failure_is_reported_on_the_page_not_as_a_stack_trace(monkeypatch, pages, published):
    def broken_figure(*_args, **_kwargs):
        raise ValueError("figure exploded")

    monkeypatch.setattr("dashboard.figures.severity_figure", broken_figure)
    app = pages(published.environment())
    assert [error.value for error in app.error] == ["The anomalies could not be drawn; the error log below says why."]
    assert "could not draw the anomalies: ValueError: figure exploded" in list(table(app, "error_log")["message"])
    assert table(app, "incident_queue") is not None and app.metric  # the other sections stay


def test_a_job_that_stops_progressing_shows_as_stalled(pages, topics, world):
    publish_world(topics, world, summaries=[])
    stocks = topics.stocks
    summary = {"symbol": "NVDA", "ts_event": 1746797409910580602, "last_price": 117.8, "trades_processed": 3,
               "anomalies": 0, "source": stocks, "partition": 0, "offset": 2}
    producer = Producer({"bootstrap.servers": topics.brokers})
    for number in range(3):
        producer.produce(stocks, value=b"trade %d" % number, partition=0)
        producer.flush(10)
    publish(topics.brokers, topics.summaries, [orjson.dumps(summary)])
    app = pages(topics.environment(DASHBOARD_STALL_SECONDS="2", DASHBOARD_REFRESH_SECONDS="0.5"))
    assert "job caught up (no trade waiting on the input topic)" in app.caption[0].value
    time.sleep(1.2)
    for number in range(3, 6):  # trades keep arriving; the job reports nothing
        producer.produce(stocks, value=b"trade %d" % number, partition=0)
        producer.flush(10)
    until(app, lambda page: any(error.value.startswith("Job stalled: no progress for ") for error in page.error))
    assert "job stalled" in list(table(app, "error_log")["kind"])
