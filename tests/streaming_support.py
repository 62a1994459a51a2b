"""Helpers for tests that run the streaming job as a real process against the broker,
and for the tests of its Kafka source and sinks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from connectors.synthetic import generate_tape

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def job_environment(brokers: str, prefix: str, **overrides: str) -> dict[str, str]:
    """The environment of a job reading ``<prefix>-stocks`` and writing ``<prefix>-...`` topics."""
    env = {
        name: value for name, value in os.environ.items()
        if not name.startswith(("KAFKA_", "DETECTOR_", "BYTEWAX_"))
    }
    env.update({
        "PYTHONPATH": str(REPO),
        "KAFKA_BROKERS": brokers,
        "INPUT_TOPIC": f"{prefix}-stocks",
        "OUTPUT_TOPIC": f"{prefix}-anomalies",
        "DLQ_TOPIC": f"{prefix}-dlq",
        "SUMMARY_TOPIC": f"{prefix}-summaries",
        "INCIDENT_TOPIC": f"{prefix}-incidents",
        "STOP_AT_END": "true",
    })
    env.update(overrides)
    return env


def run_job(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """``python -m bytewax.run flows.main ARGS`` to completion (STOP_AT_END=true)."""
    return subprocess.run(
        [PYTHON, "-m", "bytewax.run", "flows.main", *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )


def start_job(env: dict[str, str], *args: str) -> subprocess.Popen:
    """The job in its own process group, so ``kill_job`` takes its helper processes too."""
    return subprocess.Popen(
        [PYTHON, "-m", "bytewax.run", "flows.main", *args],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )


def kill_job(job: subprocess.Popen, signal_number: int = signal.SIGKILL) -> None:
    """``kill -9`` the job's whole process group (the job and the engine's training helpers)."""
    try:
        os.killpg(job.pid, signal_number)
        job.wait(20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    try:  # helpers the job left behind when it stopped on a signal
        os.killpg(job.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def synthetic_tape(symbols: int, trades: int, seed: int):
    """The synthetic tape (its labelled events dropped)."""
    tape, _events = generate_tape(symbols=symbols, trades=trades, seed=seed)
    return tape


def publish_tape(brokers: str, topic: str, trades, partitions: int = 4) -> None:
    """Create ``topic`` with ``partitions`` and publish ``trades`` to it, keyed by symbol."""
    from connectors.kafka import ensure_topics
    from connectors.publisher import publish

    ensure_topics(brokers, {topic: partitions})
    summary = publish(trades, brokers, topic)
    assert summary.failed == 0, summary.describe(topic)


def read_json(brokers: str, topic: str) -> list[dict]:
    import orjson

    from connectors.kafka import read_topic

    return [orjson.loads(message.value()) for message in read_topic(brokers, topic)]


def anomaly_ids(brokers: str, topic: str) -> list[str]:
    return [record["anomaly_id"] for record in read_json(brokers, topic)]


TRADE = {
    "ts_recv": "2025-05-09T13:30:00.892370366Z", "ts_event": "2025-05-09T13:30:00.892370000Z",
    "rtype": 0, "publisher_id": 2, "instrument_id": 11667, "action": "T", "side": "N", "depth": 0,
    "price": 117.33, "size": 100, "flags": 0, "ts_in_delta": 1000, "sequence": 311212, "symbol": "NVDA",
}
"""One valid trade as it arrives on the input topic (the Kafka source and sink tests)."""


def produce(brokers: str, topic: str, messages: list[tuple[bytes | None, bytes | None]], partition: int = 0):
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": brokers})
    for key, value in messages:
        producer.produce(topic, key=key, value=value, partition=partition)
    assert producer.flush(10) == 0


def read_source(source) -> list:
    from bytewax import operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.testing import TestingSink, run_main

    flow = Dataflow("read")
    collected: list = []
    op.output("out", op.input("in", flow, source), TestingSink(collected))
    run_main(flow)
    return collected


def counter(name: str, **labels: str) -> float:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value(name, labels) or 0.0


TAPE_SYMBOLS, TAPE_TRADES, TAPE_SEED, TAPE_PARTITIONS = 3, 12_000, 11, 3
"""The end-to-end tape: SYN0, SYN1 and SYN2 land on three different partitions of three."""

GARBAGE = [
    (b"SYN0", b"\xff\xfe not json"),
    (b"SYN1", b"[1, 2, 3]"),
    (b"SYN2", b'{"symbol": "SYN2", "price": -1.0, "size": 5}'),
]
"""Appended after the tape: two decode failures and one trade the engine rejects."""


def encoded_tape(trades) -> list[bytes]:
    from connectors.codec import encode_trade

    return [encode_trade(trade) for trade in trades]


def publish_garbage(brokers: str, topic: str, messages=GARBAGE) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": brokers, "partitioner": "murmur2_random",
                         "message.max.bytes": 2_000_000})
    for key, value in messages:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(10) == 0


def poison(trade: dict) -> list[tuple[bytes, bytes]]:
    """Messages that each once crashed the job, and made every resume crash again on them."""
    import json

    key = trade["symbol"].encode()
    return [
        (key, json.dumps({**trade, "price": 1e308}).encode()),  # died at the next retrain
        (key, json.dumps({**trade, "price": 1e-300}).encode()),
        (key, json.dumps({**trade, "ts_event": "2300-01-01T00:00:00Z"}).encode()),  # OverflowError
        (key, b"x" * 1_000_000),  # its dead letter exceeded the broker's message limit
        (key, b"\x01" * 170_000),  # likewise once escaped
        (key, json.dumps({**trade, "note": "y" * 999_000}).encode()),
    ]


def without_processing_time(record: dict) -> dict:
    return {name: value for name, value in record.items() if name != "detected_at"}


def reference_records(trades) -> dict[str, dict]:
    """The anomalies of ``build_flow`` run in this process on the same bytes, by anomaly id."""
    import orjson
    from bytewax.testing import TestingSink, TestingSource, run_main

    from connectors.codec import decode_trade, encode_record
    from connectors.messages import Origin
    from flows.dataflow import build_flow
    from models.config import DetectorConfig

    messages = [decode_trade(raw, Origin("tape", 0, offset)) for offset, raw in enumerate(encoded_tape(trades))]
    anomalies: list = []
    letters: list = []
    run_main(build_flow(TestingSource(messages, batch_size=500), TestingSink(anomalies),
                        TestingSink(letters), DetectorConfig()))
    records = [orjson.loads(encode_record(record.to_dict())) for record in anomalies]
    return {record["anomaly_id"]: without_processing_time(record) for record in records}


def final_incidents(brokers: str, topic: str) -> dict[str, dict]:
    """The last state of each incident on the topic (highest revision), without processing time."""
    final: dict[str, dict] = {}
    for update in read_json(brokers, topic):
        known = final.get(update["incident_id"])
        if known is None or update["revision"] >= known["revision"]:
            final[update["incident_id"]] = {name: value for name, value in update.items() if name != "updated_at"}
    return final


def records_by_id(brokers: str, topic: str) -> dict[str, dict]:
    return {record["anomaly_id"]: without_processing_time(record) for record in read_json(brokers, topic)}


def start_jobs(env: dict[str, str], *args: str):
    """Two processes of one cluster (``-i 0`` and ``-i 1``), one worker each."""
    from connectors.broker import free_port

    addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
    return [start_job(env, "-i", str(index), "-a", addresses, *args) for index in (0, 1)]


def committed_epoch(recovery: Path) -> int:
    """The latest epoch whose snapshots are durable in the recovery store (0: none yet)."""
    import sqlite3
    from contextlib import closing

    epochs = [0]
    for part in recovery.glob("*.sqlite3"):
        with closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=5)) as store:
            epochs += [epoch for (epoch,) in store.execute("SELECT commit_epoch FROM commits")]
    return max(epochs)


def new_recovery_store(directory: Path, partitions: int = 1) -> tuple[str, ...]:
    """A fresh recovery store in ``directory``; the job arguments that use it (snapshot every second)."""
    directory.mkdir()
    subprocess.run([PYTHON, "-m", "bytewax.recovery", str(directory), str(partitions)], cwd=REPO, check=True)
    return ("-r", str(directory), "-s", "1", "-b", "0")


def wait_until(condition, timeout: float, what: str, job: subprocess.Popen | None = None) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if job is not None and job.poll() is not None:
            raise AssertionError(f"the job exited ({job.returncode}) while waiting for {what}: "
                                 f"{job.stderr.read()[-3000:]}")
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout:g} s")
