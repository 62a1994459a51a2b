"""Databento trades DBN files (``.dbn``, ``.dbn.zst``) as chunks of trade dicts, whatever the file holds.

The records are taken apart here, by their headers, and their bytes handed to databento a chunk
at a time as a DBN file of its own (the metadata and those records): a file damaged in its
middle keeps every record before the damage, a record of another type is a dead letter naming its
type, and a record databento refuses costs only itself. Trades come out in the JSON shape of
``connectors.codec``, like the CSV reader's (``connectors.csv_trades``).
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from connectors.codec import TRADE_FIELDS, format_timestamp_ns
from connectors.csv_trades import CorruptFile, TruncatedFile, UnsupportedFileError, open_binary, unreadable_line

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
UNDEF_PRICE = 2**63 - 1
"""Databento's price of a record that has none (``databento_dbn.UNDEF_PRICE``: i64 max)."""


def dbn_chunks(path: Path, chunk_size: int) -> Iterator[list[dict[str, Any]]]:
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
    return open_binary(path) if compressed else open(path, "rb")


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
    databento decodes that is still none (``_unusable_trade``)."""
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
        reason = _unusable_trade(trade, data, index * size)
        if reason is not None:
            record = data[index * size:(index + 1) * size]
            trades[index] = unreadable_line(f"record {numbers[index]:,}: {reason}", record)
    return trades


PRICE_OFFSET = 16
"""Where a trade record holds its price (a little-endian i64 of 1e-9 units): after its 16-byte header."""


def _unusable_trade(trade: dict[str, Any], data: bytes, start: int) -> str | None:
    """Why a record databento decoded is still no trade, or None. databento reads a price of
    ``UNDEF_PRICE`` (no price) as NaN, which the engine rejected as a number that is not finite,
    far from the file; and an instrument the file maps to no symbol its dead letter said was nan.
    The record starts at ``start`` in ``data``."""
    price = trade.get("price")
    if price != price and _price_at(data, start + PRICE_OFFSET) == UNDEF_PRICE:  # NaN: databento's no price
        return f"its price is undefined (UNDEF_PRICE, {UNDEF_PRICE}): the record gives no trade price"
    if not isinstance(trade.get("symbol"), str):
        return (f"the DBN file has no symbol mapping for instrument_id {trade.get('instrument_id')} "
                f"on {trade['ts_recv'][:10]}")
    return None


def _price_at(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset:offset + 8], "little", signed=True)


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
