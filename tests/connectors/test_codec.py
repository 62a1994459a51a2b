"""Decoding never raises, and dead letters are valid JSON that always fits the broker.

Any bytes become a trade message or a dead letter with a reason; a dead letter says
what it kept of the original.
"""

from __future__ import annotations

import base64
import hashlib
import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.codec import MAX_MESSAGE_BYTES, MAX_WRITTEN_BYTES, decode_trade, encode_dead_letter
from connectors.messages import DeadLetter, Origin, TradeMessage
from hostile_values import json_values

ORIGIN = Origin("stocks", 1, 42)


def letter_for(raw: bytes, reason: str = "not valid JSON") -> dict:
    encoded = encode_dead_letter(DeadLetter(reason, "decode", ORIGIN, raw))
    assert len(encoded) <= MAX_WRITTEN_BYTES
    return orjson.loads(encoded)


@pytest.mark.parametrize("raw", [
    b"\x01" * 170_000,          # control bytes: six times longer once escaped
    b'"' * 200_000,             # quotes: twice
    b"x" * 1_000_000,           # a 1 MB message
    "é".encode() * 300_000,     # two-byte characters
    b"\xff" * 400_000,          # not UTF-8: base64
], ids=["control", "quotes", "1MB", "utf8", "binary"])
def test_an_oversized_original_is_cut_to_fit_with_its_length_and_hash(raw):
    letter = letter_for(raw)
    assert letter["original_truncated"] is True
    assert letter["original_length"] == len(raw)
    assert letter["original_sha256"] == hashlib.sha256(raw).hexdigest()
    kept = (letter["original"].encode() if letter["original_encoding"] == "utf-8"
            else base64.b64decode(letter["original"]))
    assert 0 < len(kept) < len(raw) and raw.startswith(kept)


@pytest.mark.parametrize("raw, encoding", [(b'{"symbol": "NVDA"}', "utf-8"), (b"abc\xff", "base64"), (b"", "utf-8")])
def test_a_small_original_is_kept_whole(raw, encoding):
    letter = letter_for(raw)
    assert (letter["original_truncated"], letter["original_encoding"], letter["original_length"]) == (
        False, encoding, len(raw))
    kept = letter["original"].encode() if encoding == "utf-8" else base64.b64decode(letter["original"])
    assert kept == raw


def test_a_huge_reason_is_cut():
    letter = letter_for(b"{}", reason="bad value " + "9" * 500_000)
    assert len(letter["reason"]) < 2100 and letter["reason"].endswith("...")


def test_decode_turns_a_message_over_the_limit_into_a_dead_letter_keeping_the_key():
    raw = b'{"symbol": "NVDA", "pad": "' + b"x" * MAX_MESSAGE_BYTES + b'"}'
    letter = decode_trade(raw, ORIGIN, key=b"NVDA")
    assert isinstance(letter, DeadLetter) and letter.stage == "decode" and letter.key == b"NVDA"
    assert letter.reason == f"message too large: {len(raw):,} bytes, limit {MAX_MESSAGE_BYTES:,} (MAX_MESSAGE_BYTES)"
    assert decode_trade(raw[:1000], ORIGIN).key is None


@pytest.mark.parametrize("key, reason", [
    (b"NVDA", None),
    (None, None),
    (b"AAPL", "Kafka key 'AAPL' is not the trade's symbol 'NVDA'"),
    (b"nvda", "Kafka key 'nvda' is not the trade's symbol 'NVDA'"),
    (b"NVDA ", "Kafka key 'NVDA ' is not the trade's symbol 'NVDA'"),
    (b"\xff" * 50, "Kafka key '" + "\ufffd" * 40 + "...' is not the trade's symbol 'NVDA'"),
])
def test_a_trade_under_another_key_than_its_symbol_is_a_dead_letter(key, reason):
    """The key decides the partition, and only within a partition is the order kept."""
    item = decode_trade(b'{"symbol": "NVDA", "price": 1.0}', ORIGIN, key=key)
    if reason is None:
        assert isinstance(item, TradeMessage) and item.symbol == "NVDA"
    else:
        assert isinstance(item, DeadLetter) and item.stage == "decode" and item.key == key
        assert item.reason.startswith(reason + ": an instrument's trades must all be keyed by its symbol")


# json.dumps, not orjson: it writes integers beyond 64 bits and NaN, as a hostile client could.
@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=200), json_values.map(lambda value: json.dumps(value).encode())))
def test_any_bytes_decode_to_a_trade_or_a_dead_letter(raw):
    item = decode_trade(raw, ORIGIN)
    assert isinstance(item, (TradeMessage, DeadLetter))
    if isinstance(item, DeadLetter):
        assert item.reason and item.stage == "decode" and item.raw == raw
    else:
        assert item.trade["symbol"] == item.symbol == item.symbol.strip()


def test_a_symbol_with_spaces_is_not_routed():
    item = decode_trade(b'{"symbol": " NVDA", "price": 1.0}', ORIGIN)
    assert isinstance(item, DeadLetter)
    assert item.reason == "field 'symbol' has surrounding whitespace: ' NVDA'"


@pytest.mark.parametrize("reason, sent", [
    ("row 3 is cut", "row 3 is cut"),
    ("x" * 5000, "x" * 2000),
    ("\u20ac" * 1000, "\u20ac" * 666),  # 3,000 bytes: cut before the character that does not fit whole
    ("line \udcff bad", "line ? bad"),  # a lone surrogate (a reader's undecodable byte) cannot be UTF-8
])
def test_the_replays_reader_reason_header_is_bounded_utf_8_and_read_back_as_sent(reason, sent):
    """The header the replay sets on a line its reader could not read, and what the job reads of it."""
    from connectors.codec import reader_reason_header, reader_reason_in

    name, value = reader_reason_header(reason)
    assert len(value) <= 2000 and value.decode("utf-8") == sent
    assert reader_reason_in([("other", b"x"), (name, value)]) == sent
    assert reader_reason_in(None) is None and reader_reason_in([("other", value)]) is None


@given(st.binary(max_size=3000), st.text(max_size=50))
@settings(max_examples=200, deadline=None)
def test_any_reader_reason_header_gives_a_dead_letter_of_at_most_2000_characters(header, value):
    from connectors.codec import reader_reason_in

    reason = reader_reason_in([("trade-detector-reader-reason", header)])
    letter = decode_trade(value.encode(), Origin("stocks", 0, 0), None, reader_reason=reason)
    assert isinstance(letter, DeadLetter) and letter.stage == "decode" and letter.raw == value.encode()
    assert letter.reason.startswith("the replay's file reader: ") and len(reason) <= 2000
