"""Incidents: current state by revision, member anomalies, the queue's order and filters, reviews."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import orjson
import pytest

from dashboard.incidents import IncidentBook, IncidentMembers, QueueFilter, incident_queue, worst_open_level
from dashboard.records import Review, decode_anomaly, decode_incident
from dashboard.reviews import ReviewBook, decisions_by_kind

LEVEL_ORDER = ("critical", "high", "medium", "low")


@pytest.fixture
def messages(world):
    return [decode_incident(orjson.dumps(message)) for message in world.incident_messages]


@pytest.fixture
def book(messages) -> IncidentBook:
    book = IncidentBook(capacity=100)
    for incident in messages:
        book.add(incident)
    return book


def review(incident_id: str, decision: str = "dismissed", kind: str | None = None) -> Review:
    return Review(incident_id, decision, "", "Ada", 1_790_000_000_000_000_000, None, kind, None)


def test_the_last_revision_is_the_state_whatever_comes_again(world, messages, book):
    final = world.final_incidents()
    assert {i.incident_id: (i.status, i.revision) for i in book.all()} == {
        incident_id: (message["status"], message["revision"]) for incident_id, message in final.items()}
    replayed = messages[: len(messages) // 2]  # a restarted job publishes older revisions again
    for incident in replayed:
        book.add(incident)
    assert {i.incident_id: i.revision for i in book.all()} == {k: m["revision"] for k, m in final.items()}
    assert any(incident.revision < final[incident.incident_id]["revision"] for incident in replayed)


def test_the_book_is_bounded_and_lets_closed_incidents_go_first(messages):
    open_ones = {i.incident_id for i in messages if i.status != "closed"} - {
        i.incident_id for i in messages if i.status == "closed"}
    capacity = len(open_ones) + 1  # room for the open ones and one closed
    assert open_ones and len({i.incident_id for i in messages}) > capacity
    book = IncidentBook(capacity=capacity)
    for incident in messages:
        book.add(incident)
    kept = book.all()
    assert len(kept) == capacity
    assert {i.incident_id for i in kept if i.is_open} == open_ones  # every open incident is still there


def test_the_queue_puts_alarms_before_crosses_then_open_incidents_then_the_worst_level_then_the_newest(book):
    queue = incident_queue(book.all(), {})
    keys = [(i.kind == "auction", not i.is_open, LEVEL_ORDER.index(i.level), -i.first_ns) for i in queue]
    assert keys == sorted(keys)
    assert queue[0].is_open and queue[0].kind != "auction" and queue[-1].kind == "auction"
    assert len(queue) == len(book)


def test_the_queue_hides_auctions_reviewed_incidents_and_other_symbols_on_request(book):
    everything = incident_queue(book.all(), {})
    auctions = [i for i in everything if i.kind == "auction"]
    assert auctions
    assert auctions[0] not in incident_queue(book.all(), {}, QueueFilter(hide_auctions=True))
    assert len(incident_queue(book.all(), {}, QueueFilter(hide_auctions=True))) == len(everything) - len(auctions)
    reviewed = {everything[0].incident_id: review(everything[0].incident_id)}
    assert incident_queue(book.all(), reviewed, QueueFilter(hide_reviewed=True)) == everything[1:]
    assert {i.symbol for i in incident_queue(book.all(), {}, QueueFilter(symbols={"SYN1"}))} == {"SYN1"}


def test_worst_open_level_per_symbol(book):
    levels = worst_open_level(book.all())
    assert set(levels) == {i.symbol for i in book.all()}
    for symbol, level in levels.items():
        open_levels = [i.level for i in book.all() if i.symbol == symbol and i.is_open]
        assert level == (min(open_levels, key=LEVEL_ORDER.index) if open_levels else None)
    closed_only = [replace(i, status="closed") for i in book.all()]
    assert set(worst_open_level(closed_only).values()) == {None}


def test_members_keep_the_most_severe_of_each_incident(world):
    members = IncidentMembers(per_incident=5, max_incidents=2)
    records = [decode_anomaly(orjson.dumps(record)) for record in world.anomalies]
    for record in records:
        members.add(record)
    latest = list(dict.fromkeys(r.incident_id for r in reversed(records) if r.incident_id))[:2]
    kept = {incident_id: members.of(incident_id) for incident_id in dict.fromkeys(r.incident_id for r in records)
            if members.of(incident_id)}
    assert set(kept) == set(latest)  # only the latest incidents
    for incident_id, chosen in kept.items():
        candidates = sorted((r for r in records if r.incident_id == incident_id),
                            key=lambda r: (r.severity, r.ts_ns, r.anomaly_id))
        assert {r.anomaly_id for r in chosen} == {r.anomaly_id for r in candidates[-5:]}
        assert [r.ts_ns for r in chosen] == sorted(r.ts_ns for r in chosen)


def test_the_last_review_per_incident_counts_and_dismissals_are_counted_per_kind(book):
    incidents = {i.incident_id: i for i in book.all()}
    auction = next(i for i in book.all() if i.kind == "auction")
    other = next(i for i in book.all() if i.kind != "auction")
    reviews = ReviewBook()
    reviews.add(review(auction.incident_id, "acknowledged"))
    reviews.add(review(auction.incident_id, "dismissed"))  # changed their mind: the last decision counts
    reviews.add(review(other.incident_id, "acknowledged", kind="block"))  # the review names its kind
    reviews.add(review("INC-unknown", "dismissed"))
    assert len(reviews) == 3 and reviews.copy()[auction.incident_id].decision == "dismissed"
    counts = decisions_by_kind(reviews.copy().values(), incidents)
    assert {kind: dict(counter) for kind, counter in counts.items()} == {
        "auction": {"dismissed": 1}, "block": {"acknowledged": 1}, "unknown": {"dismissed": 1}}


def test_the_review_book_keeps_the_latest_decisions_up_to_its_capacity():
    reviews = ReviewBook(capacity=3)
    for number in range(5):
        reviews.add(review(f"INC-{number}", "acknowledged"))
    reviews.add(review("INC-2", "dismissed"))  # decided again: now the most recent
    reviews.add(review("INC-5", "acknowledged"))
    assert list(reviews.copy()) == ["INC-4", "INC-2", "INC-5"] and reviews.copy()["INC-2"].decision == "dismissed"


def test_a_flood_of_decisions_on_unknown_incidents_does_not_push_out_real_ones():
    """Thousands of decisions on made-up incidents pushed the analysts' decisions out of the page."""
    reviews = ReviewBook(capacity=3)
    reviews.add(review("INC-real-1", "acknowledged"))
    reviews.add(review("INC-real-2", "dismissed"))
    for number in range(1000):
        reviews.add(review(f"INC-forged-{number}", "dismissed"), known=False)
    assert list(reviews.copy()) == ["INC-real-1", "INC-real-2", "INC-forged-999"]
    reviews.add(review("INC-real-3", "acknowledged"))  # the last forged one leaves first
    reviews.add(review("INC-real-4", "acknowledged"))  # then the least recently decided real one
    assert list(reviews.copy()) == ["INC-real-2", "INC-real-3", "INC-real-4"]


NOW_NS = 1_796_500_000_000_000_000  # 2026-12-05: the dashboard's clock in these tests


@pytest.fixture
def revised(world) -> list[dict]:
    """Every message of the incident with the most revisions, in the order the job wrote them."""
    counts = Counter(message["incident_id"] for message in world.incident_messages)
    chosen = counts.most_common(1)[0][0]
    messages = [message for message in world.incident_messages if message["incident_id"] == chosen]
    assert len(messages) >= 4 and [m["revision"] for m in messages] == list(range(len(messages)))
    return messages


@pytest.mark.parametrize("position, forged", [
    (2, {"revision": 10**15}),
    (2, {"revision": 10**15, "status": "closed"}),
    (2, {"revision": 4, "status": "closed"}),  # jumps two ahead
    (2, {"revision": 1, "status": "closed"}),  # the one reached, restated
    (2, {"revision": 0, "status": "closed"}),  # behind: a closing, shown until the next real message
    (0, {"revision": 10**15}),  # read before any real message (compaction may leave only it)
    (0, {"revision": 10**15, "status": "closed"}),
])
def test_a_forged_revision_hides_no_real_message_after_it(revised, position, forged):
    """One message with revision 10**15 used to freeze its incident: every real one looked older."""
    book = IncidentBook(capacity=100)
    for message in revised[:position] + [{**revised[position - 1 if position else 0], **forged}] + revised[position:]:
        book.add(decode_incident(orjson.dumps(message)))
    (shown,) = book.all()
    assert (shown.revision, shown.status, shown.last_ns) == (
        revised[-1]["revision"], revised[-1]["status"], decode_incident(orjson.dumps(revised[-1])).last_ns)
    for message in revised[: len(revised) // 2]:  # a restarted job's repeats still change nothing
        book.add(decode_incident(orjson.dumps(message)))
    assert book.all() == [shown]


def test_a_forged_revision_shows_until_the_next_real_message(revised):
    book = IncidentBook(capacity=100)
    for message in revised[:2]:
        book.add(decode_incident(orjson.dumps(message)))
    book.add(decode_incident(orjson.dumps({**revised[1], "revision": 10**15, "summary": "forged"})))
    assert book.all()[0].summary == "forged"  # it is the incident's latest word, for now
    book.add(decode_incident(orjson.dumps(revised[2])))
    assert (book.all()[0].revision, book.all()[0].summary) == (2, revised[2]["summary"])


def test_a_closing_behind_the_revision_reached_still_closes_an_open_incident(revised):
    """A job resumed under other settings closes the incident it saved with the revision after its
    snapshot's, which the run before the crash may have written already as an update."""
    opened = [message for message in revised if message["status"] != "closed"]
    book = IncidentBook(capacity=100)
    for message in opened:
        book.add(decode_incident(orjson.dumps(message)))
    closing = {**opened[-1], "revision": 1, "status": "closed", "closed_by": "restart"}
    book.add(decode_incident(orjson.dumps(closing)))
    (shown,) = book.all()
    assert (shown.status, shown.revision) == ("closed", 1)
    book.add(decode_incident(orjson.dumps(opened[len(opened) // 2])))  # a repeat of an earlier update
    assert book.all() == [shown]


def test_incidents_dated_past_the_clock_leave_a_full_book_first(messages):
    closed = [incident for incident in messages if incident.status == "closed"]
    forged = [replace(incident, incident_id=f"FORGED-{number}", status="open", first_ns=4_070_000_000_000_000_000,
                      last_ns=4_070_000_000_000_000_000) for number, incident in enumerate(closed[:3])]
    book = IncidentBook(capacity=len(closed), wall_clock_ns=lambda: NOW_NS)
    for incident in forged + closed:
        book.add(incident)
    assert {incident.incident_id for incident in book.all()} == {incident.incident_id for incident in closed}


def test_a_removed_incident_leaves_the_book_and_its_place_and_comes_back_with_its_next_message(messages):
    """A delete on the compacted topic: the incident goes, the book's bound counts it no more, and a later
    message of its key (any revision) is its state again."""
    ids = list(dict.fromkeys(incident.incident_id for incident in messages))
    assert len(ids) >= 3
    book = IncidentBook(capacity=len(ids) - 1)
    for incident in messages:
        book.add(incident)
    kept = [incident.incident_id for incident in book.all()]
    gone = kept[0]
    book.remove(gone)
    book.remove("INC-NOT-KNOWN")  # a delete of an incident the page never read changes nothing
    assert gone not in book and len(book) == len(ids) - 2
    dropped = next(incident for incident in messages if incident.incident_id not in kept)
    book.add(dropped)  # room again: nothing else has to leave
    assert {incident.incident_id for incident in book.all()} == set(kept[1:]) | {dropped.incident_id}
    last = max((incident for incident in messages if incident.incident_id == gone), key=lambda item: item.revision)
    book.add(replace(last, revision=0))  # before the delete a repeat; after it, the incident's state
    assert gone in book and [i.revision for i in book.all() if i.incident_id == gone] == [0]


def test_hide_reviewed_keeps_an_incident_grown_worse_than_its_review(world, messages, book):
    """Reviewed at every revision of the burst (a low 'other' growing to a critical burst): hidden
    while the incident is as decided or calmer, shown once its level rose or its kind changed; a
    review of an older schema (no revision, level or kind) hides it as before."""
    burst_id = next(i.incident_id for i in messages if i.kind == "burst")
    final = {i.incident_id: i for i in book.all()}[burst_id]
    hiding = QueueFilter(hide_reviewed=True)
    for decided in (i for i in messages if i.incident_id == burst_id):
        reviewed = {burst_id: Review(burst_id, "dismissed", "", "Ada", 1_790_000_000_000_000_000, decided.symbol,
                                     decided.kind, decided.level, decided.revision)}
        grown = decided.level != final.level or decided.kind != final.kind
        assert (burst_id in {i.incident_id for i in incident_queue(book.all(), reviewed, hiding)}) == grown
    calmer = {burst_id: Review(burst_id, "acknowledged", "", "Ada", 1, None, final.kind, "critical", 0)}
    assert burst_id not in {i.incident_id for i in incident_queue([replace(final, level="high")], calmer, hiding)}
    assert incident_queue([final], {burst_id: review(burst_id)}, hiding) == []
