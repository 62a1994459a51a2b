"""Speed and detection-quality measurements, on top of every other package."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.config import DetectorConfig

REPO = Path(__file__).resolve().parent.parent
SHARED_NVDA = REPO.parent / "shared" / "data" / "nvda"
"""The shared real NASDAQ NVDA trade days, beside the checkout (``../shared/data/nvda``)."""
OUTPUT = REPO / "out"
"""Where measuring commands write by default (not committed); ``--out benchmarks/results`` to record."""


def engine_config_from_env() -> DetectorConfig:
    """The engine's settings from the ``DETECTOR_*`` variables, read as the job and the backtest read
    them (``flows.settings.engine_settings_from_env``): a misspelled one stops the measurement with a
    line naming it, where ``DetectorConfig.from_env`` measured the defaults without a word."""
    from flows.settings import engine_settings_from_env  # here: the benchmarks that read no settings skip it
    from models.config import ConfigError

    try:
        return engine_settings_from_env(os.environ)[0]
    except ConfigError as error:
        raise SystemExit(f"error: {error}") from None
