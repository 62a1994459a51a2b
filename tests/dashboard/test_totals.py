"""Totals come from the newest summary per instrument, so they are the topic's, not the buffer's."""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
import pytest

from dashboard.records import decode_summary
from dashboard.totals import SummaryBook, instrument_rows, topic_totals
from recordings import World

NEW_YORK = ZoneInfo("America/New_York")


def book_of(world: World) -> SummaryBook:
    book = SummaryBook()
    for summary in world.summaries:
        book.add(decode_summary(orjson.dumps(summary)))
    return book


@pytest.fixture
def book(world) -> SummaryBook:
    return book_of(world)


def test_totals_equal_the_anomalies_written(world, book):
    totals = topic_totals(book.copy().values())
    anomalies = world.anomalies
    assert totals.anomalies == len(anomalies) > 0
    assert totals.average_severity == pytest.approx(sum(r["severity"] for r in anomalies) / len(anomalies))
    assert totals.max_severity == max(r["severity"] for r in anomalies)
    assert totals.critical == sum(r["level"] == "critical" for r in anomalies)
    assert totals.by_side == dict(Counter(r["side"] for r in anomalies))
    assert totals.incidents == len(world.final_incidents()) and totals.instruments == len(world.symbols())


def test_totals_of_chosen_symbols(world, book):
    totals = topic_totals(book.copy().values(), {"SYN1", "SYN2"})
    chosen = [r for r in world.anomalies if r["symbol"] in {"SYN1", "SYN2"}]
    assert (totals.anomalies, totals.instruments) == (len(chosen), 2)
    assert totals.max_severity == max(r["severity"] for r in chosen)


def test_an_older_summary_after_a_restart_does_not_turn_the_totals_back(world, book):
    before = topic_totals(book.copy().values())
    for summary in world.summaries[: len(world.summaries) // 2]:  # the replayed epochs of a restarted job
        book.add(decode_summary(orjson.dumps(summary)))
    assert topic_totals(book.copy().values()) == before


def test_without_the_richer_fields_there_are_no_topic_totals(world):
    older = decode_summary(orjson.dumps({key: world.summaries[-1][key] for key in (
        "symbol", "ts_event", "last_price", "trades_processed", "anomalies", "rejected", "model_generation")}))
    assert topic_totals([older]) is None
    assert topic_totals([]).anomalies == 0


def test_one_row_per_instrument_with_its_true_counts(world, book):
    newest = world.newest_summaries()
    symbols = world.symbols()
    first, second, last = symbols[0], symbols[1], symbols[-1]
    rows = instrument_rows(book.copy(), {first: 25, "ZZZ9": 3}, {last: None, second: "high"})
    assert [row["symbol"] for row in rows] == [*symbols, "ZZZ9"]
    by_symbol = {row["symbol"]: row for row in rows}
    for symbol in symbols:
        assert by_symbol[symbol]["anomalies"] == world.anomaly_counts()[symbol]
        assert by_symbol[symbol]["trades"] == newest[symbol]["trades_processed"]
        assert by_symbol[symbol]["last price"] == newest[symbol]["last_price"]
        assert by_symbol[symbol]["last trade (New York)"] == new_york(newest[symbol]["ts_event"])
    assert by_symbol[first]["anomalies in memory"] == 25 and by_symbol["ZZZ9"]["anomalies"] is None
    # The incidents read decide the open level; the summary's only for symbols without incidents read.
    assert by_symbol[last]["worst open level"] == "" and by_symbol[second]["worst open level"] == "high"
    assert by_symbol[first]["worst open level"] == (newest[first]["open_incident_level"] or "")


def new_york(ns: int) -> str:
    """Nanoseconds as New York wall time to the millisecond, the plain way."""
    stamp = datetime.fromtimestamp(ns // 10**9, NEW_YORK)
    return f"{stamp:%Y-%m-%d %H:%M:%S}.{ns % 10**9 // 10**6:03d}"


def test_an_instrument_with_two_states_is_totalled_across_both(two_days):
    """NVDA traded four times in 2020, then again in 2025: after the idle years the job started
    it afresh (a new ``since``), so its newest summary counts only 2025; the totals add both."""
    old, new = two_days.states("NVDA").values()
    assert old["since"] < old["ts_event"] < new["since"] and old["trades_processed"] == 4
    totals = book_of(two_days).copy()["NVDA"]
    assert totals.trades_processed == old["trades_processed"] + new["trades_processed"]
    assert totals.rejected == old["rejected"] + new["rejected"] == len(two_days.dead_letters)
    assert totals.anomalies == old["anomalies"] + new["anomalies"] == len(two_days.anomalies)
    assert totals.incidents == len(two_days.final_incidents())
    assert (totals.last_price, totals.ts_ns, totals.since_ns) == (new["last_price"], new["ts_event"], new["since"])
    assert totals.anomalies_by_level == {level: old["anomalies_by_level"][level] + new["anomalies_by_level"][level]
                                         for level in new["anomalies_by_level"]}
    topic = topic_totals([totals])
    assert (topic.instruments, topic.anomalies, topic.max_severity) == (
        1, len(two_days.anomalies), max(record["severity"] for record in two_days.anomalies))
    row = instrument_rows({"NVDA": totals}, {}, {})[0]
    assert (row["trades"], row["anomalies"], row["last price"]) == (
        old["trades_processed"] + new["trades_processed"], len(two_days.anomalies), new["last_price"])


def test_an_older_state_read_after_the_newer_one_still_adds_up(two_days):
    """The page reads partitions and history in any order: the states add up whichever comes first."""
    book = SummaryBook()
    for summary in reversed(two_days.summaries):
        book.add(decode_summary(orjson.dumps(summary)))
    assert book.copy() == book_of(two_days).copy()
