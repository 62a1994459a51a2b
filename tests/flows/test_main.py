"""The streaming job end to end: replayed trades in, anomalies and dead letters out, via a real broker."""

from __future__ import annotations

import signal
import time
import urllib.request

import orjson
import pytest

from connectors.broker import free_port
from connectors.kafka import ensure_topics, read_topic
from streaming_support import (
    GARBAGE,
    anomaly_ids,
    job_environment,
    kill_job,
    read_json,
    reference_records,
    run_job,
    start_job,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_job_finds_the_same_anomalies_as_the_dataflow_in_process(broker, published_tape, single_worker_run):
    topic, trades = published_tape
    prefix, records = single_worker_run
    assert records, "the tape has anomalies to find"
    ids = anomaly_ids(broker, f"{prefix}-anomalies")
    assert len(ids) == len(set(ids)), "one uninterrupted run writes each anomaly once"
    assert records == reference_records(trades)


def test_anomalies_are_keyed_by_symbol(broker, single_worker_run):
    prefix, _ = single_worker_run
    messages = read_topic(broker, f"{prefix}-anomalies")
    assert {message.key() for message in messages} <= {b"SYN0", b"SYN1", b"SYN2"}
    assert all(orjson.loads(message.value())["symbol"].encode() == message.key() for message in messages)


def test_bad_input_goes_to_the_dead_letter_topic_with_its_origin(broker, published_tape, single_worker_run):
    topic, _ = published_tape
    prefix, _ = single_worker_run
    letters = read_json(broker, f"{prefix}-dlq")
    originals = {letter["original"] for letter in letters}
    assert "[1, 2, 3]" in originals and GARBAGE[2][1].decode() in originals
    assert any(letter["original_encoding"] == "base64" for letter in letters)
    assert {letter["stage"] for letter in letters} >= {"decode", "validate"}
    assert all(letter["source"] == topic and letter["offset"] >= 0 and letter["reason"] for letter in letters)


def test_summaries_are_written_per_symbol(broker, single_worker_run):
    prefix, _ = single_worker_run
    summaries = read_json(broker, f"{prefix}-summaries")
    assert {summary["symbol"] for summary in summaries} == {"SYN0", "SYN1", "SYN2"}


def one_line_failure(env: dict[str, str], *args: str) -> tuple[str, float]:
    started = time.monotonic()
    finished = run_job(env, *args, timeout=60)
    elapsed = time.monotonic() - started
    assert finished.returncode != 0
    lines = finished.stderr.strip().splitlines()
    assert len(lines) == 1, finished.stderr
    return lines[0], elapsed


def test_no_broker_is_one_line_naming_the_address_within_ten_seconds(topic_prefix):
    address = f"127.0.0.1:{free_port()}"
    line, elapsed = one_line_failure(job_environment(address, topic_prefix))
    assert f"no Kafka broker answered at {address}" in line
    assert elapsed < 10


@pytest.mark.parametrize("variable, value", [("STOP_AT_END", "maybe"), ("DETECTOR_VOTES_REQUIRED", "7"),
                                             ("INPUT_BATCH_SIZE", "zero"), ("BROKER_LOSS_TIMEOUT_S", "soon"),
                                             ("MAX_MESSAGE_BYTES", "10")])
def test_a_bad_setting_stops_the_job_naming_the_variable(broker, topic_prefix, variable, value):
    line, _ = one_line_failure(job_environment(broker, topic_prefix, **{variable: value}))
    assert variable in line


@pytest.mark.parametrize("variable, value, message", [
    ("KAFKA_QUEUE_BUFFERING_MAX_KBYTES", "1e6", "flows.main: KAFKA_QUEUE_BUFFERING_MAX_KBYTES must be a whole number "
                                               "in plain digits, got '1e6', which the Kafka client reads as 1"),
    ("KAFKA_QUEUE_BUFFERING_MAX_KBYTES", "1", "flows.main: KAFKA_QUEUE_BUFFERING_MAX_KBYTES='1' (KB) is smaller "
                                             "than the largest message the job writes, 262,144 bytes"),
    ("KAFKA_MESSAGE_MAX_BYTES", "4000", "flows.main: KAFKA_MESSAGE_MAX_BYTES='4000' is smaller than the largest "
                                       "message the job writes, 262,144 bytes"),
    ("KAFKA_HOME", "/opt/kafka", 'flows.main: KAFKA_HOME: refused by the Kafka client: No such configuration '
                                 'property: "home"'),
    ("KAFKA_BOOTSTRAP_SERVERS", "kafka-9:9092", "flows.main: KAFKA_BOOTSTRAP_SERVERS is not taken: the brokers come "
                                                "from KAFKA_BROKERS"),
])
def test_a_kafka_variable_that_cannot_be_used_stops_the_job_at_start(broker, topic_prefix, published_tape, variable,
                                                                     value, message):
    """With a tape to read, a 1 KB producer queue (``1e6`` to librdkafka) hung the job for ever without a line,
    deaf to SIGTERM; a 4,000-byte message limit ended it with a traceback (82 lines) at its first larger
    record, after writing 14 anomalies; KAFKA_HOME stopped it without naming the variable;
    KAFKA_BOOTSTRAP_SERVERS replaced KAFKA_BROKERS, and the messages named the address it no longer used."""
    topic, _ = published_tape
    line, elapsed = one_line_failure(job_environment(broker, topic_prefix, INPUT_TOPIC=topic, **{variable: value}))
    assert line.startswith(message)
    assert elapsed < 30


def test_a_missing_input_topic_is_named(broker, topic_prefix):
    line, _ = one_line_failure(job_environment(broker, topic_prefix))
    assert f"{topic_prefix}-stocks" in line and "does not exist" in line


RESUMED_FROM = {
    "missing": "does not exist",
    "another topic's": "input partitions 0-some-other-stocks",
    "missing a partition file": "is incomplete: part 1 of the 2 it was made with is missing",
}


@pytest.mark.parametrize("store", sorted(RESUMED_FROM))
def test_a_recovery_store_that_cannot_be_resumed_is_one_line(broker, topic_prefix, published_tape, tmp_path, store):
    """Bytewax would end with a Rust panic once its workers ran (and a supervisor restart loop); a
    store missing a partition file, with ``MissingPartitionsError`` and a traceback, 51 lines."""
    import sqlite3

    from bytewax.recovery import init_db_dir

    topic, _ = published_tape
    directory = tmp_path / "recovery"
    if store != "missing":
        directory.mkdir()
        init_db_dir(directory, 2)
    if store == "another topic's":
        with sqlite3.connect(directory / "part-0.sqlite3") as part:
            part.execute("INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) "
                         "VALUES ('trade-anomalies.read', '0-some-other-stocks', 1, NULL)")
    if store == "missing a partition file":
        (directory / "part-1.sqlite3").unlink()
    line, _ = one_line_failure(job_environment(broker, topic_prefix, INPUT_TOPIC=topic),
                               "-r", str(directory), "-s", "1", "-b", "0")
    assert line.startswith("flows.main: recovery ")
    assert RESUMED_FROM[store] in line


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
        return response.read().decode()


def metric(text: str, name: str) -> float:
    values = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(name)]
    return sum(values)


def test_job_counters_are_served_with_bytewax_metrics(broker, topic_prefix, published_tape, tmp_path):
    topic, trades = published_tape
    port = free_port()
    env = job_environment(broker, topic_prefix, INPUT_TOPIC=topic, STOP_AT_END="false",
                          BYTEWAX_DATAFLOW_API_ENABLED="true", BYTEWAX_DATAFLOW_API_PORT=str(port),
                          BYTEWAX_DATAFLOW_API_CACHE_PATH=str(tmp_path))  # a directory
    job = start_job(env)
    try:
        deadline, text = time.monotonic() + 60, ""
        while time.monotonic() < deadline:
            try:
                text = scrape(port)
                if (metric(text, "trade_detector_trades_read_total") >= len(trades) + 1
                        and metric(text, "trade_detector_dead_letters_written_total") >= len(GARBAGE)):
                    break  # the rejected trade's dead letter is written after the engine saw it
            except OSError:
                pass
            time.sleep(0.5)
        assert metric(text, "trade_detector_trades_read_total") == len(trades) + 1  # + the rejected one
        assert metric(text, "trade_detector_dead_letters_written_total") >= len(GARBAGE)
        assert 'trade_detector_anomalies_written_total{level=' in text
        assert "bytewax_" in text  # Bytewax's own step metrics, same endpoint
    finally:
        kill_job(job, signal.SIGINT)


def test_stop_at_end_on_an_empty_topic_finishes(broker, topic_prefix):
    ensure_topics(broker, {f"{topic_prefix}-stocks": 2})
    finished = run_job(job_environment(broker, topic_prefix), timeout=60)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert read_topic(broker, f"{topic_prefix}-anomalies") == []


def test_a_taken_metrics_port_stops_the_job_naming_the_variable(broker, topic_prefix):
    import socket

    ensure_topics(broker, {f"{topic_prefix}-stocks": 1})
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("0.0.0.0", 0))
        listener.listen()
        port = listener.getsockname()[1]
        line, _ = one_line_failure(job_environment(
            broker, topic_prefix, BYTEWAX_DATAFLOW_API_ENABLED="true", BYTEWAX_DATAFLOW_API_PORT=str(port)))
    assert line.startswith(f"flows.main: BYTEWAX_DATAFLOW_API_PORT={port} is in use")


def test_the_incident_topic_is_created_compacted_once_the_dataflow_writes_incidents(broker, topic_prefix):
    import inspect

    from confluent_kafka.admin import AdminClient, ConfigResource

    from connectors.kafka import partition_count
    from flows.dataflow import build_flow

    ensure_topics(broker, {f"{topic_prefix}-stocks": 2})
    env = job_environment(broker, topic_prefix, INCIDENT_TOPIC=f"{topic_prefix}-incidents")
    finished = run_job(env, timeout=60)
    assert finished.returncode == 0, finished.stderr[-2000:]
    count = partition_count(broker, f"{topic_prefix}-incidents")
    if "incident_sink" not in inspect.signature(build_flow).parameters:
        assert count == 0, "no incident topic before the dataflow can write incidents"
        return
    assert count == 2
    admin = AdminClient({"bootstrap.servers": broker})
    resource = ConfigResource("topic", f"{topic_prefix}-incidents")
    (configs,) = [future.result(10) for future in admin.describe_configs([resource]).values()]
    assert configs["cleanup.policy"].value == "compact"
