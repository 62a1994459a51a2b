"""The page, run by Streamlit's AppTest against the real broker holding recorded anomalies.

Expected numbers are computed here straight from the recorded JSON lines, not by
the dashboard's own functions, so a wrong metric function fails this test.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from streamlit.testing.v1 import AppTest

from connectors.broker import EmbeddedBroker, free_port

APP = str(Path(__file__).resolve().parents[2] / "dashboard" / "app.py")

pytestmark = pytest.mark.broker


def run_app(monkeypatch, brokers: str, anomaly_topic: str, summary_topic: str, **extra: str) -> AppTest:
    monkeypatch.setenv("KAFKA_BROKERS", brokers)
    monkeypatch.setenv("ANOMALY_TOPIC", anomaly_topic)
    monkeypatch.setenv("SUMMARY_TOPIC", summary_topic)
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    app = AppTest.from_file(APP, default_timeout=30)
    app.run()
    assert not app.exception, [exception.message for exception in app.exception]
    return app


def metric_values(app: AppTest) -> dict[str, str]:
    return {metric.label: metric.value for metric in app.metric}


def test_every_metric_matches_the_recorded_anomalies(
    monkeypatch, broker, published_topics, recorded_anomalies, page_expectations, republished
):
    app = run_app(monkeypatch, broker, *published_topics)
    expected = page_expectations(recorded_anomalies)
    # The recording repeats no id and fits the default buffer of 1000, so every record must show once.
    assert expected["Anomalies"] == str(len(recorded_anomalies)) and len(recorded_anomalies) < 1000
    assert metric_values(app) == expected
    caption = app.caption[0].value
    assert f"duplicates ignored {republished}" in caption
    assert "undecodable 1" in caption
    log = app.expander[0]
    assert log.label == "Error log (1)"
    assert "not valid JSON" in log.dataframe[0].value["message"][0]
    table = app.main.dataframe[0].value  # the latest anomalies; the error log comes after it
    assert len(table) == 50
    newest = max(recorded_anomalies, key=lambda record: record["ts_event"])
    assert table["anomaly_id"][0] == newest["anomaly_id"]
    assert table["explanation"][0].startswith(newest["explanation"][0]["feature"] + "=")


def test_filters_by_symbol_and_level_change_every_metric(
    monkeypatch, broker, published_topics, recorded_anomalies, page_expectations
):
    app = run_app(monkeypatch, broker, *published_topics)
    app.multiselect(key="symbols").set_value(["SYN1"]).run()
    assert metric_values(app) == page_expectations([r for r in recorded_anomalies if r["symbol"] == "SYN1"])
    app.multiselect(key="levels").set_value(["medium"]).run()
    chosen = [r for r in recorded_anomalies if r["symbol"] == "SYN1" and r["level"] == "medium"]
    assert 0 < len(chosen) < len([r for r in recorded_anomalies if r["symbol"] == "SYN1"])
    assert metric_values(app) == page_expectations(chosen)


def test_a_small_buffer_keeps_only_the_latest_anomalies(monkeypatch, broker, published_topics):
    app = run_app(monkeypatch, broker, *published_topics, DASHBOARD_BUFFER_SIZE="100")
    assert metric_values(app)["Anomalies"] == "100"


def test_broker_down_shows_a_banner_and_the_error_log_not_a_stack_trace(monkeypatch):
    nobody = f"127.0.0.1:{free_port()}"
    app = run_app(monkeypatch, nobody, "anomalies", "instrument-summaries")
    assert len(app.error) == 1
    assert app.error[0].value.startswith(f"Kafka broker unreachable at {nobody}. Retrying every")
    assert app.button(key="retry").label == "Retry now"
    assert app.expander[0].label == "Error log (1)"
    assert "broker unreachable" in list(app.expander[0].dataframe[0].value["kind"])
    assert metric_values(app)["Anomalies"] == "0"
    app.button(key="retry").click().run()
    assert not app.exception
    assert app.expander[0].dataframe[0].value["times"][0] == 2  # the retry failed again, counted once more


def test_a_bad_setting_names_the_variable(monkeypatch):
    monkeypatch.setenv("DASHBOARD_BUFFER_SIZE", "lots")
    app = AppTest.from_file(APP, default_timeout=10)
    app.run()
    assert not app.exception
    assert "DASHBOARD_BUFFER_SIZE must be a whole number, got 'lots'" in app.code[0].value


def test_the_page_recovers_when_the_broker_comes_up(
    monkeypatch, topic_prefix, page_expectations, recorded_anomalies, publish_to
):
    port = free_port()
    anomaly_topic = f"{topic_prefix}-anomalies"
    app = run_app(monkeypatch, f"127.0.0.1:{port}", anomaly_topic, f"{topic_prefix}-summaries")
    assert app.error[0].value.startswith("Kafka broker unreachable")
    with EmbeddedBroker(port) as late_broker:
        publish_to(late_broker.bootstrap, anomaly_topic, [orjson.dumps(r) for r in recorded_anomalies[:40]])
        app.button(key="retry").click().run()
        assert not app.exception
        assert not app.error
        assert metric_values(app) == page_expectations(recorded_anomalies[:40])


def test_a_drawing_failure_is_reported_on_the_page_not_as_a_stack_trace(monkeypatch, broker, published_topics):
    def broken_figure(*_args, **_kwargs):
        raise ValueError("figure exploded")

    monkeypatch.setattr("dashboard.figures.severity_figure", broken_figure)
    app = run_app(monkeypatch, broker, *published_topics)
    assert [error.value for error in app.error] == ["Part of the page could not be drawn; the error log below says why."]
    messages = list(app.expander[0].dataframe[0].value["message"])
    assert "could not draw the anomalies: ValueError: figure exploded" in messages
    assert app.metric  # what was drawn before the failure stays
