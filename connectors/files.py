"""Read Databento trades files: ``.csv``, ``.csv.zst``, ``.dbn``, ``.dbn.zst``.

Every reader yields trades as plain dicts in the JSON shape of ``connectors.codec``
(ISO-8601 nanosecond timestamps, float prices), in file order, in chunks, so a
day of trades never has to sit in memory as Python objects all at once.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from threading import Lock
from typing import Any

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.codec import TRADE_FIELDS, as_trade_message, encode_trade, format_timestamp_ns
from connectors.csv_trades import UNREADABLE, CorruptFile, TruncatedFile, _open_binary, csv_chunks, unreadable_line
from connectors.messages import DeadLetter, Origin, TradeMessage

SUPPORTED_SUFFIXES = (".csv", ".csv.zst", ".dbn", ".dbn.zst")
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"


class UnsupportedFileError(ValueError):
    pass


def file_kind(path: str | Path) -> str:
    name = str(path).lower()
    if name.endswith((".csv", ".csv.zst")):
        return "csv"
    if name.endswith((".dbn", ".dbn.zst")):
        return "dbn"
    raise UnsupportedFileError(
        f"{path}: unsupported file type; expected one of {', '.join(SUPPORTED_SUFFIXES)}"
    )


def unusable_files(paths: list[str] | list[Path]) -> str | None:
    """Why the files cannot be read as trades, or None: checked before the first is read by a
    command that takes several (the replay, the evaluation), so a missing or unsupported file
    found later does not cut its work short after the earlier ones."""
    missing = [str(path) for path in paths if not Path(path).is_file()]
    if missing:
        return f"not a file: {', '.join(missing)}"
    unsupported = [str(path) for path in paths if not str(path).lower().endswith(SUPPORTED_SUFFIXES)]
    if unsupported:
        return f"not a trades file ({', '.join(SUPPORTED_SUFFIXES)}): {', '.join(unsupported)}"
    return None


def iter_trade_chunks(path: str | Path, chunk_size: int = 20_000) -> Iterator[list[dict[str, Any]]]:
    """Yield the trades of one file as lists of at most ``chunk_size`` dicts.

    Raises ``CorruptFile`` (an ``OSError``; ``TruncatedFile`` for a cut file) after the trades
    read before the bytes stop being zstd or DBN: a reader keeps those and reports the rest lost."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if file_kind(path) == "csv":
        yield from csv_chunks(path, chunk_size)
    else:
        yield from _dbn_chunks(path, chunk_size)


def unreadable_rest(path: Path, trades_read: int, error: Exception) -> str:
    """Why the rest of a file is lost, in the same words for the backtest's dead letter and the replay."""
    return f"{path.name} cannot be read after its first {trades_read:,} trades: {type(error).__name__}: {error}"


def iter_trades(path: str | Path) -> Iterator[dict[str, Any]]:
    for chunk in iter_trade_chunks(path):
        yield from chunk


def _dbn_chunks(path: Path, chunk_size: int) -> Iterator[list[dict[str, Any]]]:
    """The records' bytes are read here, ``chunk_size`` records at a time, and each chunk decoded by
    databento as a DBN file of its own (the metadata and those records). Reading through databento
    lost every record of the chunk holding the damage: a ``.zst`` file corrupt in its middle gave none
    of the up to 20,000 (the replay's chunk) readable records before it, and one record databento
    could not decode (a byte of its action that is not text) cost the rest of the file. Here the zstd
    stream gives every byte before the damage (``CorruptFile`` after them), and a chunk databento
    refuses is split until each record it refuses is an unreadable line of its own."""
    import databento  # imported lazily: only DBN files need it

    not_dbn = _dbn_decoding_errors()
    with _open_dbn(path) as stream:
        metadata, damage = _read_up_to(stream, 8)
        if len(metadata) == 8 and metadata[:3] == b"DBN":
            length = int.from_bytes(metadata[4:8], "little")
            rest, damage = _read_up_to(stream, length)
            metadata += rest
        if damage is not None:  # the zstd stream's: cut or corrupt inside the metadata
            raise damage
        if len(metadata) < 8 or metadata[:3] != b"DBN":
            raise CorruptFile(f"{path.name} is not a DBN file (it does not start with a DBN header)")
        try:
            if len(metadata) < 8 + length:
                raise ValueError("the file ends inside its metadata")
            store = databento.DBNStore.from_bytes(metadata)
        except not_dbn as error:
            raise CorruptFile(f"{path.name} is not a DBN file ({error})") from None
        if store.schema is None or str(store.schema) != "trades":
            raise UnsupportedFileError(f"{path}: DBN schema is {store.schema}, expected trades")
        if not store.metadata.mappings:  # every record was a dead letter saying only that its symbol was nan
            raise UnsupportedFileError(f"{path.name}: the DBN file has no symbol mappings, so none of its trades "
                                       "has a symbol (request it with its symbols, stype_in raw_symbol)")
        from databento_dbn import TradeMsg

        size = TradeMsg.size_hint + (8 if store.metadata.ts_out else 0)
        pending, number = b"", 1  # bytes read and not yet taken apart, and the file's number of their first record
        while True:
            data, damage = _read_up_to(stream, chunk_size * size)
            at_end = damage is not None or len(data) < chunk_size * size
            pending += data
            records, used = _dbn_layout(pending, size, at_end)
            items, count = _dbn_items(databento, metadata, pending, records, size, number, not_dbn)
            for start in range(0, len(items), chunk_size):
                yield items[start:start + chunk_size]
            pending, number = pending[used:], number + count
            if damage is not None:
                raise damage
            if at_end:
                if pending:
                    raise TruncatedFile(f"{path.name} ends inside a DBN record: the file was cut")
                return


TRADE_RTYPE = 0x00
"""The record type of a trade (``RType.MBP_0``): what a trades file holds."""


@functools.cache
def _record_types() -> dict[int, str]:
    """Every record type DBN knows, by its number: ``{1: "mbp-1", ...}``."""
    from databento_dbn import RType

    return {int(getattr(RType, name)): str(getattr(RType, name)) for name in dir(RType) if name.isupper()}


def _dbn_layout(data: bytes, size: int, at_end: bool) -> tuple[list[tuple[int, int, str]], int]:
    """The whole records at the start of ``data`` as (offset, length, kind), and the bytes they take.
    The kind is ``trades`` for a run of records with a trade's record type, at a trade's length
    (databento decodes them, and may refuse one); ``other`` for a record whose header gives another
    known type and a length that leads to the next record's header (a trade's, or one like its own)
    or to the end of the file; ``damaged`` for any other header, taken at a trade's length so that
    bytes damaged in place cost their own record only. ``at_end``: no bytes follow ``data``."""
    import numpy as np

    types = _record_types()
    records: list[tuple[int, int, str]] = []
    offset = 0
    while len(data) - offset >= 2:
        whole = min((len(data) - offset) // size, 4096)  # a window: records of other types one in two stay linear
        if whole and data[offset + 1] == TRADE_RTYPE:  # the run of trade headers from here, found at once
            types_at = np.frombuffer(data, np.uint8, whole * size, offset).reshape(whole, size)[:, 1]
            others = np.flatnonzero(types_at != TRADE_RTYPE)
            run = int(others[0]) if len(others) else whole
            if run:
                records.append((offset, run * size, "trades"))
                offset += run * size
                continue
        length, rtype = data[offset] * 4, data[offset + 1]
        kind = "damaged"
        if rtype != TRADE_RTYPE and rtype in types and length >= 16:
            after = offset + length
            if after + 2 <= len(data):
                following = data[after] * 4, data[after + 1]
                kind = "other" if following in ((size, TRADE_RTYPE), (length, rtype)) else kind
            elif not at_end:
                break  # the next header decides: wait for it
            elif after == len(data):  # the file's last record
                kind = "other"
        length = length if kind == "other" else size
        if offset + length > len(data):
            break
        records.append((offset, length, kind))
        offset += length
    return records, offset


def _dbn_items(databento, metadata: bytes, data: bytes, records: list[tuple[int, int, str]], size: int,
               first: int, not_dbn: tuple[type[Exception], ...]) -> tuple[list[dict[str, Any]], int]:
    """The trades of ``records`` (of ``data``; the first is record ``first`` of the file), an unreadable
    line for each record that is not a trade (a trades file holding an MBP-1 record read it as the next
    80 bytes of trades, and said the file was cut), and how many records they were. The trades are
    decoded at once, wherever they lie among the others (one call to databento costs milliseconds)."""
    types = _record_types()
    slots: list[dict[str, Any] | None] = []  # None: the next trade decoded
    trades, numbers = [], []
    number = first
    for offset, length, kind in records:
        if kind == "trades":
            count = length // size
            trades.append(data[offset:offset + length])
            numbers.extend(range(number, number + count))
            slots.extend([None] * count)
            number += count
            continue
        length_given, rtype = data[offset] * 4, data[offset + 1]
        if kind == "other":
            reason = (f"record {number:,} is not a trade: its record type is {types[rtype]} (0x{rtype:02x}), "
                      "in a file of the trades schema")
        elif rtype in types:
            reason = (f"record {number:,} is not a DBN trade (its header gives record type {types[rtype]} "
                      f"(0x{rtype:02x}) and {length_given} bytes, but no record follows there: read as a damaged "
                      "trade)")
        else:
            reason = (f"record {number:,} is not a DBN trade (its header gives record type 0x{rtype:02x}, which DBN "
                      "does not have: read as a damaged trade)")
        slots.append(unreadable_line(reason, data[offset:offset + length]))
        number += 1
    if len(numbers) == len(slots):  # nothing but trades: the usual file
        return _dbn_records(databento, metadata, b"".join(trades), size, numbers, not_dbn), len(slots)
    decoded = iter(_dbn_records(databento, metadata, b"".join(trades), size, numbers, not_dbn))
    return [next(decoded) if slot is None else slot for slot in slots], len(slots)


def _open_dbn(path: Path) -> io.BufferedIOBase:
    """The file's DBN bytes: through ``_ZstdStream`` when it starts as zstd does (whatever its name says)."""
    with open(path, "rb") as file:
        compressed = file.read(4) == ZSTD_MAGIC
    return _open_binary(path) if compressed else open(path, "rb")


def _read_up_to(stream: io.BufferedIOBase, count: int) -> tuple[bytes, CorruptFile | None]:
    """``count`` bytes, fewer at the end of the stream, and the ``CorruptFile`` the stream raised
    after the bytes before it (none of them lost), if any."""
    raw = getattr(stream, "raw", stream)
    data = bytearray()
    view = bytearray(min(count, 1 << 20))
    try:
        while len(data) < count:
            got = raw.readinto(memoryview(view)[:count - len(data)])
            if not got:
                break
            data += view[:got]
    except CorruptFile as error:
        return bytes(data), error
    return bytes(data), None


def _dbn_records(databento, metadata: bytes, data: bytes, size: int, numbers: Sequence[int],
                 not_dbn: tuple[type[Exception], ...]) -> list[dict[str, Any]]:
    """The trades of whole records ``data`` (record ``numbers[i]`` of the file is the i-th); a record
    databento cannot decode is an unreadable line with the reason and its bytes, and so is a trade
    whose instrument the file maps to no symbol on its day (its dead letter said only that the symbol
    was nan)."""
    if not data:
        return []
    try:
        frame = _dbn_frame(databento.DBNStore.from_bytes(metadata + data))
    except not_dbn as error:
        count = len(data) // size
        if count == 1:
            return [unreadable_line(f"record {numbers[0]:,} is not a DBN trade ({error})", data)]
        half = count // 2
        return (_dbn_records(databento, metadata, data[:half * size], size, numbers[:half], not_dbn)
                + _dbn_records(databento, metadata, data[half * size:], size, numbers[half:], not_dbn))
    trades = [_dbn_trade(row) for row in frame.reset_index().to_dict("records")]
    for index, trade in enumerate(trades):
        if not isinstance(trade.get("symbol"), str):
            trades[index] = unreadable_line(
                f"record {numbers[index]:,}: the DBN file has no symbol mapping for instrument_id "
                f"{trade.get('instrument_id')} on {trade['ts_recv'][:10]}", data[index * size:(index + 1) * size])
    return trades


def _dbn_decoding_errors() -> tuple[type[Exception], ...]:
    from databento import BentoError
    from databento_dbn import DBNError
    from zstandard import ZstdError

    return BentoError, DBNError, ZstdError, ValueError  # ValueError: an empty file, a field that is not text or time


def _dbn_frame(store: Any) -> Any:
    """All the store's records as one frame."""
    with warnings.catch_warnings():
        # databento calls DataFrame.set_index(inplace=True), which pandas 3.1 deprecates.
        warnings.filterwarnings("ignore", message="The inplace keyword", category=Warning)
        return store.to_df(price_type="float", pretty_ts=False, map_symbols=True)


def _dbn_trade(row: dict[str, Any]) -> dict[str, Any]:
    trade = {name: row[name] for name in TRADE_FIELDS if name in row}
    trade["ts_recv"] = format_timestamp_ns(trade["ts_recv"])
    trade["ts_event"] = format_timestamp_ns(trade["ts_event"])
    return trade


class TradeFileSource(FixedPartitionedSource):
    """Databento files as a Bytewax source of ``TradeMessage | DeadLetter``.

    All files are one partition read in the order given, so each instrument's
    trades keep their order even when a symbol spans several files (days). The
    resume state is the number of trades already emitted.
    """

    def __init__(self, paths: Sequence[str | Path], chunk_size: int = 5_000) -> None:
        self.paths = [Path(path) for path in paths]
        for path in self.paths:
            file_kind(path)
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such file")
            if not path.is_file():  # a pipe without a writer held the backtest for ever; a directory read as a trade
                raise UnsupportedFileError(f"{path}: not a regular file (a directory, a pipe or a device)")
        self.chunk_size = chunk_size
        self.trades_read = 0
        """Trades emitted in this process (for reports)."""

    def list_parts(self) -> list[str]:
        return ["files"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _TradeFilePartition:
        return _TradeFilePartition(self, resume_state or 0)


class _TradeFilePartition(StatefulSourcePartition):
    def __init__(self, source: TradeFileSource, skip: int) -> None:
        self._source = source
        self._batches = self._read(source.paths, source.chunk_size, skip)
        self._emitted = skip

    @staticmethod
    def _read(paths: list[Path], chunk_size: int, skip: int) -> Iterator[list[TradeMessage | DeadLetter]]:
        for path in paths:
            line, source = 0, str(path)
            chunks = iter_trade_chunks(path, chunk_size)
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except Exception as error:  # a file broken past repair (a cut zstd frame, a corrupt DBN)
                    if skip:  # emitted before the restart being resumed
                        skip -= 1
                    else:
                        reason = unreadable_rest(path, line, error)
                        yield [DeadLetter(reason, "decode", Origin(source, 0, line + 1), b"")]
                    break  # on to the next file
                first_line, line = line, line + len(chunk)
                if skip >= len(chunk):
                    skip -= len(chunk)
                    continue
                yield [
                    _message(trade, Origin(source, 0, first_line + offset + 1))
                    for offset, trade in enumerate(chunk[skip:], start=skip)
                ]
                skip = 0

    def next_batch(self) -> list[TradeMessage | DeadLetter]:
        batch = next(self._batches)  # StopIteration ends the input
        self._emitted += len(batch)
        self._source.trades_read += len(batch)
        return batch

    def snapshot(self) -> int:
        return self._emitted


def _message(trade: dict[str, Any], origin: Origin) -> TradeMessage | DeadLetter:
    """A file trade as a message. ``raw`` stays empty: a file line has no wire bytes, and
    encoding every trade as JSON only for the rare dead letter cost a tenth of the
    backtest; the dataflow encodes it when a dead letter needs it."""
    symbol = trade.get("symbol")
    if type(symbol) is str and symbol.strip():
        return TradeMessage(symbol, trade, origin, b"")
    if UNREADABLE in trade:  # a line of the file that is not a row of its fields
        return DeadLetter(trade[UNREADABLE], "decode", origin, trade["raw"])
    message = as_trade_message(trade, origin, b"")
    return DeadLetter(message.reason, message.stage, origin, encode_trade(trade)) if isinstance(message, DeadLetter) else message


class JsonLinesSink(DynamicSink):
    """Appends one JSON document per item to a file (``encode`` turns an item into bytes)."""

    def __init__(self, path: str | Path, encode: Callable[[Any], bytes]) -> None:
        self.path = Path(path)
        self.encode = encode

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _JsonLinesPartition:
        return _JsonLinesPartition(self.path, self.encode)


_FILE_LOCKS: dict[Path, Lock] = {}


class _JsonLinesPartition(StatelessSinkPartition):
    def __init__(self, path: Path, encode: Callable[[Any], bytes]) -> None:
        self._lock = _FILE_LOCKS.setdefault(path.resolve(), Lock())
        self._file = path.open("ab")
        self._encode = encode

    def write_batch(self, items: list[Any]) -> None:
        data = b"".join(self._encode(item) + b"\n" for item in items)
        with self._lock:
            self._file.write(data)
            self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_json_lines(path: Path) -> list[dict]:
    """Every JSON object of a JSON-lines file the backtest wrote, blank lines skipped."""
    return [orjson.loads(line) for line in Path(path).read_bytes().splitlines() if line.strip()]


def keep_final_states(path: Path) -> list[dict]:
    """Rewrite a file of incident updates as the last state of each incident, in order of opening."""
    final: dict[str, dict] = {}
    for update in read_json_lines(path):
        known = final.get(update["incident_id"])
        if known is None or update["revision"] >= known["revision"]:
            final[update["incident_id"]] = update
    Path(path).write_bytes(b"".join(orjson.dumps(incident) + b"\n" for incident in final.values()))
    return list(final.values())
