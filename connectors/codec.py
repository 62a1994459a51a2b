"""JSON encoding of trades, anomalies and dead letters: the bytes on the wire.

One trade is one JSON object with the Databento trades-schema fields; timestamps
are ISO-8601 UTC strings with nanoseconds (``2025-05-09T13:30:00.892370366Z``),
exactly as Databento's ``pretty_ts`` CSV writes them.
"""

from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any

import orjson

from connectors.messages import DeadLetter, Origin, TradeMessage
from models.trades import symbol_problem

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


def decode_trade(raw: bytes | None, origin: Origin) -> TradeMessage | DeadLetter:
    """Bytes from the wire to a trade keyed by symbol, or a dead letter saying why not.

    Only the shape needed for routing is checked here (a JSON object with a
    non-empty string ``symbol``); every field is validated by the engine.
    """
    if raw is None:
        return DeadLetter("empty message (no value)", "decode", origin, b"")
    try:
        trade = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        return DeadLetter(f"not valid JSON: {error}", "decode", origin, raw)
    return as_trade_message(trade, origin, raw)


def as_trade_message(trade: Any, origin: Origin, raw: bytes) -> TradeMessage | DeadLetter:
    """A decoded object as a trade keyed by its symbol, or a dead letter."""
    if not isinstance(trade, dict):
        return DeadLetter(f"not a JSON object but {type(trade).__name__}", "decode", origin, raw)
    problem = symbol_problem(trade.get("symbol"))
    if problem is not None:  # the symbol is the routing key: no state for a junk one
        return DeadLetter(problem, "decode", origin, raw)
    return TradeMessage(trade["symbol"], trade, origin, raw)


def encode_record(record: dict[str, Any]) -> bytes:
    """Any JSON-able dict (an anomaly record or an instrument summary)."""
    return orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY)


def encode_dead_letter(letter: DeadLetter) -> bytes:
    """The dead letter with its reason, origin and the original bytes.

    The original bytes go as text when they are UTF-8 and as base64 otherwise, so
    the message on the dead-letter topic is always valid JSON.
    """
    try:
        original, encoding = letter.raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        original, encoding = base64.b64encode(letter.raw).decode("ascii"), "base64"
    return orjson.dumps({
        "reason": letter.reason,
        "stage": letter.stage,
        "source": letter.origin.source,
        "partition": letter.origin.partition,
        "offset": letter.origin.offset,
        "original": original,
        "original_encoding": encoding,
    })
