"""The DBN reader (connectors.dbn_trades): cut, corrupt and lookalike .dbn files cost only their bad records."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from connectors.csv_trades import UNREADABLE
from connectors.files import UnsupportedFileError, iter_trade_chunks, iter_trades
from dbn_records import DBN_START, dbn_metadata, dbn_other, dbn_trade, write_dbn

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def test_dbn_trades_are_plain_dicts_in_the_json_shape():
    first = next(iter_trades(FIXTURES / "nvda-20201228.trades.dbn.zst"))
    assert first == {
        "ts_recv": "2020-12-28T09:05:12.576701886Z", "ts_event": "2020-12-28T09:05:12.576690768Z", "rtype": 0,
        "publisher_id": 2, "instrument_id": 6155, "action": "T", "side": "B", "depth": 0, "price": 521.0,
        "size": 36, "flags": 130, "ts_in_delta": 11118, "sequence": 362933, "symbol": "NVDA",
    }


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
