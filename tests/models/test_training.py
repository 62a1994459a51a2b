"""The background helper process: same models as in-process, and no orphan after a kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pickle

import numpy as np
import pytest

from models.config import DetectorConfig
from models.training import RefitJob, _helper_ready, refit, start_refit, training_columns

STARTS_HELPER_THEN_PRINTS_ITS_PID = """
import time
from models.training import _helper_ready, _pool
_pool()
while not _helper_ready():
    time.sleep(0.05)
import multiprocessing
print(multiprocessing.active_children()[0].pid, flush=True)
time.sleep(60)
"""


def test_helper_process_exits_when_the_job_is_killed():
    job = subprocess.Popen([sys.executable, "-c", STARTS_HELPER_THEN_PRINTS_ITS_PID], stdout=subprocess.PIPE, text=True)
    helper = int(job.stdout.readline())
    os.kill(job.pid, signal.SIGKILL)
    job.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(helper):
        time.sleep(0.2)
    assert not _alive(helper)


STARTS_HELPER_AND_ENDS_AT_ONCE = """
import multiprocessing, os
from models.training import start_helper
start_helper()
print(multiprocessing.active_children()[0].pid, flush=True)
os._exit(0)
"""


def test_helper_process_exits_when_the_job_ends_before_the_helper_has_started():
    """A job that ends within a second of its start (a message the broker refuses, a second stop signal)
    ends before its helper has finished starting. The helper watched whichever process was its parent
    once it had started, by then init (pid 1), so it never ended: 300 MB each, holding the job's stdout
    and stderr open, so whatever read them waited for ever."""
    job = subprocess.Popen([sys.executable, "-c", STARTS_HELPER_AND_ENDS_AT_ONCE], stdout=subprocess.PIPE, text=True)
    helper = int(job.stdout.readline())
    job.wait(30)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and _alive(helper):
        time.sleep(0.2)
    try:
        assert not _alive(helper)
    finally:
        if _alive(helper):
            os.kill(helper, signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_background_refit_equals_in_process_refit():
    rng = np.random.default_rng(3)
    config = DetectorConfig(retrain_every=100, train_size=500)
    rows = np.abs(rng.standard_normal((500, len(training_columns(config))))) + 1.0
    first = refit(RefitJob(rows, 3, None), config)
    job = RefitJob(rows, 4, first.envelope)  # warm-started from a fitted envelope
    here = refit(job, config)
    deadline = time.monotonic() + 30
    while not _helper_ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    pending = start_refit(job, config)
    assert pending.in_background  # really fitted in the helper process
    there = pending.result()
    for mine, theirs in zip(here.trees, there.trees):
        np.testing.assert_array_equal(mine.nodes, theirs.nodes)
    np.testing.assert_array_equal(here.envelope.precision, there.envelope.precision)
    np.testing.assert_array_equal(here.zscore_center, there.zscore_center)
    assert here.envelope.fits == first.envelope.fits + 1 == 2


def test_a_refit_in_flight_refuses_to_be_pickled():
    config = DetectorConfig(background_training=False)
    rows = np.ones((50, len(training_columns(config)))) + np.arange(50)[:, None] % 7
    pending = start_refit(RefitJob(rows, 1, None), config)
    with pytest.raises(TypeError, match="snapshot"):
        pickle.dumps(pending)
