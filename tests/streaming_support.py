"""Helpers for tests that run the streaming job as a real process against the broker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def job_environment(brokers: str, prefix: str, **overrides: str) -> dict[str, str]:
    """The environment of a job reading ``<prefix>-stocks`` and writing ``<prefix>-...`` topics."""
    env = {
        name: value for name, value in os.environ.items()
        if not name.startswith(("KAFKA_", "DETECTOR_", "BYTEWAX_"))
    }
    env.update({
        "PYTHONPATH": str(REPO),
        "KAFKA_BROKERS": brokers,
        "INPUT_TOPIC": f"{prefix}-stocks",
        "OUTPUT_TOPIC": f"{prefix}-anomalies",
        "DLQ_TOPIC": f"{prefix}-dlq",
        "SUMMARY_TOPIC": f"{prefix}-summaries",
        "STOP_AT_END": "true",
    })
    env.update(overrides)
    return env


def run_job(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    """``python -m bytewax.run flows.main ARGS`` to completion (STOP_AT_END=true)."""
    return subprocess.run(
        [PYTHON, "-m", "bytewax.run", "flows.main", *args],
        env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout,
    )


def start_job(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [PYTHON, "-m", "bytewax.run", "flows.main", *args],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def synthetic_tape(symbols: int, trades: int, seed: int):
    """The synthetic tape, or a skip when connectors.synthetic is not there."""
    try:
        from connectors.synthetic import generate_tape
    except ImportError as error:
        pytest.skip(f"connectors.synthetic is not available: {error}")
    tape, _events = generate_tape(symbols=symbols, trades=trades, seed=seed)
    return tape


def publish_tape(brokers: str, topic: str, trades, partitions: int = 4) -> None:
    """Create ``topic`` with ``partitions`` and publish ``trades`` to it, keyed by symbol."""
    from connectors.kafka import ensure_topics
    from connectors.replay import publish

    ensure_topics(brokers, {topic: partitions})
    summary = publish(trades, brokers, topic)
    assert summary.failed == 0, summary.describe(topic)


def read_json(brokers: str, topic: str) -> list[dict]:
    from connectors.kafka import iter_json_values, read_topic

    return iter_json_values(read_topic(brokers, topic))


def anomaly_ids(brokers: str, topic: str) -> list[str]:
    return [record["anomaly_id"] for record in read_json(brokers, topic)]
