"""More workers, or more processes, find exactly the anomalies one worker finds.

The tape has three symbols on three different partitions; Bytewax routes each
symbol's trades to one worker's state, so the split cannot change the result.
"""

from __future__ import annotations

import uuid

import pytest

from streaming_support import final_incidents, job_environment, kill_job, records_by_id, run_job, start_jobs

pytestmark = [pytest.mark.broker, pytest.mark.slow]


@pytest.mark.parametrize("workers", [2, 3])
def test_workers_find_the_single_worker_anomalies(broker, published_tape, single_worker_run, workers):
    topic, _ = published_tape
    single_prefix, expected = single_worker_run
    prefix = f"w{workers}-{uuid.uuid4().hex[:8]}"
    finished = run_job(job_environment(broker, prefix, INPUT_TOPIC=topic), "-w", str(workers))
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert records_by_id(broker, f"{prefix}-anomalies") == expected
    assert final_incidents(broker, f"{prefix}-incidents") == final_incidents(broker, f"{single_prefix}-incidents")


def test_two_processes_find_the_single_worker_anomalies(broker, published_tape, single_worker_run):
    topic, _ = published_tape
    _, expected = single_worker_run
    prefix = f"p2-{uuid.uuid4().hex[:8]}"
    jobs = start_jobs(job_environment(broker, prefix, INPUT_TOPIC=topic))
    try:
        for job in jobs:
            _, errors = job.communicate(timeout=180)
            assert job.returncode == 0, errors[-3000:]
    finally:
        for job in jobs:
            if job.poll() is None:
                kill_job(job)
    assert records_by_id(broker, f"{prefix}-anomalies") == expected
