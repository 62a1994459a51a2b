"""Checks of single fields of a record read from Kafka: each raises ``InvalidRecord`` saying why.

The bounds are those of a plausible trade record, not of JSON: times between 1990
and 2100, finite numbers within each field's range, text of bounded length.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import datetime, timezone
from typing import Any

import orjson

LEVELS = ("low", "medium", "high", "critical")
LEVEL_RANK = {level: rank for rank, level in enumerate(LEVELS)}
SIDES = ("A", "B", "N")
INCIDENT_STATUSES = ("open", "updated", "closed")
DECISIONS = ("acknowledged", "dismissed")
DIRECTIONS = ("up", "down")
DETECTORS = ("isolation_forest", "elliptic_envelope", "zscore")

EARLIEST_NS = int(datetime(1990, 1, 1, tzinfo=timezone.utc).timestamp()) * 1_000_000_000
LATEST_NS = int(datetime(2100, 1, 1, tzinfo=timezone.utc).timestamp()) * 1_000_000_000
MAX_PRICE = 1e9
MAX_COUNT = 10**15
MAX_ID_LENGTH = 200
MAX_SYMBOL_LENGTH = 100
MAX_NOTE_LENGTH = 500
MAX_ANALYST_LENGTH = 80
MAX_PRICE_PATH = 1000
# What is kept of a record is bounded tighter than what validation accepts: a page holds up to
# tens of thousands of records, and at these bounds the job's own text is never cut (its lines
# run to about 80 characters, 3 to an anomaly and 4 to an incident, its summaries to about 120).
MAX_SUMMARY_LENGTH = 300
MAX_LINE_LENGTH = 160
MAX_EXPLANATION_LINES = 6
MAX_DETECTORS = 6
MAX_DETECTOR_NAME = 40
MAX_KEPT_PATH = 300
"""Points of an incident's price path kept, thinned evenly (the job itself sends at most 300 by default)."""

_ISO_TIME = re.compile(
    # [0-9], not \d: \d also matches other scripts' digits, which int() would then read as a year
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[T ]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
    r"(Z|[+-](?:[01][0-9]|2[0-3]):?[0-5][0-9])"  # a zone offset is under 24 h, its minutes under 60
)


class InvalidRecord(ValueError):
    """The message is not a record the page can show; the text says why."""


def json_object(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise InvalidRecord("empty message (no value)")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as error:
        raise InvalidRecord(f"not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise InvalidRecord(f"not a JSON object but {type(value).__name__}")
    return value


def time_ns(value: Any, name: str) -> int:
    """An ISO-8601 time with a zone (an offset under 24 hours, ASCII digits), or integer nanoseconds,
    as nanoseconds since the epoch, between 1990 and 2100 (anything else is a corrupt or hostile
    time, not a trade's)."""
    if isinstance(value, int) and not isinstance(value, bool):
        stamp = value
    elif isinstance(value, str):
        stamp = _parse_iso(value, name)
    else:
        raise InvalidRecord(f"{name!r} is neither an ISO-8601 time nor nanoseconds: {short(value)}")
    if not EARLIEST_NS <= stamp < LATEST_NS:
        raise InvalidRecord(f"{name!r} is outside 1990-2100: {short(value)}")
    return stamp


def _parse_iso(value: str, name: str) -> int:
    match = _ISO_TIME.fullmatch(value.strip())
    if match is None:
        raise InvalidRecord(f"{name!r} is not an ISO-8601 time with a zone: {short(value)}")
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    if not 1990 <= year < 2100:
        raise InvalidRecord(f"{name!r} is outside 1990-2100: {short(value)}")
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError as error:
        raise InvalidRecord(f"{name!r} is not a valid time ({error}): {short(value)}") from None
    nanos = int((match.group(7) or "0").ljust(9, "0"))
    zone = match.group(8)
    offset_s = 0
    if zone != "Z":
        digits = zone[1:].replace(":", "")
        offset_s = (int(digits[:2]) * 3600 + int(digits[2:]) * 60) * (1 if zone[0] == "+" else -1)
    return (int(moment.timestamp()) - offset_s) * 1_000_000_000 + nanos


def text(record: dict[str, Any], name: str, max_length: int, *, required: bool = True,
         truncate: bool = False) -> str | None:
    """A non-empty string; too long is an error for names and ids, cut for free text."""
    value = record.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidRecord(f"missing or empty {name!r}" if value in (None, "") else f"{name!r} is not text")
    if len(value) > max_length and not truncate:
        raise InvalidRecord(f"{name!r} is longer than {max_length} characters")
    return cut(value, max_length)


def visible_name(value: str) -> str:
    """``value`` without control and format characters (zero-width spaces and joiners, bidi
    overrides and isolates, escapes), whitespace collapsed to single spaces and stripped: empty
    when nothing in it shows. A name is a word on a line of other text: an override in it would
    turn the rest of the line around, and one of only invisible characters names nobody."""
    kept = "".join(" " if char.isspace() else char for char in value
                   if char.isspace() or unicodedata.category(char) not in ("Cc", "Cf"))
    return " ".join(kept.split())


def cut(value: str, max_length: int) -> str:
    """``value``, or its first characters and an ellipsis when it is longer than ``max_length``."""
    return value if len(value) <= max_length else value[: max_length - 1] + "…"


def whole(record: dict[str, Any], name: str, *, required: bool = True, low: int = 0,
          high: int = MAX_COUNT) -> int | None:
    value = record.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidRecord(f"{name!r} is not a whole number: {short(value)}")
    if not low <= value <= high:
        raise InvalidRecord(f"{name!r} is outside {low}-{high}: {value}")
    return value


def number(record: dict[str, Any], name: str, *, required: bool = True, low: float = -math.inf,
           high: float = math.inf) -> float | None:
    value = record.get(name)
    if value is None and not required:
        return None
    return checked_number(value, name, low, high)


def checked_number(value: Any, name: str, low: float = -math.inf, high: float = math.inf) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise InvalidRecord(f"{name!r} is not a number: {short(value)}")
    if not math.isfinite(value):
        raise InvalidRecord(f"{name!r} is not finite: {value}")
    if not low <= value <= high:
        raise InvalidRecord(f"{name!r} is outside {low:g} to {high:g}: {value:g}")
    return float(value)


def choice(record: dict[str, Any], name: str, allowed: tuple[str, ...], *, required: bool = True) -> str | None:
    value = record.get(name)
    if value is None and not required:
        return None
    if value not in allowed or not isinstance(value, str):
        raise InvalidRecord(f"{name!r} must be one of {', '.join(allowed)}: {short(value)}")
    return value


def short(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 80 else shown[:77] + "..."


def explanation_lines(value: Any) -> tuple[str, ...]:
    """The first ``MAX_EXPLANATION_LINES`` explanation items as lines of plain text (each cut to
    ``MAX_LINE_LENGTH``), whatever the job version.

    Current jobs send ``{"input", "value", "text"}`` with the text in plain units;
    older ones ``{"feature", "value", "zscore"}``, shown as ``feature = value (z ...)``.
    """
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidRecord("'explanation' is not a list")
    return tuple(cut(_explanation_line(item, position), MAX_LINE_LENGTH)
                 for position, item in enumerate(value[:MAX_EXPLANATION_LINES]))


def _explanation_line(item: Any, position: int) -> str:
    if not isinstance(item, dict):
        raise InvalidRecord(f"'explanation[{position}]' is not an object")
    if isinstance(item.get("text"), str) and item["text"].strip():
        return item["text"]
    name = text(item, "feature", MAX_ID_LENGTH, required=False) or text(item, "input", MAX_ID_LENGTH)
    amount = number(item, "value", required=False)
    zscore = number(item, "zscore", required=False)
    line = name if amount is None else f"{name} = {amount:.6g}"
    return line if zscore is None else f"{line} (z {zscore:.1f})"


def iso_time(ts_ns: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS.fffffffffZ``: the contract's form of a UTC time."""
    seconds, nanos = divmod(ts_ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{nanos:09d}Z"
