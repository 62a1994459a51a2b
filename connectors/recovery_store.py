"""The job's recovery store (Bytewax's SQLite partitions, ``-r DIR``), checked before the job starts.

Bytewax finds out that a store cannot be used only once its workers run, and then ends
the process with a Rust panic of seventy lines: a directory that is missing or was never
initialised, a partition file that is not SQLite or is damaged, or a store written by a
job reading other input partitions (another topic, or this one re-created with fewer). A
supervisor restarting the job would loop on it. Each of these is one line here instead,
saying what to do.
"""

from __future__ import annotations

import argparse
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


def check_recovery_store(directory: Path, input_step: str, input_partitions: Sequence[str]) -> None:
    """Raise ``RecoveryStoreUnusable`` unless ``directory`` holds Bytewax recovery partitions this job
    can resume from: readable, writable, and with no input partition (``input_step``'s state keys)
    that ``input_partitions`` lacks."""
    initialise = f"initialise it once with `python -m bytewax.recovery {directory} 1`"
    if not directory.is_dir():
        raise RecoveryStoreUnusable(f"recovery directory {directory} does not exist: create it and {initialise}")
    parts = sorted(directory.glob("part-*.sqlite3"))
    if not parts:
        raise RecoveryStoreUnusable(f"recovery directory {directory} holds no recovery partitions: {initialise}")
    unwritable = [path.name for path in [directory, *parts] if not os.access(path, os.W_OK)]
    if unwritable:
        raise RecoveryStoreUnusable(f"recovery store {directory} cannot be written ({', '.join(unwritable)})")
    resumed: set[str] = set()
    for part in parts:
        resumed |= _input_keys(part, input_step)
    unknown = sorted(resumed - set(input_partitions))
    if unknown:
        raise RecoveryStoreUnusable(
            f"recovery store {directory} was written by a job reading input partitions {', '.join(unknown)}, "
            f"which this one does not read ({', '.join(input_partitions) or 'none'}): give this job a recovery "
            "directory of its own, or the input topic the store was written for")


def _input_keys(part: Path, input_step: str) -> set[str]:
    """The input partitions ``part`` holds offsets for; ``RecoveryStoreUnusable`` if it is not a readable store."""
    try:
        with closing(sqlite3.connect(f"file:{part}?mode=ro", uri=True)) as store:
            check = store.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise sqlite3.DatabaseError(f"quick_check says {check[0] if check else 'nothing'}")
            rows = store.execute("SELECT DISTINCT state_key FROM snaps WHERE step_id = ?", (input_step,)).fetchall()
    except sqlite3.Error as error:
        raise RecoveryStoreUnusable(
            f"recovery partition {part} cannot be read ({error}): restore it from a backup, or start the job "
            "with a new recovery directory (it then reads the input topic from its start)") from None
    return {key for (key,) in rows}
