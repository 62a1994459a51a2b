"""Record the dashboard's test fixtures from the real engine, through the job's own dataflow.

The dashboard tests replay what the job publishes, so nothing here is written by
hand: each tape is turned into the messages the job would read from its input
topic, run through ``flows.dataflow.build_flow`` with the job's default settings,
and everything the flow hands its sinks is kept as the job's sinks encode it
(``connectors.codec``), in the order the sinks received it.

The input topic is ``INPUT_TOPIC`` with ``PARTITIONS`` partitions. Each symbol's
partition is where the replay's murmur2 partitioner puts its key (``partition_of``:
NVDA 2, SYN0 1, SYN1 0, SYN2 2; ``test_recordings.py`` checks it against the real
broker), and offsets count up per partition as if the NVDA slice had been published
first and then the synthetic tape. The job's source hands on a partition's messages
as they arrive: at real pace, the trades received within ``POLL_MS`` of each other
(at most ``INPUT_BATCH_SIZE``), so summaries come about once per second of trading.

Three runs, each a fresh job, under ``tests/fixtures/dashboard/``:

- ``nvda-open``: the real NVDA opening slice (``nvda-20250509-open.csv.zst``:
  pre-market and the opening cross): real prices, ``auction`` anomalies and incidents;
- ``synthetic``: a three-symbol synthetic tape with injected events
  (``connectors.synthetic``): several instruments, one with very few anomalies,
  incidents of other kinds, open and closed;
- ``nvda-two-days``: four real NVDA trades of 2020-12-28, then the opening slice:
  idle for years, the instrument starts a second state (a new ``since``) whose
  totals add up with the first's.

Each run has ``.anomalies``, ``.incidents`` (every state change) and ``.summaries``,
and ``.dead-letters`` when it had any, as zstd-compressed JSON lines
(``read_lines``). Run ``.venv/bin/python tests/dashboard/record_fixture.py`` from
the repository root to record them again after an engine or dataflow change
(``test_recordings.py`` says when); it prints what it wrote and the sizes.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zstandard
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.testing import TestingSink, run_main

from connectors.codec import decode_trade, encode_dead_letter, encode_record, encode_trade
from connectors.files import iter_trades
from connectors.messages import DeadLetter, Origin, TradeMessage
from connectors.publisher import timestamp_ns
from connectors.synthetic import generate_tape
from flows.dataflow import build_flow
from flows.settings import JobSettings
from models.config import DetectorConfig

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
RECORDINGS = FIXTURES / "dashboard"
NVDA_OPEN_TRADES = FIXTURES / "nvda-20250509-open.csv.zst"
NVDA_2020_TRADES = FIXTURES / "nvda-20201228.trades.dbn.zst"
INPUT_TOPIC = "stocks"
PARTITIONS = 3
BATCH_SIZE = JobSettings.input_batch_size
POLL_MS = 10
"""A batch holds the trades that arrived within this long (the job's fetch wait, 10 ms)."""
SYMBOLS, TRADES, SEED = 3, 9_000, 1
"""The synthetic tape: after the engine's warm-up (1,500 trades of a symbol) each symbol
still has a few injected events of different kinds."""
NVDA_OPEN, SYNTHETIC, NVDA_TWO_DAYS = "nvda-open", "synthetic", "nvda-two-days"
PARTS = ("anomalies", "incidents", "summaries", "dead_letters")


def synthetic_tape() -> tuple[list[dict], list]:
    """The synthetic tape the recording is made from, with its injected events."""
    return generate_tape(symbols=SYMBOLS, trades=TRADES, seed=SEED)


def nvda_open_tape() -> list[dict]:
    """The real NVDA opening slice: pre-market, then the opening cross and the first seconds."""
    return list(iter_trades(NVDA_OPEN_TRADES))


def nvda_two_days_tape() -> list[dict]:
    """Four real NVDA trades of 2020-12-28, then the opening slice of 2025-05-09."""
    return [*iter_trades(NVDA_2020_TRADES), *nvda_open_tape()]


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 hash of a key (as the Java client and librdkafka's ``murmur2`` compute it)."""
    mask, m = 0xFFFFFFFF, 0x5BD1E995
    h = (0x9747B28C ^ len(data)) & mask
    whole = len(data) - len(data) % 4
    for start in range(0, whole, 4):
        k = int.from_bytes(data[start:start + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[whole:]
    if tail:
        for index in reversed(range(len(tail))):
            h ^= tail[index] << (8 * index)
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h


def partition_of(symbol: str, partitions: int = PARTITIONS) -> int:
    """The partition a message keyed by ``symbol`` goes to (the key's hash, sign bit cleared)."""
    return (murmur2(symbol.encode()) & 0x7FFFFFFF) % partitions


class InputPositions:
    """The next offset of each partition of the input topic, as trades are published."""

    def __init__(self) -> None:
        self.next_offset: dict[int, int] = defaultdict(int)

    def publish(self, trades: Iterable[dict]) -> dict[int, list[TradeMessage]]:
        """The trades as the job's source would read them back: per partition, in order."""
        by_partition: dict[int, list[TradeMessage]] = defaultdict(list)
        for trade in trades:
            key = trade["symbol"].encode()
            partition = partition_of(trade["symbol"])
            origin = Origin(INPUT_TOPIC, partition, self.next_offset[partition])
            self.next_offset[partition] += 1
            message = decode_trade(encode_trade(trade), origin, key)
            if isinstance(message, DeadLetter):
                raise ValueError(f"a recorded tape must decode: {message.reason} at {origin}")
            by_partition[partition].append(message)
        return dict(by_partition)


def paced_batches(partitions: dict[int, list[TradeMessage]]) -> list[list[TradeMessage]]:
    """The batches the job's source hands on when the trades arrive at their real pace.

    Per partition, a batch is the messages received (``ts_recv``) within ``POLL_MS`` of its
    first one, at most ``BATCH_SIZE``; batches of all partitions come in order of arrival.
    """
    batches = []
    for messages in partitions.values():
        batch: list[TradeMessage] = []
        opened_ns = 0
        for message in messages:
            received_ns = timestamp_ns(message.trade["ts_recv"])
            if batch and (received_ns - opened_ns > POLL_MS * 1_000_000 or len(batch) == BATCH_SIZE):
                batches.append(batch)
                batch = []
            if not batch:
                opened_ns = received_ns
            batch.append(message)
        if batch:
            batches.append(batch)
    return sorted(batches, key=lambda batch: (timestamp_ns(batch[0].trade["ts_recv"]), batch[0].origin.partition))


class RecordedTopic(FixedPartitionedSource):
    """The input topic as one Bytewax partition that hands on ``paced_batches`` in order."""

    def __init__(self, partitions: dict[int, list[TradeMessage]]) -> None:
        self.batches = paced_batches(partitions)

    def list_parts(self) -> list[str]:
        return ["input"]

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _RecordedPartition:
        return _RecordedPartition(self.batches)


class _RecordedPartition(StatefulSourcePartition):
    def __init__(self, batches: list[list[TradeMessage]]) -> None:
        self.batches = iter(batches)

    def next_batch(self) -> list[TradeMessage]:
        return next(self.batches)  # StopIteration ends the input

    def snapshot(self) -> None:
        return None


@dataclass
class Recording:
    """What the job's sinks received, encoded as the sinks encode it."""

    anomalies: list[bytes]
    incidents: list[bytes]
    summaries: list[bytes]
    dead_letters: list[bytes]


def record(partitions: dict[int, list[TradeMessage]]) -> Recording:
    """One fresh job over the input topic's messages, with the job's default settings."""
    anomalies: list[Any] = []
    incidents: list[Any] = []
    summaries: list[Any] = []
    letters: list[Any] = []
    flow = build_flow(RecordedTopic(partitions), TestingSink(anomalies), TestingSink(letters), DetectorConfig(),
                      summary_sink=TestingSink(summaries), incident_sink=TestingSink(incidents))
    run_main(flow)
    return Recording([encode_record(item.to_dict()) for item in anomalies],
                     [encode_record(item.to_dict()) for item in incidents],
                     [encode_record(item) for item in summaries],
                     [encode_dead_letter(letter) for letter in letters])


def recording_path(run: str, part: str) -> Path:
    return RECORDINGS / f"{run}.{part.replace('_', '-')}.jsonl.zst"


def read_lines(path: Path) -> list[bytes]:
    """The lines of a recording (zstd-compressed JSON lines)."""
    return zstandard.ZstdDecompressor().decompressobj().decompress(path.read_bytes()).splitlines()


def write(run: str, recording: Recording) -> None:
    RECORDINGS.mkdir(exist_ok=True)
    for part in PARTS:
        lines = getattr(recording, part)
        path = recording_path(run, part)
        if part == "dead_letters" and not lines:
            path.unlink(missing_ok=True)
            continue
        text = b"".join(line + b"\n" for line in lines)
        path.write_bytes(zstandard.ZstdCompressor(level=19).compress(text))
        print(f"{len(lines):>6,} lines {len(text):>10,} bytes, {path.stat().st_size:>8,} compressed  "
              f"{path.relative_to(FIXTURES.parent.parent)}")


def main() -> int:
    positions = InputPositions()
    write(NVDA_OPEN, record(positions.publish(nvda_open_tape())))
    trades, _events = synthetic_tape()
    write(SYNTHETIC, record(positions.publish(trades)))
    write(NVDA_TWO_DAYS, record(InputPositions().publish(nvda_two_days_tape())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
