"""Publish trades to the input topic: Databento files or the synthetic tape.

``python -m connectors.replay FILE... [--speed X | --max] [--limit N] [--partitions N] [--linger-ms MS]``
``python -m connectors.replay --synthetic [--symbols N] [--trades N] [--seed S]``

One JSON message per trade, keyed by symbol, through ``connectors.publisher``: each
symbol's trades arrive in file order. Files are
played one after the other, each paced from its own first trade. Trades are not
checked here: a malformed one is published as it is, so the job dead-letters it
with its reason instead of it vanishing at the edge. A line the file's reader could
not read as a trade goes as its bytes with the reader's reason in a header, which
the job's dead letter gives (``connectors.codec.READER_REASON_HEADER``).

A trade counts as published only once the broker has acknowledged it. When no
broker is reachable for ``BROKER_LOSS_TIMEOUT_S`` (30 s), or messages wait that
long for an acknowledgement, the replay stops with one line and exit status 3.
SIGINT or SIGTERM stops it too: no trade is read after it, the ones sent are flushed
(for at most that timeout), the summary is printed, exit status 130 or 143.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from connectors.files import unusable_files
from connectors.publisher import (
    DEFAULT_LOSS_TIMEOUT_S,
    FULL_SPEED_LINGER_MS,
    LINGER_PROPERTIES,
    NEXT_FILE,
    PACED_LINGER_MS,
    BrokerLost,
    Progress,
    UnreadableFile,
    producer_settings,
    publish,
)
from models.config import parse_number

DEFAULT_PARTITIONS = 4


def file_trades(paths: list[str]) -> Iterator[dict[str, Any] | object]:
    """The trades of each file in turn, ``NEXT_FILE`` between two files; ``UnreadableFile``, naming
    the file and how many of its trades came before, where one cannot be read any further."""
    from connectors.files import UnsupportedFileError, iter_trade_chunks, unreadable_rest

    for number, path in enumerate(paths):
        if number:
            yield NEXT_FILE
        read = 0
        try:
            for chunk in iter_trade_chunks(path):
                yield from chunk
                read += len(chunk)
        except (OSError, UnsupportedFileError) as error:  # CorruptFile is an OSError, as is a file gone meanwhile
            raise UnreadableFile(unreadable_rest(Path(path), read, error)) from error


def synthetic_trades(symbols: int, trades: int, seed: int) -> tuple[list[dict[str, Any]], list[Any]]:
    try:
        from connectors.synthetic import generate_tape
    except ImportError as error:
        raise SystemExit(f"connectors.replay: the synthetic tape is not available ({error})") from None
    return generate_tape(symbols=symbols, trades=trades, seed=seed)


MAX_SPEED = 1_000_000.0
"""A whole day in under a tenth of a second: faster is ``--max``."""
MIN_SPEED = 0.001
"""A thousand times slower than the market: one second between two trades takes 17 minutes."""
MAX_LIMIT = 10**12
"""Years of a whole US feed (30-50 million trades a day): a larger --limit is a typo."""
MAX_PARTITIONS = 1_000
"""The job opens one consumer per input partition."""
MAX_SYMBOLS = 10_000
"""A whole US equities feed."""
MAX_SYNTHETIC_TRADES = 1_000_000
"""The synthetic tape is built in memory before the first trade goes out (about 1.4 KB and
0.1 ms a trade); a larger tape is ``connectors.market`` written to a file."""
MAX_SEED = 2**32 - 1
"""The seeds every numpy generator takes (``default_rng`` takes more, the legacy ``RandomState`` not)."""


def bounded_number(kind: type, minimum: float, maximum: float):
    """An argparse type: an ASCII, finite number (``parse_number``) from ``minimum`` to ``maximum``.
    argparse's own ``int`` and ``float`` take ``nan``, ``inf`` and other scripts' digits."""
    def parse(text: str) -> int | float:
        try:
            value = parse_number(text, kind)
        except ValueError:
            value = None
        if value is None or not minimum <= value <= maximum:
            noun = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(
                f"must be {noun} from {shown_number(minimum)} to {shown_number(maximum)}, not {text!r}")
        return value
    return parse


def shown_number(number: float) -> str:
    return f"{number:,.0f}" if float(number).is_integer() else f"{number:g}"


def parse_args(argv: list[str] | None, environ: Mapping[str, str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m connectors.replay",
        description="Publish Databento trades files (.csv, .csv.zst, .dbn, .dbn.zst) or a synthetic "
        "tape to the input topic, one JSON message per trade keyed by symbol.",
    )
    parser.add_argument("files", nargs="*", metavar="FILE")
    pace = parser.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=bounded_number(float, MIN_SPEED, MAX_SPEED),
                      help=f"follow the real gaps between trades, X times faster "
                      f"({shown_number(MIN_SPEED)} to {shown_number(MAX_SPEED)})")
    pace.add_argument("--max", action="store_true", help="as fast as the broker takes them (default)")
    parser.add_argument("--limit", type=bounded_number(int, 0, MAX_LIMIT),
                        help=f"publish at most N trades (0 to {shown_number(MAX_LIMIT)})")
    parser.add_argument("--linger-ms", type=bounded_number(float, 0, 1000),
                        help=f"how long trades may gather into one produce request (0 to 1000); given, it wins "
                        f"over $KAFKA_LINGER_MS (default: $KAFKA_LINGER_MS, else {PACED_LINGER_MS:g} paced and "
                        f"{FULL_SPEED_LINGER_MS:g} at full speed)")
    parser.add_argument("--partitions", type=bounded_number(int, 1, MAX_PARTITIONS), default=DEFAULT_PARTITIONS,
                        help=f"partitions of the topic when it is created (1 to {MAX_PARTITIONS:,}, "
                        f"default {DEFAULT_PARTITIONS})")
    parser.add_argument("--brokers", default=environ.get("KAFKA_BROKERS", "localhost:9092"),
                        help="bootstrap servers (default: $KAFKA_BROKERS or localhost:9092)")
    parser.add_argument("--topic", default=environ.get("INPUT_TOPIC", "stocks"),
                        help="topic to publish to (default: $INPUT_TOPIC or stocks)")
    parser.add_argument("--synthetic", action="store_true", help="publish the synthetic tape instead of files")
    parser.add_argument("--symbols", type=bounded_number(int, 1, MAX_SYMBOLS), default=5,
                        help=f"synthetic: instruments (1 to {MAX_SYMBOLS:,}, default 5)")
    parser.add_argument("--trades", type=bounded_number(int, 1, MAX_SYNTHETIC_TRADES), default=20_000,
                        help=f"synthetic: trades in all (--symbols to {MAX_SYNTHETIC_TRADES:,}, default 20000)")
    parser.add_argument("--seed", type=bounded_number(int, 0, MAX_SEED), default=1,
                        help=f"synthetic: random seed (0 to {MAX_SEED:,}, default 1)")
    args = parser.parse_args(argv)
    if args.synthetic == bool(args.files):
        parser.error("give FILE... or --synthetic (not both)")
    if args.trades < args.symbols:
        parser.error(f"argument --trades: must be at least --symbols ({args.symbols:,}): one trade per symbol")
    return args


@dataclass(frozen=True)
class ReplaySettings:
    """What the replay takes from the environment besides the defaults of ``--brokers``
    (KAFKA_BROKERS) and ``--topic`` (INPUT_TOPIC); read after the options, so ``--help``
    answers whatever the environment holds."""

    probe_timeout_s: float = 10.0
    """BROKER_PROBE_TIMEOUT_S: how long to wait for the broker to answer at start (0.1 to 3,600;
    longer than the job's 5 s: a replay is often started together with the broker)."""
    loss_timeout_s: float = DEFAULT_LOSS_TIMEOUT_S
    """BROKER_LOSS_TIMEOUT_S: how long no broker may answer before the replay stops (1 to 86,400)."""
    client_settings: tuple[tuple[str, str], ...] = ()
    """KAFKA_*: librdkafka properties (security, timeouts), as for the job."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str], linger_ms: float | None = None) -> ReplaySettings:
        """Raises ``SystemExit`` naming the variable whose value cannot be used. ``linger_ms`` is
        ``--linger-ms``: given, it is the linger the variables are checked with (``_client_settings``)."""
        loss_timeout_s = _seconds(environ, "BROKER_LOSS_TIMEOUT_S", cls.loss_timeout_s, 1.0, 86_400.0)
        return cls(
            probe_timeout_s=_seconds(environ, "BROKER_PROBE_TIMEOUT_S", cls.probe_timeout_s, 0.1, 3_600.0),
            loss_timeout_s=loss_timeout_s,
            client_settings=tuple(_client_settings(environ, loss_timeout_s, linger_ms).items()),
        )


def _client_settings(environ: Mapping[str, str], loss_timeout_s: float, linger_ms: float | None) -> dict[str, str]:
    """The ``KAFKA_*`` variables as librdkafka properties, checked on clients built as the replay's
    producer is (``checked_client_settings``): a bad one used to stop the replay at the broker probe
    without naming its variable (``KAFKA_HOME``), or to hang or slow it (``1e6`` read as 1).

    With ``--linger-ms`` given (``linger_ms``), a linger variable is left out, unchecked: the flag wins
    over it (``producer_settings``), and checking it against the message timeout refused at start a
    replay whose linger, the flag's, was valid. The flag's own bound keeps it below any message timeout.

    Unlike the job, the replay refuses no ``KAFKA_MESSAGE_MAX_BYTES`` or ``KAFKA_QUEUE_BUFFERING_MAX_KBYTES``
    below its largest message: librdkafka takes neither below 1,000 bytes, and the widest valid trade is
    606 with its key and framing (measured: the 14 fields at the widest values the engine accepts, a
    symbol of 32 four-byte characters). Only a malformed line, or a row with columns of its own, can
    be larger; it counts as failed, with its size (``connectors.publisher``)."""
    from connectors.kafka_settings import KafkaSettingsError, checked_client_settings

    own = producer_settings("", paced=False, client_settings={}, linger_ms=linger_ms, loss_timeout_s=loss_timeout_s)
    own.pop("bootstrap.servers")
    if linger_ms is not None:
        environ = _without_linger_variables(environ)
    try:
        return checked_client_settings(environ, own)
    except KafkaSettingsError as error:
        raise SystemExit(f"connectors.replay: {error}") from None


def _without_linger_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without the variables that set the producer's linger (``KAFKA_LINGER_MS``,
    ``KAFKA_QUEUE_BUFFERING_MAX_MS``)."""
    from connectors.kafka_settings import client_settings_from_env

    return {name: value for name, value in environ.items()
            if not set(client_settings_from_env({name: value})) & set(LINGER_PROPERTIES)}


def _seconds(environ: Mapping[str, str], name: str, default: float, minimum: float, maximum: float) -> float:
    text = environ.get(name)
    if text is None:
        return default
    try:
        value = parse_number(text, float)
    except ValueError:
        raise SystemExit(f"connectors.replay: {name}={text!r} is not a (finite) number") from None
    if not minimum <= value <= maximum:
        raise SystemExit(f"connectors.replay: {name}={text!r} must be between {minimum:g} and {maximum:g}")
    return value


class StopOnSignal:
    """SIGINT and SIGTERM while the CLI runs: the first sets ``stop`` (the replay reads nothing
    more, flushes what it sent and prints its summary), a second ends the process at once, by
    that signal, for a flush the user will not wait for. The previous handlers come back on exit;
    a signal ignored at start (SIGINT of a background job) stays ignored."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> StopOnSignal:
        for number in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(number) is not signal.SIG_IGN:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *_exception: object) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

    def _handle(self, number: int, _frame: Any) -> None:
        if self.received is not None:
            end_progress_line = "\n" if sys.stderr.isatty() else ""
            name = signal.Signals(number).name
            line = f"{end_progress_line}connectors.replay: {name} again: not waiting for the broker\n"
            os.write(2, line.encode())  # not print(): the handler may have interrupted a print
            signal.signal(number, signal.SIG_DFL)
            os.kill(os.getpid(), number)
        self.received = signal.Signals(number)
        self.stop.set()


def main(argv: list[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    args = parse_args(argv, environ)
    settings = ReplaySettings.from_env(environ, args.linger_ms)
    refused = unusable_files(args.files)  # before anything is published
    if refused:
        print(f"connectors.replay: {refused}", file=sys.stderr)
        return 2
    with StopOnSignal() as interruption:
        status = run(args, settings, interruption.stop)
    if interruption.received is None:
        return status
    print(f"connectors.replay: interrupted by {interruption.received.name}", file=sys.stderr)
    return status or 128 + interruption.received  # a lost broker (3) or an unreadable file (4) says more


def run(args: argparse.Namespace, settings: ReplaySettings, stop: threading.Event) -> int:
    """The CLI's work after its arguments are checked: its exit status."""
    from connectors.broker import BrokerUnreachable, ClientSettingsRejected, probe_broker
    from connectors.kafka import ensure_topics

    client_settings = dict(settings.client_settings)
    try:
        probe_broker(args.brokers, timeout=settings.probe_timeout_s, client_settings=client_settings)
    except (BrokerUnreachable, ClientSettingsRejected) as error:
        print(f"connectors.replay: {error}", file=sys.stderr)
        return 2
    if ensure_topics(args.brokers, {args.topic: args.partitions}, client_settings):
        print(f"created topic {args.topic} with {args.partitions} partitions", file=sys.stderr)
    if args.synthetic:
        trades, events = synthetic_trades(args.symbols, args.trades, args.seed)
        print(f"synthetic tape: {len(trades):,} trades, {args.symbols} symbols, "
              f"{len(events)} labelled injected anomalies, seed {args.seed}", file=sys.stderr)
        source: Iterable[dict[str, Any]] = trades
        total = len(trades) if args.limit is None else min(args.limit, len(trades))
    else:
        source, total = file_trades(args.files), args.limit
    try:
        summary = publish(source, args.brokers, args.topic, speed=args.speed, limit=args.limit,
                          client_settings=client_settings, progress=Progress(total), linger_ms=args.linger_ms,
                          loss_timeout_s=settings.loss_timeout_s, stop=stop)
    except (BrokerLost, UnreadableFile) as error:
        print(error.summary.describe(args.topic))
        end_progress_line = "\n" if isinstance(error, BrokerLost) and sys.stderr.isatty() else ""
        print(f"{end_progress_line}connectors.replay: {error}", file=sys.stderr)
        return 3 if isinstance(error, BrokerLost) else 4
    print(summary.describe(args.topic))
    return 1 if summary.failed else 0


if __name__ == "__main__":
    sys.exit(main())
