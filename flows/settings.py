"""The streaming job's settings: one frozen dataclass, read from the environment once at start.

A bad value stops the job before it touches Kafka, with a message naming the variable,
rather than surfacing later as a confusing client error.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from connectors.codec import MAX_MESSAGE_BYTES, MAX_WRITTEN_BYTES
from connectors.kafka_settings import RECORD_FRAMING_BYTES, KafkaSettingsError, checked_client_settings
from flows.instruments import DEFAULT_MAX_INSTRUMENTS
from models.config import ENV_PREFIX, FALSE_WORDS, TRUE_WORDS, ConfigError, DetectorConfig, parse_number
from models.incidents import IncidentSettings


class SettingsError(ValueError):
    """A job variable has a bad value; the message names the variable."""


@dataclass(frozen=True)
class JobSettings:
    kafka_brokers: str = "localhost:9092"
    """KAFKA_BROKERS: comma-separated bootstrap servers."""
    input_topic: str = "stocks"
    """INPUT_TOPIC: trades, one JSON message per trade keyed by symbol."""
    output_topic: str = "anomalies"
    """OUTPUT_TOPIC: anomaly records keyed by symbol."""
    dlq_topic: str = "stocks-dlq"
    """DLQ_TOPIC: everything that could not be processed, with the reason."""
    summary_topic: str = "instrument-summaries"
    """SUMMARY_TOPIC: per-instrument summaries, one whenever a batch ends in another second of
    event time than the last summary (so about one a second); empty disables."""
    incident_topic: str = "incidents"
    """INCIDENT_TOPIC: incident updates keyed by incident id, a compacted topic; empty disables."""
    stop_at_end: bool = False
    """STOP_AT_END: stop at the end of the input topic (backfills, tests) instead of waiting."""
    input_batch_size: int = 1000
    """INPUT_BATCH_SIZE: most messages taken from one partition per poll."""
    probe_timeout_s: float = 5.0
    """BROKER_PROBE_TIMEOUT_S: how long to wait for the broker to answer at start."""
    broker_loss_timeout_s: float = 30.0
    """BROKER_LOSS_TIMEOUT_S: how long the job waits for a lost broker before it exits (status 3)."""
    max_message_bytes: int = MAX_MESSAGE_BYTES
    """MAX_MESSAGE_BYTES: larger input messages are dead letters at decode."""
    max_instruments: int = DEFAULT_MAX_INSTRUMENTS
    """MAX_INSTRUMENTS: instruments the process holds at most; a new one beyond is a dead letter."""
    partitions_check_s: float = 30.0
    """INPUT_PARTITIONS_CHECK_S: how often the job asks whether the input topic has more partitions
    than it started with (it then stops to be restarted, status 75)."""
    metrics_port: int | None = None
    """BYTEWAX_DATAFLOW_API_PORT (3030) when BYTEWAX_DATAFLOW_API_ENABLED is set: checked free at start."""
    client_settings: tuple[tuple[str, str], ...] = ()
    """KAFKA_*: librdkafka properties for every client (``KAFKA_SASL_USERNAME`` -> ``sasl.username``),
    checked at start (``connectors.kafka_settings.checked_client_settings``)."""
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    """DETECTOR_*: the engine settings (models.config.DetectorConfig)."""
    incidents: IncidentSettings = field(default_factory=IncidentSettings)
    """DETECTOR_INCIDENT_*: how anomalies are grouped into incidents (models.incidents.IncidentSettings)."""

    @property
    def kafka_client_settings(self) -> dict[str, str]:
        return dict(self.client_settings)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> JobSettings:
        environ = os.environ if environ is None else environ
        try:
            detector, incidents = engine_settings_from_env(environ)
        except ConfigError as error:
            raise SettingsError(str(error)) from None
        return cls(
            kafka_brokers=_text(environ, "KAFKA_BROKERS", cls.kafka_brokers),
            input_topic=_text(environ, "INPUT_TOPIC", cls.input_topic),
            output_topic=_text(environ, "OUTPUT_TOPIC", cls.output_topic),
            dlq_topic=_text(environ, "DLQ_TOPIC", cls.dlq_topic),
            summary_topic=environ.get("SUMMARY_TOPIC", cls.summary_topic).strip(),
            incident_topic=environ.get("INCIDENT_TOPIC", cls.incident_topic).strip(),
            stop_at_end=_flag(environ, "STOP_AT_END", cls.stop_at_end),
            input_batch_size=_number(environ, "INPUT_BATCH_SIZE", cls.input_batch_size, int, minimum=1,
                                     maximum=1_000_000),  # librdkafka's consume() takes at most a million
            probe_timeout_s=_number(environ, "BROKER_PROBE_TIMEOUT_S", cls.probe_timeout_s, float, minimum=0.1,
                                    maximum=3_600.0),
            broker_loss_timeout_s=_number(environ, "BROKER_LOSS_TIMEOUT_S", cls.broker_loss_timeout_s, float,
                                          minimum=1.0, maximum=86_400.0),
            max_message_bytes=_number(environ, "MAX_MESSAGE_BYTES", cls.max_message_bytes, int, minimum=1024),
            max_instruments=_number(environ, "MAX_INSTRUMENTS", cls.max_instruments, int, minimum=1,
                                    maximum=10_000_000),
            partitions_check_s=_number(environ, "INPUT_PARTITIONS_CHECK_S", cls.partitions_check_s, float,
                                       minimum=0.1, maximum=86_400.0),
            metrics_port=_metrics_port(environ),
            client_settings=tuple(_client_settings(environ).items()),
            detector=detector,
            incidents=incidents,
        )


def engine_settings_from_env(environ: Mapping[str, str]) -> tuple[DetectorConfig, IncidentSettings]:
    """The engine's and the incident tracker's settings, from ``DETECTOR_*`` variables.

    A ``DETECTOR_*`` variable that neither reads is refused, naming it: a misspelled
    setting (``DETECTOR_FOREST_TRESHOLD``) would otherwise leave the default in force
    without a word.
    """
    known = DetectorConfig.variables() | IncidentSettings.variables()
    unread = sorted(name for name in environ if name.startswith(ENV_PREFIX) and name not in known)
    if unread:
        raise ConfigError(f"{', '.join(unread)}: no such setting (the README's Engine settings and "
                          "docs/INCIDENTS.md list them)")
    return DetectorConfig.from_env(environ), IncidentSettings.from_env(environ)


def _client_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The ``KAFKA_*`` variables as librdkafka properties, checked (``checked_client_settings``), with
    a local queue that holds the largest message the job writes and a message limit it fits.

    The job opened its clients with whatever the variables said: ``KAFKA_HOME=/opt/kafka`` stopped it
    without naming the variable, and a queue smaller than a record hung its sinks for ever.
    """
    try:
        settings = checked_client_settings(environ)
    except KafkaSettingsError as error:
        raise SettingsError(str(error)) from None
    _check_queue_holds_every_record(settings)
    _check_message_limit_holds_every_record(settings)
    return settings


def _check_queue_holds_every_record(settings: Mapping[str, str]) -> None:
    """A producer refuses, for ever, a message larger than its whole local queue
    (``queue.buffering.max.kbytes``); the job writes messages of up to ``MAX_WRITTEN_BYTES``."""
    text = settings.get("queue.buffering.max.kbytes")
    if text is None or int(text) * 1024 >= MAX_WRITTEN_BYTES:  # a plain whole number once checked
        return
    raise SettingsError(
        f"KAFKA_QUEUE_BUFFERING_MAX_KBYTES={text!r} (KB) is smaller than the largest message the job writes, "
        f"{MAX_WRITTEN_BYTES:,} bytes (connectors.codec.MAX_WRITTEN_BYTES, the limit of every record and dead "
        f"letter): its producers could never send such a record; set at least {MAX_WRITTEN_BYTES // 1024} "
        f"or unset it (librdkafka's default is 1048576)")


def _check_message_limit_holds_every_record(settings: Mapping[str, str]) -> None:
    """A producer refuses at once, for good, a message whose key and value with their framing exceed
    its ``message.max.bytes``; the job writes messages of up to ``MAX_WRITTEN_BYTES``. Below that the
    job wrote the records that fit and ended with a traceback at the first larger one (an anomaly
    record is 1-5 KB), and again at the same record after every restart."""
    text = settings.get("message.max.bytes")
    smallest = MAX_WRITTEN_BYTES + RECORD_FRAMING_BYTES
    if text is None or int(text) >= smallest:  # a plain whole number once checked
        return
    raise SettingsError(
        f"KAFKA_MESSAGE_MAX_BYTES={text!r} is smaller than the largest message the job writes, "
        f"{MAX_WRITTEN_BYTES:,} bytes (connectors.codec.MAX_WRITTEN_BYTES, the limit of every record and dead "
        f"letter) with {RECORD_FRAMING_BYTES} bytes of Kafka framing: its producers would refuse such a record and "
        f"the job would stop on it; set at least {smallest} or unset it (librdkafka's default is 1000000)")


def _metrics_port(environ: Mapping[str, str]) -> int | None:
    """The port Bytewax's dataflow API will serve, or None when it is off.

    Bytewax serves it whenever BYTEWAX_DATAFLOW_API_ENABLED is set, whatever the value
    (even ``false``: measured), on every interface.
    """
    if "BYTEWAX_DATAFLOW_API_ENABLED" not in environ:
        return None
    port = _number(environ, "BYTEWAX_DATAFLOW_API_PORT", 3030, int, minimum=1)
    if port > 65535:
        raise SettingsError(f"BYTEWAX_DATAFLOW_API_PORT={port} is not a port (1-65535)")
    return port


def _text(environ: Mapping[str, str], name: str, default: str) -> str:
    value = environ.get(name, default).strip()
    if not value:
        raise SettingsError(f"{name} is empty; unset it to use the default {default!r}")
    return value


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    text = environ.get(name)
    if text is None:
        return default
    word = text.strip().lower()
    if word not in TRUE_WORDS + FALSE_WORDS:
        raise SettingsError(f"{name}={text!r} is not a boolean (use true or false)")
    return word in TRUE_WORDS


def _number(environ: Mapping[str, str], name: str, default, kind, minimum, maximum=None):
    text = environ.get(name)
    if text is None:
        return default
    try:
        value = parse_number(text, kind)
    except ValueError:
        raise SettingsError(f"{name}={text!r} is not a valid {kind.__name__}") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise SettingsError(f"{name}={text!r} is not a finite number")
    if value < minimum:
        raise SettingsError(f"{name}={text!r} must be at least {minimum}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name}={text!r} must be at most {maximum:g}")
    return value
