"""The streaming job: ``python -m bytewax.run flows.main`` (Kafka ``stocks`` -> ``anomalies``).

Bytewax imports this module and runs its ``flow``, so the flow is built at import
time from the environment (see ``flows.settings``). Before anything else the
broker is probed: Bytewax's Kafka input would otherwise wait forever for metadata
from an address that does not answer. Every failure at start ends the process
with one line naming the cause and a non-zero exit status.
"""

from __future__ import annotations

from bytewax.dataflow import Dataflow

from connectors.broker import BrokerUnreachable, ClientSettingsRejected, probe_broker
from connectors.kafka import (
    MissingTopic,
    TradeSource,
    anomaly_sink,
    dead_letter_sink,
    prepare_job_topics,
    summary_sink,
)
from flows.settings import JobSettings, SettingsError


def build_job(settings: JobSettings) -> Dataflow:
    """Probe the broker, make sure the topics exist, and wire Kafka around the dataflow."""
    brokers, client = settings.kafka_brokers, settings.kafka_client_settings
    probe_broker(brokers, timeout=settings.probe_timeout_s, client_settings=client)
    prepare_job_topics(
        brokers, settings.input_topic,
        (settings.output_topic, settings.dlq_topic, settings.summary_topic), client,
    )
    from flows.dataflow import build_flow  # after the probe: it imports scikit-learn, a second or two

    source = TradeSource(
        brokers, settings.input_topic, stop_at_end=settings.stop_at_end,
        client_settings=client, batch_size=settings.input_batch_size,
    )
    summaries = summary_sink(brokers, settings.summary_topic, client) if settings.summary_topic else None
    return build_flow(
        source,
        anomaly_sink(brokers, settings.output_topic, client),
        dead_letter_sink(brokers, settings.dlq_topic, client),
        settings.detector,
        summary_sink=summaries,
    )


def flow_from_environment() -> Dataflow:
    try:
        return build_job(JobSettings.from_env())
    except (SettingsError, BrokerUnreachable, ClientSettingsRejected, MissingTopic) as error:
        raise SystemExit(f"flows.main: {error}") from None


flow = flow_from_environment()
