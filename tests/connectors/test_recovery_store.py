"""A recovery store that cannot be resumed from is one line before the job starts, not a Rust panic."""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from bytewax.recovery import init_db_dir

from connectors.recovery_store import (
    RecoveryLock,
    RecoveryStoreUnusable,
    check_recovery_store,
    lock_recovery_store,
    recovery_directory,
    recovery_process_id,
)

REPO = Path(__file__).resolve().parents[2]
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
@pytest.mark.parametrize("step", ["check", "lock"])
def test_a_missing_or_uninitialised_directory_is_refused(tmp_path, made, message, step):
    """By the store's check, and by the lock, which checks the store before it writes its lock file."""
    directory = tmp_path / "recovery"
    if made:
        directory.mkdir()
    with pytest.raises(RecoveryStoreUnusable, match=message):
        if step == "check":
            check_recovery_store(directory, STEP, ["0-stocks"])
        else:
            lock_recovery_store(directory, 0)
    assert not made or list(directory.iterdir()) == []


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


def test_one_lock_per_process_id_on_a_store_released_on_close(tmp_path):
    """Before: nothing stopped two jobs on one store as the same process (both read the input, both wrote
    every anomaly and the store). Locks are per open file, so two in one process contend as two jobs do."""
    init_db_dir(tmp_path, 2)
    first = RecoveryLock(tmp_path, 0)
    with pytest.raises(RecoveryStoreUnusable) as refused:
        RecoveryLock(tmp_path, 0)
    assert str(refused.value) == (
        f"recovery store {tmp_path} is in use: another job holds it (pid {os.getpid()}, process 0, .lock-process-0); "
        "two jobs on one store would both read the input, write every anomaly and write the store at once: "
        "stop that job first, or give this one a recovery directory of its own")
    other = RecoveryLock(tmp_path, 1)  # another process of the same cluster
    first.close()
    again = RecoveryLock(tmp_path, 0)  # the file left behind blocks nothing: the lock went with its holder
    check_recovery_store(tmp_path, STEP, ["0-stocks"])  # the lock files are not partitions
    for lock in (other, again):
        lock.close()
    assert sorted(path.name for path in tmp_path.glob(".lock*")) == [".lock-process-0", ".lock-process-1"]


def test_a_lock_left_by_a_killed_job_blocks_nothing(tmp_path):
    """``kill -9``: the kernel releases the lock with the process; the file and its pid stay."""
    init_db_dir(tmp_path, 1)
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from connectors.recovery_store import RecoveryLock; "
                               "RecoveryLock(Path(sys.argv[1]), 0); print('held', flush=True); time.sleep(60)",
                               str(tmp_path)], stdout=subprocess.PIPE, text=True, cwd=REPO,
                              env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert holder.stdout.readline() == "held\n"
        with pytest.raises(RecoveryStoreUnusable, match=f"another job holds it \\(pid {holder.pid}, process 0,"):
            RecoveryLock(tmp_path, 0)
    finally:
        holder.kill()
        holder.wait()
    RecoveryLock(tmp_path, 0).close()


def test_a_read_only_store_is_refused_on_one_line_without_a_lock_file(tmp_path):
    init_db_dir(tmp_path, 1)
    tmp_path.chmod(0o555)
    try:
        if os.access(tmp_path, os.W_OK):
            pytest.skip("run as root: a read-only directory is writable")
        with pytest.raises(RecoveryStoreUnusable) as refused:
            lock_recovery_store(tmp_path, 0)
        with pytest.raises(RecoveryStoreUnusable) as not_created:
            RecoveryLock(tmp_path, 0)  # without the check before it
    finally:
        tmp_path.chmod(0o755)
    assert str(refused.value) == f"recovery store {tmp_path} cannot be written ({tmp_path.name})"
    assert str(not_created.value) == f"recovery store {tmp_path} cannot be locked: .lock-process-0: Permission denied"
    assert [path.name for path in tmp_path.iterdir()] == ["part-0.sqlite3"]


@pytest.mark.parametrize("argv, environ, expected", [
    ([RUN, "flows.main", "-r", "rec", "-s", "5", "-b", "0"], {}, 0),
    ([RUN, "flows.main", "-i", "1", "-a", "h:1;h:2", "-r", "rec"], {}, 1),
    ([RUN, "flows.main", "--process-id=2", "-a", "h:1;h:2;h:3"], {"BYTEWAX_PROCESS_ID": "1"}, 2),
    ([RUN, "flows.main"], {"BYTEWAX_PROCESS_ID": "1"}, 1),
    ([RUN, "flows.main"], {"BYTEWAX_POD_NAME": "job-3", "BYTEWAX_STATEFULSET_NAME": "job"}, 3),
])
def test_the_process_id_is_the_one_bytewax_run_finds(argv, environ, expected):
    assert recovery_process_id(argv, environ) == expected


def test_a_lock_file_that_cannot_be_opened_is_one_line(tmp_path):
    """Whatever keeps the lock file from being opened (here a directory in its place; a read-only
    directory, above, when not run as root) is one line naming it, not a traceback."""
    init_db_dir(tmp_path, 1)
    (tmp_path / ".lock-process-0").mkdir()
    with pytest.raises(RecoveryStoreUnusable) as refused:
        lock_recovery_store(tmp_path, 0)
    assert str(refused.value) == f"recovery store {tmp_path} cannot be locked: .lock-process-0: Is a directory"
