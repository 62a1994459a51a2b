"""Totals come from the newest summary per instrument, so they are the topic's, not the buffer's."""

from __future__ import annotations

from collections import Counter

import orjson
import pytest

from dashboard.records import decode_summary
from dashboard.totals import SummaryBook, instrument_rows, topic_totals


@pytest.fixture
def book(world) -> SummaryBook:
    book = SummaryBook()
    for summary in world.summaries:
        book.add(decode_summary(orjson.dumps(summary)))
    return book


def test_totals_equal_the_anomalies_written(world, book):
    totals = topic_totals(book.copy().values())
    anomalies = world.anomalies
    assert totals.anomalies == len(anomalies) == 485
    assert totals.average_severity == pytest.approx(sum(r["severity"] for r in anomalies) / len(anomalies))
    assert totals.max_severity == max(r["severity"] for r in anomalies)
    assert totals.critical == sum(r["level"] == "critical" for r in anomalies)
    assert totals.by_side == dict(Counter(r["side"] for r in anomalies))
    assert totals.incidents == len(world.final_incidents()) and totals.instruments == 4


def test_totals_of_chosen_symbols(world, book):
    totals = topic_totals(book.copy().values(), {"SYN1", "SYN2"})
    chosen = [r for r in world.anomalies if r["symbol"] in {"SYN1", "SYN2"}]
    assert (totals.anomalies, totals.instruments) == (len(chosen), 2)
    assert totals.max_severity == max(r["severity"] for r in chosen)


def test_an_older_summary_after_a_restart_does_not_turn_the_totals_back(world, book):
    before = topic_totals(book.copy().values())
    for summary in world.summaries[:200]:  # the replayed epoch of a restarted job
        book.add(decode_summary(orjson.dumps(summary)))
    assert topic_totals(book.copy().values()) == before


def test_without_the_richer_fields_there_are_no_topic_totals(world):
    older = decode_summary(orjson.dumps({key: world.summaries[-1][key] for key in (
        "symbol", "ts_event", "last_price", "trades_processed", "anomalies", "rejected", "model_generation")}))
    assert topic_totals([older]) is None
    assert topic_totals([]).anomalies == 0


def test_one_row_per_instrument_with_its_true_counts(world, book):
    newest = world.newest_summaries()
    rows = instrument_rows(book.copy(), {"NVDA": 25, "SYN9": 3}, {"SYN1": None, "SYN2": "high"})
    assert [row["symbol"] for row in rows] == ["NVDA", "SYN0", "SYN1", "SYN2", "SYN9"]
    by_symbol = {row["symbol"]: row for row in rows}
    for symbol in ("NVDA", "SYN0", "SYN1", "SYN2"):
        assert by_symbol[symbol]["anomalies"] == sum(r["symbol"] == symbol for r in world.anomalies)
        assert by_symbol[symbol]["trades"] == newest[symbol]["trades_processed"]
        assert by_symbol[symbol]["last price"] == newest[symbol]["last_price"]
    assert by_symbol["NVDA"]["anomalies in memory"] == 25 and by_symbol["SYN9"]["anomalies"] is None
    assert by_symbol["NVDA"]["last trade (New York)"] == "2025-05-09 09:30:09.910"
    # The incidents read decide the open level; the summary's only for symbols without incidents read.
    assert by_symbol["SYN1"]["worst open level"] == "" and by_symbol["SYN2"]["worst open level"] == "high"
    assert by_symbol["NVDA"]["worst open level"] == (newest["NVDA"]["open_incident_level"] or "")
