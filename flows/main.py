"""The streaming job: ``python -m bytewax.run flows.main`` (Kafka ``stocks`` -> ``anomalies``).

Bytewax imports this module and runs its ``flow``, so the flow is built at import
time from the environment (see ``flows.settings``). Before anything else the
broker is probed: Bytewax's Kafka input would otherwise wait forever for metadata
from an address that does not answer. Every failure at start ends the process
with one line naming the cause and a non-zero exit status. A job with a recovery store
(``-r``) holds its lock for its life: a second one started on the store is refused.

What ends a running job (SIGINT or SIGTERM, a lost broker, an input topic that
grew, a message the broker will not take), with one line on stderr and an exit status
saying what to do: ``flows.supervisor``.
"""

from __future__ import annotations

# First, before the imports below (with the settings, a third of a second): from here on a stop
# signal is a clean stop, however early it comes. The imports after code are on purpose.
from flows.supervisor import JobSupervisor

SUPERVISOR = JobSupervisor.catching_stop_signals()

import os
import sys
import threading
from pathlib import Path

from bytewax.dataflow import Dataflow
from bytewax.outputs import Sink

from connectors.broker import BrokerUnreachable, ClientSettingsRejected, ProbeStopped, port_is_free, probe_broker
from connectors.kafka import COMPACTED, MissingTopic, TopicsRefused, partition_count, prepare_job_topics
from connectors.kafka_sinks import anomaly_sink, dead_letter_sink, incident_sink, summary_sink
from connectors.kafka_source import TradeSource
from connectors.broker_watch import BrokerWatch
from connectors.recovery_store import (
    RecoveryStoreUnusable, check_recovery_store, lock_recovery_store, recovery_directory, recovery_process_id,
)
from flows.runtime import tune_garbage_collector
from flows.settings import JobSettings, SettingsError
from flows.supervisor import start_model_helper

FLOW_ID = "trade-anomalies"
"""The dataflow's id: its steps' names in the recovery store begin with it."""


class PortTaken(RuntimeError):
    """The port Bytewax's dataflow API would serve is in use."""


def build_job(settings: JobSettings, supervisor: JobSupervisor | None = None, recovery: Path | None = None,
              ) -> Dataflow:
    """Probe the broker, make sure the topics exist, check the recovery store (``-r``) fits,
    and wire Kafka around the dataflow. A stop ends the probe, and the start after the dataflow's
    import: nothing is made on the broker for a job that was asked to end."""
    stop = supervisor.stop if supervisor is not None else None
    probe(settings, stop)
    from flows.dataflow import build_flow  # after the probe: it imports scikit-learn, a second or two

    if supervisor is not None:
        supervisor.exit_if_stopped()  # a stop during the import: before the topics are made
    make_topics(settings)
    source = trade_source(settings, supervisor, recovery)
    return build_flow(source, config=settings.detector, incidents=settings.incidents,
                      max_instruments=settings.max_instruments, flow_id=FLOW_ID, stopping=stop,
                      **job_sinks(settings, supervisor))


def probe(settings: JobSettings, stop: threading.Event | None) -> None:
    """Fail before anything is made, naming the cause: the metrics port in use, or no broker
    answering (Bytewax's Kafka input would wait for ever); ``stop`` ends the probe at once."""
    if settings.metrics_port is not None:
        check_port_free(settings.metrics_port)
    probe_broker(settings.kafka_brokers, timeout=settings.probe_timeout_s,
                 client_settings=settings.kafka_client_settings, stop=stop)


def make_topics(settings: JobSettings) -> None:
    """The input topic must exist; the output topics are made if missing (the incident topic
    compacted), and a broker that refuses a topic's configs is said, not fatal."""
    incident_topic = settings.incident_topic
    rejected: dict[str, str] = {}
    prepare_job_topics(
        settings.kafka_brokers, settings.input_topic,
        (settings.output_topic, settings.dlq_topic, settings.summary_topic, incident_topic),
        settings.kafka_client_settings,
        configs={incident_topic: COMPACTED} if incident_topic else None, rejected=rejected,
    )
    for topic, answer in rejected.items():
        print(f"flows.main: topic {topic!r} created without its configs (the broker said: {answer}); "
              "its old messages will not be compacted away", file=sys.stderr, flush=True)


def trade_source(settings: JobSettings, supervisor: JobSupervisor | None, recovery: Path | None) -> TradeSource:
    """The input topic's reader, once its partitions are known: a recovery store made for other
    partitions is refused now, and the supervisor watches for partitions added while it runs."""
    brokers, client = settings.kafka_brokers, settings.kafka_client_settings
    source = TradeSource(
        brokers, settings.input_topic, stop_at_end=settings.stop_at_end, client_settings=client,
        batch_size=settings.input_batch_size, max_message_bytes=settings.max_message_bytes,
        watch=supervisor.watch if supervisor is not None else None,
        stop=supervisor.stop if supervisor is not None else None,
        on_worker=JobSupervisor.block_stop_signals if supervisor else None,
    )
    input_partitions = source.list_parts()
    if recovery is not None:
        check_recovery_store(recovery, f"{FLOW_ID}.read", input_partitions)
    if supervisor is not None:
        supervisor.watch_input_partitions(
            lambda: partition_count(brokers, settings.input_topic, client, timeout=5.0),
            len(input_partitions), settings.partitions_check_s)
    return source


def job_sinks(settings: JobSettings, supervisor: JobSupervisor | None) -> dict[str, Sink]:
    """The Kafka sinks by ``build_flow``'s argument names, summaries and incidents only where their
    topic is set; each tells the supervisor of a message the broker will not take."""
    brokers, client = settings.kafka_brokers, settings.kafka_client_settings
    watch = supervisor.watch if supervisor is not None else None
    failed = supervisor.delivery_failed if supervisor is not None else None
    options = {"watch": watch, "failed": failed, "oversize_topic": settings.dlq_topic}
    sinks: dict[str, Sink] = {}
    if settings.summary_topic:
        sinks["summary_sink"] = summary_sink(brokers, settings.summary_topic, client, **options)
    if settings.incident_topic:
        sinks["incident_sink"] = incident_sink(brokers, settings.incident_topic, client, **options)
    sinks["anomaly_sink"] = anomaly_sink(brokers, settings.output_topic, client, **options)
    sinks["dead_letter_sink"] = dead_letter_sink(brokers, settings.dlq_topic, client, watch=watch, failed=failed)
    return sinks


def check_port_free(port: int) -> None:
    """Fail now, naming the variable, rather than as a Rust panic once Bytewax tries to serve."""
    if not port_is_free(port):
        raise PortTaken(f"BYTEWAX_DATAFLOW_API_PORT={port} is in use; choose a free port "
                        "or unset BYTEWAX_DATAFLOW_API_ENABLED")


def flow_from_environment(supervisor: JobSupervisor) -> Dataflow:
    """The job, or ``SystemExit``: one line and status 1 for a failure, the stop line and status 0
    for a stop signal that came while it was starting (checked before the clients open and again
    before the helper starts; a stop during the broker's probe ends the probe at once). A failure
    met after a stop is the stop: the operator asked for the job to end, and a missing topic
    or an unusable recovery store said instead, with status 1, read as a start that went wrong."""
    try:
        settings = JobSettings.from_env()
        supervisor.exit_if_stopped()
        recovery = recovery_directory(sys.argv, os.environ)
        if recovery is not None:  # before any Kafka client: a second job on the store is refused
            lock_recovery_store(recovery, recovery_process_id(sys.argv, os.environ))
        supervisor.watch_broker(BrokerWatch(settings.kafka_brokers, settings.broker_loss_timeout_s))
        job = build_job(settings, supervisor, recovery)
        supervisor.exit_if_stopped()
        supervisor.report_stop_at_exit()
        start_model_helper(settings.detector)
        tune_garbage_collector()
        return job
    except ProbeStopped:
        supervisor.exit_if_stopped()  # the probe stops only on the supervisor's stop
        raise
    except (SettingsError, BrokerUnreachable, ClientSettingsRejected, MissingTopic, TopicsRefused,
            PortTaken, RecoveryStoreUnusable) as error:
        supervisor.exit_if_stopped()  # a stop that came first wins: the next start meets the failure
        raise SystemExit(f"flows.main: {error}") from None


flow = flow_from_environment(SUPERVISOR)
