"""The job's supervisor without a job: an input topic that grew asks for a restart; a stop signal
while the model helper starts (in a process of its own) stops it.

The development broker cannot add partitions (CreatePartitions is unsupported), and deleting a
topic under a running consumer crashes librdkafka 2.16 on it (SIGSEGV), so the count is given here;
``connectors.kafka.partition_count``, which the job gives the supervisor, is tested on the broker.
"""

from __future__ import annotations

import io
import itertools
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from connectors.broker_watch import BrokerWatch
from flows.supervisor import RESTART_STATUS, JobSupervisor

GREW = "the input topic has 3 partitions, 1 when the job started, and the job reads only those"


@pytest.fixture
def job(monkeypatch):
    """A supervisor writing to a string, whose exits are recorded instead of taken."""
    supervisor = JobSupervisor(BrokerWatch("b1:9092", timeout_s=30), stream=io.StringIO())
    supervisor.exits = []
    monkeypatch.setattr(supervisor, "exit_now", lambda line, status: supervisor.exits.append((line, status)))
    monkeypatch.setattr("flows.supervisor.trades_read", lambda: 2000)
    monkeypatch.setattr("flows.supervisor._stop_model_helper", lambda wait=True: None)  # not this process's pool
    return supervisor


@pytest.mark.parametrize("at_start, counts, grown", [
    (1, [1, 1, 3], 3),  # partitions added
    (4, [4, 2, 4], None),  # fewer for a while (a topic being re-created) is no reason
    (1, [None, None, 2], 2),  # the broker could not say: asked again
])
def test_more_input_partitions_than_at_start_stop_the_job_to_be_restarted(job, at_start, counts, grown):
    answers = itertools.chain(counts, itertools.repeat(counts[-1]))

    def count() -> int:
        answer = next(answers)
        if answer is None:
            raise RuntimeError("no broker")
        return answer

    job.watch_input_partitions(count, at_start, every_s=0.01)
    assert job.stop.wait(0.5) is (grown is not None)
    assert job.restart_needed is (grown is not None)
    if grown is None:
        job.stop.set()  # ends the watch
        return
    assert job._stream.getvalue() == (f"flows.main: the input topic has {grown} partitions, {at_start} when the "
                                      "job started, and the job reads only those: stopping to be restarted\n")
    job._report_stop()
    assert job.exits == [("flows.main: stopped after 2,000 trades: restart the job to read every partition "
                          "(with -r it resumes where it stopped)", RESTART_STATUS)]


def test_a_signal_while_stopping_to_be_restarted_makes_it_a_stop(job):
    job.request_restart(GREW)
    job.request_stop(signal.SIGTERM)
    job._report_stop()
    assert (job.stopped_by, job.restart_needed, job.exits) == ("SIGTERM", False, [])
    assert job._stream.getvalue().splitlines()[-1] == "flows.main: stopped by SIGTERM after 2,000 trades"
    job.request_stop(signal.SIGINT)  # a second signal still exits at once
    assert job.exits == [("flows.main: second stop signal (SIGINT): exiting without a final snapshot", 130)]


SIGNALLED_WHILE_THE_HELPER_STARTS = """
import os, signal, sys
from flows.supervisor import JobSupervisor

supervisor = JobSupervisor.catching_stop_signals()  # first, as in flows.main
from flows.supervisor import start_model_helper
from models import training  # numpy: threads of its own, as in the job
from models.config import DetectorConfig

start_helper = training.start_helper

def signalled_start(helpers):
    os.kill(os.getpid(), int(sys.argv[1]))  # the signal comes while the helper starts
    start_helper(helpers)

training.start_helper = signalled_start
start_model_helper(DetectorConfig())
supervisor.stop.wait(5)
supervisor.exit_if_stopped()
print("not stopped", file=sys.stderr)
sys.exit(5)
"""


@pytest.mark.parametrize("signal_number", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_while_the_model_helper_starts_stops_the_job(signal_number):
    """In a process of its own, as in the job: real handlers, a real helper, a real signal. Before,
    the signals were ignored while the helper started, the kernel dropped one sent then, and the job
    ran on as if it had never come."""
    finished = subprocess.run([sys.executable, "-c", SIGNALLED_WHILE_THE_HELPER_STARTS, str(int(signal_number))],
                              cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=60)
    name = signal.Signals(signal_number).name
    assert (finished.returncode, finished.stderr) == (0, f"flows.main: stopped by {name} after 0 trades\n")
