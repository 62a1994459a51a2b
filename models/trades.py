"""Validation of incoming trades: the Databento trades schema plus plausibility bounds.

Every field has bounds (``FIELD_BOUNDS``, the README table "What a valid trade is"):
the ranges of the field's DBN type for the identifiers, and ranges no real US
equity trade leaves for price, size and time. A value outside them is hostile or
broken input, and letting it through is how a price of 1e308 once reached a model
fit and crashed the job. A bad trade becomes a ``Rejection`` with a specific
reason; it is never raised and never dropped.

A batch is checked column by column: clean columns (the usual case) are converted
and range-checked in a few numpy calls, and only a column with a bad cell is
walked cell by cell to find which trade is bad and why.
"""

from __future__ import annotations

import math
import operator
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
NANOS_PER_SECOND = 1_000_000_000

EARLIEST_NS = 946_684_800 * NANOS_PER_SECOND  # 2000-01-01T00:00:00Z
LATEST_NS = 4_102_444_800 * NANOS_PER_SECOND  # 2100-01-01T00:00:00Z
FIELD_BOUNDS: dict[str, tuple[int | float, int | float]] = {
    "rtype": (0, 255),  # u8 in DBN
    "publisher_id": (0, 65_535),  # u16
    "instrument_id": (0, 4_294_967_295),  # u32
    "depth": (0, 255),  # u8
    "flags": (0, 255),  # u8 bit field
    "ts_in_delta": (-2_147_483_648, 2_147_483_647),  # i32
    "sequence": (0, 4_294_967_295),  # u32
    "size": (1, 1_000_000_000),  # the largest closing cross on the shared days is 17.8 million shares
    "price": (1e-4, 1e7),  # a hundredth of a cent to ten million dollars
    "ts_event": (EARLIEST_NS, LATEST_NS - 1),
    "ts_recv": (EARLIEST_NS, LATEST_NS - 1),
}
"""Inclusive bounds of each numeric field; timestamps in nanoseconds since the epoch."""
RECEIVE_DELAY_NS = (-60 * NANOS_PER_SECOND, 86_400 * NANOS_PER_SECOND)
"""``ts_recv - ts_event``: a feed receives a trade after it happened (0.17-84 ms on the
shared days), never a day later; a minute of clock skew the other way is tolerated."""
TRADE_ACTION = "T"
SYMBOL_MAX_LENGTH = 32
"""Databento raw symbols are at most 22 characters; anything far longer is not a symbol."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """Trade ``index`` of the batch was not scored, because of ``reason``."""

    index: int
    reason: str
    stage: str = "validate"


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
    publisher_ids: np.ndarray
    instrument_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.indices)

    def subset(self, rows: np.ndarray | slice) -> ValidTrades:
        """The same columns for some of the trades (a boolean mask, index array or slice)."""
        return ValidTrades(**{name: column[rows] for name, column in vars(self).items()})


@dataclass(frozen=True)
class Validation:
    """The verdicts on a batch: its valid trades' columns and its rejections, both by batch position.

    Validating a whole input batch in columns, then handing each instrument its part,
    costs a fraction of validating each instrument's few trades on their own (a trade's
    verdict does not depend on its batch, so the parts are what validating them alone gives).
    """

    valid: ValidTrades
    rejections: list[Rejection]

    @classmethod
    def of(cls, trades: Sequence[Mapping[str, Any]]) -> Validation:
        return cls(*validate_trades(trades))

    def split(self, groups: np.ndarray, count: int) -> list[Validation]:
        """One part per group, its trades indexed within the group; ``groups[p]`` (0 to
        ``count - 1``) is the group of batch position ``p``.

        Each column is reordered by group once for the whole batch, and the parts are
        slices of it, so the cost per group is a few slices, whatever the batch holds.
        """
        order = np.argsort(groups, kind="stable")
        starts = np.searchsorted(groups[order], np.arange(count + 1))
        local_of = np.empty(len(groups), np.int64)  # each position's place within its group
        local_of[order] = np.arange(len(groups)) - starts[groups[order]]
        valid_groups = groups[self.valid.indices]
        valid_order = np.argsort(valid_groups, kind="stable")
        bounds = np.searchsorted(valid_groups[valid_order], np.arange(count + 1)).tolist()
        columns = {name: column[valid_order] for name, column in vars(self.valid).items()}
        columns["indices"] = local_of[columns["indices"]]
        rejections: list[list[Rejection]] = [[] for _ in range(count)]
        for rejection in self.rejections:
            rejections[groups[rejection.index]].append(
                Rejection(int(local_of[rejection.index]), rejection.reason, rejection.stage))
        return [Validation(ValidTrades(**{name: column[bounds[g]:bounds[g + 1]] for name, column in columns.items()}),
                           rejections[g]) for g in range(count)]

    @staticmethod
    def join(parts: Sequence[Validation], sizes: Sequence[int]) -> Validation:
        """Consecutive batches of ``sizes`` trades as one (positions shifted by the sizes before)."""
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
        columns = {name: np.concatenate([vars(part.valid)[name] for part in parts]) for name in vars(parts[0].valid)}
        columns["indices"] = np.concatenate([part.valid.indices + offset for part, offset in zip(parts, offsets)])
        rejections = [Rejection(r.index + int(offset), r.reason, r.stage) for part, offset in zip(parts, offsets)
                      for r in part.rejections]
        return Validation(ValidTrades(**columns), rejections)


class _Invalid(ValueError):
    pass


def symbol_problem(symbol: Any) -> str | None:
    """Why ``symbol`` cannot name an instrument, or None.

    Checked before a trade is routed (a symbol is a state key: " NVDA" would
    become a second instrument) and again with the other fields.
    """
    if not isinstance(symbol, str) or not symbol:
        return f"field 'symbol' must be a non-empty string, got {_shown(symbol)}"
    if len(symbol) > SYMBOL_MAX_LENGTH:
        return f"field 'symbol' is longer than {SYMBOL_MAX_LENGTH} characters ({len(symbol)})"
    if symbol != symbol.strip():
        return f"field 'symbol' has surrounding whitespace: {symbol!r}"
    if not symbol.isprintable():
        return f"field 'symbol' has unprintable characters: {symbol!r}"
    return None


SMALL_BATCH = 16
"""Batches up to this size are checked trade by trade in plain Python: with many
instruments each call carries a few trades, and a dozen numpy calls per column would
cost more than the checks themselves."""
KEPT_COLUMNS = {  # ValidTrades field: (trade field, dtype)
    "prices": ("price", np.float64), "sizes": ("size", np.int64), "timestamps_ns": ("ts_event", np.int64),
    "sides": ("side", np.int8), "sequences": ("sequence", np.int64), "flags": ("flags", np.int64),
    "publisher_ids": ("publisher_id", np.int64), "instrument_ids": ("instrument_id", np.int64),
}


def validate_trades(trades: Sequence[Mapping[str, Any]]) -> tuple[ValidTrades, list[Rejection]]:
    """Split a batch into the columns of its valid trades and the rejections."""
    if len(trades) <= SMALL_BATCH:
        return _validate_each(trades)
    return _validate_columns(trades)


def _validate_columns(trades: Sequence[Mapping[str, Any]]) -> tuple[ValidTrades, list[Rejection]]:
    """Column by column: a clean column is converted and range-checked in a few numpy calls."""
    reasons: dict[int, str] = {}
    for index, trade in enumerate(trades):
        if type(trade) is not dict and not isinstance(trade, Mapping):
            reasons[index] = f"not a trade object but {type(trade).__name__}"
    rows = trades if not reasons else [{} if index in reasons else trade for index, trade in enumerate(trades)]
    parsed: dict[str, np.ndarray] = {}
    for name, cells in _field_columns(rows).items():
        parsed[name] = _parse_column(name, cells, reasons)
    _check_receive_delay(parsed["ts_event"], parsed["ts_recv"], reasons)
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
        publisher_ids=parsed["publisher_id"][keep],
        instrument_ids=parsed["instrument_id"][keep],
    )
    return valid, rejections


_FIELD_GETTERS = tuple((name, operator.itemgetter(name)) for name in TRADE_FIELDS)


def _field_columns(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[Any]]:
    """Each field's cells in trade order, a missing field as None.

    When every trade has every field, a C-level ``map`` of an ``itemgetter`` per field
    (a small fraction of the time of a Python ``get`` per field and trade); otherwise
    ``get`` field by field.
    """
    try:
        return {name: list(map(get, rows)) for name, get in _FIELD_GETTERS}
    except (KeyError, TypeError):
        return {name: [row.get(name) for row in rows] for name in TRADE_FIELDS}


def _validate_each(trades: Sequence[Mapping[str, Any]]) -> tuple[ValidTrades, list[Rejection]]:
    """The same verdicts and reasons as the column path, one trade at a time.

    Fields are checked in ``TRADE_FIELDS`` order and the first bad one is the reason,
    as the column path (which keeps each trade's first reason) does.
    """
    rejections: list[Rejection] = []
    indices: list[int] = []
    kept: dict[str, list] = {column: [] for column in KEPT_COLUMNS}
    low, high = RECEIVE_DELAY_NS
    for index, trade in enumerate(trades):
        if not isinstance(trade, Mapping):
            rejections.append(Rejection(index, f"not a trade object but {type(trade).__name__}"))
            continue
        values = {}
        try:
            for name in TRADE_FIELDS:
                cell = trade.get(name)
                if cell is None:
                    raise _Invalid(f"missing field '{name}'")
                values[name] = _bounded(name, _CELL_PARSERS[name](cell), cell)
        except _Invalid as problem:
            rejections.append(Rejection(index, str(problem)))
            continue
        delay = values["ts_recv"] - values["ts_event"]
        if not low <= delay <= high:
            rejections.append(Rejection(index, _delay_reason(delay)))
            continue
        indices.append(index)
        for column, (name, _) in KEPT_COLUMNS.items():
            kept[column].append(values[name])
    return ValidTrades(
        indices=np.array(indices, np.int64),
        **{column: np.array(kept[column], dtype) for column, (_, dtype) in KEPT_COLUMNS.items()},
    ), rejections


def _parse_column(name: str, cells: list[Any], reasons: dict[int, str]) -> np.ndarray:
    fast = _FAST_PARSERS[name](cells)
    if fast is not None and _within_bounds(name, fast):
        return fast
    parse_cell = _CELL_PARSERS[name]
    values = []
    for index, cell in enumerate(cells):
        try:
            if cell is None:
                raise _Invalid(f"missing field '{name}'")
            values.append(_bounded(name, parse_cell(cell), cell))
        except _Invalid as problem:
            reasons.setdefault(index, str(problem))
            values.append(_PLACEHOLDER[name])
    return np.array(values, dtype=_DTYPE[name])


def _within_bounds(name: str, column: np.ndarray) -> bool:
    if name not in FIELD_BOUNDS or not len(column):
        return True
    low, high = FIELD_BOUNDS[name]
    return bool(column.min() >= low and column.max() <= high)


def _bounded(name: str, value: Any, cell: Any) -> Any:
    if name in FIELD_BOUNDS:
        low, high = FIELD_BOUNDS[name]
        if not low <= value <= high:
            raise _Invalid(_out_of_bounds(name, cell, low, high))
    return value


def _out_of_bounds(name: str, cell: Any, low: float, high: float) -> str:
    if name in TIMESTAMP_FIELDS:
        return f"field '{name}' is outside 2000-01-01 to 2099-12-31: {_shown(cell)}"
    if name == "price":
        return f"price must be between {low:g} and {high:g}: {_shown(cell)}"
    return f"field '{name}' must be between {low:,} and {high:,}: {_shown(cell)}"


def _check_receive_delay(events: np.ndarray, receipts: np.ndarray, reasons: dict[int, str]) -> None:
    delay = receipts - events
    low, high = RECEIVE_DELAY_NS
    for index in np.flatnonzero((delay < low) | (delay > high)):
        reasons.setdefault(int(index), _delay_reason(int(delay[index])))


def _delay_reason(delay: int) -> str:
    low, high = RECEIVE_DELAY_NS
    return (f"ts_recv is {delay / NANOS_PER_SECOND:,.3f} s after ts_event "
            f"(allowed: {low // NANOS_PER_SECOND} s to {high // NANOS_PER_SECOND:,} s)")


def _shown(cell: Any) -> str:
    """A bad value in a reason: its repr, shortened (a reason is read, not a copy of the input)."""
    text = repr(cell)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


# Fast paths: one pass over a clean column, or None to fall back to cell by cell.
def _fast_integers(cells: list[Any]) -> np.ndarray | None:
    if set(map(type, cells)) <= {int}:
        try:
            return np.array(cells, dtype=np.int64)
        except OverflowError:
            return None
    return None


def _fast_prices(cells: list[Any]) -> np.ndarray | None:
    if set(map(type, cells)) <= {float, int}:
        try:
            column = np.array(cells, dtype=np.float64)
        except OverflowError:  # an int beyond float range
            return None
        if np.isfinite(column).all():
            return column
    return None


_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|\+00:00)$", re.ASCII)
"""ASCII digits only: Python's ``\\d`` would also take other scripts' digits and ``int()`` read them."""


def _fast_timestamps(cells: list[Any]) -> np.ndarray | None:
    # The wire format: exactly 'YYYY-MM-DDTHH:MM:SS.fffffffffZ' (30 characters), years 2000-2099
    # (checked before the seconds are scaled to nanoseconds, which would overflow for year 2300),
    # every other character an ASCII digit: numpy would also read '2025-05-09 13:30:00' or a
    # signed or spaced fraction, which the cell parser refuses, and a batch's size must not matter.
    if not all(type(cell) is str and len(cell) == 30 and cell[:2] == "20" and cell[19] == "." and cell[29] == "Z"
               and cell[4] == cell[7] == "-" and cell[10] == "T" and cell[13] == cell[16] == ":"
               for cell in cells):
        return None
    digits = "".join([cell[:4] + cell[5:7] + cell[8:10] + cell[11:13] + cell[14:16] + cell[17:19] + cell[20:29]
                      for cell in cells])
    if not (digits.isascii() and digits.isdigit()):
        return None
    try:
        seconds = np.array([cell[:19] for cell in cells], dtype="datetime64[s]").astype(np.int64)
        nanos = np.array([cell[20:29] for cell in cells]).astype(np.int64)
    except ValueError:
        return None
    return seconds * NANOS_PER_SECOND + nanos


def _fast_sides(cells: list[Any]) -> np.ndarray | None:
    try:
        return np.array([SIDE_CODES[cell] for cell in cells], dtype=np.int8)
    except (KeyError, TypeError):
        return None


def _fast_actions(cells: list[Any]) -> np.ndarray | None:
    return np.zeros(len(cells), np.int8) if all(cell == TRADE_ACTION for cell in cells) else None


def _fast_symbols(cells: list[Any]) -> np.ndarray | None:
    try:
        distinct = set(cells)  # a batch holds a few symbols: check each once
    except TypeError:  # an unhashable cell (a list, a dict): check them all
        distinct = cells
    if all(symbol_problem(cell) is None for cell in distinct):
        return np.zeros(len(cells), np.int8)  # only validated; the text stays in the trade
    return None


# Cell parsers: the value, or _Invalid with the reason.
def _cell_integer(name: str):
    def parse(cell: Any) -> int:
        if isinstance(cell, bool) or not isinstance(cell, (int, float)):
            raise _Invalid(f"field '{name}' is not an integer: {_shown(cell)}")
        if isinstance(cell, float) and not (math.isfinite(cell) and cell.is_integer()):
            raise _Invalid(f"field '{name}' is not an integer: {_shown(cell)}")
        return int(cell)
    return parse


def _cell_price(cell: Any) -> float:
    if isinstance(cell, bool) or not isinstance(cell, (int, float)):
        raise _Invalid(f"field 'price' is not a number: {_shown(cell)}")
    try:
        price = float(cell)
    except OverflowError:
        raise _Invalid(f"price is not finite: {_shown(cell)}") from None
    if not math.isfinite(price):
        raise _Invalid(f"price is not finite: {_shown(cell)}")
    return price


_SECONDS: dict[str, int] = {}
"""Seconds since the epoch of 'YYYY-MM-DDTHH:MM:SS' strings seen lately (trades share seconds)."""


def _cell_timestamp(name: str):
    def parse(cell: Any) -> int:
        if isinstance(cell, int) and not isinstance(cell, bool):
            return cell
        if (type(cell) is str and len(cell) == 30 and cell[19] == "." and cell[29] == "Z"
                and cell[20:29].isascii() and cell[20:29].isdigit()):
            seconds = _SECONDS.get(cell[:19])
            if seconds is not None:  # the wire format, in a second already parsed
                return seconds * NANOS_PER_SECOND + int(cell[20:29])
        match = _ISO.fullmatch(cell) if isinstance(cell, str) else None
        if match is None:
            raise _Invalid(
                f"field '{name}' is not an ISO-8601 UTC timestamp or integer nanoseconds: {_shown(cell)}"
            )
        try:
            moment = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)
        except ValueError:
            raise _Invalid(f"field '{name}' is not a valid date and time: {_shown(cell)}") from None
        fraction = (match.group(2) or "").ljust(9, "0")
        seconds = int(moment.timestamp())
        if len(_SECONDS) >= 100_000:
            _SECONDS.clear()
        _SECONDS[match.group(1)] = seconds
        return seconds * NANOS_PER_SECOND + int(fraction)
    return parse


def _cell_side(cell: Any) -> int:
    if not isinstance(cell, str) or cell not in SIDE_CODES:
        raise _Invalid(f"side must be A, B or N, got {_shown(cell)}")
    return SIDE_CODES[cell]


def _cell_action(cell: Any) -> int:
    if cell != TRADE_ACTION:
        raise _Invalid(f"action must be 'T' (a trade), got {_shown(cell)}")
    return 0


def _cell_symbol(cell: Any) -> int:
    problem = symbol_problem(cell)
    if problem is not None:
        raise _Invalid(problem)
    return 0


_FAST_PARSERS = {
    **{name: _fast_integers for name in INTEGER_FIELDS},
    "price": _fast_prices,
    **{name: _fast_timestamps for name in TIMESTAMP_FIELDS},
    "side": _fast_sides,
    "action": _fast_actions,
    "symbol": _fast_symbols,
}
_CELL_PARSERS = {
    **{name: _cell_integer(name) for name in INTEGER_FIELDS},
    "price": _cell_price,
    **{name: _cell_timestamp(name) for name in TIMESTAMP_FIELDS},
    "side": _cell_side,
    "action": _cell_action,
    "symbol": _cell_symbol,
}
_DTYPE = {
    **{name: np.int64 for name in INTEGER_FIELDS + TIMESTAMP_FIELDS},
    "price": np.float64, "side": np.int8, "action": np.int8, "symbol": np.int8,
}
_PLACEHOLDER = {name: (1.0 if name == "price" else 0) for name in TRADE_FIELDS}
