"""The job's recovery store (Bytewax's SQLite partitions, ``-r DIR``), checked before the job starts.

Bytewax finds out that a store cannot be used only once its workers run, and then ends
the process with a Rust panic of seventy lines: a directory that is missing or was never
initialised, a partition file that is not SQLite or is damaged, a partition file missing
(or one of another store among them), or a store written by a
job reading other input partitions (another topic, or this one re-created with fewer). A
supervisor restarting the job would loop on it. Each of these is one line here instead,
saying what to do.

Nor does Bytewax stop a second job started on the same store as the same process (a job
started twice, a restart while the old one still runs): both read the input, write every
anomaly, and write the store at once. ``RecoveryLock`` refuses it, on one line too.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path


class RecoveryStoreUnusable(RuntimeError):
    """The recovery directory cannot be resumed from; the message says why and what to do."""


def recovery_directory(argv: Sequence[str], environ: Mapping[str, str]) -> Path | None:
    """The ``-r``/``--recovery-directory`` that ``python -m bytewax.run`` was started with (or
    ``BYTEWAX_RECOVERY_DIRECTORY``, which it reads too); None when not run by it or without one."""
    if len(argv) < 1 or Path(argv[0]).name != "run.py" or Path(argv[0]).parent.name != "bytewax":
        return None
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-r", "--recovery-directory")
    given = parser.parse_known_args(list(argv[1:]))[0].recovery_directory
    given = given or environ.get("BYTEWAX_RECOVERY_DIRECTORY")
    return Path(given) if given else None


def recovery_process_id(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """This process's id in its cluster, as ``python -m bytewax.run`` finds it: ``-i``/``--process-id``,
    ``BYTEWAX_PROCESS_ID``, or the ordinal of ``BYTEWAX_POD_NAME`` in ``BYTEWAX_STATEFULSET_NAME``
    (its Helm chart); 0 for a job of one process. ``bytewax.run`` has refused an id that is not a number."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("-i", "--process-id")
    given = parser.parse_known_args(list(argv[1:]))[0].process_id or environ.get("BYTEWAX_PROCESS_ID")
    if given is None and "BYTEWAX_POD_NAME" in environ and "BYTEWAX_STATEFULSET_NAME" in environ:
        given = environ["BYTEWAX_POD_NAME"].replace(environ["BYTEWAX_STATEFULSET_NAME"] + "-", "")
    return int(given) if given else 0


class RecoveryLock:
    """An exclusive advisory lock (``flock``) on ``DIR/.lock-process-N``: at most one job at a time is
    process N on the store in ``DIR``; the processes of one cluster (other ids) may share the
    directory, each with a lock of its own. The kernel releases the lock when its holder ends, however it
    ends (``kill -9`` too), so the file left behind blocks nothing; the pid written in it only names
    the holder. Held until ``close()``, or the end of the process."""

    def __init__(self, directory: Path, process_id: int = 0) -> None:
        self.path = directory / f".lock-process-{process_id}"
        try:
            self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited
        except OSError as error:
            raise RecoveryStoreUnusable(
                f"recovery store {directory} cannot be locked: {self.path.name}: {error.strerror}") from None
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            holder = _holder(self._fd)
            self.close()
            if error.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                raise RecoveryStoreUnusable(
                    f"recovery store {directory} cannot be locked: {self.path.name}: {error.strerror}") from None
            raise RecoveryStoreUnusable(
                f"recovery store {directory} is in use: another job holds it ({holder}process {process_id}, "
                f"{self.path.name}); two jobs on one store would both read the input, write every anomaly and "
                "write the store at once: stop that job first, or give this one a recovery directory of its own"
            ) from None
        try:  # for the message above, in the job refused
            os.ftruncate(self._fd, 0)
            os.write(self._fd, f"{os.getpid()}\n".encode())
        except OSError:
            pass

    def close(self) -> None:
        """Release the lock (the file stays: it is the lock's place, not its sign)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


_HELD: list[RecoveryLock] = []
"""The locks this process holds for its life: a lock garbage-collected is a lock released."""


def lock_recovery_store(directory: Path, process_id: int) -> None:
    """Take this process's lock on the store in ``directory`` for the life of the process, once the
    directory is known to hold a store it can write; ``RecoveryStoreUnusable`` (one line) if it does not,
    or if another job holds the lock."""
    _check_directory(directory)
    _HELD.append(RecoveryLock(directory, process_id))


def _holder(fd: int) -> str:
    """``pid N, `` as the lock file names its holder; empty if it names none."""
    try:
        written = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f"pid {written}, " if written.isdigit() else ""


def _check_directory(directory: Path) -> list[Path]:
    """The store's partition files, unless ``directory`` is missing, holds none, or cannot be written."""
    initialise = f"initialise it once with `python -m bytewax.recovery {directory} 1`"
    if not directory.is_dir():
        raise RecoveryStoreUnusable(f"recovery directory {directory} does not exist: create it and {initialise}")
    parts = sorted(directory.glob("part-*.sqlite3"))
    if not parts:
        raise RecoveryStoreUnusable(f"recovery directory {directory} holds no recovery partitions: {initialise}")
    unwritable = [path.name for path in [directory, *parts] if not os.access(path, os.W_OK)]
    if unwritable:
        raise RecoveryStoreUnusable(f"recovery store {directory} cannot be written ({', '.join(unwritable)})")
    return parts


def check_recovery_store(directory: Path, input_step: str, input_partitions: Sequence[str]) -> None:
    """Raise ``RecoveryStoreUnusable`` unless ``directory`` holds Bytewax recovery partitions this job
    can resume from: readable, writable, and with no input partition (``input_step``'s state keys)
    that ``input_partitions`` lacks."""
    parts = _check_directory(directory)
    resumed: set[str] = set()
    places: dict[Path, tuple[int, int]] = {}
    for part in parts:
        places[part], keys = _read_part(part, input_step)
        resumed |= keys
    _check_complete(directory, places)
    unknown = sorted(resumed - set(input_partitions))
    if unknown:
        raise RecoveryStoreUnusable(
            f"recovery store {directory} was written by a job reading input partitions {', '.join(unknown)}, "
            f"which this one does not read ({', '.join(input_partitions) or 'none'}): give this job a recovery "
            "directory of its own, or the input topic the store was written for")


def _check_complete(directory: Path, places: dict[Path, tuple[int, int]]) -> None:
    """Every partition the store was made with is there, and none of another store. Bytewax refuses a
    store missing one only once its workers run (``MissingPartitionsError``, with a Rust panic), and
    resuming without it would lose the state and offsets it holds."""
    counts = sorted({count for _, count in places.values()})
    if len(counts) > 1:
        raise RecoveryStoreUnusable(
            f"recovery store {directory} mixes partitions of stores made with "
            f"{' and '.join(map(str, counts))} partitions: put back the files of one store "
            f"({', '.join(f'{part.name}: {index} of {count}' for part, (index, count) in sorted(places.items()))})")
    missing = sorted(set(range(counts[0])) - {index for index, _ in places.values()})
    if missing:
        which = "part " + str(missing[0]) if len(missing) == 1 else "parts " + ", ".join(map(str, missing))
        verb = "is" if len(missing) == 1 else "are"
        raise RecoveryStoreUnusable(
            f"recovery store {directory} is incomplete: {which} of the {counts[0]} it was made with {verb} missing "
            f"({', '.join(part.name for part in sorted(places))} found): restore it from a backup, or start the job "
            "with a new recovery directory (it then reads the input topic from its start)")


def _read_part(part: Path, input_step: str) -> tuple[tuple[int, int], set[str]]:
    """Which partition ``part`` is (its index, and how many the store was made with), and the input
    partitions it holds offsets for; ``RecoveryStoreUnusable`` if it is not a readable store."""
    try:
        with closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True)) as store:
            check = store.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check says {check[0] if check else 'nothing'}")
            rows = store.execute("SELECT DISTINCT state_key FROM snaps WHERE step_id = ?", (input_step,)).fetchall()
            place = store.execute("SELECT part_index, part_count FROM parts").fetchone()
            if place is None:
                raise sqlite3.DatabaseError("its table of parts is empty")
    except sqlite3.Error as error:
        raise RecoveryStoreUnusable(
            f"recovery partition {part} cannot be read ({_one_line(error)}): restore it from a backup, or start the job "
            "with a new recovery directory (it then reads the input topic from its start)") from None
    return (place[0], place[1]), {key for (key,) in rows}


def _one_line(error: sqlite3.Error) -> str:
    """SQLite's report of a damaged file has a line per bad page (a hundred, for a file cut short beside
    its write-ahead log); the job's failures are one line: the first problem and how many more."""
    lines = str(error).replace("*** in database main ***", "").splitlines()
    first, *more = [line.strip() for line in lines if line.strip()] or [str(error)]
    return f"{first} {more[0]}, and {len(more) - 1:,} more problems" if more else first
