"""The file layer (connectors.files): readers chosen by file name, chunks of at most the asked size, incident files."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from connectors.files import UnsupportedFileError, iter_trade_chunks, iter_trades, keep_final_states, read_json_lines

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


@pytest.mark.parametrize("name", ["noise.dbn", "noise.dbn.zst", "noise.csv.zst"])
def test_bytes_that_are_not_dbn_or_zstd_are_a_corrupt_file_not_a_library_error(tmp_path, name):
    from connectors.csv_trades import CorruptFile

    (tmp_path / name).write_bytes(bytes(range(256)) * 3)
    with pytest.raises(CorruptFile, match=f"{name} is not"):
        list(iter_trade_chunks(tmp_path / name))
