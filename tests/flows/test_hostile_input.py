"""Hostile input through the real broker and job: every bad message is a dead letter with its
reason, the valid trades' anomalies equal a clean run's, and the job ends normally.

Each hostile message is published between the trades of the end-to-end tape (most of them
after the models serve, where a poison price once crashed the next retrain), keyed by a real
symbol so it lands beside real trades. They come from a plain confluent-kafka producer, not
the project's replay, as any client could send them.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from confluent_kafka import Producer

from connectors.codec import format_timestamp_ns
from connectors.kafka import ensure_topics
from connectors.publisher import timestamp_ns
from streaming_support import (
    TAPE_PARTITIONS,
    encoded_tape,
    job_environment,
    read_json,
    records_by_id,
    run_job,
)

pytestmark = [pytest.mark.broker, pytest.mark.slow]

@dataclass(frozen=True)
class Hostile:
    name: str
    stage: str
    reason: str
    """A fragment the dead letter's reason must contain."""
    make: Callable[[dict], bytes]
    """The message's bytes, made from the valid trade published just before it."""
    stateful: bool = False
    """Valid on its own; only the instrument's history shows it is wrong."""


def changed(**fields) -> Callable[[dict], bytes]:
    return lambda trade: json.dumps({**trade, **fields}).encode()


def without(name: str) -> Callable[[dict], bytes]:
    return lambda trade: json.dumps({key: value for key, value in trade.items() if key != name}).encode()


def shifted(event_s: float, receive_s: float = 0.0002, **fields) -> Callable[[dict], bytes]:
    """The trade again, ``event_s`` later (earlier when negative), received ``receive_s`` after that."""
    def make(trade: dict) -> bytes:
        moment = timestamp_ns(trade["ts_event"]) + int(event_s * 1e9)
        return json.dumps({**trade, "ts_event": format_timestamp_ns(moment),
                           "ts_recv": format_timestamp_ns(moment + int(receive_s * 1e9)), **fields}).encode()
    return make


HOSTILE = [
    # Not a trade at all: the decoder.
    Hostile("binary garbage", "decode", "not valid JSON", lambda _: b"\xff\xfe\x00\x01 not json"),
    Hostile("empty bytes", "decode", "not valid JSON", lambda _: b""),
    Hostile("truncated JSON", "decode", "not valid JSON", lambda t: json.dumps(t).encode()[:-7]),
    Hostile("NaN token", "decode", "not valid JSON", lambda t: json.dumps({**t, "price": float("nan")}).encode()),
    Hostile("UTF-16 JSON", "decode", "not valid JSON", lambda t: json.dumps(t).encode("utf-16")),
    Hostile("invalid UTF-8 in a string", "decode", "not valid JSON",
            lambda t: json.dumps(t).encode().replace(b'"T"', b'"\xc3\x28"')),
    Hostile("deeply nested", "decode", "not valid JSON", lambda _: b"[" * 5000 + b"]" * 5000),
    Hostile("JSON array", "decode", "not a JSON object but list", lambda _: b"[1, 2, 3]"),
    Hostile("JSON string", "decode", "not a JSON object but str", lambda _: b'"NVDA"'),
    Hostile("JSON number", "decode", "not a JSON object but int", lambda _: b"42"),
    Hostile("JSON null", "decode", "not a JSON object but NoneType", lambda _: b"null"),
    Hostile("no symbol", "decode", "field 'symbol' must be a non-empty string", without("symbol")),
    Hostile("symbol null", "decode", "field 'symbol' must be a non-empty string", changed(symbol=None)),
    Hostile("symbol number", "decode", "field 'symbol' must be a non-empty string", changed(symbol=7)),
    Hostile("symbol empty", "decode", "field 'symbol' must be a non-empty string", changed(symbol="")),
    Hostile("symbol leading space", "decode", "surrounding whitespace", lambda t: changed(symbol=" " + t["symbol"])(t)),
    Hostile("symbol trailing newline", "decode", "surrounding whitespace",
            lambda t: changed(symbol=t["symbol"] + "\n")(t)),
    Hostile("symbol with NUL", "decode", "unprintable characters", changed(symbol="SYN\x000")),
    Hostile("symbol of 200 characters", "decode", "longer than 32 characters", changed(symbol="S" * 200)),
    Hostile("symbol of HTML", "decode", "surrounding whitespace", changed(symbol="<b>x</b> ")),
    Hostile("another instrument's symbol under this key", "decode", "is not the trade's symbol",
            lambda t: changed(symbol=t["symbol"] + "X")(t)),
    Hostile("symbol in lower case under the upper-case key", "decode", "is not the trade's symbol",
            lambda t: changed(symbol=t["symbol"].lower())(t)),
    # Trades with a bad field: the engine's validation.
    *[Hostile(f"missing {name}", "validate", f"missing field '{name}'", without(name))
      for name in ("ts_recv", "ts_event", "rtype", "publisher_id", "instrument_id", "action", "side",
                   "depth", "price", "size", "flags", "ts_in_delta", "sequence")],
    Hostile("price 1e308", "validate", "price must be between", changed(price=1e308)),
    Hostile("price 1e200", "validate", "price must be between", changed(price=1e200)),
    Hostile("price 1e-300", "validate", "price must be between", changed(price=1e-300)),
    Hostile("price 1e-200", "validate", "price must be between", changed(price=1e-200)),
    Hostile("price zero", "validate", "price must be between", changed(price=0)),
    Hostile("price negative", "validate", "price must be between", changed(price=-117.0)),
    Hostile("price 10**400", "decode", "not valid JSON", changed(price=10**400)),
    Hostile("price as text", "validate", "field 'price' is not a number", changed(price="117.33")),
    Hostile("price true", "validate", "field 'price' is not a number", changed(price=True)),
    Hostile("price object", "validate", "field 'price' is not a number", changed(price={"value": 1})),
    Hostile("size zero", "validate", "field 'size' must be between", changed(size=0)),
    Hostile("size negative", "validate", "field 'size' must be between", changed(size=-100)),
    Hostile("size 2**70", "validate", "field 'size' must be between", changed(size=2**70)),
    Hostile("size fractional", "validate", "field 'size' is not an integer", changed(size=1.5)),
    Hostile("size as text", "validate", "field 'size' is not an integer", changed(size="100")),
    Hostile("side S", "validate", "side must be A, B or N", changed(side="S")),
    Hostile("side lower case", "validate", "side must be A, B or N", changed(side="b")),
    Hostile("side number", "validate", "side must be A, B or N", changed(side=1)),
    Hostile("action A", "validate", "action must be 'T'", changed(action="A")),
    Hostile("action cancel", "validate", "action must be 'T'", changed(action="C")),
    Hostile("ts_event 2300", "validate", "outside 2000-01-01 to 2099-12-31", changed(ts_event="2300-01-01T00:00:00Z")),
    Hostile("ts_event 2999", "validate", "outside 2000-01-01 to 2099-12-31",
            changed(ts_event="2999-01-01T00:00:00.000000000Z")),
    Hostile("ts_event 0", "validate", "outside 2000-01-01 to 2099-12-31", changed(ts_event=0)),
    Hostile("ts_event negative", "validate", "outside 2000-01-01 to 2099-12-31", changed(ts_event=-1)),
    Hostile("ts_event 2**64-1", "validate", "outside 2000-01-01 to 2099-12-31", changed(ts_event=2**64 - 1)),
    Hostile("ts_event 1970", "validate", "outside 2000-01-01 to 2099-12-31",
            changed(ts_event="1970-01-01T00:00:00.000000000Z")),
    Hostile("ts_event prose", "validate", "is not an ISO-8601 UTC timestamp", changed(ts_event="yesterday")),
    Hostile("ts_event 30 February", "validate", "is not a valid date and time",
            changed(ts_event="2025-02-30T10:00:00.000000000Z")),
    Hostile("ts_event with offset", "validate", "is not an ISO-8601 UTC timestamp",
            changed(ts_event="2025-05-12T10:00:00.000000000-04:00")),
    Hostile("ts_event with a superscript digit", "validate", "is not an ISO-8601 UTC timestamp",
            lambda t: changed(ts_event=t["ts_event"][:-2] + "\u00b2Z")(t)),  # once crashed the grouping step
    Hostile("ts_event with a space for T", "validate", "is not an ISO-8601 UTC timestamp",
            lambda t: changed(ts_event=t["ts_event"].replace("T", " ", 1))(t)),
    Hostile("ts_recv two days late", "validate", "ts_recv is", shifted(0, 2 * 86_400)),
    Hostile("ts_recv an hour early", "validate", "ts_recv is", shifted(0, -3_600)),
    Hostile("sequence negative", "validate", "field 'sequence' must be between", changed(sequence=-1)),
    Hostile("sequence 2**40", "validate", "field 'sequence' must be between", changed(sequence=2**40)),
    Hostile("flags 256", "validate", "field 'flags' must be between", changed(flags=256)),
    Hostile("flags negative", "validate", "field 'flags' must be between", changed(flags=-1)),
    Hostile("depth negative", "validate", "field 'depth' must be between", changed(depth=-3)),
    Hostile("publisher_id 70000", "validate", "field 'publisher_id' must be between", changed(publisher_id=70_000)),
    Hostile("instrument_id negative", "validate", "field 'instrument_id' must be between",
            changed(instrument_id=-1)),
    Hostile("rtype 300", "validate", "field 'rtype' must be between", changed(rtype=300)),
    Hostile("ts_in_delta 2**31", "validate", "field 'ts_in_delta' must be between", changed(ts_in_delta=2**31)),
    # Valid on their own, wrong for the instrument: they would change other trades' results.
    Hostile("exact duplicate", "duplicate", "already processed", lambda t: json.dumps(t).encode(), True),
    Hostile("same sequence, new price", "duplicate", "already processed",
            lambda t: changed(price=round(t["price"] + 0.05, 2))(t), True),
    Hostile("ten days ahead", "validate", "after the instrument's last trade", shifted(10 * 86_400), True),
    Hostile("an hour late", "validate", "before the instrument's last trade",
            shifted(-3_600, sequence=4_000_000_000), True),  # a sequence no real trade has: late, not a repeat
]


def test_there_are_at_least_sixty_kinds():
    assert len({hostile.name for hostile in HOSTILE}) == len(HOSTILE) >= 60


@pytest.fixture(scope="module")
def hostile_run(broker, published_tape):
    """The end-to-end tape with every hostile message between its trades, through the job."""
    _, trades = published_tape
    prefix = f"hostile-{uuid.uuid4().hex[:8]}"
    topic = f"{prefix}-stocks"
    ensure_topics(broker, {topic: TAPE_PARTITIONS})
    spacing = len(trades) // (len(HOSTILE) + 1)
    positions: dict[tuple[int, int], tuple[Hostile, bytes]] = {}

    def delivered_as(hostile: Hostile, raw: bytes):
        def callback(error, message) -> None:
            assert error is None, error
            positions[(message.partition(), message.offset())] = (hostile, raw)
        return callback

    producer = Producer({"bootstrap.servers": broker, "partitioner": "murmur2_random", "linger.ms": 5})
    raws = encoded_tape(trades)
    for index, (trade, raw) in enumerate(zip(trades, raws)):
        producer.produce(topic, key=trade["symbol"].encode(), value=raw)
        slot, offset = divmod(index + 1, spacing)
        if offset == 0 and 1 <= slot <= len(HOSTILE):
            hostile = HOSTILE[slot - 1]
            bad = hostile.make(trade)
            producer.produce(topic, key=trade["symbol"].encode(), value=bad, on_delivery=delivered_as(hostile, bad))
        producer.poll(0)
    assert producer.flush(30) == 0
    finished = run_job(job_environment(broker, prefix, INPUT_TOPIC=topic))
    return prefix, positions, finished


def test_the_job_ends_normally(hostile_run):
    _, _, finished = hostile_run
    assert finished.returncode == 0, finished.stderr[-3000:]


@pytest.mark.parametrize("hostile", HOSTILE, ids=[hostile.name for hostile in HOSTILE])
def test_each_hostile_message_is_a_dead_letter_with_its_reason(broker, hostile_run, hostile):
    prefix, positions, _ = hostile_run
    letters = {(letter["partition"], letter["offset"]): letter for letter in read_json(broker, f"{prefix}-dlq")}
    [(where, raw)] = [(where, raw) for where, (sent, raw) in positions.items() if sent is hostile]
    assert where in letters, f"{hostile.name}: no dead letter at partition/offset {where}"
    letter = letters[where]
    assert (letter["stage"], hostile.reason in letter["reason"]) == (hostile.stage, True), letter["reason"]
    original = letter["original"].encode() if letter["original_encoding"] == "utf-8" else base64.b64decode(
        letter["original"])
    assert original == raw


def test_valid_trades_find_exactly_the_clean_run_anomalies(broker, hostile_run, single_worker_run):
    prefix, _, _ = hostile_run
    _, clean = single_worker_run
    assert records_by_id(broker, f"{prefix}-anomalies") == clean


def test_every_dead_letter_is_one_of_the_hostile_messages(broker, hostile_run):
    prefix, positions, _ = hostile_run
    letters = read_json(broker, f"{prefix}-dlq")
    assert {(letter["partition"], letter["offset"]) for letter in letters} == set(positions)
    assert len(letters) == len(positions)  # one each, none twice
