"""kill -9 in the middle of a replay, resume from the recovery store: nothing lost, nothing spurious.

Anomalies written after the last snapshot before the kill are written again on
resume (at-least-once output); the anomaly id is the dedupe key, so the set of
distinct ids must equal an uninterrupted run's.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from connectors.kafka import ensure_topics
from connectors.publisher import publish, timestamp_ns
from streaming_support import (
    GARBAGE,
    REPO,
    TAPE_PARTITIONS,
    anomaly_ids,
    final_incidents,
    job_environment,
    kill_job,
    new_recovery_store,
    poison,
    publish_garbage,
    read_json,
    run_job,
    start_job,
    synthetic_tape,
    TAPE_SEED,
    TAPE_SYMBOLS,
    TAPE_TRADES,
    records_by_id,
    start_jobs,
    wait_until,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]

REPLAY_SECONDS = 20.0
"""The replay is paced to last this long, so the job is killed while trades still arrive."""


def committed_epoch(recovery: Path) -> int:
    """The latest epoch whose snapshots are durable in the recovery store (0: none yet)."""
    epochs = [0]
    for part in recovery.glob("*.sqlite3"):
        with closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=5)) as store:
            epochs += [epoch for (epoch,) in store.execute("SELECT commit_epoch FROM commits")]
    return max(epochs)


def wait_for_snapshot_and_output(job, recovery: Path, output_topic: str, brokers: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert job.poll() is None, job.stderr.read()[-3000:]
        if committed_epoch(recovery) >= 1 and anomaly_ids(brokers, output_topic):
            return
        time.sleep(0.2)
    raise AssertionError("no snapshot and anomaly within the time limit")


def test_resume_after_kill_9_gives_the_uninterrupted_anomalies(broker, topic_prefix, tmp_path, single_worker_run):
    """Also a crash loop that no longer loops: poison that once killed the job (and every resume,
    which replayed it) is published before the kill and again before the resume."""
    _, uninterrupted = single_worker_run
    trades = synthetic_tape(TAPE_SYMBOLS, TAPE_TRADES, TAPE_SEED)
    env = job_environment(broker, topic_prefix, STOP_AT_END="false")
    ensure_topics(broker, {env["INPUT_TOPIC"]: TAPE_PARTITIONS})
    publish_garbage(broker, env["INPUT_TOPIC"], poison(trades[0]))
    recovery = tmp_path / "recovery"
    recovery.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(recovery), "2"], cwd=REPO, check=True)
    recovery_args = ("-r", str(recovery), "-s", "2", "-b", "0")

    span_s = (timestamp_ns(trades[-1]["ts_recv"]) - timestamp_ns(trades[0]["ts_recv"])) / 1e9
    replay = threading.Thread(target=publish, args=(trades, broker, env["INPUT_TOPIC"]),
                              kwargs={"speed": span_s / REPLAY_SECONDS})
    job = start_job(env, *recovery_args)
    replay.start()
    wait_for_snapshot_and_output(job, recovery, env["OUTPUT_TOPIC"], broker)
    kill_job(job)
    assert replay.is_alive(), "the kill came in the middle of the replay"
    before_kill = set(anomaly_ids(broker, env["OUTPUT_TOPIC"]))
    replay.join()
    publish_garbage(broker, env["INPUT_TOPIC"])
    publish_garbage(broker, env["INPUT_TOPIC"], poison(trades[-1]))

    resumed = run_job({**env, "STOP_AT_END": "true"}, *recovery_args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    ids = anomaly_ids(broker, env["OUTPUT_TOPIC"])
    assert 0 < len(before_kill) < len(uninterrupted), "the kill came in the middle of the output"
    assert set(ids) == set(uninterrupted)
    # Incidents open at the kill end as without it: the same final state of every incident.
    clean = final_incidents(broker, f"{single_worker_run[0]}-incidents")
    assert clean and final_incidents(broker, env["INCIDENT_TOPIC"]) == clean


def delete_topic(brokers: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": brokers})  # kept until the answer: its end cancels the request
    for future in admin.delete_topics([topic]).values():
        future.result(10)


@pytest.mark.parametrize("messages_after", [0, 1])
def test_a_resume_onto_a_re_created_input_topic_reads_it_from_its_start(broker, topic_prefix, tmp_path,
                                                                        messages_after):
    """The store's offsets lie beyond the end of the topic re-created since (or emptied): the job reads
    what it holds from its start, and says so. Before: it waited for ever at the old offsets, reading
    nothing, deaf to STOP_AT_END (the development broker answers a fetch beyond the end with nothing,
    not an error, so librdkafka's ``auto.offset.reset`` never came into play)."""
    env = job_environment(broker, topic_prefix)
    ensure_topics(broker, {env["INPUT_TOPIC"]: 1})
    publish_garbage(broker, env["INPUT_TOPIC"], GARBAGE * 10)
    recovery_args = new_recovery_store(tmp_path / "recovery")
    assert run_job(env, *recovery_args, timeout=120).returncode == 0
    before = len(read_json(broker, env["DLQ_TOPIC"]))
    delete_topic(broker, env["INPUT_TOPIC"])
    ensure_topics(broker, {env["INPUT_TOPIC"]: 1})
    publish_garbage(broker, env["INPUT_TOPIC"], GARBAGE[:messages_after])

    resumed = run_job(env, *recovery_args, timeout=60)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert resumed.stderr.strip().splitlines() == [
        f"connectors.kafka_source: partition 0 of {env['INPUT_TOPIC']} ends before offset 30, where the recovery "
        "store resumes it: the topic was re-created or emptied since; reading it from its start"]
    letters = read_json(broker, env["DLQ_TOPIC"])
    assert before == 30 and sorted(letter["offset"] for letter in letters[before:]) == list(range(messages_after))


@pytest.fixture
def store_of_two_partitions(broker, topic_prefix, published_tape, single_worker_run, tmp_path):
    """A new recovery store of two partitions for a job on the published tape: (input topic, the
    uninterrupted run's records, the store's directory, its job arguments, the job's environment)."""
    topic, _ = published_tape
    _, uninterrupted = single_worker_run
    recovery = tmp_path / "recovery"
    recovery_args = new_recovery_store(recovery, 2)
    env = job_environment(broker, topic_prefix, INPUT_TOPIC=topic, STOP_AT_END="false")
    return topic, uninterrupted, recovery, recovery_args, env


def refused_second_job(broker: str, topic: str, prefix: str, recovery_args: tuple[str, ...], *args: str):
    """A second job on the store, with output topics of its own: its one line (status 1, and no topic
    made: refused before any Kafka client opens)."""
    from connectors.kafka import partition_count

    env = job_environment(broker, prefix, INPUT_TOPIC=topic)
    second = run_job(env, *recovery_args, *args, timeout=120)
    lines = second.stderr.strip().splitlines()
    assert second.returncode == 1 and len(lines) == 1, second.stderr[-3000:]
    for name in ("OUTPUT_TOPIC", "DLQ_TOPIC", "SUMMARY_TOPIC", "INCIDENT_TOPIC"):
        assert partition_count(broker, env[name]) == 0, f"the refused job made {env[name]}"
    return lines[0]


def test_a_second_job_on_a_store_in_use_is_refused_and_the_first_runs_on(broker, topic_prefix,
                                                                        store_of_two_partitions):
    """Before: the second job ran beside the first without a word, both reading the input and writing
    every anomaly (1,317 written, 745 distinct, in one try), both writing the store at once."""
    topic, uninterrupted, recovery, recovery_args, env = store_of_two_partitions
    first = start_job(env, *recovery_args)
    try:
        wait_until(lambda: anomaly_ids(broker, env["OUTPUT_TOPIC"]), 90, "anomaly", first)
        line = refused_second_job(broker, topic, f"{topic_prefix}-2", recovery_args)
        assert line == (
            f"flows.main: recovery store {recovery} is in use: another job holds it (pid {first.pid}, process 0, "
            ".lock-process-0); two jobs on one store would both read the input, write every anomaly and write "
            "the store at once: stop that job first, or give this one a recovery directory of its own")
        wait_until(lambda: len(anomaly_ids(broker, env["OUTPUT_TOPIC"])) >= len(uninterrupted), 120,
                   "every anomaly", first)
    finally:
        kill_job(first, signal.SIGTERM)
    assert first.returncode == 0, first.stderr.read()[-3000:]
    ids = anomaly_ids(broker, env["OUTPUT_TOPIC"])
    assert len(ids) == len(set(ids)), "one job, each anomaly once"
    assert records_by_id(broker, env["OUTPUT_TOPIC"]) == uninterrupted


def test_after_kill_9_the_lock_left_behind_blocks_nothing_and_the_job_resumes(broker, store_of_two_partitions):
    """The lock is the kernel's (``flock``), released with the process it belonged to: the file and the
    killed job's pid stay, and the next start takes the lock and resumes from the store."""
    topic, uninterrupted, recovery, recovery_args, env = store_of_two_partitions
    first = start_job(env, *recovery_args)
    try:
        wait_until(lambda: len(anomaly_ids(broker, env["OUTPUT_TOPIC"])) >= len(uninterrupted), 120,
                   "every anomaly", first)
        done = committed_epoch(recovery)
        wait_until(lambda: committed_epoch(recovery) >= done + 2, 30, "a snapshot after the last anomaly", first)
    finally:
        kill_job(first)
    assert first.returncode == -signal.SIGKILL
    assert (recovery / ".lock-process-0").read_text() == f"{first.pid}\n"
    before = anomaly_ids(broker, env["OUTPUT_TOPIC"])

    resumed = run_job({**env, "STOP_AT_END": "true"}, *recovery_args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # what was written since the snapshot resumed from may be written again (dedupe on anomaly_id): no new id
    assert set(anomaly_ids(broker, env["OUTPUT_TOPIC"])) == set(before) == set(uninterrupted)


def test_the_processes_of_one_cluster_share_a_store_each_with_its_lock(broker, topic_prefix,
                                                                       store_of_two_partitions):
    """Processes 0 and 1 of one cluster on one directory: neither is refused; a third job as process 1
    is, naming it."""
    topic, uninterrupted, recovery, recovery_args, env = store_of_two_partitions
    jobs = start_jobs(env, *recovery_args)
    try:
        wait_until(lambda: anomaly_ids(broker, env["OUTPUT_TOPIC"]), 90, "anomaly", jobs[0])
        line = refused_second_job(broker, topic, f"{topic_prefix}-2", recovery_args,
                                  "-i", "1", "-a", "127.0.0.1:1;127.0.0.1:2")
        assert f"another job holds it (pid {jobs[1].pid}, process 1, .lock-process-1)" in line
        wait_until(lambda: len(anomaly_ids(broker, env["OUTPUT_TOPIC"])) >= len(uninterrupted), 120,
                   "every anomaly", jobs[0])
        for job in jobs:  # both at once: a process stopped alone waits for the other to end its input
            os.killpg(job.pid, signal.SIGTERM)
        for job in jobs:
            job.wait(60)
    finally:
        for job in jobs:
            kill_job(job)
    assert [job.returncode for job in jobs] == [0, 0], [job.stderr.read()[-2000:] for job in jobs]
    assert records_by_id(broker, env["OUTPUT_TOPIC"]) == uninterrupted
