"""Totals come from the newest summary per instrument, so they are the topic's, not the buffer's."""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime
from zoneinfo import ZoneInfo

import orjson
import pytest

from dashboard.records import decode_summary
from dashboard.totals import MAX_INSTRUMENT_STATES, SummaryBook, instrument_rows, topic_totals
from flows.instruments import DEFAULT_MAX_INSTRUMENTS
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


def test_the_book_holds_as_many_states_as_a_job_holds_instruments():
    assert SummaryBook().max_symbols == MAX_INSTRUMENT_STATES == DEFAULT_MAX_INSTRUMENTS


NOW_NS = 1_796_500_000_000_000_000  # 2026-12-05: the dashboard's clock in these tests
MINUTE_NS = 60 * 10**9


def book_at_now(max_symbols: int = 10_000) -> SummaryBook:
    return SummaryBook(max_symbols, wall_clock_ns=lambda: NOW_NS)


@pytest.mark.parametrize("changes", [
    {"ts_event": "2099-12-31T23:59:59Z"},  # within the records' 1990-2100 bounds
    {"ts_event": NOW_NS + 2 * MINUTE_NS},  # just past the clock's tolerance
    {"ts_event": "2099-12-31T23:59:59Z", "trades_processed": 10**15, "anomalies": 0,
     "anomalies_by_level": {}, "anomalies_by_side": {}},
    {"ts_event": "2099-12-31T23:59:59Z", "since": "2099-12-31T00:00:00Z", "anomalies": 10**12,
     "anomalies_by_level": {"critical": 10**12}, "anomalies_by_side": {"A": 10**12}},  # a state of its own
])
def test_a_summary_dated_past_the_clock_hides_no_real_summary_after_it(world, changes):
    """One such summary used to freeze NVDA: every later real summary looked older."""
    real = [summary for summary in world.summaries if summary["symbol"] == "NVDA"]
    hostile = {**real[len(real) // 2], **changes}
    book = book_at_now()
    for summary in real[: len(real) // 2] + [hostile] + real[len(real) // 2:]:
        book.add(decode_summary(orjson.dumps(summary)))
    expected = book_at_now()
    for summary in real:
        expected.add(decode_summary(orjson.dumps(summary)))
    assert book.copy()["NVDA"] == expected.copy()["NVDA"]
    assert book.copy()["NVDA"].ts_ns == decode_summary(orjson.dumps(real[-1])).ts_ns


def test_a_summary_past_the_clock_stands_until_a_real_one_comes():
    """It may be the dashboard's clock that is wrong: alone, it still shows its instrument."""
    book = book_at_now()
    ahead = {"symbol": "NVDA", "ts_event": NOW_NS + 10 * MINUTE_NS, "last_price": 120.0}
    book.add(decode_summary(orjson.dumps(ahead)))
    assert book.copy()["NVDA"].last_price == 120.0
    book.add(decode_summary(orjson.dumps({**ahead, "ts_event": NOW_NS - MINUTE_NS, "last_price": 117.0})))
    assert book.copy()["NVDA"].last_price == 117.0


def test_a_full_book_drops_the_stalest_states_whatever_order_they_come_in():
    """Every symbol's summaries come in event-time order or not, symbols interleaved at random;
    five are dated past the clock (the kind one hostile producer writes). The book keeps the
    states of the newest event times and drops the ones past the clock first."""
    rng = random.Random(7)
    times = {f"S{number:02d}": sorted(rng.sample(range(1, 10**6), 3)) for number in range(40)}
    summaries = [{"symbol": symbol, "ts_event": NOW_NS - 10**12 + stamp, "last_price": 1.0}
                 for symbol, stamps in times.items() for stamp in stamps]
    summaries += [{"symbol": f"FAKE{number}", "ts_event": "2099-01-01T00:00:00Z", "last_price": 1.0}
                  for number in range(5)]
    newest_first = sorted(times, key=lambda symbol: times[symbol][-1], reverse=True)
    for _ in range(20):
        rng.shuffle(summaries)
        book = book_at_now(max_symbols=25)
        for summary in summaries:
            book.add(decode_summary(orjson.dumps(summary)))
        kept = book.copy()
        assert set(kept) == set(newest_first[:25])
        assert all(kept[symbol].ts_ns == NOW_NS - 10**12 + times[symbol][-1] for symbol in kept)


def test_a_state_that_moved_on_is_not_dropped_for_its_old_time():
    book = book_at_now(max_symbols=2)
    for symbol, stamp in [("A", 1), ("B", 2)] + [("A", 2 + step) for step in range(1, 500)] + [("C", 3)]:
        book.add(decode_summary(orjson.dumps({"symbol": symbol, "ts_event": NOW_NS - 10**9 + stamp,
                                              "last_price": 1.0})))
    assert sorted(book.copy()) == ["A", "C"]  # B was the stalest, though A once was
