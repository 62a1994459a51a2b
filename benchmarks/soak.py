"""Soak: hundreds of thousands of paced trades through the embedded broker and the streaming job.

``python -m benchmarks.soak [FILE...] [--speed X] [--linger-ms MS] [--out DIR]``

Replays the shared NVDA days one after the other (one symbol, so every trade lands
on one partition: the hardest case for the embedded broker, which slows down with
the number of stored batches per partition) at ``--speed`` into a fresh embedded
broker while the job (``python -m bytewax.run flows.main``) reads them, and samples
once a second: trades the job has read (its Prometheus counter), the input topic's
end offsets, and the broker's CPU. Passes when the job has read every published
trade within ``--drain-timeout`` seconds of the replay's end, then stops the job with
SIGTERM (it must end with one line and status 0). Writes ``soak.json`` to ``--out``
(default ``out/``).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from benchmarks import OUTPUT, REPO, SHARED_NVDA

DAYS = ("xnas-itch-20250509", "xnas-itch-20240923", "xnas-itch-20250505", "xnas-itch-20250604")


def job_environment(brokers: str, metrics_port: int) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith(("KAFKA_", "BYTEWAX_"))}
    env.update(PYTHONPATH=str(REPO), KAFKA_BROKERS=brokers, INPUT_TOPIC="soak-stocks",
               OUTPUT_TOPIC="soak-anomalies", DLQ_TOPIC="soak-dlq", SUMMARY_TOPIC="soak-summaries",
               STOP_AT_END="false", BYTEWAX_DATAFLOW_API_ENABLED="true",
               BYTEWAX_DATAFLOW_API_PORT=str(metrics_port), BYTEWAX_DATAFLOW_API_CACHE_PATH=str(OUTPUT))
    return env


def trades_read(port: int) -> int | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    values = [float(line.split()[-1]) for line in text.splitlines()
              if line.startswith("trade_detector_trades_read_total")]
    return int(sum(values)) if values else 0


def end_offsets(consumer, topic: str, partitions: int) -> int:
    from confluent_kafka import TopicPartition

    return sum(consumer.get_watermark_offsets(TopicPartition(topic, index), timeout=5, cached=False)[1]
               for index in range(partitions))


def last_message_seconds(brokers: str, topic: str, wait_ms: int = 10, timeout: float = 20.0) -> float | None:
    """How long a fresh consumer fetching with ``wait_ms`` (as the job and the dashboard do) takes to
    read the last message of partition 0 of ``topic``; None if it cannot within ``timeout``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": brokers, "group.id": "soak-probe", "log_level": 0,
                         "fetch.wait.max.ms": wait_ms})
    try:
        _, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=5, cached=False)
        if high == 0:
            return None
        consumer.assign([TopicPartition(topic, 0, high - 1)])
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            message = consumer.poll(0.1)
            if message is not None and message.error() is None:
                return round(time.monotonic() - started, 3)
        return None
    finally:
        consumer.close()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def soak(paths: list[Path], speed: float, linger_ms: float, drain_timeout: float) -> dict:
    from confluent_kafka import Consumer

    from connectors.broker import EmbeddedBroker, free_port
    from connectors.kafka import ensure_topics
    from connectors.publisher import publish
    from connectors.replay import file_trades

    OUTPUT.mkdir(exist_ok=True)  # Bytewax writes its dataflow.json there
    with EmbeddedBroker() as broker:
        ensure_topics(broker.bootstrap, {"soak-stocks": 1})
        port = free_port()
        job = subprocess.Popen([sys.executable, "-m", "bytewax.run", "flows.main"], cwd=REPO,
                               env=job_environment(broker.bootstrap, port), stderr=subprocess.PIPE, text=True)
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "soak-watch", "log_level": 0})
        samples: list[dict] = []
        replay: dict = {}

        def run_replay() -> None:
            summary = publish(file_trades([str(path) for path in paths]), broker.bootstrap, "soak-stocks",
                              speed=speed, linger_ms=linger_ms)
            replay.update(published=summary.published, failed=summary.failed, seconds=round(summary.seconds, 1))

        started = time.monotonic()
        cpu_before = cpu_seconds(broker._process.pid)
        thread = threading.Thread(target=run_replay, daemon=True)
        thread.start()
        replay_end = None
        while True:
            time.sleep(1.0)
            now = time.monotonic() - started
            if job.poll() is not None:
                raise SystemExit(f"the job exited ({job.returncode}): {job.stderr.read()[-3000:]}")
            read, ends = trades_read(port), end_offsets(consumer, "soak-stocks", 1)
            samples.append({"t": round(now, 1), "read": read, "end_offset": ends,
                            "broker_cpu_s": round(cpu_seconds(broker._process.pid) - cpu_before, 1)})
            if replay_end is None and not thread.is_alive():
                replay_end = now
            if replay_end is not None and read is not None and read >= ends:
                break
            if replay_end is not None and now - replay_end > drain_timeout:
                break
        consumer.close()
        drained = samples[-1]["read"] is not None and samples[-1]["read"] >= samples[-1]["end_offset"]
        last_message = {topic: last_message_seconds(broker.bootstrap, topic)
                        for topic in ("soak-stocks", "soak-anomalies", "soak-summaries")}
        job.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        _, errors = job.communicate(timeout=60)
        stop_seconds = time.monotonic() - signalled
    lags = [sample["end_offset"] - (sample["read"] or 0) for sample in samples]
    total = time.monotonic() - started
    return {
        "files": [path.name for path in paths], "speed": speed, "linger_ms": linger_ms,
        "replay": replay, "trades_read": samples[-1]["read"], "drained": drained,
        "seconds_after_replay_to_drain": round(samples[-1]["t"] - (replay_end or 0), 1),
        "max_lag": max(lags), "last_message_seconds_at_10ms_wait": last_message, "broker_cpu_share": round(samples[-1]["broker_cpu_s"] / max(total, 1e-9), 2),
        "job_stop": {"status": job.returncode, "seconds": round(stop_seconds, 1), "stderr": errors.strip()},
        "samples": samples,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path,
                        default=[SHARED_NVDA / f"{day}.trades.csv.zst" for day in DAYS])
    parser.add_argument("--speed", type=float, default=1000.0, help="replay speed (default 1000)")
    parser.add_argument("--linger-ms", type=float, default=5.0, help="the replay's linger (default 5)")
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument("--out", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    missing = [path for path in args.files if not path.exists()]
    if missing:
        raise SystemExit(f"benchmarks.soak: no such file: {missing[0]}")
    results = soak(args.files, args.speed, args.linger_ms, args.drain_timeout)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "soak.json").write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps({name: value for name, value in results.items() if name != "samples"}, indent=1))
    return 0 if results["drained"] and results["job_stop"]["status"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
