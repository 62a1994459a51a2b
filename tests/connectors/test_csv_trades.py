"""The CSV reader (connectors.csv_trades): hostile .csv and .csv.zst files cost only their bad lines."""

from __future__ import annotations

import math

import orjson
import pytest

from connectors.csv_trades import UNREADABLE
from connectors.files import iter_trade_chunks, iter_trades


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
