"""Trade files are read in chunks of at most the asked size, the same trades whatever the size."""

from __future__ import annotations

import math
import re
from pathlib import Path

import orjson
import pytest

from connectors.csv_trades import UNREADABLE
from connectors.files import UnsupportedFileError, iter_trade_chunks, iter_trades, keep_final_states, read_json_lines
from dbn_records import DBN_START, dbn_metadata, dbn_other, dbn_trade, write_dbn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


@pytest.mark.parametrize("name, trades", [
    ("nvda-20201228.trades.dbn.zst", 4),
    ("nvda-20250509-open.csv.zst", 4_000),
])
@pytest.mark.parametrize("chunk_size", [1, 3, 1_000, 100_000])
def test_chunks_hold_at_most_their_size_and_join_to_the_whole_file(name, trades, chunk_size):
    chunks = list(iter_trade_chunks(FIXTURES / name, chunk_size))
    assert all(1 <= len(chunk) <= chunk_size for chunk in chunks)
    assert len(chunks) == -(-trades // chunk_size)  # every chunk full but the last
    assert [trade for chunk in chunks for trade in chunk] == list(iter_trades(FIXTURES / name))


def test_dbn_trades_are_plain_dicts_in_the_json_shape():
    first = next(iter_trades(FIXTURES / "nvda-20201228.trades.dbn.zst"))
    assert first == {
        "ts_recv": "2020-12-28T09:05:12.576701886Z", "ts_event": "2020-12-28T09:05:12.576690768Z", "rtype": 0,
        "publisher_id": 2, "instrument_id": 6155, "action": "T", "side": "B", "depth": 0, "price": 521.0,
        "size": 36, "flags": 130, "ts_in_delta": 11118, "sequence": 362933, "symbol": "NVDA",
    }


@pytest.mark.parametrize("name, error, message", [
    ("trades.parquet", UnsupportedFileError, "unsupported file type"),
    ("missing.csv", FileNotFoundError, "no such file"),
])
def test_a_file_that_cannot_be_read_is_named(tmp_path, name, error, message):
    if name.endswith(".parquet"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(error, match=message):
        list(iter_trade_chunks(tmp_path / name))


def test_an_incident_file_keeps_each_incidents_last_revision_in_order_of_opening(tmp_path):
    path = tmp_path / "incidents.jsonl"
    updates = [{"incident_id": "B", "revision": 0}, {"incident_id": "A", "revision": 0},
               {"incident_id": "B", "revision": 2}, {"incident_id": "B", "revision": 1},  # a repeat after a restart
               {"incident_id": "A", "revision": 1}]
    path.write_bytes(b"\n".join(orjson.dumps(update) for update in updates) + b"\n\n")
    expected = [{"incident_id": "B", "revision": 2}, {"incident_id": "A", "revision": 1}]
    assert keep_final_states(path) == expected == read_json_lines(path)


# Hostile CSV files: every line is a trade or a reason, and one bad cell or line costs only itself.

HEADER = ("ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,depth,price,size,flags,ts_in_delta,"
          "sequence,symbol")


def csv_line(sequence: int, size: str = "100", stamp: str = "2025-05-09T13:30:00.892370366Z") -> str:
    return f"{stamp},{stamp},0,2,11667,T,B,0,117.33,{size},0,0,{sequence},NVDA"


def read_lines(tmp_path, lines: list[bytes | str], chunk_size: int = 5) -> list[dict]:
    path = tmp_path / "day.csv"
    path.write_bytes(b"\n".join(line if isinstance(line, bytes) else line.encode() for line in lines) + b"\n")
    return [row for chunk in iter_trade_chunks(path, chunk_size) for row in chunk]


@pytest.mark.parametrize("bad, reason", [
    (csv_line(6) + ",extra", "row 6 has 15 fields, the header 14"),
    (b"\xff\xfe" + csv_line(6).encode(), "row 6 is not UTF-8 text"),
    ('2025-05-09T13:30:00.892370366Z,"open quote,0,2', "row 6 is not a CSV row: unexpected end of data"),
])
def test_a_line_that_is_not_a_row_is_a_reason_and_the_others_are_read(tmp_path, bad, reason):
    rows = read_lines(tmp_path, [HEADER, *[csv_line(n) for n in range(1, 6)], bad,
                                 *[csv_line(n) for n in range(7, 13)]])
    assert len(rows) == 12
    (unreadable,) = [row for row in rows if UNREADABLE in row]
    assert unreadable[UNREADABLE].startswith(reason) and rows.index(unreadable) == 5
    assert [row["sequence"] for row in rows if UNREADABLE not in row] == [*range(1, 6), *range(7, 13)]
    assert all(type(row["size"]) is int and type(row["price"]) is float for row in rows if UNREADABLE not in row)


@pytest.mark.parametrize("cell, typed", [
    ("100.0", 100), ("1e3", 1000), ("1.5", 1.5), ("--5", "--5"), ("\u00b2", "\u00b2"), ("\u0665", "\u0665"),
])
def test_an_odd_integer_cell_is_typed_as_json_would_be_and_costs_only_its_row(tmp_path, cell, typed):
    rows = read_lines(tmp_path, [HEADER, *[csv_line(n) for n in range(1, 10)], csv_line(10, size=cell)], 100)
    assert [row["size"] for row in rows] == [100] * 9 + [typed]
    assert type(rows[-1]["size"]) is type(typed)


def test_timestamps_in_integer_nanoseconds_are_integers(tmp_path):
    rows = read_lines(tmp_path, [HEADER, csv_line(1), csv_line(2, stamp="1746797400892370366")])
    assert [row["ts_event"] for row in rows] == ["2025-05-09T13:30:00.892370366Z", 1746797400892370366]


@pytest.mark.parametrize("content", [b"", HEADER.encode() + b"\n"])
def test_an_empty_file_or_a_header_alone_has_no_trades(tmp_path, content):
    path = tmp_path / "day.csv"
    path.write_bytes(content)
    assert list(iter_trade_chunks(path)) == []


def test_a_first_row_with_a_field_too_many_is_a_reason_not_a_shifted_file(tmp_path):
    """pandas would take the first column as an index and shift every row by one column."""
    rows = read_lines(tmp_path, [HEADER, csv_line(1) + ",extra", *[csv_line(n) for n in range(2, 9)]], 100)
    assert rows[0][UNREADABLE] == "row 1 has 15 fields, the header 14"
    assert [row["sequence"] for row in rows[1:]] == list(range(2, 9)) and rows[1]["symbol"] == "NVDA"


def test_a_quoted_line_break_costs_its_lines_and_no_row_is_read_twice(tmp_path):
    quoted = csv_line(3).replace(",NVDA", ',"NV\nDA"')
    rows = read_lines(tmp_path, [HEADER, csv_line(1), csv_line(2), quoted, *[csv_line(n) for n in range(4, 12)],
                                 csv_line(12) + ",extra", csv_line(13)], 5)
    sequences = [row.get("sequence") for row in rows if UNREADABLE not in row]
    assert sequences == [1, 2, *range(4, 12), 13]
    assert [row[UNREADABLE] for row in rows if UNREADABLE in row] == [
        "row 3 is not a CSV row: unexpected end of data", "row 4 has 1 fields, the header 14",
        "row 13 has 15 fields, the header 14"]


def test_blank_lines_before_the_header_and_between_rows_are_skipped(tmp_path):
    rows = read_lines(tmp_path, ["", "  ", HEADER, csv_line(1), "", csv_line(2) + ",extra", csv_line(3)], 2)
    assert [row.get("sequence", row.get(UNREADABLE)) for row in rows] == [1, "row 2 has 15 fields, the header 14", 3]


@pytest.mark.parametrize("chunk_size", [7, 100_000])
def test_a_cut_zst_file_gives_its_complete_lines_then_says_it_was_cut(tmp_path, chunk_size):
    import zstandard

    from connectors.csv_trades import TruncatedFile

    text = "\n".join([HEADER, *[csv_line(n) for n in range(1, 2001)]]).encode() + b"\n"
    compressor = zstandard.ZstdCompressor(write_content_size=False)
    whole = b"".join(compressor.compress(text[start:start + 4096]) for start in range(0, len(text), 4096))
    path = tmp_path / "cut.csv.zst"
    path.write_bytes(whole[:-10])  # the last frame cut short
    read = []
    with pytest.raises(TruncatedFile, match="cut.csv.zst ends inside a zstd frame"):
        for chunk in iter_trade_chunks(path, chunk_size):
            read += chunk
    complete = text[:len(text) - len(text) % 4096].count(b"\n") - 1  # the rows of the whole frames
    readable = [row for row in read if UNREADABLE not in row]
    assert [row["sequence"] for row in readable] == list(range(1, len(readable) + 1))
    assert len(readable) >= complete and len(read) - len(readable) <= 1  # at most the cut line


LAST = csv_line(6)
CUT = "row 6 is cut: the file ends inside it, without a line end"


@pytest.mark.parametrize("kept, reason", [
    (LAST, None),  # every field, no line end: how many writers end a file
    (LAST + "\r", None),  # a CR LF file cut between the two
    (LAST[:-1], f"{CUT} (its symbol 'NVD' is the start of 'NVDA', the symbol of instrument 11667 on the rows before)"),
    (LAST[:-3], f"{CUT} (its symbol 'N' is the start of 'NVDA', the symbol of instrument 11667 on the rows before)"),
    (LAST[:-4], f"{CUT} (13 of 14 fields)"),  # a symbol of '' said only that the symbol was empty
    (LAST[:-5], f"{CUT} (13 of 14 fields)"),
    (LAST[:-6], f"{CUT} (12 of 14 fields)"),
    (LAST[:40], f"{CUT} (2 of 14 fields)"),
    (LAST[:1], f"{CUT} (1 of 14 fields)"),
    (LAST.replace(",NVDA", ',"NVDA"')[:-2], f"{CUT} (inside a quoted field)"),
    (LAST.replace("NVDA", "NVD\u00c5").encode()[:-1], f"{CUT} (inside a character)"),
], ids=["whole", "whole-cr", "symbol-NVD", "symbol-N", "symbol-empty", "sequence", "before-sequence",
        "timestamp", "first-byte", "quote", "character"])
@pytest.mark.parametrize("reader", ["pandas", "line by line"])
@pytest.mark.parametrize("name", ["day.csv", "day.csv.zst"])
def test_a_last_line_cut_short_is_a_reason_and_never_a_trade(tmp_path, kept, reason, reader, name):
    """A file still being written, or a copy that did not finish: pandas read the half line as a row, a
    dead letter saying only that the symbol was empty, or a trade of a made-up symbol ('NVD')."""
    import zstandard

    first = csv_line(1) + (",extra" if reader == "line by line" else "")  # a bad first row: read line by line
    lines = [HEADER, first, *[csv_line(n) for n in range(2, 6)]]
    text = "\n".join(lines).encode() + b"\n" + (kept if isinstance(kept, bytes) else kept.encode())
    path = tmp_path / name
    path.write_bytes(zstandard.ZstdCompressor().compress(text) if name.endswith(".zst") else text)
    for chunk_size in (1, 4, 100):
        rows = [row for chunk in iter_trade_chunks(path, chunk_size) for row in chunk]
        assert [row["sequence"] for row in rows[1:5]] == [2, 3, 4, 5] and len(rows) == 6
        if reason is None:
            assert (rows[5]["symbol"], rows[5]["sequence"], rows[5]["price"]) == ("NVDA", 6, 117.33)
        else:
            assert rows[5] == {UNREADABLE: reason, "raw": kept if isinstance(kept, bytes) else kept.encode()}


@pytest.mark.parametrize("content, read", [
    (HEADER + "\n" + csv_line(1)[:30], ["row 1 is cut: the file ends inside it, without a line end (1 of 14 fields)"]),
    (HEADER + "\n" + csv_line(1)[:-1], [("NVD", 1)]),  # no row before to tell it by: kept
    (HEADER + "\n" + csv_line(1) + "\n" + csv_line(2).replace("11667", "11668")[:-1],
     [("NVDA", 1), ("NVD", 2)]),  # another instrument: 'NVD' may be its symbol
    (HEADER, []),  # the header alone, without a line end
    (HEADER + "\n" + csv_line(1) + "\n  ", [("NVDA", 1)]),
])
def test_a_last_line_without_its_end_is_cut_only_where_that_can_be_told(tmp_path, content, read):
    path = tmp_path / "day.csv"
    path.write_text(content)
    assert [row.get(UNREADABLE) or (row["symbol"], row["sequence"]) for row in iter_trades(path)] == read


def test_a_dbn_file_cut_inside_a_record_gives_its_complete_records_then_says_it_was_cut(tmp_path):
    """databento only warned, and the backtest and the replay lost the cut record without a word."""
    import zstandard

    from connectors.csv_trades import TruncatedFile

    with zstandard.ZstdDecompressor().stream_reader((FIXTURES / "nvda-20201228.trades.dbn.zst").open("rb")) as stream:
        whole = stream.read()
    path = tmp_path / "cut.dbn"
    path.write_bytes(whole[:-20])  # inside the fourth 48-byte record
    read = []
    with pytest.raises(TruncatedFile, match="cut.dbn ends inside a DBN record: the file was cut"):
        for chunk in iter_trade_chunks(path, 2):
            read += chunk
    assert read == list(iter_trades(FIXTURES / "nvda-20201228.trades.dbn.zst"))[:3]


@pytest.mark.parametrize("name", ["noise.dbn", "noise.dbn.zst", "noise.csv.zst"])
def test_bytes_that_are_not_dbn_or_zstd_are_a_corrupt_file_not_a_library_error(tmp_path, name):
    from connectors.csv_trades import CorruptFile

    (tmp_path / name).write_bytes(bytes(range(256)) * 3)
    with pytest.raises(CorruptFile, match=f"{name} is not"):
        list(iter_trade_chunks(tmp_path / name))


@pytest.mark.parametrize("column, cell, typed", [
    ("size", "99999999999999999999999", 1e23),  # beyond 64 bits: a float, as JSON input carries it
    ("size", "-9223372036854775809", -9.223372036854776e18),
    ("size", "-9223372036854775808", -2**63),  # the ends of the range stay integers
    ("sequence", "18446744073709551615", 2**64 - 1),
    ("sequence", "18446744073709551616", 1.8446744073709552e19),
    ("size", "1e30", 1e30),
    ("size", "100000000000000000000.0", 1e20),
    ("ts_event", "17467974008923703661234", 1.7467974008923704e22),
    ("size", "9" * 5000, math.inf),  # int() refuses more than 4,300 digits
    ("ts_event", "9" * 5000, math.inf),
])
@pytest.mark.parametrize("reader", ["pandas", "line by line"])
def test_an_integer_cell_beyond_64_bits_is_a_float_that_encodes_and_costs_only_its_row(tmp_path, column, cell,
                                                                                    typed, reader):
    """A size of 10**23 stopped the backtest and the replay (``TypeError: Integer exceeds 64-bit range`` where
    the trade was encoded); one of 5,000 digits lost the rest of the file (``ValueError`` from ``int()``)."""
    fields = csv_line(5).split(",")
    fields[HEADER.split(",").index(column)] = cell
    first = csv_line(1) + (",extra" if reader == "line by line" else "")  # a bad first row: read line by line
    rows = read_lines(tmp_path, [HEADER, first, *[csv_line(n) for n in range(2, 5)], ",".join(fields),
                                 *[csv_line(n) for n in range(6, 10)]], 100)
    assert len(rows) == 9
    assert [row["sequence"] for row in rows[1:] if row is not rows[4]] == [2, 3, 4, 6, 7, 8, 9]
    assert rows[4][column] == typed and type(rows[4][column]) is type(typed)
    for row in rows[1:] if reader == "line by line" else rows:  # the bad first row keeps its bytes
        orjson.dumps(row)  # raised TypeError for the trade with the long integer


def dbn_file_bytes(trades: int) -> bytes:
    """A DBN trades file of NVDA (instrument 11667) on 2025-05-09: prices and sizes drawn at random,
    so that it compresses about as a real day does."""
    import datetime
    import random
    from types import SimpleNamespace

    import databento_dbn as dbn

    start = 1_746_797_400_000_000_000
    day = SimpleNamespace(start_date=datetime.date(2025, 5, 9), end_date=datetime.date(2025, 5, 10), symbol="11667")
    metadata = dbn.Metadata(dataset="XNAS.ITCH", start=start, end=start + 10**13, stype_in=dbn.SType.RAW_SYMBOL,
                            stype_out=dbn.SType.INSTRUMENT_ID, schema=dbn.Schema.TRADES, symbols=["NVDA"],
                            mappings=[SimpleNamespace(raw_symbol="NVDA", intervals=[day])])
    draw, sides = random.Random(3), [dbn.Side.ASK, dbn.Side.BID, dbn.Side.NONE]
    records = (bytes(dbn.TradeMsg(2, 11667, start + 1000 * n, draw.randrange(117_000_000_000, 118_000_000_000, 10**7),
                                  draw.choice([1, 5, 100, 200, 1000]), dbn.Action.TRADE, draw.choice(sides), 0,
                                  start + 1000 * n + 150, 0, 0, n)) for n in range(trades))
    return metadata.encode() + b"".join(records)


def test_a_dbn_zst_file_corrupt_in_its_middle_gives_every_record_before_the_damage(tmp_path):
    """Read through databento, the chunk holding the damage was lost whole: none of the replay's first
    20,000 records, and the reason said the file could not be read after its first 0 trades."""
    import random

    import zstandard

    from connectors.csv_trades import CorruptFile

    whole = dbn_file_bytes(20_000)
    compressed = bytearray(zstandard.ZstdCompressor().compress(whole))
    damage = len(compressed) * 2 // 3
    compressed[damage:damage + 256] = random.Random(1).randbytes(256)  # garbled in place, the rest intact
    path = tmp_path / "day.dbn.zst"
    path.write_bytes(bytes(compressed))
    salvageable, damaged = b"", path.read_bytes()  # what a decompressor fed byte by byte gives: the most any reader can
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    try:
        for offset in range(len(damaged)):
            salvageable += decompressor.decompress(damaged[offset:offset + 1])
    except zstandard.ZstdError:
        pass
    records = (len(salvageable) - (len(whole) - 20_000 * 48)) // 48
    read, raised = [], None
    try:
        for chunk in iter_trade_chunks(path, 20_000):
            read += chunk
    except CorruptFile as error:
        raised = str(error)
    assert records > 10_000 and len(read) > 0.95 * records  # before: none
    assert [trade["sequence"] for trade in read] == list(range(len(read)))
    assert {trade["symbol"] for trade in read} == {"NVDA"}
    assert re.fullmatch(r"day.dbn.zst is not zstd data after byte [0-9,]+ \(zstd decompressor error: "
                        r"Data corruption detected\)", raised or ""), raised


@pytest.mark.parametrize("chunk_size", [1, 3, 100])
def test_a_dbn_record_databento_cannot_decode_costs_only_itself(tmp_path, chunk_size):
    """A record whose action is not text (byte 28 of a trade record) cost the rest of the file."""
    whole = dbn_file_bytes(6)
    records = len(whole) - 6 * 48
    broken = bytearray(whole)
    broken[records + 2 * 48 + 28] = 0x9A  # the third record's action
    path = tmp_path / "day.dbn"
    path.write_bytes(bytes(broken))
    rows = [row for chunk in iter_trade_chunks(path, chunk_size) for row in chunk]
    assert [row.get("sequence", row.get(UNREADABLE)) for row in rows] == [
        0, 1, "record 3 is not a DBN trade ('utf-8' codec can't decode byte 0x9a in position 0: invalid start byte)",
        3, 4, 5]
    assert rows[2]["raw"] == bytes(broken[records + 2 * 48:records + 3 * 48])


def test_a_dbn_file_named_zst_but_not_compressed_is_read(tmp_path):
    path = tmp_path / "day.dbn.zst"
    path.write_bytes(dbn_file_bytes(5))
    assert [trade["sequence"] for trade in iter_trades(path)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("first_line, says", [
    (None, "its first line is not a header ('2025-05-09T13:30:00.892370366Z,2025-05-09T13:30:00.892370366Z,0,2,"
           "11667,T,B,0,11...')"),  # the header cut off: the first trade was read as the header
    (HEADER.replace(",price", ""), "its first line has no column price"),
    (HEADER.replace(",", ";"), "its first line is not a header"),
    (HEADER.replace(",", ", "), "its first line has no column ts_event, rtype, publisher_id"),
])
@pytest.mark.parametrize("name", ["day.csv", "day.csv.zst"])
def test_a_csv_without_the_trades_header_is_refused_in_one_line_naming_what_is_missing(tmp_path, first_line, says,
                                                                                      name):
    """Its rows used to be read anyway: every one a dead letter saying only that a field was missing,
    and without a header the first trade was taken for one and vanished."""
    import zstandard

    from connectors.csv_trades import CorruptFile

    rows = [csv_line(n) for n in range(1, 6)]
    if first_line is not None:
        rows = [first_line] + [row.replace(",117.33", "") if "price" in says else row for row in rows]
    text = "\n".join(rows).encode() + b"\n"
    path = tmp_path / name
    path.write_bytes(zstandard.ZstdCompressor().compress(text) if name.endswith(".zst") else text)
    with pytest.raises(CorruptFile) as raised:
        list(iter_trade_chunks(path))
    assert str(raised.value).startswith(f"{name} is not a Databento trades CSV: {says}")


@pytest.mark.parametrize("content", [
    b"\xef\xbb\xbf", b"\xef\xbb\xbf" + HEADER.encode() + b"\r\n" + csv_line(1).encode(),
])
def test_a_byte_order_mark_and_crlf_line_ends_are_a_header_still(tmp_path, content):
    path = tmp_path / "day.csv"
    path.write_bytes(content)
    assert [row["sequence"] for row in iter_trades(path)] == ([1] if b"\r\n" in content else [])


# Lookalike DBN files: a trades header over records that are not all trades, or no symbols to give them.


@pytest.mark.parametrize("kind, rtype", [("mbp-1", 0x01), ("status", 0x12), ("ohlcv-1m", 0x21), ("system", 0x17)])
@pytest.mark.parametrize("where", [(0,), (4,), (4, 5, 6), (11,), (0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11)])
@pytest.mark.parametrize("name", ["day.dbn", "day.dbn.zst"])
def test_a_record_of_another_type_is_a_reason_of_its_own_and_the_trades_around_it_are_read(tmp_path, kind, rtype,
                                                                                          where, name):
    """A trades file holding an MBP-1 record read it as the next 80 bytes of trades: the file 'ended inside a
    DBN record' and the trades after it were lost (read whole by databento, each record of the file was a dead
    letter saying only that its symbol was nan)."""
    records = [dbn_other(kind, n) if n in where else dbn_trade(n) for n in range(12)]
    write_dbn(tmp_path / name, dbn_metadata() + b"".join(records))
    expected = [{UNREADABLE: f"record {n + 1} is not a trade: its record type is {kind} (0x{rtype:02x}), in a file "
                              "of the trades schema", "raw": records[n]} if n in where else n for n in range(12)]
    for chunk_size in (1, 4, 100):
        chunks = list(iter_trade_chunks(tmp_path / name, chunk_size))
        assert all(1 <= len(chunk) <= chunk_size for chunk in chunks)
        rows = [row for chunk in chunks for row in chunk]
        assert [row if UNREADABLE in row else row["sequence"] for row in rows] == expected
        assert {row["symbol"] for row in rows if UNREADABLE not in row} <= {"NVDA"}


@pytest.mark.parametrize("name", ["day.dbn", "day.dbn.zst"])
def test_a_dbn_file_without_symbol_mappings_is_refused_in_one_line(tmp_path, name):
    """Each of its records was a dead letter saying only that the symbol was nan."""
    write_dbn(tmp_path / name, dbn_metadata(mapped=False) + b"".join(dbn_trade(n) for n in range(5)))
    with pytest.raises(UnsupportedFileError) as raised:
        list(iter_trade_chunks(tmp_path / name))
    assert str(raised.value) == (f"{name}: the DBN file has no symbol mappings, so none of its trades has a symbol "
                                 "(request it with its symbols, stype_in raw_symbol)")


def test_a_trade_the_file_maps_to_no_symbol_says_which_instrument_and_day(tmp_path):
    day_after = DBN_START + 86_400 * 10**9  # the mapping ends with 2025-05-09
    records = [dbn_trade(0), dbn_trade(1, instrument_id=999), dbn_trade(2), dbn_trade(3, ts=day_after), dbn_trade(4)]
    write_dbn(tmp_path / "day.dbn", dbn_metadata() + b"".join(records))
    rows = list(iter_trades(tmp_path / "day.dbn"))
    assert [row.get(UNREADABLE, row.get("sequence")) for row in rows] == [
        0, "record 2: the DBN file has no symbol mapping for instrument_id 999 on 2025-05-09",
        2, "record 4: the DBN file has no symbol mapping for instrument_id 11667 on 2025-05-10", 4]
    assert (rows[1]["raw"], rows[3]["raw"]) == (records[1], records[3])


@pytest.mark.parametrize("header, says", [
    (bytes([20, 0x01]), "its header gives record type mbp-1 (0x01) and 80 bytes, but no record follows there"),
    (bytes([10, 0x12]), "its header gives record type status (0x12) and 40 bytes, but no record follows there"),
    (bytes([0, 0x01]), "its header gives record type mbp-1 (0x01) and 0 bytes, but no record follows there"),
    (bytes([12, 0xEE]), "its header gives record type 0xee, which DBN does not have"),
])
def test_a_damaged_record_that_looks_like_another_type_costs_only_itself(tmp_path, header, says):
    """A record header changed in place to another type's: read at a trade's length, since no record
    header follows where its own length would lead (databento read it as a trade of that record type)."""
    records = [dbn_trade(n) for n in range(8)]
    records[3] = header + records[3][2:]
    write_dbn(tmp_path / "day.dbn", dbn_metadata() + b"".join(records))
    for chunk_size in (1, 3, 100):
        rows = [row for chunk in iter_trade_chunks(tmp_path / "day.dbn", chunk_size) for row in chunk]
        assert [row.get("sequence") for row in rows] == [0, 1, 2, None, 4, 5, 6, 7]
        assert rows[3] == {UNREADABLE: f"record 4 is not a DBN trade ({says}: read as a damaged trade)",
                           "raw": records[3]}


UNDEF_PRICE = 2**63 - 1
"""Databento's ``UNDEF_PRICE``: a record without a price."""


@pytest.mark.parametrize("where", [(0,), (3,), (2, 3), (7,), tuple(range(8))])
@pytest.mark.parametrize("name", ["day.dbn", "day.dbn.zst"])
def test_a_trade_whose_price_is_undefined_is_a_reason_naming_undef_price(tmp_path, where, name):
    """databento reads UNDEF_PRICE as a NaN price, which the engine then rejected saying only that the
    price was not a finite number: the reader knows it is no price at all."""
    records = [dbn_trade(n, price=UNDEF_PRICE) if n in where else dbn_trade(n) for n in range(8)]
    write_dbn(tmp_path / name, dbn_metadata() + b"".join(records))
    for chunk_size in (1, 3, 100):
        rows = [row for chunk in iter_trade_chunks(tmp_path / name, chunk_size) for row in chunk]
        assert [row if UNREADABLE in row else row["price"] for row in rows] == [
            {UNREADABLE: f"record {n + 1}: its price is undefined (UNDEF_PRICE, {UNDEF_PRICE}): the record "
                         "gives no trade price", "raw": records[n]} if n in where else 117.33 for n in range(8)]
