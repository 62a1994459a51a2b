"""A recovery store that cannot be resumed from is one line before the job starts, not a Rust panic."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from bytewax.recovery import init_db_dir

from connectors.recovery_store import RecoveryStoreUnusable, check_recovery_store, recovery_directory

STEP = "trade-anomalies.read"
RUN = "/venv/lib/python3.11/site-packages/bytewax/run.py"


def store_with_offsets(directory: Path, keys: list[str]) -> Path:
    """A store Bytewax initialised, holding input offsets for ``keys`` as a job that ran would."""
    init_db_dir(directory, 1)
    part = directory / "part-0.sqlite3"
    with sqlite3.connect(part) as store:
        store.executemany("INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES (?, ?, 1, NULL)",
                          [(STEP, key) for key in keys] + [("trade-anomalies.detect", "NVDA")])
    return part


def test_a_store_of_these_input_partitions_or_of_none_yet_is_accepted(tmp_path):
    store_with_offsets(tmp_path, ["0-stocks", "1-stocks"])
    check_recovery_store(tmp_path, STEP, ["0-stocks", "1-stocks", "2-stocks"])  # a partition added since
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    init_db_dir(fresh, 2)
    check_recovery_store(fresh, STEP, ["0-stocks"])


@pytest.mark.parametrize("keys, partitions, unknown", [
    (["0-stocks", "1-stocks"], ["0-other"], "0-stocks, 1-stocks"),  # another topic
    (["0-stocks", "3-stocks"], ["0-stocks", "1-stocks"], "3-stocks"),  # the topic re-created with fewer
])
def test_a_store_written_for_other_input_partitions_is_refused_naming_them(tmp_path, keys, partitions, unknown):
    store_with_offsets(tmp_path, keys)
    with pytest.raises(RecoveryStoreUnusable, match=f"reading input partitions {unknown}, which this one does not"):
        check_recovery_store(tmp_path, STEP, partitions)


def damage(part: Path, how: str) -> None:
    if how == "cut in half":
        cut_in_half_after_a_crash(part)
        return
    data = bytearray(part.read_bytes())
    if how == "not SQLite":
        part.write_bytes(b"not a database at all")
    else:  # pages overwritten after the header
        data[100:4096] = bytes(range(256)) * 15 + bytes(range(156))
        part.write_bytes(bytes(data))


def cut_in_half_after_a_crash(part: Path) -> None:
    """A store copied while its writer was killed: the file cut, its write-ahead log left beside it (what
    ``kill -9`` leaves), so SQLite finds a hundred bad pages and reports each on a line of its own."""
    writer = sqlite3.connect(part)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")
    for epoch in (2, 3):
        writer.executemany("INSERT INTO snaps (step_id, state_key, snap_epoch, ser_change) VALUES (?, ?, ?, ?)",
                           [("trade-anomalies.detect", f"SYM{index}", epoch, bytes(3000)) for index in range(200)])
        writer.commit()
        if epoch == 2:
            writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = part.read_bytes()
    part.write_bytes(data[:len(data) // 2])
    writer.close()


@pytest.mark.parametrize("how", ["not SQLite", "damaged pages", "cut in half"])
def test_a_partition_that_cannot_be_read_is_refused_saying_what_to_do(tmp_path, how):
    """On one line, as every start-up failure is: SQLite's own report of a damaged file spans several
    (``*** in database main ***`` then one line per bad page), and was passed on as it was."""
    part = store_with_offsets(tmp_path, ["0-stocks"])
    damage(part, how)
    with pytest.raises(RecoveryStoreUnusable) as refused:
        check_recovery_store(tmp_path, STEP, ["0-stocks"])
    assert re.fullmatch(r"recovery partition .*part-0.sqlite3 cannot be read \(.+\): restore it from a backup, "
                        r"or start the job with a new recovery directory \(.*\)", str(refused.value))
    assert len(str(refused.value)) < 400


@pytest.mark.parametrize("made, message", [
    (False, "does not exist: create it and initialise it once with `python -m bytewax.recovery"),
    (True, "holds no recovery partitions: initialise it once with `python -m bytewax.recovery"),
])
def test_a_missing_or_uninitialised_directory_is_refused(tmp_path, made, message):
    directory = tmp_path / "recovery"
    if made:
        directory.mkdir()
    with pytest.raises(RecoveryStoreUnusable, match=message):
        check_recovery_store(directory, STEP, ["0-stocks"])


@pytest.mark.parametrize("argv, environ, expected", [
    ([RUN, "flows.main", "-r", "rec", "-s", "5", "-b", "0"], {}, Path("rec")),
    ([RUN, "flows.main", "--recovery-directory=rec2", "-w", "2"], {}, Path("rec2")),
    ([RUN, "flows.main"], {"BYTEWAX_RECOVERY_DIRECTORY": "rec3"}, Path("rec3")),
    ([RUN, "flows.main", "-w", "2"], {}, None),
    (["/usr/bin/pytest", "-rA", "tests"], {}, None),  # not run by bytewax.run: pytest's -r is another flag
])
def test_the_recovery_directory_is_the_one_bytewax_run_was_given(argv, environ, expected):
    assert recovery_directory(argv, environ) == expected


@pytest.mark.parametrize("count, removed, message", [
    (2, ["part-1.sqlite3"], "part 1 of the 2 it was made with is missing"),
    (3, ["part-0.sqlite3", "part-2.sqlite3"], "parts 0, 2 of the 3 it was made with are missing"),
])
def test_a_store_missing_a_partition_file_is_refused_saying_what_to_do(tmp_path, count, removed, message):
    """Before: Bytewax's ``MissingPartitionsError`` once the job ran, with a Rust panic and a traceback
    (51 lines, status 1), after every restart."""
    init_db_dir(tmp_path, count)
    for name in removed:
        (tmp_path / name).unlink()
    with pytest.raises(RecoveryStoreUnusable, match=f"recovery store {tmp_path} is incomplete: {message} "
                                                    r"\(.*\): restore it from a backup"):
        check_recovery_store(tmp_path, STEP, ["0-stocks"])


def test_a_partition_file_of_another_store_is_refused(tmp_path):
    """A part copied in from a store made with another partition count (both called part-1)."""
    init_db_dir(tmp_path, 2)
    other = tmp_path / "other"
    other.mkdir()
    init_db_dir(other, 3)
    (other / "part-1.sqlite3").replace(tmp_path / "part-1.sqlite3")
    with pytest.raises(RecoveryStoreUnusable, match="partitions of stores made with 2 and 3 partitions"):
        check_recovery_store(tmp_path, STEP, ["0-stocks"])
