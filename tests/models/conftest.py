"""Real NVDA trades (slices of 2025-05-09 committed under tests/fixtures) for the engine tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.files import iter_trades
from models.config import DetectorConfig

FIXTURES = Path(__file__).parents[1] / "fixtures"


@pytest.fixture(scope="session")
def opening_trades() -> list[dict]:
    """4,000 trades from the pre-market to just after the opening cross (1.45M shares)."""
    return list(iter_trades(FIXTURES / "nvda-20250509-open.csv.zst"))


@pytest.fixture(scope="session")
def sweep_trades() -> list[dict]:
    """3,500 trades around 13:36:50, where hundreds of prints share one timestamp."""
    return list(iter_trades(FIXTURES / "nvda-20250509-sweep.csv.zst"))


@pytest.fixture(scope="session")
def morning_trades() -> list[dict]:
    """20,000 trades from 10:00 New York (the quality test's slice)."""
    return list(iter_trades(FIXTURES / "nvda-20250509-morning.csv.zst"))


@pytest.fixture
def small_config() -> DetectorConfig:
    """Retrains often enough that a few thousand trades see many generations."""
    return DetectorConfig(retrain_every=200, train_size=200, forest_trees=20, trees_per_retrain=5)
