"""Streaming job speed through a real broker: throughput vs a pass-through flow, and latency.

``python -m benchmarks.streaming [FILE] [--skip-latency]``

1. Replays the whole day (default ``../shared/data/nvda/xnas-itch-20250509.trades.csv.zst``)
   into the embedded broker, then runs ``python -m bytewax.run flows.main`` with
   ``STOP_AT_END=true`` and one worker: trades/s end to end (process start to exit),
   and the same with the start-up (a run over an empty topic) taken off.
2. The same for a pass-through flow (same source, decode, key and Kafka sink; no
   detection) for the ratio.
3. Latency: the busiest five minutes of the day replayed at ``--speed 1`` while the job
   tails the topic; for every anomaly, the time from its trade's publish (the input
   message's CreateTime, set by the producer) to the anomaly being read from ``anomalies``.
   The engine finds nothing in those five minutes of the real day, so labelled events
   (``connectors.injection``, seed 0, one per 1,500 trades) are injected into them: the
   latency is measured on the alarms a user would get.

Results go to ``out/streaming.json`` (``--out benchmarks/results`` records them) and a table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from benchmarks import OUTPUT, REPO, SHARED_NVDA
DEFAULT_FILE = SHARED_NVDA / "xnas-itch-20250509.trades.csv.zst"
WINDOW_S = 300
LATENCY_EVENT_SPACING = 1_500


def passthrough_flow():
    """Source, decode and key as the job does, then every trade straight to a Kafka sink."""
    from bytewax import operators as op
    from bytewax.dataflow import Dataflow

    from connectors.kafka_sinks import EncodingSink
    from connectors.kafka_source import TradeSource
    from connectors.messages import TradeMessage
    from flows.settings import JobSettings

    settings = JobSettings.from_env()
    brokers, client = settings.kafka_brokers, settings.kafka_client_settings
    flow = Dataflow("passthrough")
    messages = op.input("read", flow, TradeSource(brokers, settings.input_topic, stop_at_end=settings.stop_at_end,
                                                  client_settings=client, batch_size=settings.input_batch_size))
    trades = op.filter("trades", messages, lambda item: isinstance(item, TradeMessage))
    keyed = op.key_on("key", trades, lambda message: message.symbol)
    op.output("write", keyed, EncodingSink(brokers, settings.output_topic, _raw_message, client))
    return flow


def _raw_message(item) -> tuple[bytes, bytes]:
    symbol, message = item
    return symbol.encode(), message.raw


def job_env(brokers: str, topic: str, prefix: str, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("KAFKA_", "BYTEWAX_"))}
    env.update(PYTHONPATH=str(REPO), KAFKA_BROKERS=brokers, INPUT_TOPIC=topic, OUTPUT_TOPIC=f"{prefix}-anomalies",
               DLQ_TOPIC=f"{prefix}-dlq", SUMMARY_TOPIC=f"{prefix}-summaries", STOP_AT_END="true")
    env.update(extra)
    return env


def timed_run(flow: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    finished = subprocess.run([sys.executable, "-m", "bytewax.run", flow, "-w", "1"], env=env, cwd=REPO,
                              capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if finished.returncode != 0:
        raise SystemExit(f"{flow} failed:\n{finished.stderr[-3000:]}")
    return seconds


def throughput(brokers: str, path: Path) -> dict:
    from connectors.kafka import ensure_topics
    from connectors.publisher import publish
    from connectors.replay import file_trades

    ensure_topics(brokers, {"bench-stocks": 1, "bench-empty": 1})
    replayed = publish(file_trades([str(path)]), brokers, "bench-stocks")
    trades = replayed.published
    results = {"trades": trades, "replay_seconds": round(replayed.seconds, 2)}
    for name, flow in (("job", "flows.main"), ("passthrough", "benchmarks.streaming:passthrough_flow()")):
        startup = timed_run(flow, job_env(brokers, "bench-empty", f"{name}-empty"))
        total = timed_run(flow, job_env(brokers, "bench-stocks", f"{name}-full"))
        results[name] = {
            "seconds": round(total, 2), "startup_seconds": round(startup, 2),
            "trades_per_s": round(trades / total), "trades_per_s_after_startup": round(trades / max(total - startup, 1e-9)),
        }
    results["ratio"] = round(results["job"]["trades_per_s"] / results["passthrough"]["trades_per_s"], 3)
    results["ratio_after_startup"] = round(
        results["job"]["trades_per_s_after_startup"] / results["passthrough"]["trades_per_s_after_startup"], 3)
    return results


def busiest_window(trades: list[dict]) -> tuple[int, int]:
    """Indices [start, end) of the five minutes (by ts_recv) holding the most trades."""
    from connectors.publisher import timestamp_ns

    times = np.array([timestamp_ns(trade["ts_recv"]) or 0 for trade in trades], dtype=np.int64)
    ends = np.searchsorted(times, times + WINDOW_S * 1_000_000_000, side="left")
    start = int(np.argmax(ends - np.arange(len(times))))
    return start, int(ends[start])


def latency(brokers: str, path: Path) -> dict:
    """Publish -> readable for every anomaly (and every summary) of the busiest five minutes.

    The day up to the window is replayed first at full speed, so the window is scored by
    warm models as in a live day; then the window goes out at ``--speed 1``.
    """
    from connectors.broker import free_port
    from connectors.kafka import ensure_topics, read_topic
    from connectors.injection import inject_events
    from connectors.publisher import publish
    from connectors.replay import file_trades

    trades = list(file_trades([str(path)]))
    start, end = busiest_window(trades)
    window, events = inject_events(
        trades[start:end], seed=0, spacing_trades=LATENCY_EVENT_SPACING, warmup_trades=0, session_margin_minutes=0,
    )
    trades = trades[:start] + window
    end = len(trades)
    ensure_topics(brokers, {"latency-stocks": 1, "latency-anomalies": 1, "latency-summaries": 1})
    metrics_port = free_port()
    env = job_env(brokers, "latency-stocks", "latency", STOP_AT_END="false", BYTEWAX_DATAFLOW_API_ENABLED="true",
                  BYTEWAX_DATAFLOW_API_PORT=str(metrics_port), BYTEWAX_DATAFLOW_API_CACHE_PATH=tempfile.mkdtemp())  # a directory
    job = subprocess.Popen([sys.executable, "-m", "bytewax.run", "flows.main", "-w", "1"], env=env, cwd=REPO,
                           start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    received: dict[tuple[str, str], float] = {}
    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(brokers, received, stop), daemon=True)
    follower.start()
    try:
        publish(trades[:start], brokers, "latency-stocks")
        _wait_until_read(metrics_port, start)
        published = publish(trades[start:end], brokers, "latency-stocks", speed=1.0)
        time.sleep(5)
        guard = {name: _job_metric(metrics_port, metric) for name, metric in (
            ("input_stalls", "trade_detector_input_stalls_total"), ("fetch_wait_ms_at_end", "trade_detector_fetch_wait_ms"))}
    finally:
        stop.set()
        follower.join()
        os.killpg(job.pid, 15)
        job.wait()
    created_by_trade, created_by_event = {}, {}
    for message in read_topic(brokers, "latency-stocks")[start:]:
        trade = json.loads(message.value())
        created = message.timestamp()[1] / 1000
        created_by_trade[(trade["symbol"], trade["sequence"])] = created
        key = (trade["symbol"], trade["ts_event"])
        created_by_event[key] = max(created, created_by_event.get(key, 0.0))
    anomaly_ms, summary_ms = [], []
    for (kind, identity), seen in received.items():
        if kind == "anomaly" and identity in created_by_trade:
            anomaly_ms.append((seen - created_by_trade[identity]) * 1000)
        elif kind == "summary" and identity in created_by_event:
            summary_ms.append((seen - created_by_event[identity]) * 1000)
    result = {"window": f"{trades[start]['ts_recv']} .. {trades[end - 1]['ts_recv']}",
              "warmup_trades": start, "trades": published.published,
              "injected_events": [event.kind for event in events], "broker_hop": broker_hop_latency(brokers),
              "stall_guard": guard}
    for name, values in (("anomalies", anomaly_ms), ("summaries", summary_ms)):
        values = np.array(values)
        result[name] = {"count": int(len(values))}
        if len(values):
            result[name].update({f"p{q}_ms": round(float(np.percentile(values, q)), 1) for q in (50, 90, 99)})
            result[name]["max_ms"] = round(float(values.max()), 1)
    return result


def broker_hop_latency(brokers: str, messages: int = 200) -> dict:
    """One produce -> readable hop through the broker alone, for scale (the job path has two)."""
    from confluent_kafka import OFFSET_END, Consumer, Producer, TopicPartition

    from connectors.kafka import ensure_topics

    ensure_topics(brokers, {"latency-hop": 1})
    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "hop", "fetch.wait.max.ms": 5})
    consumer.assign([TopicPartition("latency-hop", 0, OFFSET_END)])
    consumer.consume(10, 1.0)
    producer = Producer({"bootstrap.servers": brokers, "linger.ms": 0})
    delays: list[float] = []
    for _ in range(messages):
        producer.produce("latency-hop", value=repr(time.time()).encode())
        producer.flush()
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            message = consumer.poll(0.01)
            if message is not None and message.error() is None:
                delays.append((time.time() - float(message.value())) * 1000)
                break
        time.sleep(0.02)
    consumer.close()
    values = np.array(delays)
    return {"count": len(values), "p50_ms": round(float(np.percentile(values, 50)), 1),
            "p99_ms": round(float(np.percentile(values, 99)), 1), "max_ms": round(float(values.max()), 1)}


def _follow(brokers: str, received: dict, stop: threading.Event) -> None:
    """Note when each anomaly and summary becomes readable (wall clock, like CreateTime)."""
    from confluent_kafka import OFFSET_END, Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "latency", "enable.auto.commit": False,
                         "fetch.wait.max.ms": 5})
    consumer.assign([TopicPartition("latency-anomalies", 0, OFFSET_END),
                     TopicPartition("latency-summaries", 0, OFFSET_END)])
    while not stop.is_set():
        # poll, not consume(n, timeout): consume waits out its timeout for n messages.
        message = consumer.poll(0.05)
        if message is not None and message.error() is None:
            now = time.time()
            value = json.loads(message.value())
            if message.topic() == "latency-anomalies":
                received.setdefault(("anomaly", (value["symbol"], value["sequence"])), now)
            else:
                received.setdefault(("summary", (value["symbol"], _event_text(value["ts_event"]))), now)
    consumer.close()


def _event_text(ts_event) -> str:
    from connectors.codec import format_timestamp_ns

    return ts_event if isinstance(ts_event, str) else format_timestamp_ns(ts_event)


def _job_metric(metrics_port: int, name: str) -> float | None:
    """One value the job serves on its metrics endpoint (the first series of that name)."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2) as response:
            for line in response.read().decode().splitlines():
                if line.startswith(name + "{") or line.startswith(name + " "):
                    return float(line.split()[-1])
    except OSError:
        return None
    return None


def _wait_until_read(metrics_port: int, trades: int, timeout: float = 300) -> None:
    """Until the job's trade counter reaches ``trades`` (it has caught up with the warm-up)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        read = _job_metric(metrics_port, "trade_detector_trades_read_total")
        if read is not None and read >= trades:
            time.sleep(2)  # the engine finishes the last batches
            return
        time.sleep(0.5)
    raise SystemExit("the job did not catch up with the warm-up replay")


def table(results: dict) -> str:
    lines = ["| measure | value | target |", "|---|---|---|"]
    if "throughput" in results:
        measured = results["throughput"]
        job, passthrough = measured["job"], measured["passthrough"]
        lines += [
            f"| job trades/s, end to end (incl. start-up {job['startup_seconds']} s) | {job['trades_per_s']:,} | >= 20,000 |",
            f"| job trades/s after start-up | {job['trades_per_s_after_startup']:,} | |",
            f"| pass-through trades/s, end to end | {passthrough['trades_per_s']:,} | |",
            f"| pass-through trades/s after start-up | {passthrough['trades_per_s_after_startup']:,} | |",
            f"| job / pass-through (end to end; after start-up) | {measured['ratio']}; "
            f"{measured['ratio_after_startup']} | >= 0.4 |",
        ]
    if "latency" in results and "stall_guard" in results["latency"]:
        guard = results["latency"]["stall_guard"]
        lines.append(f"| input stalls (embedded broker) during the latency run; fetch wait at the end | "
                     f"{guard.get('input_stalls')}; {guard.get('fetch_wait_ms_at_end')} ms | |")
    for name in ("anomalies", "summaries", "broker_hop"):
        if "latency" in results and name in results["latency"]:
            measured = results["latency"][name]
            lines.append(
                f"| latency p50 / p99 / max, publish -> readable: {name} ({measured['count']} messages) "
                f"| {measured.get('p50_ms')} / {measured.get('p99_ms')} / {measured.get('max_ms')} ms | p99 <= 50 ms |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from connectors.broker import EmbeddedBroker

    parser = argparse.ArgumentParser(prog="python -m benchmarks.streaming", description=__doc__.splitlines()[0])
    parser.add_argument("file", nargs="?", type=Path, default=DEFAULT_FILE)
    parser.add_argument("--skip-latency", action="store_true", help="skip the five-minute latency run")
    parser.add_argument("--skip-throughput", action="store_true", help="skip the throughput runs")
    parser.add_argument("--out", type=Path, default=OUTPUT, help=f"result directory (default {OUTPUT})")
    args = parser.parse_args(argv)
    result_file = args.out / "streaming.json"
    if not args.file.exists():
        print(f"benchmarks.streaming: {args.file} not found (the real NVDA day is needed)", file=sys.stderr)
        return 2
    # A partial run (--skip-...) keeps the other part of the previous results.
    results: dict = json.loads(result_file.read_text()) if result_file.exists() else {}
    results.update({"file": args.file.name, "cpus": os.cpu_count(),
                    "measured_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    with EmbeddedBroker() as broker:
        if not args.skip_throughput:
            results["throughput"] = throughput(broker.bootstrap, args.file)
        if not args.skip_latency:
            results["latency"] = latency(broker.bootstrap, args.file)
    result_file.parent.mkdir(parents=True, exist_ok=True)
    result_file.write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    print(f"\nwritten to {result_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
