"""The background helper process: same models as in-process, and no orphan after a kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np

from models.config import DetectorConfig
from models.detectors import EllipticEnvelopeVote
from models.training import _helper_ready, refit, start_refit

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


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_background_refit_equals_in_process_refit():
    rng = np.random.default_rng(3)
    rows = np.abs(rng.standard_normal((500, 18))) + 1.0
    config = DetectorConfig(retrain_every=100, train_size=500)
    envelope = EllipticEnvelopeVote(threshold=config.envelope_threshold, seed=config.seed)
    here = refit(rows, config, 4, envelope)
    deadline = time.monotonic() + 30
    while not _helper_ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    pending = start_refit(rows, config, 4, envelope)
    assert pending._future is not None  # really fitted in the helper process
    there = pending.result()
    sample = np.abs(rng.standard_normal((50, 4))) + 1.0
    assert [t.path_length.tolist() for t in there.trees] == [t.path_length.tolist() for t in here.trees]
    np.testing.assert_array_equal(there.envelope.score(sample), here.envelope.score(sample))
