"""The Kafka source and sinks against the real broker: every message becomes an item, nothing is lost."""

from __future__ import annotations

import orjson
import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from connectors.kafka import (
    MissingTopic,
    TradeSource,
    anomaly_sink,
    dead_letter_sink,
    ensure_topics,
    partition_count,
    prepare_job_topics,
    read_topic,
    summary_sink,
)
from connectors.kafka_settings import client_settings_from_env
from connectors.messages import DeadLetter, Origin, TradeMessage
from models.records import AnomalyRecord

pytestmark = pytest.mark.broker

TRADE = {
    "ts_recv": "2025-05-09T13:30:00.892370366Z", "ts_event": "2025-05-09T13:30:00.892370000Z",
    "rtype": 0, "publisher_id": 2, "instrument_id": 11667, "action": "T", "side": "N", "depth": 0,
    "price": 117.33, "size": 100, "flags": 0, "ts_in_delta": 1000, "sequence": 311212, "symbol": "NVDA",
}


def produce(brokers: str, topic: str, messages: list[tuple[bytes | None, bytes | None]], partition: int = 0):
    producer = Producer({"bootstrap.servers": brokers})
    for key, value in messages:
        producer.produce(topic, key=key, value=value, partition=partition)
    assert producer.flush(10) == 0


def read_source(source) -> list:
    flow = Dataflow("read")
    collected: list = []
    op.output("out", op.input("in", flow, source), TestingSink(collected))
    run_main(flow)
    return collected


def test_client_settings_come_from_kafka_variables_except_the_brokers():
    environ = {"KAFKA_BROKERS": "b:9092", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
               "KAFKA_SASL_USERNAME": "alice", "INPUT_TOPIC": "stocks"}
    assert client_settings_from_env(environ) == {"security.protocol": "SASL_SSL", "sasl.username": "alice"}


def test_source_turns_every_message_into_a_trade_or_a_dead_letter(broker, topic_prefix):
    topic = f"{topic_prefix}-in"
    ensure_topics(broker, {topic: 1})
    good = orjson.dumps(TRADE)
    produce(broker, topic, [
        (b"NVDA", good), (b"x", b"\xff\xfe not json"), (b"x", b"[1, 2]"),
        (b"x", b'{"price": 1.0}'), (b"x", None), (b"NVDA", good),
    ])
    items = read_source(TradeSource(broker, topic, stop_at_end=True))
    assert [type(item) for item in items] == [
        TradeMessage, DeadLetter, DeadLetter, DeadLetter, DeadLetter, TradeMessage]
    assert [item.origin for item in items] == [Origin(topic, 0, offset) for offset in range(6)]
    assert items[0].symbol == "NVDA" and items[0].trade == TRADE and items[0].raw == good
    assert items[1].raw == b"\xff\xfe not json" and "not valid JSON" in items[1].reason
    assert "not a JSON object" in items[2].reason
    assert "symbol" in items[3].reason
    assert all(item.stage == "decode" for item in items[1:5])


def test_source_reads_every_partition_and_stops_at_the_end(broker, topic_prefix):
    topic = f"{topic_prefix}-in"
    ensure_topics(broker, {topic: 3})
    for partition in range(3):
        produce(broker, topic, [(b"NVDA", orjson.dumps({**TRADE, "sequence": partition}))] * 4, partition)
    items = read_source(TradeSource(broker, topic, stop_at_end=True))
    assert sorted((item.origin.partition, item.origin.offset) for item in items) == [
        (partition, offset) for partition in range(3) for offset in range(4)]


def test_source_resumes_from_the_snapshotted_offset(broker, topic_prefix):
    topic = f"{topic_prefix}-in"
    ensure_topics(broker, {topic: 1})
    produce(broker, topic, [(b"NVDA", orjson.dumps({**TRADE, "sequence": n})) for n in range(10)])
    source = TradeSource(broker, topic, stop_at_end=True)
    (part_name,) = source.list_parts()
    first = source.build_part("in", part_name, None)
    seen = []
    while len(seen) < 4:
        seen.extend(first.next_batch()[: 4 - len(seen)])
    first.close()
    resumed = source.build_part("in", part_name, 4)
    rest = []
    try:
        while True:
            rest.extend(resumed.next_batch())
    except StopIteration:
        pass
    resumed.close()
    assert [item.trade["sequence"] for item in rest] == list(range(4, 10))
    assert resumed.snapshot() == 10


def record(symbol: str = "NVDA", sequence: int = 311212, level: str = "high") -> AnomalyRecord:
    return AnomalyRecord(
        anomaly_id=f"{symbol}-20250509-{sequence}", symbol=symbol, kind="trade",
        trade={**TRADE, "symbol": symbol, "sequence": sequence}, features=[1.0] * 18,
        detector_scores=[0.7, 30.0, 5.0], detector_thresholds=[0.6, 20.0, 4.5],
        detector_votes=[True, True, True], anomaly_score=0.7, confidence=1.0, zscores=(1.0, 5.0, 0.1),
        severity=0.7, level=level, model_generation=3, explanation=[],
    )


def write(sink, items) -> None:
    flow = Dataflow("write")
    op.output("out", op.input("in", flow, TestingSource(items)), sink)
    run_main(flow)


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_anomaly_sink_writes_json_keyed_by_symbol_and_counts_levels(broker, topic_prefix):
    topic = f"{topic_prefix}-anomalies"
    ensure_topics(broker, {topic: 2})
    before = counter("trade_detector_anomalies_written_total", level="high")
    write(anomaly_sink(broker, topic), [record("NVDA", 1), record("AAPL", 2), record("NVDA", 3)])
    messages = read_topic(broker, topic)
    by_id = {orjson.loads(message.value())["anomaly_id"]: message for message in messages}
    assert set(by_id) == {"NVDA-20250509-1", "AAPL-20250509-2", "NVDA-20250509-3"}
    assert by_id["AAPL-20250509-2"].key() == b"AAPL"
    assert by_id["NVDA-20250509-1"].partition() == by_id["NVDA-20250509-3"].partition()
    assert orjson.loads(by_id["NVDA-20250509-1"].value()) == {
        **record("NVDA", 1).to_dict(), "detected_at": orjson.loads(by_id["NVDA-20250509-1"].value())["detected_at"]}
    assert counter("trade_detector_anomalies_written_total", level="high") == before + 3


def test_dead_letter_sink_keeps_reason_origin_and_original_bytes(broker, topic_prefix):
    topic = f"{topic_prefix}-dlq"
    ensure_topics(broker, {topic: 1})
    letters = [
        DeadLetter("not valid JSON: x", "decode", Origin("stocks", 2, 41), b"\xff\x00"),
        DeadLetter("price must be positive", "validate", Origin("stocks", 0, 7), orjson.dumps(TRADE)),
    ]
    write(dead_letter_sink(broker, topic), letters)
    messages = read_topic(broker, topic)
    values = [orjson.loads(message.value()) for message in messages]
    assert values[0] == {"reason": "not valid JSON: x", "stage": "decode", "source": "stocks", "partition": 2,
                         "offset": 41, "original": "/wA=", "original_encoding": "base64"}
    assert values[1]["original"] == orjson.dumps(TRADE).decode() and values[1]["stage"] == "validate"
    assert [message.key() for message in messages] == [None, b"NVDA"]


def test_summary_sink_writes_json_keyed_by_symbol(broker, topic_prefix):
    topic = f"{topic_prefix}-summaries"
    ensure_topics(broker, {topic: 1})
    summary = {"symbol": "NVDA", "ts_event": "2025-05-09T13:30:00.892370366Z", "last_price": 117.3,
               "trades_processed": 10, "anomalies": 1, "rejected": 0, "model_generation": 0}
    write(summary_sink(broker, topic), [summary])
    (message,) = read_topic(broker, topic)
    assert message.key() == b"NVDA" and orjson.loads(message.value()) == summary


def test_job_topics_need_the_input_and_get_outputs_created(broker, topic_prefix):
    with pytest.raises(MissingTopic, match=f"{topic_prefix}-stocks"):
        prepare_job_topics(broker, f"{topic_prefix}-stocks", [f"{topic_prefix}-out"])
    ensure_topics(broker, {f"{topic_prefix}-stocks": 3})
    created = prepare_job_topics(broker, f"{topic_prefix}-stocks", [f"{topic_prefix}-out", ""])
    assert created == [f"{topic_prefix}-out"]
    assert partition_count(broker, f"{topic_prefix}-out") == 3
    assert prepare_job_topics(broker, f"{topic_prefix}-stocks", [f"{topic_prefix}-out"]) == []


def test_a_kafka_error_becomes_a_dead_letter_of_stage_kafka():
    from bytewax.connectors.kafka import KafkaError, KafkaSourceMessage
    from confluent_kafka import KafkaError as ClientError

    from connectors.kafka import _decode_message

    error = KafkaError(ClientError(ClientError.UNKNOWN_TOPIC_OR_PART),
                       KafkaSourceMessage(key=None, value=None, topic="stocks", partition=1, offset=None))
    letter = _decode_message(error)
    assert letter == DeadLetter(f"Kafka error: {ClientError(ClientError.UNKNOWN_TOPIC_OR_PART).str()}",
                                "kafka", Origin("stocks", 1, -1), b"")


def test_a_message_the_broker_never_takes_stops_the_job_instead_of_vanishing():
    from connectors.broker import free_port
    from connectors.kafka import DeliveryFailed

    sink = anomaly_sink(f"127.0.0.1:{free_port()}", "anomalies", {"message.timeout.ms": "500"})
    partition = sink.build("write", 0, 1)
    with pytest.raises(DeliveryFailed, match="1 of 1 messages to anomalies were not delivered"):
        partition.write_batch([record()])
