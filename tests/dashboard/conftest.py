"""What the job published, and a way to put it on the real broker, for the dashboard tests.

The shared ``broker`` fixture (tests/conftest.py) gives the address; these
fixtures create each test's own topics and publish, exactly as the job would
(JSON bytes, keyed by symbol, incidents keyed by incident id on a compacted
topic), what the job's dataflow wrote for the recorded tapes
(``record_fixture.py``, read by ``recordings.py``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # recordings, record_fixture, publishing

from publishing import Topics, publish, publish_world, topics_for  # noqa: E402
from recordings import World, recorded_world, two_day_world  # noqa: E402


@pytest.fixture(scope="session")
def world() -> World:
    """The NVDA opening and the synthetic tape, as the job wrote them."""
    return recorded_world()


@pytest.fixture(scope="session")
def two_days() -> World:
    """One instrument with two states: NVDA trading in 2020, then again in 2025."""
    return two_day_world()


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
