"""What the job would publish, and a way to put it on the real broker, for the dashboard tests.

The shared ``broker`` fixture (tests/conftest.py) gives the address; these
fixtures create each test's own topics and publish, exactly as the job would
(JSON bytes, keyed by symbol, incidents keyed by incident id on a compacted
topic), the engine's recorded anomalies and the incidents and summaries that
``contract_fixtures.py`` builds from them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # contract_fixtures, record_fixture

from contract_fixtures import World, build_world  # noqa: E402
from publishing import Topics, publish, publish_world, topics_for  # noqa: E402


@pytest.fixture(scope="session")
def world() -> World:
    return build_world()


@pytest.fixture
def topics(broker, topic_prefix) -> Topics:
    """Topic names of this test (nothing created)."""
    return topics_for(broker, topic_prefix)


@pytest.fixture
def published(topics, world) -> Topics:
    """``topics`` holding the world, as the job would have left them."""
    publish_world(topics, world)
    return topics


@pytest.fixture
def publisher(broker):
    """``publisher(topic, lines, key_field="symbol")`` publishes to the session broker like the job does."""
    return lambda topic, lines, key_field="symbol": publish(broker, topic, lines, key_field)
