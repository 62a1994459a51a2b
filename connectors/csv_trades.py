"""Databento trades CSV (``.csv``, ``.csv.zst``) as chunks of trade dicts, whatever the file holds.

pandas' C parser reads a clean file fast; it stops at the first line it cannot split
(a field too many, an open quote, bytes that are not UTF-8). The rest of such a file
is then read line by line, and each line that is not a row of the header's fields
becomes an ``unreadable_line`` with its reason and bytes, which the file source turns
into a dead letter: every line of the file is a trade or a dead letter, none is lost.

A last line without its line end is read by this module, not by pandas: when it has fewer
fields than the header, or its symbol is the start of the symbol the file gave the same
instrument before, the file was cut inside it (a copy still being written, or one that did not
finish), and it is an ``unreadable_line`` saying so; a complete one is a row like any other
(many writers end the file without a line end).

Cells keep the types the JSON input would give them: integers for the integer fields
(``100.0`` is 100, as in JSON), a float price, timestamps as ISO text or integer
nanoseconds. A cell that is none of these stays as it is, for the engine to reject
with its reason; it does not take its neighbours with it.
"""

from __future__ import annotations

import codecs
import csv
import io
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd

from connectors.codec import TRADE_FIELDS

INT_FIELDS = frozenset(("rtype", "publisher_id", "instrument_id", "depth", "size", "flags", "ts_in_delta", "sequence"))
TIMESTAMP_FIELDS = frozenset(("ts_recv", "ts_event"))
UNREADABLE = "__unreadable_line__"
"""The key of a row that is not a trade: its value is the reason; ``raw`` holds the line's bytes."""


def unreadable_line(reason: str, raw: bytes) -> dict[str, Any]:
    return {UNREADABLE: reason, "raw": raw}


class CorruptFile(OSError):
    """A trades file whose bytes stop being what its name says (zstd, DBN): raised after the
    trades read before that point, so a reader keeps them and reports the rest as lost."""


class UnsupportedFileError(ValueError):
    """A file that is not a trades file this project reads: its name (``.parquet``) or its DBN schema."""


class TruncatedFile(CorruptFile):
    """A file that ends inside a zstd frame or a DBN record: a copy or download that did not finish.
    (zstandard's own readers return what they decoded and say nothing; databento only warns.)"""


def csv_chunks(path: Path, chunk_size: int) -> Iterator[list[dict[str, Any]]]:
    """The file's rows in chunks of at most ``chunk_size``, fast while pandas can read it.

    Raises ``CorruptFile`` (``TruncatedFile`` for a cut one) after the last complete line
    before the bytes of a ``.zst`` file stop being zstd."""
    _check_header(path)
    rows_read, header = 0, None
    symbols: dict[Any, Any] = {}  # instrument_id -> the symbol its last row gave, to tell a cut symbol
    try:
        with open_binary(path) as stream:
            held = _LastLineHeld(stream)
            reader = pd.read_csv(
                held, chunksize=chunk_size, keep_default_na=False,
                dtype={"action": str, "side": str, "symbol": str, "ts_recv": str, "ts_event": str},
            )
            for frame in reader:
                _check_shape(frame)
                header = list(frame.columns)
                chunk = _typed_frame(frame)
                rows_read += len(chunk)
                _remember_symbols(symbols, frame)
                if chunk:  # a header alone reads as one empty frame
                    yield chunk
            if held.last_line is not None:
                if header is None:  # no frame to name the columns: the line-by-line reader has them
                    raise ValueError("a last line without its line end and no header read")
                yield [_unterminated_row(header, held.last_line, rows_read + 1, symbols)]
        return
    except pd.errors.EmptyDataError:  # no header, no rows: nothing to read, nothing lost
        return
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, CorruptFile):
        pass  # the lines from the failing chunk on are read one by one (up to the corruption, if any)
    yield from _line_by_line(path, chunk_size, rows_read, symbols)


class _LastLineHeld(io.RawIOBase):
    """The bytes of ``stream`` up to its last line end. A last line without one, after the header,
    is not passed on but kept in ``last_line`` for ``_unterminated_row`` to judge: pandas read the
    half row of a file cut inside it as a row, a made-up symbol (``NVD``) as a trade."""

    def __init__(self, stream: io.BufferedIOBase) -> None:
        self._stream = stream
        self._after_last_end = bytearray()  # bytes read after the last line end
        self._ready = memoryview(b"")  # bytes up to a line end, not yet passed on
        self._line_ends = False  # a line end was seen: what follows the last one is not the header
        self.last_line: bytes | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while not self._ready:
            data = self._stream.read(1 << 20)
            if not data:
                rest, self._after_last_end = bytes(self._after_last_end), bytearray()
                if self._line_ends and rest.strip():
                    self.last_line = rest
                    return 0
                self._ready = memoryview(rest)  # a header without a line end; blanks: as before
                if not rest:
                    return 0
                break
            searched = len(self._after_last_end)
            self._after_last_end += data
            end = self._after_last_end.rfind(b"\n", searched) + 1
            if end:
                self._line_ends = True
                self._ready = memoryview(bytes(self._after_last_end[:end]))
                del self._after_last_end[:end]
        count = min(len(buffer), len(self._ready))
        buffer[:count] = self._ready[:count]
        self._ready = self._ready[count:]
        return count


MAX_REMEMBERED_SYMBOLS = 100_000
"""Instruments whose last symbol a file's reader keeps (a whole US feed is about 10,000)."""


def _remember_symbols(symbols: dict[Any, Any], frame: pd.DataFrame) -> None:
    if len(symbols) >= MAX_REMEMBERED_SYMBOLS or frame.empty:
        return
    last = frame.drop_duplicates("instrument_id", keep="last")
    symbols.update(zip(last["instrument_id"].tolist(), last["symbol"].tolist()))


def _unterminated_row(header: list[str], raw: bytes, number: int, symbols: dict[Any, Any]) -> dict[str, Any]:
    """Row ``number``, the file's last line, which has no line end: a row when it is complete, else an
    unreadable line saying the file was cut inside it. Certainly cut: fewer fields than the header, the
    last field empty, a character or a quoted field left open, or a symbol that is the start of the
    symbol the file gave its instrument before (``NVD`` after ``NVDA`` rows of instrument 11667). A cut
    inside another last field (a number) cannot be told from a complete row."""
    def cut(why: str) -> dict[str, Any]:
        return unreadable_line(f"row {number} is cut: the file ends inside it, without a line end ({why})", raw)

    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            codecs.getincrementaldecoder("utf-8")().decode(raw, final=False)
        except UnicodeDecodeError:
            return _row(header, raw, number)  # not UTF-8 before its end either: says so
        return cut("inside a character")
    try:
        cells = next(csv.reader([text.rstrip("\r\n")], strict=True))
    except (csv.Error, StopIteration):
        return cut("inside a quoted field")
    fields = len(cells)
    if fields < len(header) or (fields == len(header) and cells[-1] == ""):
        return cut(f"{fields - (cells[-1] == '')} of {len(header)} fields")
    row = _row(header, raw, number)
    if fields == len(header) and header[-1] == "symbol" and UNREADABLE not in row:
        known = symbols.get(row.get("instrument_id"))
        symbol = row["symbol"]
        if isinstance(known, str) and known != symbol and known.startswith(symbol):
            return cut(f"its symbol {symbol!r} is the start of {known!r}, the symbol of instrument "
                       f"{row['instrument_id']} on the rows before")
    return row


def _check_header(path: Path) -> None:
    """``CorruptFile`` when the first line is not a header naming every field of a trade. A file
    without its header (cut off, or rows appended to another file) read its first trade as the header
    and each other row as a dead letter saying only that the symbol was missing; one without the
    price column gave one dead letter per row. A first line that is not UTF-8 CSV is left to the reader,
    which says so."""
    with open_binary(path) as stream:
        first = stream.readline()
        while first and not first.strip():
            first = stream.readline()
    if not first:
        return  # an empty file: nothing to read, nothing lost
    try:
        text = first.decode("utf-8-sig").rstrip("\r\n")
        header = next(csv.reader([text]))
    except (UnicodeDecodeError, StopIteration, csv.Error):
        return
    if not text.strip():
        return  # a byte-order mark alone
    missing = [name for name in TRADE_FIELDS if name not in header]
    if missing:
        shown = repr(text if len(text) <= 80 else text[:80] + "...")
        lacks = "is not a header" if len(missing) == len(TRADE_FIELDS) else f"has no column {', '.join(missing)}"
        raise CorruptFile(f"{path.name} is not a Databento trades CSV: its first line {lacks} ({shown})")


def _check_shape(frame: pd.DataFrame) -> None:
    """Refuse what pandas would read wrong rather than fail on: a first data row with one field
    more than the header (pandas then takes the first column as an index and shifts every row),
    and a quoted field holding a line break (rows would no longer be lines, and the line-by-line
    reader could not take over where pandas stopped). ``ValueError`` sends the chunk there."""
    if not isinstance(frame.index, pd.RangeIndex):
        raise ValueError("the header has fewer fields than the rows")
    for name in ("action", "side", "symbol"):  # a few distinct values each: look at those
        if name in frame.columns and any("\n" in value or "\r" in value for value in frame[name].unique()):
            raise ValueError(f"a quoted {name} holds a line break")


def _typed_frame(frame: pd.DataFrame) -> list[dict[str, Any]]:
    columns = list(frame.columns)
    values = []
    for name in columns:
        column = frame[name]
        if _column_is_clean(name, column):
            values.append(column.tolist())
        else:
            values.append([typed_cell(name, cell) for cell in column.tolist()])
    return [dict(zip(columns, row)) for row in zip(*values)]


def _column_is_clean(name: str, column: pd.Series) -> bool:
    if name in INT_FIELDS:
        return pd.api.types.is_integer_dtype(column.dtype)
    if name == "price":
        return pd.api.types.is_float_dtype(column.dtype) or pd.api.types.is_integer_dtype(column.dtype)
    if name in TIMESTAMP_FIELDS:  # the wire format is 30 characters; integer nanoseconds are 19 digits
        return bool((column.str.len() == 30).all())
    return True


JSON_INTEGER_LOW, JSON_INTEGER_HIGH = -2**63, 2**64 - 1
"""The integers JSON input carries as integers: orjson reads a longer one as a float, and cannot
write a Python integer beyond them at all (a CSV size of 10**23 once stopped the backtest and the
replay with ``TypeError: Integer exceeds 64-bit range`` when the trade was encoded)."""


def typed_cell(name: str, cell: Any) -> Any:
    """A CSV cell (text, or a number pandas read) as the JSON input would carry it."""
    if name in INT_FIELDS:
        if isinstance(cell, str):
            text = cell.strip()
            digits = text[1:] if text[:1] in "+-" else text
            if not text.isascii():  # int() and float() would read other scripts' digits
                return cell
            if digits.isdigit():
                return _json_integer(text)
            try:
                cell = float(text)
            except ValueError:
                return cell
        if isinstance(cell, float) and math.isfinite(cell) and cell.is_integer() and _json_integral(cell):
            return int(cell)
        if type(cell) is int and not _json_integral(cell):  # pandas reads a long integer column as Python ints
            return float(cell)
        return cell
    if name == "price" and isinstance(cell, str) and cell.isascii():
        try:
            return float(cell)
        except ValueError:
            return cell
    if name in TIMESTAMP_FIELDS and isinstance(cell, str) and cell.isascii() and cell.isdigit():
        return _json_integer(cell)
    if type(cell) is int and not _json_integral(cell):
        return float(cell)
    return cell


def _json_integral(value: int | float) -> bool:
    return JSON_INTEGER_LOW <= value <= JSON_INTEGER_HIGH


def _json_integer(text: str) -> int | float:
    """ASCII digits (with a sign) as JSON input would carry them: an integer within 64 bits, else a
    float (``inf`` past 1e308). ``int()`` refuses more than 4,300 digits with a ``ValueError``, which
    cost the rest of the file; ``float()`` takes any length."""
    if len(text) > 21:  # 2**64 has 20 digits
        return float(text)
    value = int(text)
    return value if _json_integral(value) else float(value)


def _line_by_line(path: Path, chunk_size: int, skip_rows: int,
                  symbols: dict[Any, Any]) -> Iterator[list[dict[str, Any]]]:
    """Rows after the first ``skip_rows`` (blank lines do not count, as for pandas); ``symbols``
    holds the last symbol of each instrument in the rows skipped, and takes those of the others."""
    with open_binary(path) as stream:
        header_bytes = stream.readline()
        while header_bytes and not header_bytes.strip():  # blank lines before the header, as pandas skips them
            header_bytes = stream.readline()
        try:
            header = next(csv.reader([header_bytes.decode("utf-8-sig")]))
        except (UnicodeDecodeError, StopIteration, csv.Error):
            yield [unreadable_line("the header line is not UTF-8 CSV: the file cannot be read", header_bytes)]
            return
        chunk: list[dict[str, Any]] = []
        rows = 0
        try:
            for raw in stream:
                if not raw.strip():
                    continue
                rows += 1
                if rows <= skip_rows:
                    continue
                if raw.endswith(b"\n"):
                    row = _row(header, raw, rows)
                    if UNREADABLE not in row and len(symbols) < MAX_REMEMBERED_SYMBOLS:
                        symbols[row.get("instrument_id")] = row.get("symbol")
                else:  # the last line, without its line end
                    row = _unterminated_row(header, raw, rows, symbols)
                chunk.append(row)
                if len(chunk) == chunk_size:
                    yield chunk
                    chunk = []
        except CorruptFile:
            if chunk:  # the complete lines before the corruption
                yield chunk
            raise
        if chunk:
            yield chunk


def _row(header: list[str], raw: bytes, number: int) -> dict[str, Any]:
    """Row ``number`` of the file (blank lines not counted: the dead letter's offset)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return unreadable_line(f"row {number} is not UTF-8 text", raw)
    try:
        cells = next(csv.reader([text.rstrip("\r\n")], strict=True))
    except (csv.Error, StopIteration) as error:
        return unreadable_line(f"row {number} is not a CSV row: {error}", raw)
    if len(cells) != len(header):
        return unreadable_line(f"row {number} has {len(cells)} fields, the header {len(header)}", raw)
    return {name: typed_cell(name, cell) for name, cell in zip(header, cells)}


def open_binary(path: Path) -> io.BufferedReader:
    if not path.name.lower().endswith(".zst"):
        return open(path, "rb")
    return io.BufferedReader(_ZstdStream(path), buffer_size=1 << 20)


class _ZstdStream(io.RawIOBase):
    """The decompressed bytes of a ``.zst`` file (one frame or several), raising ``TruncatedFile``
    where the file ends inside a frame and ``CorruptFile`` where its bytes are not zstd."""

    READ_SIZE = 1 << 12
    """Compressed bytes fed at once: zstd gives nothing of a piece that fails. A one-frame day
    corrupt in its middle lost 51,000 of the 107,000 trades before the damage at 1 MiB; at 64 KiB a
    DBN file lost the 16,000 records of its first 64 KiB (about 6,800 of real trades). 4 KiB reads
    a real day's CSV as fast (0.57 s against 0.92 s for 2025-05-09)."""

    def __init__(self, path: Path) -> None:
        import zstandard

        self._file = open(path, "rb")
        self._new_frame = zstandard.ZstdDecompressor().decompressobj
        self._not_zstd = zstandard.ZstdError
        self._frame = self._new_frame()
        self._in_frame = False  # bytes of an unfinished frame have been fed
        self._pending, self._taken = b"", 0  # decompressed bytes, and how many of them were read
        self._corrupt: CorruptFile | None = None  # raised once the bytes before it are read
        self._path = path

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        while self._taken == len(self._pending):
            if self._corrupt is not None:
                raise self._corrupt
            compressed = self._file.read(self.READ_SIZE)
            if not compressed:
                if self._in_frame:
                    raise TruncatedFile(f"{self._path.name} ends inside a zstd frame: the file was cut")
                return 0
            self._pending, self._taken = self._decompress(compressed), 0
        count = min(len(buffer), len(self._pending) - self._taken)
        buffer[:count] = memoryview(self._pending)[self._taken:self._taken + count]
        self._taken += count
        return count

    def _decompress(self, compressed: bytes) -> bytes:
        parts = []
        while compressed:
            self._in_frame = True
            try:
                parts.append(self._frame.decompress(compressed))
            except self._not_zstd as error:
                offset = self._file.tell() - len(compressed)
                self._corrupt = CorruptFile(f"{self._path.name} is not zstd data after byte {offset:,} ({error})")
                break
            if not self._frame.eof:
                break
            compressed, self._in_frame = self._frame.unused_data, False
            self._frame = self._new_frame()
        return b"".join(parts)

    def close(self) -> None:
        self._file.close()
        super().close()
