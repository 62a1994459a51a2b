"""Settings come from the environment; a bad value fails naming the variable; the project's Streamlit config."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from dashboard.config import DashboardConfig, DashboardConfigError

REPO = Path(__file__).resolve().parents[2]


def test_settings_come_from_the_environment():
    config = DashboardConfig.from_env({
        "KAFKA_BROKERS": "kafka-1:9092,kafka-2:9092", "ANOMALY_TOPIC": "a", "SUMMARY_TOPIC": "s",
        "INCIDENT_TOPIC": "i", "REVIEW_TOPIC": "r", "INPUT_TOPIC": " trades ", "DASHBOARD_BUFFER_SIZE": "50",
        "DASHBOARD_REFRESH_SECONDS": "2", "DASHBOARD_STALL_SECONDS": "12.5", "DASHBOARD_INCIDENT_LIMIT": "300",
        "DASHBOARD_SUMMARY_HISTORY": "800", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": "ada", "KAFKA_SASL_PASSWORD": "secret",
    })
    assert (config.brokers, config.anomaly_topic, config.summary_topic) == ("kafka-1:9092,kafka-2:9092", "a", "s")
    assert (config.incident_topic, config.review_topic, config.input_topic) == ("i", "r", "trades")
    assert (config.buffer_size, config.refresh_seconds, config.stall_seconds) == (50, 2.0, 12.5)
    assert (config.incident_limit, config.summary_history) == (300, 800)
    assert config.client_settings == {"security.protocol": "SASL_SSL", "sasl.mechanism": "PLAIN",
                                      "sasl.username": "ada", "sasl.password": "secret"}
    assert DashboardConfig.from_env({}) == DashboardConfig()
    assert DashboardConfig.from_env({"INPUT_TOPIC": ""}).input_topic == ""  # progress not watched


@pytest.mark.parametrize("name, value, message", [
    ("DASHBOARD_BUFFER_SIZE", "0", "DASHBOARD_BUFFER_SIZE must be between 1 and 1000000, got 0"),
    ("DASHBOARD_BUFFER_SIZE", "1e3", "DASHBOARD_BUFFER_SIZE must be a whole number, got '1e3'"),
    ("DASHBOARD_REFRESH_SECONDS", "0.01", "DASHBOARD_REFRESH_SECONDS must be between 0.2 and 60, got 0.01"),
    ("DASHBOARD_REFRESH_SECONDS", "nan", "DASHBOARD_REFRESH_SECONDS must be a (finite) number, got 'nan'"),
    ("DASHBOARD_STALL_SECONDS", "inf", "DASHBOARD_STALL_SECONDS must be a (finite) number, got 'inf'"),
    ("DASHBOARD_STALL_SECONDS", "soon", "DASHBOARD_STALL_SECONDS must be a (finite) number, got 'soon'"),
    ("DASHBOARD_INCIDENT_LIMIT", "5", "DASHBOARD_INCIDENT_LIMIT must be between 10 and 1000000, got 5"),
    ("DASHBOARD_SUMMARY_HISTORY", "-1", "DASHBOARD_SUMMARY_HISTORY must be between 1 and 10000000, got -1"),
    ("DASHBOARD_LAG_WARNING", "0", "DASHBOARD_LAG_WARNING must be between 1 and 1000000000000, got 0"),
    ("KAFKA_BROKERS", " ", "KAFKA_BROKERS must not be empty"),
    ("ANOMALY_TOPIC", "", "ANOMALY_TOPIC must not be empty"),
    ("INCIDENT_TOPIC", " ", "INCIDENT_TOPIC must not be empty: the page's queue is the job's incidents (a job "
                            "with INCIDENT_TOPIC empty writes none; give it one to work its incidents here)"),
    ("SUMMARY_TOPIC", "", "SUMMARY_TOPIC must not be empty: the page's totals, instruments and the job's progress "
                          "come from the job's summaries (a job with SUMMARY_TOPIC empty writes none; give it one "
                          "to watch it here)"),
    ("REVIEW_TOPIC", "", "REVIEW_TOPIC must not be empty"),
    *((name, value, f"KAFKA_BROKERS must be servers as host or host:port (port 1 to 65535) separated by commas, "
                    f"got {value!r}")
      for name, value in (("KAFKA_BROKERS", "localhost:99999"), ("KAFKA_BROKERS", "kafka-1:0"),
                          ("KAFKA_BROKERS", "kafka 1:9092"), ("KAFKA_BROKERS", "kafka-1:9092,,kafka-2:9092"),
                          ("KAFKA_BROKERS", "kafka-1:port"), ("KAFKA_BROKERS", "kafka-1:9092/"))),
    *((name, value, f"{name} must be a Kafka topic name (at most 249 ASCII letters, digits, '.', '_' and '-'), "
                    f"got {value!r}")
      for name, value in (("ANOMALY_TOPIC", "anomalies/eu"), ("SUMMARY_TOPIC", "s" * 250),
                          ("INCIDENT_TOPIC", "incidents today"), ("REVIEW_TOPIC", ".."), ("INPUT_TOPIC", "."),
                          ("INPUT_TOPIC", "stöcks"))),
    *((name, value, f"{name} must be a whole number in plain digits, got {value!r}, which the Kafka client "
                    f"reads as {read}")
      for name, value, read in (("KAFKA_FETCH_WAIT_MAX_MS", "1e3", 1), ("KAFKA_FETCH_WAIT_MAX_MS", "10abc", 10),
                                ("KAFKA_FETCH_WAIT_MAX_MS", "0400000", 131072),
                                ("KAFKA_SOCKET_TIMEOUT_MS", "0x7530", 30000),
                                ("KAFKA_SOCKET_TIMEOUT_MS", "30000.0", 30000),
                                ("KAFKA_STATISTICS_INTERVAL_MS", "5.5", 5))),
    ("KAFKA_BOOTSTRAP_SERVERS", "kafka-9:9092", "KAFKA_BOOTSTRAP_SERVERS is not taken: the brokers come from "
     "KAFKA_BROKERS (the replay's --brokers), which it would override unseen, and messages would name the wrong "
     "address; set KAFKA_BROKERS instead"),
    ("KAFKA_ENABLE_PARTITION_EOF", "false", "KAFKA_ENABLE_PARTITION_EOF is not taken: the job sets it from "
     "STOP_AT_END (and the readers that must find a topic's end set it on); set STOP_AT_END instead"),
])
def test_a_bad_setting_fails_naming_it(name, value, message):
    with pytest.raises(DashboardConfigError) as error:
        DashboardConfig.from_env({name: value})
    assert str(error.value) == message


@pytest.mark.parametrize("name, value, reason", [
    ("KAFKA_SASL_USERNME", "ada", 'No such configuration property: "sasl.usernme"'),
    ("KAFKA_SECURITY_PROTOCOL", "SASL_TLS", '"security.protocol"'),
    ("KAFKA_FETCH_WAIT_MAX_MS", "-1", '"fetch.wait.max.ms" value -1 is outside allowed range'),
    ("KAFKA_FETCH_WAIT_MAX_MS", "soon", '"fetch.wait.max.ms"'),
    ("KAFKA_ENABLE_AUTO_COMMIT", "maybe", '"enable.auto.commit"'),
    ("KAFKA_HOME", "/opt/kafka", 'No such configuration property: "home" (every KAFKA_* variable but '
                                 "KAFKA_BROKERS is given to the Kafka client as a librdkafka property"),
])
def test_a_kafka_client_setting_librdkafka_refuses_fails_at_start_naming_the_variable(name, value, reason):
    """The page used to start and then report a client error on every read."""
    with pytest.raises(DashboardConfigError, match=f"^{name}: refused by the Kafka client: ") as error:
        DashboardConfig.from_env({name: value, "KAFKA_CLIENT_ID": "desk-7"})
    assert reason in str(error.value)


def test_settings_librdkafka_refuses_together_are_all_named():
    with pytest.raises(DashboardConfigError, match="^KAFKA_CLIENT_ID, KAFKA_SECURITY_PROTOCOL: refused by the "
                                                   "Kafka client: .*SASL mechanism GSSAPI"):
        DashboardConfig.from_env({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_CLIENT_ID": "desk-7"})


def test_settings_only_the_admin_client_refuses_fail_at_start_too():
    """A consumer takes them; the admin client that reads topic ids did not, and every read failed."""
    with pytest.raises(DashboardConfigError, match="^KAFKA_ACKS, KAFKA_ENABLE_IDEMPOTENCE: refused by the Kafka "
                                                   "client: .*`acks` must be set to `all`"):
        DashboardConfig.from_env({"KAFKA_ENABLE_IDEMPOTENCE": "true", "KAFKA_ACKS": "1"})


def test_kafka_settings_librdkafka_and_kafka_take_are_kept():
    config = DashboardConfig.from_env({
        "KAFKA_BROKERS": "SASL_SSL://kafka-1.example:9093, [::1]:9092,kafka-3", "ANOMALY_TOPIC": "desk.eu_anomalies-2",
        "INPUT_TOPIC": "", "KAFKA_FETCH_WAIT_MAX_MS": " 25 ", "KAFKA_ACKS": "all", "KAFKA_SASL_PASSWORD": "1e3-secret",
        "KAFKA_STATISTICS_INTERVAL_MS": "0", "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN",
        "KAFKA_SASL_USERNAME": "ada",
    })
    assert (config.brokers, config.anomaly_topic, config.input_topic) == (
        "SASL_SSL://kafka-1.example:9093, [::1]:9092,kafka-3", "desk.eu_anomalies-2", "")
    assert config.client_settings == {
        "acks": "all", "fetch.wait.max.ms": " 25 ", "sasl.mechanism": "PLAIN", "sasl.password": "1e3-secret",
        "sasl.username": "ada", "security.protocol": "SASL_PLAINTEXT", "statistics.interval.ms": "0"}


def test_the_project_streamlit_config_hides_the_deploy_button_and_sends_no_statistics():
    config = tomllib.loads((REPO / ".streamlit" / "config.toml").read_text())
    assert config["client"]["toolbarMode"] == "viewer"
    assert config["browser"]["gatherUsageStats"] is False
    assert config["server"]["headless"] is True


def test_topic_names_and_brokers_are_stripped_as_the_jobs_are():
    config = DashboardConfig.from_env({"ANOMALY_TOPIC": "anomalies ", "KAFKA_BROKERS": " b:9092"})
    assert (config.anomaly_topic, config.brokers) == ("anomalies", "b:9092")
