"""The Kafka sinks against the real broker: every item is written, nothing is lost."""

from __future__ import annotations

import hashlib
import threading

import orjson
import pytest
from bytewax import operators as op
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main

from connectors.codec import MAX_WRITTEN_BYTES
from connectors.kafka import ensure_topics, partition_count, prepare_job_topics, read_topic
from connectors.kafka_sinks import DeliveryFailed, anomaly_sink, dead_letter_sink, encode_anomaly, summary_sink
from connectors.kafka_source import TradeSource
from connectors.messages import DeadLetter, Origin
from models.records import AnomalyRecord
from streaming_support import TRADE, counter, produce, read_source

pytestmark = pytest.mark.broker


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


def test_a_message_the_broker_never_takes_stops_the_job_instead_of_vanishing():
    from connectors.broker import free_port
    from connectors.kafka_sinks import DeliveryFailed

    sink = anomaly_sink(f"127.0.0.1:{free_port()}", "anomalies", {"message.timeout.ms": "500"})
    partition = sink.build("write", 0, 1)
    with pytest.raises(DeliveryFailed, match="1 of 1 messages to anomalies were not delivered"):
        partition.write_batch([record()])


def write_within(partition, items, seconds: float = 30.0) -> Exception | None:
    """``write_batch`` on a thread: what it raised, or None. One still running after ``seconds``
    fails the test instead of hanging it (the sink used to wait for room for ever)."""
    outcome: list[Exception | None] = []

    def run() -> None:
        try:
            partition.write_batch(items)
            outcome.append(None)
        except Exception as error:  # noqa: BLE001 - handed to the test
            outcome.append(error)

    thread = threading.Thread(target=run, name="write-batch", daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"write_batch still waiting after {seconds:g} s: it would hang the job"
    return outcome[0]


@pytest.mark.parametrize("kbytes, records", [("1", 1), ("1", 3), ("1e6", 1)])
def test_a_record_larger_than_the_producers_whole_queue_stops_the_sink_naming_the_setting(
        broker, topic_prefix, kbytes, records):
    """A 1,300-byte record never fits a 1 KB queue (``1e6`` is 1 to librdkafka): the sink waited for
    room for ever, with no line and deaf to SIGTERM."""
    topic = f"{topic_prefix}-anomalies"
    ensure_topics(broker, {topic: 1})
    items = [record("NVDA", sequence) for sequence in range(records)]
    size = len(encode_anomaly(items[0])[1])
    partition = anomaly_sink(broker, topic, {"queue.buffering.max.kbytes": kbytes}).build("write", 0, 1)
    error = write_within(partition, items)
    assert isinstance(error, DeliveryFailed)
    assert str(error) == (f"a message to {topic} of {size:,} bytes is larger than the Kafka producer's whole local "
                          f"queue and can never be sent: raise queue.buffering.max.kbytes "
                          f"(KAFKA_QUEUE_BUFFERING_MAX_KBYTES) to at least 2 or unset it")
    assert 1024 < size < 2048 and read_topic(broker, topic) == []


def test_a_full_queue_still_waits_for_deliveries_and_writes_every_record(broker, topic_prefix):
    """A 2 KB queue holds one record at a time: every produce after the first finds it full, with a
    message in it, and must wait for its delivery, not give up."""
    topic = f"{topic_prefix}-anomalies"
    ensure_topics(broker, {topic: 1})
    partition = anomaly_sink(broker, topic, {"queue.buffering.max.kbytes": "2"}).build("write", 0, 1)
    assert write_within(partition, [record("NVDA", sequence) for sequence in range(40)]) is None
    assert [orjson.loads(m.value())["anomaly_id"] for m in read_topic(broker, topic)] == [
        f"NVDA-20250509-{sequence}" for sequence in range(40)]


def test_the_smallest_queue_the_job_takes_holds_the_largest_message_it_writes(broker, topic_prefix):
    """``KAFKA_QUEUE_BUFFERING_MAX_KBYTES`` below 256 stops the job at start (``flows.settings``):
    256 KB holds a dead letter with the longest key kept and an original cut to fit the limit."""
    dlq = f"{topic_prefix}-dlq"
    ensure_topics(broker, {dlq: 1})
    letter = DeadLetter("message too large", "decode", Origin("stocks", 0, 9), b"\xff" * 300_000, b"K" * 1024)
    partition = dead_letter_sink(broker, dlq, {"queue.buffering.max.kbytes": "256"}).build("write", 0, 1)
    assert write_within(partition, [letter]) is None
    (message,) = read_topic(broker, dlq)
    assert len(message.key()) == 1024 and MAX_WRITTEN_BYTES - 1024 < len(message.key()) + len(message.value()) <= (
        MAX_WRITTEN_BYTES)


def test_the_smallest_message_limit_the_job_takes_holds_the_largest_message_it_writes(broker, topic_prefix):
    """``KAFKA_MESSAGE_MAX_BYTES`` below the largest message plus its framing stops the job at start: the
    producer refuses such a message at once, and the job ended on it with a traceback. One byte less
    than the smallest value taken is refused; that value holds a message of exactly the largest size,
    key and value, the sinks write."""
    from flows.settings import JobSettings, SettingsError

    smallest = MAX_WRITTEN_BYTES + 36
    with pytest.raises(SettingsError, match=f"KAFKA_MESSAGE_MAX_BYTES='{smallest - 1}' is smaller"):
        JobSettings.from_env({"KAFKA_MESSAGE_MAX_BYTES": str(smallest - 1)})
    settings = JobSettings.from_env({"KAFKA_MESSAGE_MAX_BYTES": str(smallest)})
    topic = f"{topic_prefix}-summaries"
    ensure_topics(broker, {topic: 1})
    summary = {"symbol": "NVDA", "padding": ""}
    summary["padding"] = "p" * (MAX_WRITTEN_BYTES - len(b"NVDA") - len(orjson.dumps(summary)))
    assert len(orjson.dumps(summary)) + len(b"NVDA") == MAX_WRITTEN_BYTES
    partition = summary_sink(broker, topic, settings.kafka_client_settings).build("write", 0, 1)
    assert write_within(partition, [summary]) is None
    (message,) = read_topic(broker, topic)
    assert (message.key(), message.value()) == (b"NVDA", orjson.dumps(summary))
    from confluent_kafka import KafkaException, Producer

    with pytest.raises(KafkaException, match="MSG_SIZE_TOO_LARGE"):  # 36 is all the framing, not a margin
        Producer({"message.max.bytes": smallest - 1}).produce(topic, key=b"NVDA", value=orjson.dumps(summary))


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


class Update:
    """Shaped like models.incidents.IncidentUpdate: what the sink relies on."""

    def __init__(self, incident_id: str, revision: int) -> None:
        self.incident_id, self.revision = incident_id, revision

    def to_dict(self) -> dict:
        return {"incident_id": self.incident_id, "revision": self.revision, "status": "open"}


def test_incident_sink_writes_updates_keyed_by_incident_to_a_compacted_topic(broker, topic_prefix):
    from confluent_kafka.admin import AdminClient, ConfigResource

    from connectors.kafka import COMPACTED
    from connectors.kafka_sinks import incident_sink

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
