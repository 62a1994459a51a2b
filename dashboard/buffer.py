"""What the dashboard remembers: the latest anomalies and recent prices, both bounded.

The job may publish the same anomaly again after a restart (it replays from its
last snapshot), so anomalies are keyed by ``anomaly_id`` and a repeat replaces the
earlier copy instead of being counted twice. Memory stays bounded however long
the page is open: the oldest entries are dropped first.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

import orjson
import pandas as pd

from connectors.codec import format_timestamp_ns

LEVELS = ("low", "medium", "high", "critical")
SIDES = {"A": "Ask", "B": "Bid", "N": "None"}
REQUIRED_TEXT = ("anomaly_id", "symbol")


class UndecodableMessage(ValueError):
    """The bytes are not an anomaly record the dashboard can show; says why."""


def decode_anomaly(raw: bytes | None) -> dict[str, Any]:
    """An anomaly record from the wire, checked for the fields the page relies on."""
    record = _json_object(raw)
    for name in REQUIRED_TEXT:
        if not isinstance(record.get(name), str) or not record[name]:
            raise UndecodableMessage(f"missing or empty {name!r}")
    record["ts_event"] = _event_time(record.get("ts_event"))
    if record.get("level") not in LEVELS:
        raise UndecodableMessage(f"unknown level {record.get('level')!r}")
    if not _is_number(record.get("severity")):
        raise UndecodableMessage("'severity' is not a number")
    if not _is_number(record.get("price")):
        raise UndecodableMessage("'price' is not a number")
    if not isinstance(record.get("detectors", {}), dict):
        raise UndecodableMessage("'detectors' is not an object")
    # Fields only displayed are made displayable rather than rejected: an odd side
    # counts as None, a size or vote count that is not a whole number is left blank.
    if not isinstance(record.get("side"), str) or record["side"] not in SIDES:
        record["side"] = "N"
    for name in ("size", "votes"):
        if not isinstance(record.get(name), int) or isinstance(record.get(name), bool):
            record[name] = None
    return record


def decode_summary(raw: bytes | None) -> dict[str, Any]:
    """An instrument summary: only symbol, ts_event and last_price are used."""
    summary = _json_object(raw)
    if not isinstance(summary.get("symbol"), str) or not summary["symbol"]:
        raise UndecodableMessage("summary without 'symbol'")
    summary["ts_event"] = _event_time(summary.get("ts_event"))
    if not _is_number(summary.get("last_price")):
        raise UndecodableMessage("summary 'last_price' is not a number")
    return summary


def _json_object(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise UndecodableMessage("empty message (no value)")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise UndecodableMessage(f"not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise UndecodableMessage(f"not a JSON object but {type(value).__name__}")
    return value


def _event_time(value: Any) -> str:
    """``ts_event`` as an ISO-8601 UTC string with nanoseconds.

    Trades may carry integer nanoseconds instead of the string (the contract allows
    both), and the job's summaries carry integer nanoseconds; one fixed-width form
    makes text order time order and keeps plotting simple.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return format_timestamp_ns(value)
    if isinstance(value, str):
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, OverflowError):
            stamp = None
        if stamp is not None and stamp is not pd.NaT and stamp.tzinfo is not None:
            return format_timestamp_ns(stamp.tz_convert("UTC").value)
    raise UndecodableMessage(f"'ts_event' is neither an ISO-8601 UTC time nor nanoseconds: {value!r}")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


class AnomalyBuffer:
    """The last ``capacity`` distinct anomalies, in arrival order, unique by ``anomaly_id``."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._records: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self.duplicates = 0

    def add(self, record: dict[str, Any]) -> None:
        key = record["anomaly_id"]
        if key in self._records:
            self.duplicates += 1
            self._records[key] = record
            return
        self._records[key] = record
        while len(self._records) > self.capacity:
            self._records.popitem(last=False)

    def records(self) -> list[dict[str, Any]]:
        return list(self._records.values())

    def __len__(self) -> int:
        return len(self._records)


class PriceHistory:
    """The last ``points_per_symbol`` (ts_event, last_price) points of each instrument."""

    def __init__(self, points_per_symbol: int = 3600, max_symbols: int = 200) -> None:
        self.points_per_symbol = points_per_symbol
        self.max_symbols = max_symbols
        self._points: OrderedDict[str, deque[tuple[str, float]]] = OrderedDict()

    def add(self, summary: dict[str, Any]) -> None:
        symbol = summary["symbol"]
        points = self._points.get(symbol)
        if points is None:
            points = self._points[symbol] = deque(maxlen=self.points_per_symbol)
            while len(self._points) > self.max_symbols:
                self._points.popitem(last=False)
        points.append((summary["ts_event"], float(summary["last_price"])))

    def points(self) -> dict[str, list[tuple[str, float]]]:
        return {symbol: list(points) for symbol, points in self._points.items()}
