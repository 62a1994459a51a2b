"""Validation of incoming trades against the Databento trades schema.

A batch is checked column by column: clean columns (the usual case) are converted
in one numpy call, and only a column with a bad cell is walked cell by cell to
find which trade is bad and why. A bad trade becomes a ``Rejection`` with a
specific reason; it is never raised and never dropped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from models.features import SIDE_CODES

TRADE_FIELDS = (
    "ts_recv", "ts_event", "rtype", "publisher_id", "instrument_id", "action", "side",
    "depth", "price", "size", "flags", "ts_in_delta", "sequence", "symbol",
)
INTEGER_FIELDS = ("rtype", "publisher_id", "instrument_id", "depth", "size", "flags", "ts_in_delta", "sequence")
TIMESTAMP_FIELDS = ("ts_recv", "ts_event")
TEXT_FIELDS = ("action", "symbol")
INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Rejection:
    """Trade ``index`` of the batch was not scored, because of ``reason``."""

    index: int
    reason: str


@dataclass(frozen=True)
class ValidTrades:
    """The columns of the valid trades of a batch, in batch order."""

    indices: np.ndarray  # position of each valid trade in the input batch
    prices: np.ndarray
    sizes: np.ndarray
    timestamps_ns: np.ndarray
    sides: np.ndarray
    sequences: np.ndarray
    flags: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)


class _Invalid(ValueError):
    pass


def validate_trades(trades: Sequence[Mapping[str, Any]]) -> tuple[ValidTrades, list[Rejection]]:
    """Split a batch into the columns of its valid trades and the rejections."""
    reasons: dict[int, str] = {}
    for index, trade in enumerate(trades):
        if not isinstance(trade, Mapping):
            reasons[index] = f"not a trade object but {type(trade).__name__}"
    rows = [trade if isinstance(trade, Mapping) else {} for trade in trades]
    parsed: dict[str, np.ndarray] = {}
    for name in TRADE_FIELDS:
        cells = [row.get(name) for row in rows]
        parsed[name] = _parse_column(name, cells, reasons)
    rejections = [Rejection(index, reasons[index]) for index in sorted(reasons)]
    keep = np.ones(len(trades), bool)
    keep[list(reasons)] = False
    valid = ValidTrades(
        indices=np.flatnonzero(keep),
        prices=parsed["price"][keep],
        sizes=parsed["size"][keep],
        timestamps_ns=parsed["ts_event"][keep],
        sides=parsed["side"][keep],
        sequences=parsed["sequence"][keep],
        flags=parsed["flags"][keep],
    )
    return valid, rejections


def _parse_column(name: str, cells: list[Any], reasons: dict[int, str]) -> np.ndarray:
    fast = _FAST_PARSERS[name](cells)
    if fast is not None:
        return fast
    parse_cell = _CELL_PARSERS[name]
    values = []
    for index, cell in enumerate(cells):
        try:
            if cell is None:
                raise _Invalid(f"missing field '{name}'")
            values.append(parse_cell(cell))
        except _Invalid as problem:
            reasons.setdefault(index, str(problem))
            values.append(_PLACEHOLDER[name])
    return np.array(values, dtype=_DTYPE[name])


# Fast paths: one pass over a clean column, or None to fall back to cell by cell.
def _fast_integers(cells: list[Any]) -> np.ndarray | None:
    if set(map(type, cells)) <= {int}:
        try:
            return np.array(cells, dtype=np.int64)
        except OverflowError:
            return None
    return None


def _fast_sizes(cells: list[Any]) -> np.ndarray | None:
    column = _fast_integers(cells)
    return column if column is not None and (column >= 0).all() else None


def _fast_prices(cells: list[Any]) -> np.ndarray | None:
    if set(map(type, cells)) <= {float, int}:
        column = np.array(cells, dtype=np.float64)
        if np.isfinite(column).all() and (column > 0).all():
            return column
    return None


_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|\+00:00)$")


def _fast_timestamps(cells: list[Any]) -> np.ndarray | None:
    # The wire format: exactly 'YYYY-MM-DDTHH:MM:SS.fffffffffZ' (30 characters).
    if not all(type(cell) is str and len(cell) == 30 and cell[19] == "." and cell[29] == "Z" for cell in cells):
        return None
    try:
        seconds = np.array([cell[:19] for cell in cells], dtype="datetime64[s]").astype(np.int64)
        nanos = np.array([cell[20:29] for cell in cells]).astype(np.int64)
    except ValueError:
        return None
    return seconds * 1_000_000_000 + nanos


def _fast_sides(cells: list[Any]) -> np.ndarray | None:
    try:
        return np.array([SIDE_CODES[cell] for cell in cells], dtype=np.int8)
    except (KeyError, TypeError):
        return None


def _fast_text(cells: list[Any]) -> np.ndarray | None:
    if set(map(type, cells)) <= {str} and all(cells):
        return np.zeros(len(cells), np.int8)  # only validated; the text stays in the trade
    return None


# Cell parsers: the value, or _Invalid with the reason.
def _cell_integer(name: str):
    def parse(cell: Any) -> int:
        if isinstance(cell, bool) or not isinstance(cell, (int, float)):
            raise _Invalid(f"field '{name}' is not an integer: {cell!r}")
        if isinstance(cell, float) and not (math.isfinite(cell) and cell.is_integer()):
            raise _Invalid(f"field '{name}' is not an integer: {cell!r}")
        if abs(int(cell)) > INT64_MAX:
            raise _Invalid(f"field '{name}' is out of range: {cell!r}")
        if name == "size" and cell < 0:
            raise _Invalid(f"negative size: {cell!r}")
        return int(cell)
    return parse


def _cell_price(cell: Any) -> float:
    if isinstance(cell, bool) or not isinstance(cell, (int, float)):
        raise _Invalid(f"field 'price' is not a number: {cell!r}")
    if not math.isfinite(cell):
        raise _Invalid(f"price is not finite: {cell!r}")
    if cell <= 0:
        raise _Invalid(f"price must be positive: {cell!r}")
    return float(cell)


def _cell_timestamp(name: str):
    def parse(cell: Any) -> int:
        if isinstance(cell, int) and not isinstance(cell, bool):
            if not 0 <= cell <= INT64_MAX:
                raise _Invalid(f"field '{name}' is out of range: {cell!r}")
            return cell
        match = _ISO.match(cell) if isinstance(cell, str) else None
        if match is None:
            raise _Invalid(f"field '{name}' is not an ISO-8601 UTC timestamp or integer nanoseconds: {cell!r}")
        try:
            moment = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
        except ValueError:
            raise _Invalid(f"field '{name}' is not a valid date and time: {cell!r}") from None
        fraction = (match.group(2) or "").ljust(9, "0")
        return int(moment.timestamp()) * 1_000_000_000 + int(fraction)
    return parse


def _cell_side(cell: Any) -> int:
    if cell not in SIDE_CODES or not isinstance(cell, str):
        raise _Invalid(f"side must be A, B or N, got {cell!r}")
    return SIDE_CODES[cell]


def _cell_text(name: str):
    def parse(cell: Any) -> int:
        if not isinstance(cell, str) or not cell.strip():
            raise _Invalid(f"field '{name}' must be a non-empty string, got {cell!r}")
        return 0
    return parse


_FAST_PARSERS = {
    **{name: _fast_integers for name in INTEGER_FIELDS},
    "size": _fast_sizes,
    "price": _fast_prices,
    **{name: _fast_timestamps for name in TIMESTAMP_FIELDS},
    "side": _fast_sides,
    **{name: _fast_text for name in TEXT_FIELDS},
}
_CELL_PARSERS = {
    **{name: _cell_integer(name) for name in INTEGER_FIELDS},
    "price": _cell_price,
    **{name: _cell_timestamp(name) for name in TIMESTAMP_FIELDS},
    "side": _cell_side,
    **{name: _cell_text(name) for name in TEXT_FIELDS},
}
_DTYPE = {
    **{name: np.int64 for name in INTEGER_FIELDS + TIMESTAMP_FIELDS},
    "price": np.float64, "side": np.int8, "action": np.int8, "symbol": np.int8,
}
_PLACEHOLDER = {name: (1.0 if name == "price" else 0) for name in TRADE_FIELDS}
