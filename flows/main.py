"""The streaming job: ``python -m bytewax.run flows.main`` (Kafka ``stocks`` -> ``anomalies``).

Bytewax imports this module and runs its ``flow``, so the flow is built at import
time from the environment (see ``flows.settings``). Before anything else the
broker is probed: Bytewax's Kafka input would otherwise wait forever for metadata
from an address that does not answer. Every failure at start ends the process
with one line naming the cause and a non-zero exit status.

Two things end a running job, each with one line on stderr (``JobSupervisor``):

- SIGINT or SIGTERM: every input partition ends at its next poll, so Bytewax
  finishes the epoch, writes its outputs and its snapshot, and exits normally
  (status 0; a second signal exits at once, status 128 + the signal: 130, 143). ``-r`` resumes exactly.
- No reachable broker for ``BROKER_LOSS_TIMEOUT_S``: the job exits with status 3
  at once (nothing can be written anyway); ``-r`` resumes from the last snapshot,
  as after a crash, once a broker is back.
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from bytewax.dataflow import Dataflow

from connectors.broker import BrokerUnreachable, ClientSettingsRejected, probe_broker
from connectors.kafka import (
    COMPACTED,
    MissingTopic,
    TopicsRefused,
    TradeSource,
    anomaly_sink,
    dead_letter_sink,
    incident_sink,
    prepare_job_topics,
    summary_sink,
)
from connectors.broker_watch import BrokerWatch
from connectors.recovery_store import RecoveryStoreUnusable, check_recovery_store, recovery_directory
from flows.runtime import tune_garbage_collector
from flows.settings import JobSettings, SettingsError

BROKER_LOST_STATUS = 3
"""Exit status after ``BROKER_LOSS_TIMEOUT_S`` without a broker: restart (with ``-r``) when it is back."""

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

FLOW_ID = "trade-anomalies"
"""The dataflow's id: its steps' names in the recovery store begin with it."""


class PortTaken(RuntimeError):
    """The port Bytewax's dataflow API would serve is in use."""


def build_job(settings: JobSettings, supervisor: JobSupervisor | None = None, recovery: Path | None = None,
              ) -> Dataflow:
    """Probe the broker, make sure the topics exist, check the recovery store (``-r``) fits,
    and wire Kafka around the dataflow."""
    brokers, client = settings.kafka_brokers, settings.kafka_client_settings
    if settings.metrics_port is not None:
        check_port_free(settings.metrics_port)
    probe_broker(brokers, timeout=settings.probe_timeout_s, client_settings=client)
    from flows.dataflow import build_flow  # after the probe: it imports scikit-learn, a second or two

    incident_topic = settings.incident_topic
    rejected: dict[str, str] = {}
    prepare_job_topics(
        brokers, settings.input_topic,
        (settings.output_topic, settings.dlq_topic, settings.summary_topic, incident_topic), client,
        configs={incident_topic: COMPACTED} if incident_topic else None, rejected=rejected,
    )
    for topic, answer in rejected.items():
        print(f"flows.main: topic {topic!r} created without its configs (the broker said: {answer}); "
              "its old messages will not be compacted away", file=sys.stderr, flush=True)
    watch = supervisor.watch if supervisor is not None else None
    stop = supervisor.stop if supervisor is not None else None
    source = TradeSource(
        brokers, settings.input_topic, stop_at_end=settings.stop_at_end, client_settings=client,
        batch_size=settings.input_batch_size, max_message_bytes=settings.max_message_bytes,
        watch=watch, stop=stop, on_worker=JobSupervisor.block_stop_signals if supervisor else None,
    )
    if recovery is not None:
        check_recovery_store(recovery, f"{FLOW_ID}.read", source.list_parts())
    options = {"watch": watch, "oversize_topic": settings.dlq_topic}
    optional_sinks = {}
    if settings.summary_topic:
        optional_sinks["summary_sink"] = summary_sink(brokers, settings.summary_topic, client, **options)
    if incident_topic:
        optional_sinks["incident_sink"] = incident_sink(brokers, incident_topic, client, **options)
    return build_flow(
        source,
        anomaly_sink(brokers, settings.output_topic, client, **options),
        dead_letter_sink(brokers, settings.dlq_topic, client, watch=watch),
        settings.detector,
        incidents=settings.incidents,
        max_instruments=settings.max_instruments,
        flow_id=FLOW_ID,
        **optional_sinks,
    )


def check_port_free(port: int) -> None:
    """Fail now, naming the variable, rather than as a Rust panic once Bytewax tries to serve."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("0.0.0.0", port))
        except OSError as error:
            raise PortTaken(
                f"BYTEWAX_DATAFLOW_API_PORT={port} is in use ({error.strerror}); choose a free port "
                "or unset BYTEWAX_DATAFLOW_API_ENABLED"
            ) from None


class JobSupervisor:
    """Turns SIGINT/SIGTERM into a clean stop and a lost broker into one line and exit status 3.

    A stop signal reaches the job two ways, whichever thread the kernel picks: a
    Python handler (run by the main thread, and raising nothing, so neither
    KeyboardInterrupt nor Bytewax's own interrupt handling ever sees it) and a
    thread waiting in ``sigwait``. Worker threads block the signals
    (``block_stop_signals``, called where they build their input partitions), so
    the kernel delivers them to the main thread's handler or the waiting thread.
    The model-fitting helper process is started from the main thread with the
    signals ignored (``start_model_helper``), so a terminal's Ctrl-C, sent to the
    whole process group, does not kill it mid-fit.
    """

    def __init__(self, watch: BrokerWatch, stream=sys.stderr) -> None:
        self.watch = watch
        self.stop = threading.Event()
        self.stopped_by: str | None = None
        self._stream = stream
        self._lock = threading.Lock()

    def install(self) -> None:
        for number in STOP_SIGNALS:
            signal.signal(number, lambda number, _frame: self.request_stop(number))
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        threading.Thread(target=self._receive_signals, name="stop-signals", daemon=True).start()
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        threading.Thread(target=self._watch_broker, name="broker-watch", daemon=True).start()
        atexit.register(self._report_stop)

    @staticmethod
    def block_stop_signals() -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)

    def _receive_signals(self) -> None:
        while True:
            self.request_stop(signal.sigwait(STOP_SIGNALS))

    def request_stop(self, number: int) -> None:
        """First signal: end the inputs at their next poll. Second: exit at once."""
        name = signal.Signals(number).name
        with self._lock:
            first = self.stopped_by is None
            if first:
                self.stopped_by = name
                self.stop.set()
        if not first:
            self.exit_now(f"flows.main: second stop signal ({name}): exiting without a final snapshot",
                          128 + number)

    def _watch_broker(self) -> None:
        while True:
            time.sleep(0.25)
            if self.watch.lost():
                self.exit_now(f"flows.main: {self.watch.describe()}; exiting (restart with -r to resume "
                              "from the last snapshot)", BROKER_LOST_STATUS)

    def _report_stop(self) -> None:
        _stop_model_helper(wait=False)
        if self.stopped_by is not None:
            self._say(f"flows.main: stopped by {self.stopped_by} after {trades_read():,} trades")

    def exit_now(self, line: str, status: int) -> None:
        """One line, the model helper stopped, and out: no traceback, no Rust panic, no atexit."""
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

    An ignored signal stays ignored across the helper's exec (a blocked one does
    not: spawn resets the mask), so a terminal's Ctrl-C or a SIGTERM to the whole
    process group leaves the helper alone; the job ends it on the way out, and it
    ends itself if the job dies. Otherwise it would start at the first retrain, on
    a worker thread, where signal dispositions cannot be changed.
    """
    if not config.background_training:
        return
    from models import training

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


def flow_from_environment() -> Dataflow:
    try:
        settings = JobSettings.from_env()
        supervisor = JobSupervisor(BrokerWatch(settings.kafka_brokers, settings.broker_loss_timeout_s))
        supervisor.install()
        job = build_job(settings, supervisor, recovery_directory(sys.argv, os.environ))
        start_model_helper(settings.detector)
        tune_garbage_collector()
        return job
    except (SettingsError, BrokerUnreachable, ClientSettingsRejected, MissingTopic, TopicsRefused,
            PortTaken, RecoveryStoreUnusable) as error:
        raise SystemExit(f"flows.main: {error}") from None


flow = flow_from_environment()
