"""JSON encoding of trades, anomalies and dead letters: the bytes on the wire.

One trade is one JSON object with the Databento trades-schema fields; timestamps
are ISO-8601 UTC strings with nanoseconds (``2025-05-09T13:30:00.892370366Z``),
exactly as Databento's ``pretty_ts`` CSV writes them.
"""

from __future__ import annotations

import base64
import hashlib
from datetime import datetime, timezone
from typing import Any

import orjson

from connectors.messages import DeadLetter, Origin, TradeMessage
from models.trades import symbol_problem

MAX_MESSAGE_BYTES = 64 * 1024
"""Largest input message decoded as a trade (a trade is about 350 bytes); anything
larger is a dead letter at decode. ``MAX_MESSAGE_BYTES`` in the job's environment overrides it."""

MAX_WRITTEN_BYTES = 256 * 1024
"""Largest message the job writes (records, summaries, incidents, dead letters): well
under the 1 MB that Kafka, Redpanda and librdkafka accept by default, so no output
can be refused for its size. A dead letter keeps as much of its original as fits."""

MAX_KEY_BYTES = 1024
"""The longest Kafka key a dead letter keeps (symbols are a few bytes)."""
MAX_REASON_CHARS = 2000
"""A reason longer than this (an exception quoting a huge value) is cut."""

READER_REASON_HEADER = "trade-detector-reader-reason"
"""The message header by which the replay sends, with the bytes of a line its file reader could not
read as a trade, the reader's reason: without it the job could judge the bytes alone ('not valid
JSON'), where the backtest, reading the file itself, gives the reader's words."""
MAX_READER_REASON_BYTES = 2000
"""The longest reader's reason sent or read, in UTF-8 bytes (the header is as untrusted as the value)."""
READER_REASON_PREFIX = "the replay's file reader: "
"""Opens a dead letter's reason taken from the header: the reason is the replay's, not the job's."""

TRADE_FIELDS = (
    "ts_recv", "ts_event", "rtype", "publisher_id", "instrument_id", "action", "side",
    "depth", "price", "size", "flags", "ts_in_delta", "sequence", "symbol",
)


def format_timestamp_ns(ns: int) -> str:
    """Nanoseconds since the epoch as ``YYYY-MM-DDTHH:MM:SS.fffffffffZ`` (UTC)."""
    seconds, nanos = divmod(int(ns), 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"


def encode_trade(trade: dict[str, Any]) -> bytes:
    return orjson.dumps(trade)


def decode_trade(
    raw: bytes | None, origin: Origin, key: bytes | None = None, max_bytes: int = MAX_MESSAGE_BYTES,
    reader_reason: str | None = None,
) -> TradeMessage | DeadLetter:
    """Bytes from the wire to a trade keyed by symbol, or a dead letter saying why not.

    Only the shape needed for routing is checked here (a JSON object with a
    non-empty string ``symbol``, at most ``max_bytes``, and a Kafka ``key`` that is
    that symbol or none); every field is validated by the engine. ``key`` is kept on
    a dead letter. A ``reader_reason`` (``reader_reason_in``) makes the message a dead
    letter with that reason whatever its bytes: its sender could not read them as a trade.
    """
    if reader_reason is not None:
        return DeadLetter(READER_REASON_PREFIX + (reader_reason or "(no reason given)"), "decode", origin,
                          raw or b"", key)
    if raw is None:
        return DeadLetter("empty message (no value)", "decode", origin, b"", key)
    if len(raw) > max_bytes:
        return DeadLetter(f"message too large: {len(raw):,} bytes, limit {max_bytes:,} (MAX_MESSAGE_BYTES)",
                          "decode", origin, raw, key)
    try:
        trade = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return DeadLetter(f"not valid JSON: {error}", "decode", origin, raw, key)
    message = as_trade_message(trade, origin, raw, key)
    if key is not None and isinstance(message, TradeMessage) and key != message.symbol.encode("utf-8"):
        return DeadLetter(key_problem(key, message.symbol), "decode", origin, raw, key)
    return message


def reader_reason_header(reason: str) -> tuple[str, bytes]:
    """The replay's header for a line its reader could not read: the reason in UTF-8, cut to
    ``MAX_READER_REASON_BYTES`` before a character, so the job reads back the reader's own words."""
    cut = reason.encode("utf-8", "replace")[:MAX_READER_REASON_BYTES]
    return READER_REASON_HEADER, cut.decode("utf-8", "ignore").encode("utf-8")


def reader_reason_in(headers: list[tuple[str, bytes | None]] | None) -> str | None:
    """The reason the first ``READER_REASON_HEADER`` among a message's headers gives, or None without one.
    Hostile headers cost little: only the first ``MAX_READER_REASON_BYTES`` are decoded, bytes that are
    not UTF-8 are replaced, a repeated header is ignored after the first."""
    for name, value in headers or ():
        if name == READER_REASON_HEADER:
            return (value or b"")[:MAX_READER_REASON_BYTES].decode("utf-8", "replace")
    return None


def key_problem(key: bytes, symbol: str) -> str:
    """Why a trade under another key is refused: Kafka keeps order only within one key's partition,
    so an instrument's trades under two keys would reach the job in an order that depends on how
    it polls, and its results on batch sizes and worker counts."""
    shown = key[:40].decode("utf-8", "replace") + ("..." if len(key) > 40 else "")
    return (f"Kafka key {shown!r} is not the trade's symbol {symbol!r}: an instrument's trades must all be "
            "keyed by its symbol (or not keyed) to keep their order")


def as_trade_message(trade: Any, origin: Origin, raw: bytes, key: bytes | None = None) -> TradeMessage | DeadLetter:
    """A decoded object as a trade keyed by its symbol, or a dead letter."""
    if not isinstance(trade, dict):
        return DeadLetter(f"not a JSON object but {type(trade).__name__}", "decode", origin, raw, key)
    problem = symbol_problem(trade.get("symbol"))
    if problem is not None:  # the symbol is the routing key: no state for a junk one
        return DeadLetter(problem, "decode", origin, raw, key)
    return TradeMessage(trade["symbol"], trade, origin, raw)


def encode_record(record: dict[str, Any]) -> bytes:
    """Any JSON-able dict (an anomaly record or an instrument summary)."""
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_dead_letter(letter: DeadLetter, max_bytes: int = MAX_WRITTEN_BYTES) -> bytes:
    """The dead letter with its reason, origin and the original bytes, at most ``max_bytes``.

    The original bytes go as text when they are UTF-8 and as base64 otherwise, so
    the message on the dead-letter topic is always valid JSON. Its length and
    sha256 are always there; when the whole original does not fit (JSON escaping
    can make control bytes six times longer) only its first bytes are kept and
    ``original_truncated`` says so.
    """
    raw = letter.raw
    fields = {
        "reason": letter.reason if len(letter.reason) <= MAX_REASON_CHARS else letter.reason[:MAX_REASON_CHARS] + "...",
        "stage": letter.stage,
        "source": letter.origin.source,
        "partition": letter.origin.partition,
        "offset": letter.origin.offset,
        "original_length": len(raw),
        "original_sha256": hashlib.sha256(raw).hexdigest(),
    }
    kept = len(raw)
    while True:
        original, encoding = _original_text(raw[:kept], kept < len(raw))
        encoded = orjson.dumps({**fields, "original": original, "original_encoding": encoding,
                                "original_truncated": kept < len(raw)})
        if len(encoded) <= max_bytes or kept == 0:
            return encoded
        # Shrink in proportion to the overshoot (escaping inflates each byte by 1 to 6).
        kept = min(kept - 1, int(kept * (max_bytes - 1024) / len(encoded)))
        kept = max(kept, 0)


def _original_text(raw: bytes, cut_short: bool) -> tuple[str, str]:
    """UTF-8 text if ``raw`` is UTF-8, else base64; a cut through a character moves before it."""
    for cut in range(4 if cut_short else 1):
        try:
            return raw[:len(raw) - cut].decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            continue
    return base64.b64encode(raw).decode("ascii"), "base64"
