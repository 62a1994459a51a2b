"""The anomaly buffer: bounded, unique by id, and fair to every instrument whatever the read order."""

from __future__ import annotations

import itertools
import random
from collections import Counter

import orjson
import pytest

from dashboard.buffer import AnomalyBuffer, PriceHistory
from dashboard.records import Anomaly, decode_anomaly, decode_summary
from record_fixture import PARTITIONS, partition_of


def anomaly(symbol: str, ts_ns: int, number: int, severity: float = 0.5) -> Anomaly:
    return Anomaly(f"{symbol}-{number}", None, symbol, ts_ns, "N", 100.0, 10, "trade", severity, "medium", (), ())


@pytest.fixture
def recorded(world) -> list[Anomaly]:
    return [decode_anomaly(orjson.dumps(record)) for record in world.anomalies]


def newest(records: list[Anomaly], count: int) -> set[str]:
    return {record.anomaly_id for record in sorted(records, key=lambda r: (r.ts_ns, r.anomaly_id))[-count:]}


def fair_shares(counts: Counter, capacity: int) -> dict[str, int]:
    """What each instrument keeps when ``capacity`` is shared out as evenly as the counts allow,
    computed the plain way: raise a common share until the room is used up."""
    share = 0
    while sum(min(count, share + 1) for count in counts.values()) <= capacity:
        share += 1
    return {symbol: min(count, share) for symbol, count in counts.items()}


@pytest.fixture
def small_and_large(recorded) -> tuple[Counter, int]:
    """The recorded counts per instrument, and a capacity that keeps the smallest instrument whole
    while the others share the rest evenly (so the expected counts are exact)."""
    counts = Counter(record.symbol for record in recorded)
    smallest = min(counts.values())
    others = len(counts) - 1
    share = (sum(counts.values()) - smallest) // (4 * others)  # a quarter of the others' average
    assert smallest < share < min(count for count in counts.values() if count != smallest), counts
    return counts, smallest + others * share


@pytest.mark.parametrize("order", list(itertools.permutations(range(PARTITIONS))))
def test_every_instrument_keeps_its_newest_anomalies_whatever_partition_is_read_last(recorded, small_and_large, order):
    counts, capacity = small_and_large
    buffer = AnomalyBuffer(capacity=capacity)
    for partition in order:
        for record in recorded:
            if partition_of(record.symbol) == partition:
                buffer.add(record)
    kept = buffer.counts()
    assert len(buffer) == capacity < len(recorded)
    assert kept == fair_shares(counts, capacity)  # the smallest whole, the others an equal share
    for symbol, number in kept.items():
        assert {r.anomaly_id for r in buffer.records() if r.symbol == symbol} == newest(
            [r for r in recorded if r.symbol == symbol], number)


def test_the_recorded_instruments_spread_over_every_partition(world):
    assert {partition_of(symbol) for symbol in world.symbols()} == set(range(PARTITIONS))


def test_what_is_kept_does_not_depend_on_the_order_records_arrive_in():
    rng = random.Random(11)
    records = [anomaly(f"S{rng.randint(0, 4)}", rng.randint(0, 60) * 1000, number) for number in range(300)]
    kept = set()
    for _ in range(30):
        rng.shuffle(records)
        buffer = AnomalyBuffer(capacity=37)
        for record in records:
            buffer.add(record)
        kept.add(tuple(record.anomaly_id for record in buffer.records()))
    assert len(kept) == 1


def test_a_repeat_replaces_its_copy_and_is_counted_once():
    buffer = AnomalyBuffer(capacity=3)
    for number in (1, 2, 3):
        buffer.add(anomaly("NVDA", number, number))
    buffer.add(anomaly("NVDA", 2, 2, severity=0.9))
    assert [(r.anomaly_id, r.severity) for r in buffer.records()] == [("NVDA-1", 0.5), ("NVDA-2", 0.9), ("NVDA-3", 0.5)]
    assert buffer.duplicates == 1
    buffer.add(anomaly("NVDA", 4, 4))
    assert [r.anomaly_id for r in buffer.records()] == ["NVDA-2", "NVDA-3", "NVDA-4"]  # the oldest went


def test_an_older_anomaly_arriving_late_is_the_one_dropped():
    buffer = AnomalyBuffer(capacity=2)
    buffer.add(anomaly("NVDA", 20, 2))
    buffer.add(anomaly("NVDA", 30, 3))
    buffer.add(anomaly("NVDA", 10, 1))
    assert [r.anomaly_id for r in buffer.records()] == ["NVDA-2", "NVDA-3"]


def test_a_buffer_needs_room():
    with pytest.raises(ValueError):
        AnomalyBuffer(capacity=0)


def test_price_history_is_bounded_per_symbol_and_in_symbols():
    history = PriceHistory(points_per_symbol=2, max_symbols=2)
    for index, symbol in enumerate(("A", "A", "A", "B", "C")):
        history.add(decode_summary(orjson.dumps({"symbol": symbol, "ts_event": 1746797400000000000 + index,
                                                 "last_price": float(index)})))
    assert {symbol: line.points() for symbol, line in history.lines().items()} == {
        "B": [(1746797400000000003, 3.0)], "C": [(1746797400000000004, 4.0)]}


def test_price_history_keeps_the_last_points_in_reading_order():
    history = PriceHistory(points_per_symbol=3)
    for index in (5, 1, 4, 2, 3, 6, 7):  # as read: not always in event-time order
        history.add(decode_summary(orjson.dumps({"symbol": "NVDA", "ts_event": 1746797400000000000 + index,
                                                 "last_price": float(index)})))
        line = history.lines()["NVDA"]
        line.times.append(0)  # a copy: the page may draw it while the reader goes on
    assert history.lines()["NVDA"].points() == [(1746797400000000000 + index, float(index)) for index in (3, 6, 7)]


@pytest.mark.parametrize("seed", range(5))
def test_the_heap_evicts_what_a_scan_of_every_instrument_would(seed):
    """The buffer's heap against the plain rule, recomputed by scanning every instrument at each
    eviction: the one holding the most gives up its oldest record (ties: oldest record, then name)."""
    rng = random.Random(seed)
    records = [anomaly(f"S{rng.randint(0, 30)}", rng.randint(0, 500) * 1000, rng.randint(0, 900))
               for _ in range(2_000)]  # repeats of an id included
    buffer, held = AnomalyBuffer(capacity=rng.randint(20, 200)), {}
    for record in records:
        buffer.add(record)
        held[record.anomaly_id] = record
        while len(held) > buffer.capacity:
            by_symbol = {}
            for kept in held.values():
                by_symbol.setdefault(kept.symbol, []).append((kept.ts_ns, kept.anomaly_id))
            symbol = min(by_symbol, key=lambda name: (-len(by_symbol[name]), min(by_symbol[name]), name))
            del held[min(by_symbol[symbol])[1]]
        assert {kept.anomaly_id for kept in buffer.records()} == set(held)
