"""The backtest runs the real dataflow over files; its output is the engine's output."""

from __future__ import annotations

import io
from contextlib import redirect_stdout
from pathlib import Path

import orjson
import pytest

from connectors.files import iter_trades
from flows.backtest import main, run_backtest
from models.config import DetectorConfig
from models.engine import DetectionEngine
from models.incidents import IncidentUpdate
from models.records import AnomalyRecord

FIXTURES = Path(__file__).parents[1] / "fixtures"
OPENING = FIXTURES / "nvda-20250509-open.csv.zst"
CONFIG = DetectorConfig(retrain_every=200, train_size=200, forest_trees=20, trees_per_retrain=5)


def read_jsonl(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def without_processing_time(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in record.items() if k != "detected_at"} for record in records]


def test_backtest_of_a_real_slice_equals_the_engine(tmp_path):
    report = run_backtest([OPENING], tmp_path / "anomalies.jsonl", CONFIG)
    written = read_jsonl(tmp_path / "anomalies.jsonl")

    engine = DetectionEngine(CONFIG)
    outcomes = engine.process(engine.new_state("NVDA"), list(iter_trades(OPENING)))
    expected = [record.to_dict() for record in outcomes if isinstance(record, AnomalyRecord)]
    final = {}
    for update in outcomes:
        if isinstance(update, IncidentUpdate):
            final[update.incident_id] = {k: v for k, v in update.to_dict().items() if k != "updated_at"}

    assert report.trades_read == 4000
    assert sum(report.anomalies_by_level.values()) == len(written) > 0
    assert without_processing_time(written) == orjson.loads(orjson.dumps(without_processing_time(expected)))
    assert not report.rejections_by_reason
    incidents = read_jsonl(tmp_path / "anomalies.incidents.jsonl")  # the final state of each incident
    assert [{k: v for k, v in i.items() if k != "updated_at"} for i in incidents] == orjson.loads(
        orjson.dumps(list(final.values())))
    assert sum(report.incidents_by_kind.values()) == len(incidents) > 0


def test_bad_rows_become_dead_letters_with_reason_and_line(tmp_path):
    lines = OPENING.read_bytes()
    import zstandard

    text = zstandard.ZstdDecompressor().decompress(lines, max_output_size=10**8).decode().splitlines()
    header, rows = text[0], text[1:1201]
    rows[10] = rows[10].replace("T,N,0,", "T,Q,0,", 1)             # unknown side
    rows[500] = rows[500].rsplit(",", 1)[0] + ","                   # empty symbol
    price_at = header.split(",").index("price")
    cells = rows[900].split(",")
    cells[price_at] = "abc"
    rows[900] = ",".join(cells)                                     # unparseable price
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([header, *rows]) + "\n")

    report = run_backtest([bad], tmp_path / "out.jsonl", CONFIG)
    letters = read_jsonl(tmp_path / "out.dead-letters.jsonl")
    assert report.trades_read == 1200
    # Decode failures and engine rejections reach the sink by different branches.
    assert sorted((letter["offset"], letter["stage"], letter["reason"]) for letter in letters) == [
        (11, "validate", "side must be A, B or N, got 'Q'"),
        (501, "decode", "field 'symbol' must be a non-empty string, got ''"),
        (901, "validate", "field 'price' is not a number: 'abc'"),
    ]
    assert all(letter["source"] == str(bad) for letter in letters)
    side_letter = next(letter for letter in letters if letter["offset"] == 11)
    assert orjson.loads(side_letter["original"])["side"] == "Q"


def test_dbn_files_are_read(tmp_path):
    trades = list(iter_trades(FIXTURES / "nvda-20201228.trades.dbn.zst"))
    assert [t["size"] for t in trades] == [36, 4, 1, 1]
    assert trades[0]["ts_event"] == "2020-12-28T09:05:12.576690768Z"
    assert trades[3]["price"] == 521.01 and trades[0]["side"] == "B"
    report = run_backtest([FIXTURES / "nvda-20201228.trades.dbn.zst"], tmp_path / "a.jsonl", CONFIG)
    assert report.trades_read == 4 and not report.anomalies_by_level


def test_command_line_prints_the_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("DETECTOR_RETRAIN_EVERY", "200")
    monkeypatch.setenv("DETECTOR_TRAIN_SIZE", "200")
    out = io.StringIO()
    with redirect_stdout(out):
        assert main([str(OPENING), "--out", str(tmp_path / "a.jsonl")]) == 0
    text = out.getvalue()
    assert "trades read        4,000" in text
    assert "trades rejected    0" in text
    assert "trades per second" in text


@pytest.mark.parametrize(
    "variable, value, message",
    [("DETECTOR_RETRAIN_EVERY", "often", "DETECTOR_RETRAIN_EVERY='often' is not a valid int"),
     ("DETECTOR_VOTES_REQUIRED", "4", "DETECTOR_VOTES_REQUIRED: must be 1, 2 or 3")],
)
def test_bad_settings_fail_at_start_naming_the_variable(tmp_path, monkeypatch, capsys, variable, value, message):
    monkeypatch.setenv(variable, value)
    assert main([str(OPENING), "--out", str(tmp_path / "a.jsonl")]) == 2
    assert message in capsys.readouterr().err


def test_missing_file_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path / "nope.csv"), "--out", str(tmp_path / "a.jsonl")]) == 2
    assert "nope.csv: no such file" in capsys.readouterr().err


@pytest.mark.parametrize("output", ["--out", "--dead-letters"])
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(tmp_path, capsys, output):
    """The outputs are emptied first: ``--out day.csv`` wiped the day and reported 0 trades."""
    day = tmp_path / "day.csv.zst"
    day.write_bytes(OPENING.read_bytes())
    others = {"--out": str(tmp_path / "a.jsonl"), "--dead-letters": str(tmp_path / "b.jsonl")}
    arguments = [str(day), *[item for flag, path in {**others, output: str(day)}.items() for item in (flag, path)]]
    assert main(arguments) == 2
    assert f"{day} is an input file; write the results elsewhere" in capsys.readouterr().err
    assert day.read_bytes() == OPENING.read_bytes()


@pytest.mark.parametrize("where", ["a directory", "under a file"])
def test_an_output_that_cannot_be_written_is_one_line(tmp_path, capsys, where):
    out = tmp_path if where == "a directory" else tmp_path / "a.jsonl" / "x.jsonl"
    if where == "under a file":
        (tmp_path / "a.jsonl").write_text("")
    assert main([str(OPENING), "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("flows.backtest: ")


def test_hostile_files_become_dead_letters_and_the_rest_is_read(tmp_path):
    """A bad line, a file cut in the middle of its compression and an empty file: each costs only
    itself, with its reason among the dead letters, and the files after it are still read."""
    import zstandard

    with zstandard.ZstdDecompressor().stream_reader(OPENING.open("rb")) as stream:
        text = stream.read().splitlines()
    header, rows = text[0], text[1:301]
    broken_line = tmp_path / "a-bad-line.csv"
    broken_line.write_bytes(b"\n".join([header, *rows[:100], rows[100] + b",extra", *rows[101:200]]) + b"\n")
    cut = tmp_path / "b-cut.csv.zst"
    cut.write_bytes(zstandard.ZstdCompressor().compress(b"\n".join([header, *rows[200:300]]) + b"\n")[:-200])
    empty = tmp_path / "c-empty.csv"
    empty.write_bytes(b"")
    after = tmp_path / "d-after.csv"
    after.write_bytes(b"\n".join([header, *text[301:401]]) + b"\n")

    report = run_backtest([broken_line, cut, empty, after], tmp_path / "a.jsonl", CONFIG)
    letters = read_jsonl(report.dead_letters_path)
    reasons = [letter["reason"] for letter in letters]
    assert "row 101 has 15 fields, the header 14" in reasons
    (cut_reason,) = [reason for reason in reasons if reason.startswith("b-cut.csv.zst cannot be read after its first")]
    read_from_cut = int(cut_reason.split("first ")[1].split(" trades")[0].replace(",", ""))
    assert report.trades_read == 200 + read_from_cut + 1 + 100  # every line of a, what b gave, its reason, all of d
    assert sum(report.rejections_by_reason.values()) == len(letters) == 2


def test_a_cell_beyond_64_bits_is_a_dead_letter_and_the_backtest_reads_on(tmp_path):
    """A size of 10**23 stopped the whole backtest with a traceback (``Integer exceeds 64-bit range`` where its
    dead letter was encoded), and a size of 5,000 digits cost the rest of the file."""
    import zstandard

    with zstandard.ZstdDecompressor().stream_reader(OPENING.open("rb")) as stream:
        header, *rows = stream.read().splitlines()[:301]
    size = header.split(b",").index(b"size")

    def with_size(row: bytes, cell: bytes) -> bytes:
        cells = row.split(b",")
        cells[size] = cell
        return b",".join(cells)

    rows[99] = with_size(rows[99], b"99999999999999999999999")
    rows[199] = with_size(rows[199], b"9" * 5000)
    path = tmp_path / "day.csv"
    path.write_bytes(b"\n".join([header, *rows]) + b"\n")
    report = run_backtest([path], tmp_path / "a.jsonl", CONFIG)
    assert report.trades_read == 300
    letters = read_jsonl(report.dead_letters_path)
    assert [(letter["offset"], letter["reason"]) for letter in letters] == [
        (100, "field 'size' must be between 1 and 1,000,000,000: 1e+23"),
        (200, "field 'size' is not an integer: inf"),
    ]


@pytest.mark.parametrize("kind", ["directory", "fifo"])
def test_an_input_that_is_not_a_regular_file_is_refused_at_start(tmp_path, kind):
    """A named pipe without a writer held the backtest for ever; a directory was read as one trade, a dead letter."""
    import os

    import subprocess
    import sys

    path = tmp_path / "day.csv"
    path.mkdir() if kind == "directory" else os.mkfifo(path)
    (tmp_path / "a.jsonl").write_text("kept\n")
    finished = subprocess.run(  # in a process of its own: a regression fails after 60 s, not never
        [sys.executable, "-m", "flows.backtest", str(OPENING), str(path), "--out", str(tmp_path / "a.jsonl")],
        cwd=FIXTURES.parents[1], capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert finished.stderr == f"flows.backtest: {path}: not a regular file (a directory, a pipe or a device)\n"
    assert finished.stdout == ""
    assert (tmp_path / "a.jsonl").read_text() == "kept\n"  # the last run's results are not emptied for nothing


def test_a_csv_without_its_header_is_one_dead_letter_saying_so_and_the_next_file_is_read(tmp_path):
    """Its first trade was taken for the header and vanished; each other row was a dead letter saying
    only that the trade had no symbol."""
    import zstandard

    with zstandard.ZstdDecompressor().stream_reader(OPENING.open("rb")) as stream:
        header, *rows = stream.read().splitlines()[:201]
    headless, after = tmp_path / "a-headless.csv", tmp_path / "b-after.csv"
    headless.write_bytes(b"\n".join(rows[:100]) + b"\n")
    after.write_bytes(b"\n".join([header, *rows[100:]]) + b"\n")
    report = run_backtest([headless, after], tmp_path / "a.jsonl", CONFIG)
    (letter,) = read_jsonl(report.dead_letters_path)
    assert letter["reason"] == (
        f"a-headless.csv cannot be read after its first 0 trades: CorruptFile: a-headless.csv is not a Databento "
        f"trades CSV: its first line is not a header ({rows[0].decode()[:80] + '...'!r})")
    assert (letter["source"], letter["offset"]) == (str(headless), 1)
    assert report.trades_read == 1 + 100  # the reason, and every trade of the next file


@pytest.mark.parametrize("cut, reason", [
    (1, "row 300 is cut: the file ends inside it, without a line end (its symbol 'NVD' is the start of 'NVDA', "
        "the symbol of instrument 11667 on the rows before)"),  # was a trade of a symbol 'NVD'
    (5, "row 300 is cut: the file ends inside it, without a line end (13 of 14 fields)"),  # was 'symbol ... got '''
    (None, None),  # the whole last line without its line end is a trade
])
def test_a_file_cut_inside_its_last_line_gives_a_dead_letter_saying_so_and_no_trade(tmp_path, cut, reason):
    import zstandard

    with zstandard.ZstdDecompressor().stream_reader(OPENING.open("rb")) as stream:
        header, *rows = stream.read().splitlines()[:301]
    path = tmp_path / "day.csv"
    path.write_bytes(b"\n".join([header, *rows])[:-cut if cut else None])
    report = run_backtest([path], tmp_path / "a.jsonl", CONFIG)
    letters = read_jsonl(report.dead_letters_path)
    assert report.trades_read == 300
    if reason is None:
        assert letters == []
        return
    (letter,) = letters
    assert (letter["offset"], letter["stage"], letter["reason"]) == (300, "decode", reason)
    assert letter["original"] == rows[-1][:-cut].decode()
    assert report.rejections_by_reason == {reason: 1}


def test_lookalike_dbn_files_give_dead_letters_saying_what_is_wrong(tmp_path):
    """A trades file without symbol mappings gave one dead letter per record, each saying only that the
    symbol was nan; one holding an MBP-1 record said it was cut there and lost the trades after it."""
    from dbn_records import dbn_metadata, dbn_other, dbn_trade

    unmapped, mixed, after = tmp_path / "a-unmapped.dbn", tmp_path / "b-mixed.dbn", tmp_path / "c-after.dbn"
    unmapped.write_bytes(dbn_metadata(mapped=False) + b"".join(dbn_trade(n) for n in range(50)))
    mixed.write_bytes(dbn_metadata() + b"".join(dbn_other("mbp-1", n) if n == 20 else dbn_trade(n) for n in range(40)))
    after.write_bytes(dbn_metadata() + b"".join(dbn_trade(n) for n in range(40, 60)))
    report = run_backtest([unmapped, mixed, after], tmp_path / "a.jsonl", CONFIG)
    letters = read_jsonl(report.dead_letters_path)
    assert [(letter["source"], letter["offset"], letter["stage"], letter["reason"]) for letter in letters] == [
        (str(unmapped), 1, "decode", "a-unmapped.dbn cannot be read after its first 0 trades: UnsupportedFileError: "
         "a-unmapped.dbn: the DBN file has no symbol mappings, so none of its trades has a symbol (request it with "
         "its symbols, stype_in raw_symbol)"),
        (str(mixed), 21, "decode", "record 21 is not a trade: its record type is mbp-1 (0x01), in a file of the "
         "trades schema"),
    ]
    assert report.trades_read == 1 + 40 + 20  # the unmapped file's line, every record of the others


def test_a_dbn_trade_without_a_price_is_a_dead_letter_naming_undef_price(tmp_path):
    """Its price, Databento's UNDEF_PRICE, was read as NaN and rejected by the engine in generic words."""
    from dbn_records import dbn_metadata, dbn_trade

    undefined = 2**63 - 1
    path = tmp_path / "day.dbn"
    path.write_bytes(dbn_metadata() + b"".join(dbn_trade(n, price=undefined if n == 5 else 117_330_000_000)
                                               for n in range(10)))
    report = run_backtest([path], tmp_path / "a.jsonl", CONFIG)
    (letter,) = read_jsonl(report.dead_letters_path)
    reason = f"record 6: its price is undefined (UNDEF_PRICE, {undefined}): the record gives no trade price"
    assert (letter["offset"], letter["stage"], letter["reason"]) == (6, "decode", reason)
    assert letter["original_length"] == 48 and report.trades_read == 10
