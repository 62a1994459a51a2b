"""What ends a running job, and how: stop signals, a lost broker, an input topic that grew, a
message the broker will not take.

- SIGINT or SIGTERM: every input partition ends at its next poll, so Bytewax
  finishes the epoch, writes its outputs and its snapshot, and exits normally
  (status 0; a second signal exits at once, status 128 + the signal: 130, 143). ``-r`` resumes exactly.
- No reachable broker for ``BROKER_LOSS_TIMEOUT_S``: the job exits with status 3
  at once (nothing can be written anyway); ``-r`` resumes from the last snapshot,
  as after a crash, once a broker is back.
- An input topic with more partitions than the job started with (partitions added):
  the job reads the partitions it started with, and a symbol's trades move to another
  partition when the count changes, so going on would leave those symbols unscored
  without a word. It stops as on SIGTERM, says why, and exits with status 75; a restart
  reads every partition, and with ``-r`` resumes where it stopped.
- A message that can never be written (``connectors.kafka_sinks.DeliveryFailed``: the broker
  refused it, or it is larger than the producer's whole queue): the job exits with status 78
  at once, saying what was refused and what to change. Going on would lose the message;
  a restart before the change meets the same message again.

``flows.main`` has ``JobSupervisor`` catch the stop signals before anything else, even its own
imports (a third of a second), and a stop while the job starts ends it there, cleanly; the Kafka
source polls its ``stop`` event, and every Kafka client reports to its ``BrokerWatch``.
It is a module of its own because ``flows.main`` builds and runs a job when imported
(Bytewax imports it to find the flow); this one can be imported, and tested, alone.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
import time
from collections.abc import Callable

from connectors.broker_watch import BrokerWatch

BROKER_LOST_STATUS = 3
"""Exit status after ``BROKER_LOSS_TIMEOUT_S`` without a broker: restart (with ``-r``) when it is back."""
RESTART_STATUS = 75
"""Exit status of a job that stopped to be restarted (EX_TEMPFAIL): its input topic has more
partitions than it reads."""
DELIVERY_FAILED_STATUS = 78
"""Exit status after a message that can never be written (EX_CONFIG): a setting, the job's or the
broker's, must change before a restart (with ``-r``) can get further."""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class JobSupervisor:
    """Turns SIGINT/SIGTERM into a clean stop, a lost broker into one line and exit status 3, an
    input topic that grew into a clean stop and exit status 75, and a message that can never be
    written into one line and exit status 78.

    A stop signal reaches the job two ways, whichever thread the kernel picks: a
    Python handler (run by the main thread, and raising nothing, so neither
    KeyboardInterrupt nor Bytewax's own interrupt handling ever sees it) and a
    thread waiting in ``sigwait``. The main thread blocks the signals from then on, and
    so does every thread started after (worker threads block them again,
    ``block_stop_signals``, where they build their input partitions), so the kernel
    delivers them to the waiting thread, or to the handler in a thread that was there
    before.
    The model-fitting helper process is started from the main thread with the
    signals ignored (``start_model_helper``), so a terminal's Ctrl-C, sent to the
    whole process group, does not kill it mid-fit.
    """

    def __init__(self, watch: BrokerWatch | None = None, stream=sys.stderr) -> None:
        self.watch = watch
        self.stop = threading.Event()
        self.stopped_by: str | None = None
        self.restart_needed = False
        self._stream = stream
        self._lock = threading.Lock()
        self._exiting = threading.Lock()

    @classmethod
    def catching_stop_signals(cls) -> JobSupervisor:
        """A supervisor that catches SIGINT and SIGTERM from now on: the first thing the job does.

        Until then a signal ends the process by itself: SIGTERM silently (status -15), SIGINT with a
        KeyboardInterrupt traceback. The job's imports and settings take a third of a second, so
        the handlers come before them; the broker watch comes once the settings name the broker.

        The main thread blocks the signals from then on, and so does every thread it starts
        (Python's, numpy's, Bytewax's), leaving them to the thread in ``sigwait``: a thread that
        did not block them could take one while the model helper starts with them ignored
        (``start_model_helper``), and the kernel would drop it; the job then ran on.
        """
        supervisor = cls()
        for number in STOP_SIGNALS:
            signal.signal(number, lambda number, _frame: supervisor.request_stop(number))
        cls.block_stop_signals()  # for good: the threads started from here on block them too
        threading.Thread(target=supervisor._receive_signals, name="stop-signals", daemon=True).start()
        return supervisor

    def watch_broker(self, watch: BrokerWatch) -> None:
        """Exit with status 3 once ``watch`` says the broker is lost."""
        self.watch = watch
        threading.Thread(target=self._watch_broker, name="broker-watch", daemon=True).start()

    def exit_if_stopped(self) -> None:
        """A stop signal while the job was starting: end it now, cleanly (status 0, the stop line).
        Nothing has been read, so there is nothing to write or snapshot; going on would open the
        clients and start Bytewax and the helper only to stop at the first poll, seconds later."""
        if self.stopped_by is not None:
            self._say(self._stop_line())
            raise SystemExit(0)

    def report_stop_at_exit(self) -> None:
        """Once the job runs: how it stopped, said when the process exits."""
        atexit.register(self._report_stop)

    @staticmethod
    def block_stop_signals() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    def _receive_signals(self) -> None:
        while True:
            self.request_stop(signal.sigwait(STOP_SIGNALS))

    def request_stop(self, number: int) -> None:
        """First signal: end the inputs at their next poll (one that comes while the job stops to be
        restarted makes it a stop: the operator wants it down, not back). Second: exit at once."""
        name = signal.Signals(number).name
        with self._lock:
            first = self.stopped_by is None or self.restart_needed
            if first:
                self.stopped_by, self.restart_needed = name, False
                self.stop.set()
        if not first:
            self.exit_now(f"flows.main: second stop signal ({name}): exiting without a final snapshot",
                          128 + number)

    def watch_input_partitions(self, count: Callable[[], int], at_start: int, every_s: float) -> None:
        """Ask ``count()`` every ``every_s``; more partitions than ``at_start`` stops the job to be
        restarted. A count that cannot be had (a broker away, the topic being re-created) is
        asked again later: a lost broker is ``BrokerWatch``'s to judge."""
        def check() -> None:
            while not self.stop.wait(every_s):
                try:
                    now = count()
                except Exception:  # noqa: BLE001 - asked again at the next check
                    continue
                if now > at_start:
                    self.request_restart(f"the input topic has {now} partitions, {at_start} when the job "
                                         "started, and the job reads only those")
                    return

        threading.Thread(target=check, name="input-partitions", daemon=True).start()

    def request_restart(self, reason: str) -> None:
        """Stop as on SIGTERM (outputs and snapshot written), then exit with ``RESTART_STATUS``."""
        with self._lock:
            if self.stopped_by is not None:
                return
            self.stopped_by, self.restart_needed = reason, True
            self.stop.set()
        self._say(f"flows.main: {reason}: stopping to be restarted")

    def delivery_failed(self, error: Exception) -> None:
        """A sink's ``DeliveryFailed``, on the worker thread that wrote: one line and out, before the
        exception reaches Bytewax, which would end the worker with a Rust panic and two tracebacks.
        Nothing after the last snapshot is lost: the epoch that failed is not committed."""
        self.exit_now(f"flows.main: {error}; exiting (restart with -r once it is changed: it resumes from "
                      "the last snapshot)", DELIVERY_FAILED_STATUS)

    def _watch_broker(self) -> None:
        while True:
            time.sleep(0.25)
            if self.watch.lost():
                self.exit_now(f"flows.main: {self.watch.describe()}; exiting (restart with -r to resume "
                              "from the last snapshot)", BROKER_LOST_STATUS)

    def _report_stop(self) -> None:
        _stop_model_helper(wait=False)
        if self.restart_needed and getattr(sys, "last_value", None) is None:  # not if the run failed meanwhile
            self.exit_now(f"flows.main: stopped after {trades_read():,} trades: restart the job to read every "
                          "partition (with -r it resumes where it stopped)", RESTART_STATUS)
        if self.stopped_by is not None:
            self._say(self._stop_line())

    def _stop_line(self) -> str:
        return f"flows.main: stopped by {self.stopped_by} after {trades_read():,} trades"

    def exit_now(self, line: str, status: int) -> None:
        """One line, the model helper stopped, and out: no traceback, no Rust panic, no atexit.

        The first caller only: with two workers whose writes were refused together the line came
        twice, in 1 run of 5, with warnings of a "leaked semaphore" (the second caller stopping the
        helper while the first exited); a later caller waits for the exit."""
        if not self._exiting.acquire(blocking=False):
            threading.Event().wait()
        self._say(line)
        _stop_model_helper(wait=False)
        os._exit(status)

    def _say(self, line: str) -> None:
        try:
            self._stream.write(line + "\n")
            self._stream.flush()
        except (OSError, ValueError):
            pass


def start_model_helper(config) -> None:
    """Start the model-fitting helper now, from the main thread, with the stop signals ignored.

    An ignored signal stays ignored across the helper's exec (so does a blocked one, but
    the resource tracker unblocks them where it starts), so a terminal's Ctrl-C or a
    SIGTERM to the whole process group leaves the helper alone; the job ends it on the way out, and it
    ends itself if the job dies. Otherwise it would start at the first retrain, on
    a worker thread, where signal dispositions cannot be changed.

    A signal sent meanwhile waits for the thread in ``sigwait``, as every other thread blocks it
    (``catching_stop_signals``); the kernel would drop it in a thread that did not. multiprocessing's
    resource tracker unblocks them in the thread that starts it, so it is started first.
    """
    if not config.background_training:
        return
    from multiprocessing import resource_tracker

    from models import training

    resource_tracker.ensure_running()
    JobSupervisor.block_stop_signals()
    previous = {number: signal.signal(number, signal.SIG_IGN) for number in STOP_SIGNALS}
    try:
        training.start_helper(config.fit_helpers)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _stop_model_helper(wait: bool = True) -> None:
    """End the model-fitting helper process so no semaphore is left for the resource tracker to report."""
    training = sys.modules.get("models.training")
    if training is not None:
        training.shutdown_helper(wait=wait)
        if not wait:
            # os._exit skips multiprocessing's finalizers, which unlink the helper's semaphores.
            from multiprocessing import util

            util._run_finalizers(0)


def trades_read() -> int:
    from prometheus_client import REGISTRY

    return int(REGISTRY.get_sample_value("trade_detector_trades_read_total") or 0)
