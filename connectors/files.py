"""Read Databento trades files: ``.csv``, ``.csv.zst``, ``.dbn``, ``.dbn.zst``.

Every reader yields trades as plain dicts in the JSON shape of ``connectors.codec``
(ISO-8601 nanosecond timestamps, float prices), in file order, in chunks, so a
day of trades never has to sit in memory as Python objects all at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from threading import Lock
from typing import Any

import orjson
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from connectors.codec import as_trade_message, encode_trade
from connectors.csv_trades import UNREADABLE, UnsupportedFileError, csv_chunks
from connectors.dbn_trades import dbn_chunks
from connectors.messages import DeadLetter, Origin, TradeMessage

SUPPORTED_SUFFIXES = (".csv", ".csv.zst", ".dbn", ".dbn.zst")


def file_kind(path: str | Path) -> str:
    name = str(path).lower()
    if name.endswith((".csv", ".csv.zst")):
        return "csv"
    if name.endswith((".dbn", ".dbn.zst")):
        return "dbn"
    raise UnsupportedFileError(
        f"{path}: unsupported file type; expected one of {', '.join(SUPPORTED_SUFFIXES)}"
    )


def unusable_files(paths: list[str] | list[Path]) -> str | None:
    """Why the files cannot be read as trades, or None: checked before the first is read by a
    command that takes several (the replay, the evaluation), so a missing or unsupported file
    found later does not cut its work short after the earlier ones."""
    missing = [str(path) for path in paths if not Path(path).is_file()]
    if missing:
        return f"not a file: {', '.join(missing)}"
    unsupported = [str(path) for path in paths if not str(path).lower().endswith(SUPPORTED_SUFFIXES)]
    if unsupported:
        return f"not a trades file ({', '.join(SUPPORTED_SUFFIXES)}): {', '.join(unsupported)}"
    return None


def iter_trade_chunks(path: str | Path, chunk_size: int = 20_000) -> Iterator[list[dict[str, Any]]]:
    """Yield the trades of one file as lists of at most ``chunk_size`` dicts.

    Raises ``CorruptFile`` (an ``OSError``; ``TruncatedFile`` for a cut file) after the trades
    read before the bytes stop being zstd or DBN: a reader keeps those and reports the rest lost."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if file_kind(path) == "csv":
        yield from csv_chunks(path, chunk_size)
    else:
        yield from dbn_chunks(path, chunk_size)


def unreadable_rest(path: Path, trades_read: int, error: Exception) -> str:
    """Why the rest of a file is lost, in the same words for the backtest's dead letter and the replay."""
    return f"{path.name} cannot be read after its first {trades_read:,} trades: {type(error).__name__}: {error}"


def iter_trades(path: str | Path) -> Iterator[dict[str, Any]]:
    for chunk in iter_trade_chunks(path):
        yield from chunk


class TradeFileSource(FixedPartitionedSource):
    """Databento files as a Bytewax source of ``TradeMessage | DeadLetter``.

    All files are one partition read in the order given, so each instrument's
    trades keep their order even when a symbol spans several files (days). The
    resume state is the number of trades already emitted.
    """

    def __init__(self, paths: Sequence[str | Path], chunk_size: int = 5_000) -> None:
        self.paths = [Path(path) for path in paths]
        for path in self.paths:
            file_kind(path)
            if not path.exists():
                raise FileNotFoundError(f"{path}: no such file")
            if not path.is_file():  # a pipe without a writer held the backtest for ever; a directory read as a trade
                raise UnsupportedFileError(f"{path}: not a regular file (a directory, a pipe or a device)")
        self.chunk_size = chunk_size
        self.trades_read = 0
        """Trades emitted in this process (for reports)."""

    def list_parts(self) -> list[str]:
        return ["files"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _TradeFilePartition:
        return _TradeFilePartition(self, resume_state or 0)


class _TradeFilePartition(StatefulSourcePartition):
    def __init__(self, source: TradeFileSource, skip: int) -> None:
        self._source = source
        self._batches = self._read(source.paths, source.chunk_size, skip)
        self._emitted = skip

    @staticmethod
    def _read(paths: list[Path], chunk_size: int, skip: int) -> Iterator[list[TradeMessage | DeadLetter]]:
        for path in paths:
            line, source = 0, str(path)
            chunks = iter_trade_chunks(path, chunk_size)
            while True:
                try:
                    chunk = next(chunks)
                except StopIteration:
                    break
                except Exception as error:  # a file broken past repair (a cut zstd frame, a corrupt DBN)
                    if skip:  # emitted before the restart being resumed
                        skip -= 1
                    else:
                        reason = unreadable_rest(path, line, error)
                        yield [DeadLetter(reason, "decode", Origin(source, 0, line + 1), b"")]
                    break  # on to the next file
                first_line, line = line, line + len(chunk)
                if skip >= len(chunk):
                    skip -= len(chunk)
                    continue
                yield [
                    _message(trade, Origin(source, 0, first_line + offset + 1))
                    for offset, trade in enumerate(chunk[skip:], start=skip)
                ]
                skip = 0

    def next_batch(self) -> list[TradeMessage | DeadLetter]:
        batch = next(self._batches)  # StopIteration ends the input
        self._emitted += len(batch)
        self._source.trades_read += len(batch)
        return batch

    def snapshot(self) -> int:
        return self._emitted


def _message(trade: dict[str, Any], origin: Origin) -> TradeMessage | DeadLetter:
    """A file trade as a message. ``raw`` stays empty: a file line has no wire bytes, and
    encoding every trade as JSON only for the rare dead letter cost a tenth of the
    backtest; the dataflow encodes it when a dead letter needs it."""
    symbol = trade.get("symbol")
    if type(symbol) is str and symbol.strip():
        return TradeMessage(symbol, trade, origin, b"")
    if UNREADABLE in trade:  # a line of the file that is not a row of its fields
        return DeadLetter(trade[UNREADABLE], "decode", origin, trade["raw"])
    message = as_trade_message(trade, origin, b"")
    return DeadLetter(message.reason, message.stage, origin, encode_trade(trade)) if isinstance(message, DeadLetter) else message


class JsonLinesSink(DynamicSink):
    """Appends one JSON document per item to a file (``encode`` turns an item into bytes)."""

    def __init__(self, path: str | Path, encode: Callable[[Any], bytes]) -> None:
        self.path = Path(path)
        self.encode = encode

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _JsonLinesPartition:
        return _JsonLinesPartition(self.path, self.encode)


_FILE_LOCKS: dict[Path, Lock] = {}


class _JsonLinesPartition(StatelessSinkPartition):
    def __init__(self, path: Path, encode: Callable[[Any], bytes]) -> None:
        self._lock = _FILE_LOCKS.setdefault(path.resolve(), Lock())
        self._file = path.open("ab")
        self._encode = encode

    def write_batch(self, items: list[Any]) -> None:
        data = b"".join(self._encode(item) + b"\n" for item in items)
        with self._lock:
            self._file.write(data)
            self._file.flush()

    def close(self) -> None:
        self._file.close()


def read_json_lines(path: Path) -> list[dict]:
    """Every JSON object of a JSON-lines file the backtest wrote, blank lines skipped."""
    return [orjson.loads(line) for line in Path(path).read_bytes().splitlines() if line.strip()]


def keep_final_states(path: Path) -> list[dict]:
    """Rewrite a file of incident updates as the last state of each incident, in order of opening."""
    final: dict[str, dict] = {}
    for update in read_json_lines(path):
        known = final.get(update["incident_id"])
        if known is None or update["revision"] >= known["revision"]:
            final[update["incident_id"]] = update
    Path(path).write_bytes(b"".join(orjson.dumps(incident) + b"\n" for incident in final.values()))
    return list(final.values())
