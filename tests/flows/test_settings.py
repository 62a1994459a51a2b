"""Job settings come from the environment once; a bad value names its variable."""

from __future__ import annotations

import pytest

from flows.settings import JobSettings, SettingsError, engine_settings_from_env
from models.config import ConfigError


def test_defaults_without_variables():
    settings = JobSettings.from_env({})
    assert (settings.kafka_brokers, settings.input_topic, settings.output_topic, settings.dlq_topic,
            settings.summary_topic, settings.stop_at_end) == (
        "localhost:9092", "stocks", "anomalies", "stocks-dlq", "instrument-summaries", False)
    assert settings.kafka_client_settings == {}


def test_variables_override_and_kafka_ones_pass_through():
    settings = JobSettings.from_env({
        "KAFKA_BROKERS": "a:1,b:2", "INPUT_TOPIC": "t", "STOP_AT_END": "TRUE", "SUMMARY_TOPIC": "",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "ada",
        "KAFKA_SASL_PASSWORD": "secret", "DETECTOR_VOTES_REQUIRED": "3",
    })
    assert settings.kafka_brokers == "a:1,b:2" and settings.input_topic == "t" and settings.stop_at_end
    assert settings.summary_topic == ""
    assert settings.kafka_client_settings == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
                                              "sasl.username": "ada", "sasl.password": "secret"}
    assert settings.detector.votes_required == 3


@pytest.mark.parametrize("variable, value", [
    ("STOP_AT_END", "sometimes"), ("INPUT_BATCH_SIZE", "0"), ("INPUT_BATCH_SIZE", "many"),
    ("BROKER_PROBE_TIMEOUT_S", "soon"), ("OUTPUT_TOPIC", " "), ("DETECTOR_RETRAIN_EVERY", "x"),
    ("BROKER_LOSS_TIMEOUT_S", "0.5"), ("BROKER_LOSS_TIMEOUT_S", "nan"), ("BROKER_LOSS_TIMEOUT_S", "inf"),
    ("MAX_MESSAGE_BYTES", "100"), ("MAX_MESSAGE_BYTES", "64k"),
    ("INPUT_BATCH_SIZE", "1000001"), ("BROKER_PROBE_TIMEOUT_S", "1e308"), ("BROKER_LOSS_TIMEOUT_S", "1e7"),
    ("DETECTOR_SEED", "-1"), ("DETECTOR_SEED", str(2**32 - 1)),
    ("MAX_INSTRUMENTS", "0"), ("MAX_INSTRUMENTS", "2.5"), ("MAX_INSTRUMENTS", "10000001"),
])
def test_a_bad_value_names_the_variable(variable, value):
    with pytest.raises(SettingsError, match=variable):
        JobSettings.from_env({variable: value})


def test_settings_are_frozen():
    with pytest.raises(AttributeError):
        JobSettings().input_topic = "other"


def test_operational_defaults():
    settings = JobSettings.from_env({})
    assert (settings.incident_topic, settings.broker_loss_timeout_s, settings.max_message_bytes,
            settings.metrics_port, settings.max_instruments) == ("incidents", 30.0, 65536, None, 20_000)
    assert JobSettings.from_env({"MAX_INSTRUMENTS": "500"}).max_instruments == 500


@pytest.mark.parametrize("environ, port", [
    ({"BYTEWAX_DATAFLOW_API_ENABLED": "true"}, 3030),
    ({"BYTEWAX_DATAFLOW_API_ENABLED": "false", "BYTEWAX_DATAFLOW_API_PORT": "4040"}, 4040),  # Bytewax serves it anyway
    ({"BYTEWAX_DATAFLOW_API_PORT": "4040"}, None),
])
def test_the_metrics_port_is_known_whenever_bytewax_will_serve_it(environ, port):
    assert JobSettings.from_env(environ).metrics_port == port


def test_a_bad_metrics_port_is_named():
    with pytest.raises(SettingsError, match="BYTEWAX_DATAFLOW_API_PORT"):
        JobSettings.from_env({"BYTEWAX_DATAFLOW_API_ENABLED": "1", "BYTEWAX_DATAFLOW_API_PORT": "70000"})


@pytest.mark.parametrize("variable", [
    "DETECTOR_FOREST_TRESHOLD", "DETECTOR_INCIDENT_QUIET_TRADE", "DETECTOR_INCIDENT_KINDS", "DETECTOR_",
])
def test_a_detector_variable_no_setting_reads_is_refused_by_name(variable):
    with pytest.raises(SettingsError, match=f"{variable}: no such setting"):
        JobSettings.from_env({variable: "1"})
    with pytest.raises(ConfigError, match=variable):
        engine_settings_from_env({variable: "1", "DETECTOR_SEED": "3"})


def test_engine_settings_read_both_prefixes():
    detector, incidents = engine_settings_from_env({
        "DETECTOR_SEED": "3", "DETECTOR_INCIDENT_QUIET_TRADES": "50", "DETECTOR_COMPILED": "off", "OTHER": "x"})
    assert (detector.seed, detector.compiled, incidents.quiet_trades) == (3, False, 50)


@pytest.mark.parametrize("word, value", [("on", True), ("YES", True), ("1", True), ("off", False), ("No", False)])
def test_booleans_are_written_alike_at_every_entry_point(word, value):
    settings = JobSettings.from_env({"STOP_AT_END": word, "DETECTOR_BACKGROUND_TRAINING": word})
    assert settings.stop_at_end is value and settings.detector.background_training is value


KAFKA_REFUSALS = [
    # librdkafka reads numbers as C does, up to the first stray character: 1e6 KB was a 1 KB queue,
    # which no record fits, and the job's sinks waited for room for ever.
    ("KAFKA_QUEUE_BUFFERING_MAX_KBYTES", "1e6", "KAFKA_QUEUE_BUFFERING_MAX_KBYTES must be a whole number in plain "
                                               "digits, got '1e6', which the Kafka client reads as 1"),
    ("KAFKA_QUEUE_BUFFERING_MAX_KBYTES", "4294967297", "KAFKA_QUEUE_BUFFERING_MAX_KBYTES='4294967297' is beyond the "
                                                      "Kafka client's whole numbers (32 bits): it reads it as 1"),
    ("KAFKA_QUEUE_BUFFERING_MAX_KBYTES", "0", 'KAFKA_QUEUE_BUFFERING_MAX_KBYTES: refused by the Kafka client: '
                                             'Configuration property "queue.buffering.max.kbytes" value 0 is outside '
                                             'allowed range 1..2147483647'),
    *(("KAFKA_QUEUE_BUFFERING_MAX_KBYTES", kbytes, f"KAFKA_QUEUE_BUFFERING_MAX_KBYTES={kbytes!r} (KB) is smaller "
       "than the largest message the job writes, 262,144 bytes (connectors.codec.MAX_WRITTEN_BYTES, the limit of "
       "every record and dead letter): its producers could never send such a record; set at least 256 or unset "
       "it (librdkafka's default is 1048576)") for kbytes in ("1", "255", " 64 ")),
    # The producers refused a record larger than message.max.bytes (with its key and framing) at once, and the
    # job ended on it with a traceback, after writing the smaller ones: 1,000 bytes is smaller than most records.
    *(("KAFKA_MESSAGE_MAX_BYTES", limit, f"KAFKA_MESSAGE_MAX_BYTES={limit!r} is smaller than the largest message "
       "the job writes, 262,144 bytes (connectors.codec.MAX_WRITTEN_BYTES, the limit of every record and dead "
       "letter) with 36 bytes of Kafka framing: its producers would refuse such a record and the job would stop "
       "on it; set at least 262180 or unset it (librdkafka's default is 1000000)") for limit in ("1000", "262179")),
    ("KAFKA_HOME", "/opt/kafka", 'KAFKA_HOME: refused by the Kafka client: No such configuration property: "home" '
                                 "(every KAFKA_* variable but KAFKA_BROKERS is given to the Kafka client as a "
                                 "librdkafka property: unset it in this program's environment)"),
    ("KAFKA_BOOTSTRAP_SERVERS", "kafka-9:9092", "KAFKA_BOOTSTRAP_SERVERS is not taken: the brokers come from "
     "KAFKA_BROKERS (the replay's --brokers), which it would override unseen, and messages would name the wrong "
     "address; set KAFKA_BROKERS instead"),
    ("KAFKA_ENABLE_PARTITION_EOF", "true", "KAFKA_ENABLE_PARTITION_EOF is not taken: the job sets it from "
     "STOP_AT_END (and the readers that must find a topic's end set it on); set STOP_AT_END instead"),
    ("KAFKA_MESSAGE_TIMEOUT_MS", "5000", "KAFKA_MESSAGE_TIMEOUT_MS is not taken: how long a message may wait for "
     "the broker comes from BROKER_LOSS_TIMEOUT_S (the job's sinks wait until the job stops on it, the replay "
     "twice as long); set BROKER_LOSS_TIMEOUT_S instead"),
    ("KAFKA_FETCH_WAIT_MAX_MS", "0x10", "KAFKA_FETCH_WAIT_MAX_MS must be a whole number in plain digits, got "
                                       "'0x10', which the Kafka client reads as 16"),
]


@pytest.mark.parametrize("variable, value, message", KAFKA_REFUSALS)
def test_a_kafka_variable_that_cannot_be_used_stops_the_job_at_start_naming_it(variable, value, message):
    """They passed the settings and failed later: without naming the variable (KAFKA_HOME), silently
    overriding another (KAFKA_BOOTSTRAP_SERVERS), or hanging the sinks for ever (a 1 KB queue)."""
    with pytest.raises(SettingsError) as error:
        JobSettings.from_env({variable: value, "KAFKA_CLIENT_ID": "desk-7"})
    assert str(error.value) == message


@pytest.mark.parametrize("environ, properties", [
    ({"KAFKA_QUEUE_BUFFERING_MAX_KBYTES": "256"}, {"queue.buffering.max.kbytes": "256"}),  # holds the largest record
    ({"KAFKA_QUEUE_BUFFERING_MAX_KBYTES": "2147483647"}, {"queue.buffering.max.kbytes": "2147483647"}),
    ({"KAFKA_MESSAGE_MAX_BYTES": "262180"}, {"message.max.bytes": "262180"}),  # holds the largest record
    ({"KAFKA_LINGER_MS": "0.5"}, {"linger.ms": "0.5"}),  # a fractional property: read as written
    ({"KAFKA_FETCH_WAIT_MAX_MS": "25", "KAFKA_CLIENT_ID": "desk-7"}, {"fetch.wait.max.ms": "25",
                                                                       "client.id": "desk-7"}),
])
def test_kafka_variables_the_client_reads_as_written_are_taken(environ, properties):
    assert JobSettings.from_env(environ).kafka_client_settings == properties
