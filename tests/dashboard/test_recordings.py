"""The recordings the dashboard is tested on are what the job writes, and show what the tests need.

If the engine or the dataflow changes what it writes, ``test_the_recordings_are_what_the_job_writes_today``
fails: record them again with ``.venv/bin/python tests/dashboard/record_fixture.py``.
"""

from __future__ import annotations

import math
from collections import Counter

import orjson
import pytest
from confluent_kafka import Producer

from connectors.publisher import producer_settings
from publishing import create_topics
from record_fixture import (
    INPUT_TOPIC, NVDA_OPEN, PARTITIONS, SYNTHETIC, InputPositions, nvda_open_tape, partition_of, read_lines, record,
    recording_path, synthetic_tape,
)
from recordings import load

PROCESSING_TIME = ("detected_at", "updated_at")
LEVELS = ("low", "medium", "high", "critical")


@pytest.mark.broker
def test_symbols_are_on_the_partitions_the_replay_puts_them_on(broker, topic_prefix, world):
    """``partition_of`` against the replay's own producer (murmur2) on a real 3-partition topic."""
    topic = f"{topic_prefix}-stocks"
    create_topics(broker, topic, partitions=PARTITIONS)
    symbols = [*world.symbols(), "A", "BF", "IBM", "AAPL", "BRK.B", "GOOGL", "ÆØÅ", "SYN10"]  # every tail length
    landed: dict[str, int] = {}

    def delivered(error, message) -> None:
        assert error is None, error
        landed[message.key().decode()] = message.partition()

    producer = Producer(producer_settings(broker, paced=False, client_settings={}))
    for symbol in symbols:
        producer.produce(topic, key=symbol.encode(), value=b"{}", on_delivery=delivered)
    assert producer.flush(10) == 0
    assert landed == {symbol: partition_of(symbol) for symbol in symbols}
    assert len(set(landed.values())) == PARTITIONS


def test_summaries_carry_the_input_position_of_each_instruments_partition(world):
    offsets: dict[int, list[int]] = {}
    for summary in world.summaries:
        assert (summary["source"], summary["partition"]) == (INPUT_TOPIC, partition_of(summary["symbol"]))
        offsets.setdefault(summary["partition"], []).append(summary["offset"])
    for partition, seen in offsets.items():
        assert len(set(seen)) == len(seen), f"partition {partition}: an offset summarised twice"


@pytest.mark.parametrize("run", [NVDA_OPEN, SYNTHETIC])
def test_each_instruments_newest_summary_counts_what_the_job_wrote(run):
    """What the page's totals rest on: the newest summary of an instrument counts its anomalies
    and incidents as written to the topics."""
    world = load(run)
    for symbol, summary in world.newest_summaries().items():
        written = [record for record in world.anomalies if record["symbol"] == symbol]
        assert summary["anomalies"] == len(written)
        assert summary["anomalies_by_level"] == {level: sum(r["level"] == level for r in written) for level in LEVELS}
        assert summary["anomalies_by_side"] == {side: sum(r["side"] == side for r in written) for side in "ABN"}
        assert summary["severity_sum"] == pytest.approx(sum(r["severity"] for r in written))
        opened = {m["incident_id"] for m in world.incident_messages if m["symbol"] == symbol}
        assert summary["incidents"] == len(opened)


def test_every_anomaly_belongs_to_a_recorded_incident(world):
    incidents = world.final_incidents()
    assert {record["incident_id"] for record in world.anomalies} == set(incidents)
    for incident_id, incident in incidents.items():
        members = [record for record in world.anomalies if record["incident_id"] == incident_id]
        assert members[0]["anomaly_id"] == incident_id.removeprefix("INC-")
        assert all(record["symbol"] == incident["symbol"] for record in members)


def test_the_recordings_hold_what_the_dashboard_tests_need(world):
    """Several instruments, more anomalies than a small buffer, incidents of several kinds (an
    auction on the real NVDA opening), open and closed, and revisions of each."""
    counts = world.anomaly_counts()
    assert len(counts) >= 4 and sum(counts.values()) > 100 and min(counts.values()) < 10
    final = world.final_incidents()
    kinds = Counter(incident["kind"] for incident in final.values())
    assert len(kinds) >= 3 and {"auction", "flash_crash"} <= set(kinds)
    assert any(i["kind"] == "auction" and i["symbol"] == "NVDA" for i in final.values())
    assert {incident["status"] == "closed" for incident in final.values()} == {True, False}
    assert max(incident["revision"] for incident in final.values()) >= 5


def without_processing_time(lines: list[bytes]) -> list[dict]:
    return [{k: v for k, v in orjson.loads(line).items() if k not in PROCESSING_TIME} for line in lines]


FLOAT_TOLERANCE = 1e-9
"""Relative: the envelope's distances go through BLAS, whose last bits differ between CPUs."""


def same_message(written, recorded) -> bool:
    """Equal, with floats equal to ``FLOAT_TOLERANCE`` (on one machine they are bit for bit)."""
    if isinstance(written, float) and isinstance(recorded, float):
        return math.isclose(written, recorded, rel_tol=FLOAT_TOLERANCE, abs_tol=FLOAT_TOLERANCE)
    if isinstance(written, dict) and isinstance(recorded, dict):
        return written.keys() == recorded.keys() and all(same_message(written[k], recorded[k]) for k in written)
    if isinstance(written, list) and isinstance(recorded, list):
        return len(written) == len(recorded) and all(map(same_message, written, recorded))
    return type(written) is type(recorded) and written == recorded


@pytest.mark.parametrize("written, recorded, same", [
    ({"score": 165.52107063889184, "level": "low"}, {"score": 165.5210706388918, "level": "low"}, True),
    ({"score": 165.52107063889184}, {"score": 165.53}, False),
    ({"score": 1.0, "level": "low"}, {"score": 1.0, "level": "high"}, False),
    ([{"sequence": 7}], [{"sequence": 8}], False),
    ([1, 2], [1, 2, 3], False),
    ({"size": 2}, {"size": 2.0}, False),
])
def test_messages_compare_exactly_but_for_the_last_bits_of_floats(written, recorded, same):
    assert same_message(written, recorded) is same


@pytest.mark.slow
def test_the_recordings_are_what_the_job_writes_today():
    """The job's dataflow over the same tapes writes the same messages (processing times apart)."""
    positions = InputPositions()
    for run, tape in ((NVDA_OPEN, nvda_open_tape()), (SYNTHETIC, synthetic_tape()[0])):
        written = record(positions.publish(tape))
        for part in ("anomalies", "incidents", "summaries"):
            recorded = read_lines(recording_path(run, part))
            assert same_message(without_processing_time(getattr(written, part)), without_processing_time(recorded)), (
                f"{run} {part}: the job writes something else now; re-record with "
                "`.venv/bin/python tests/dashboard/record_fixture.py`")

