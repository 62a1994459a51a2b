"""Kafka clients and topics against the real broker: client settings, the job's topics checked and created."""

from __future__ import annotations

import pytest

from connectors.kafka import (
    MissingTopic,
    TopicsRefused,
    ensure_topics,
    partition_count,
    prepare_job_topics,
)
from connectors.broker import free_port
from connectors.kafka_settings import client_settings_from_env

pytestmark = pytest.mark.broker


def test_client_settings_come_from_kafka_variables_except_the_brokers():
    environ = {"KAFKA_BROKERS": "b:9092", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
               "KAFKA_SASL_USERNAME": "alice", "INPUT_TOPIC": "stocks"}
    assert client_settings_from_env(environ) == {"security.protocol": "SASL_SSL", "sasl.username": "alice"}


def test_a_kafka_error_listing_the_job_topics_is_one_named_error():
    address = f"127.0.0.1:{free_port()}"  # nobody answers: the metadata request fails
    with pytest.raises(TopicsRefused, match=f"could not list or create the job's topics on {address}: "):
        prepare_job_topics(address, "stocks", ["anomalies"])


def test_job_topics_need_the_input_and_get_outputs_created(broker, topic_prefix):
    with pytest.raises(MissingTopic, match=f"{topic_prefix}-stocks"):
        prepare_job_topics(broker, f"{topic_prefix}-stocks", [f"{topic_prefix}-out"])
    ensure_topics(broker, {f"{topic_prefix}-stocks": 3})
    created = prepare_job_topics(broker, f"{topic_prefix}-stocks", [f"{topic_prefix}-out", ""])
    assert created == [f"{topic_prefix}-out"]
    assert partition_count(broker, f"{topic_prefix}-out") == 3
    assert prepare_job_topics(broker, f"{topic_prefix}-stocks", [f"{topic_prefix}-out"]) == []
